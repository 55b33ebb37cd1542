"""Results: rows of (metric, value, unit, ratio to a baseline, target, met), a printed
table and a JSON file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any


def median(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else float("nan")


def ratios(values: list[float], baseline: list[float]) -> float:
    """Median of the per-round ratios: rounds were interleaved, so each round's pair saw
    the same machine state."""
    return median(v / b for v, b in zip(values, baseline, strict=False) if b)


@dataclass
class Row:
    section: str
    metric: str
    value: float
    unit: str
    ratio: float | None = None
    vs: str | None = None
    target: str | None = None
    met: bool | None = None


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        section: str,
        metric: str,
        value: float,
        unit: str,
        *,
        ratio: float | None = None,
        vs: str | None = None,
        target: str | None = None,
        met: bool | None = None,
    ) -> Row:
        row = Row(section, metric, float(value), unit, ratio, vs, target, met)
        self.rows.append(row)
        print("  " + format_row(row), flush=True)
        return row

    def to_json(self) -> dict[str, Any]:
        return {"meta": self.meta, "rows": [asdict(r) for r in self.rows], "raw": self.raw}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1, default=str) + "\n")


def num(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if float(value).is_integer() and abs(value) < 100_000:
        return str(int(value))
    magnitude = abs(value)
    if magnitude >= 100_000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def status(row: Row) -> str:
    return "" if row.met is None else ("met" if row.met else "NOT MET")


def format_row(row: Row) -> str:
    ratio = f"{row.ratio:.3f}x {row.vs or ''}".strip() if row.ratio is not None else ""
    target = f"[{row.target}: {status(row)}]" if row.target else ""
    return f"{row.metric:<52} {num(row.value):>10} {row.unit:<8} {ratio:<26} {target}"


def table(rows: list[Row], markdown: bool = False) -> str:
    header = ["section", "metric", "value", "unit", "ratio", "vs", "target", "status"]
    cells = [
        [
            r.section,
            r.metric,
            num(r.value),
            r.unit,
            f"{r.ratio:.3f}" if r.ratio is not None else "",
            r.vs or "",
            r.target or "",
            status(r),
        ]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*c) for c in cells]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import django
    import jwt

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {}
    for name in ("channels", "daphne", "channels-redis", "redis", "twisted", "cryptography"):
        try:
            versions[name] = version(name)
        except Exception:
            versions[name] = "?"
    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "django": django.get_version(),
        "pyjwt": jwt.__version__,
        **versions,
    }
