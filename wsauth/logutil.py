"""Masking secrets for log lines."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, MutableMapping


def mask(secret: str | None, keep: int = 6) -> str:
    """``eyJhbG…[812]``: enough to correlate lines, never enough to replay."""
    if not secret:
        return "-"
    if len(secret) <= keep * 2:
        return f"…[{len(secret)}]"
    return f"{secret[:keep]}…[{len(secret)}]"


#: A JWT (three base64url segments, the first a JSON object's ``{"``), a credential query
#: argument's value, and a token subprotocol (whatever the prefix, ``..._<JWT>``).
_SECRETS = re.compile(
    r"(?P<jwt>eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)"
    r"|(?P<arg>(?:ticket|access_token)=)(?P<value>[^&\s\"'#]+)"
)


def mask_text(text: str) -> str:
    """``text`` with every JWT and credential query value masked."""
    if "eyJ" not in text and "ticket=" not in text and "access_token=" not in text:
        return text
    return _SECRETS.sub(_masked, text)


def _masked(match: re.Match[str]) -> str:
    if match.group("jwt"):
        return mask(match.group("jwt"))
    return match.group("arg") + mask(match.group("value"))


class CredentialFilter(logging.Filter):
    """Masks credentials in the records of a server's loggers: uvicorn logs each
    WebSocket handshake with its query string (``?ticket=...``), and a library's error
    may quote a header. The message and a traceback are formatted once, masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Argument by argument: uvicorn's access formatter unpacks its tuple of arguments,
        # hypercorn's atoms are a dict subclass that computes headers' keys.
        if isinstance(record.msg, str):
            record.msg = mask_text(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(mask_text(a) if isinstance(a, str) else a for a in args)
        elif isinstance(args, MutableMapping):
            for key, value in list(args.items()):
                if isinstance(value, str):
                    args[key] = mask_text(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        return True


_filter = CredentialFilter()


def filter_server_logs(names: Iterable[str]) -> None:
    """Install ``CredentialFilter`` on the named loggers (once each)."""
    for name in names:
        target = logging.getLogger(name)
        if _filter not in target.filters:
            target.addFilter(_filter)
