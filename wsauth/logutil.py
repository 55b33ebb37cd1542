"""Masking secrets for log lines."""

from __future__ import annotations


def mask(secret: str | None, keep: int = 6) -> str:
    """``eyJhbG…[812]``: enough to correlate lines, never enough to replay."""
    if not secret:
        return "-"
    if len(secret) <= keep * 2:
        return f"…[{len(secret)}]"
    return f"{secret[:keep]}…[{len(secret)}]"
