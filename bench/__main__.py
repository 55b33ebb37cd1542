"""``python -m bench [sections...] [--quick] [--callgrind] [--tracemalloc]``: see
docs/performance.md."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.context import Context, Options  # noqa: E402
from bench.report import Results, machine, table  # noqa: E402
from bench.servers import raise_fd_limit, use_private_redis  # noqa: E402

SECTIONS = ["tokens", "jwks", "handshakes", "messages", "memory", "scaleout", "edge", "frames"]
ALIASES = {"scale-out": "scaleout", "handshake": "handshakes", "token": "tokens"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "sections", nargs="*", metavar="section", help=f"any of {', '.join(SECTIONS)} (all)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds, memory up to 1k")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="also count instructions per handshake and per message under valgrind (slow)",
    )
    parser.add_argument("--callgrind-handshakes", type=int, default=100, metavar="N")
    parser.add_argument(
        "--callgrind-variants",
        metavar="A,B",
        help="count only these handshake variants under callgrind (e.g. "
        "subprotocol,subprotocol-metrics-off: the metrics' cost alone)",
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also attribute memory per socket to source lines, wsauth against bare",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "bench" / "results" / "latest.json",
        help="where to write the results (default: bench/results/latest.json)",
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    chosen = [ALIASES.get(s, s) for s in args.sections] or SECTIONS
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {SECTIONS}")
    if args.callgrind and not {"handshakes", "messages", "frames"} & set(chosen):
        chosen.append("handshakes")
    if args.tracemalloc and "memory" not in chosen:
        chosen.append("memory")
    chosen = [s for s in SECTIONS if s in chosen]

    raise_fd_limit()
    private = use_private_redis()
    options = Options(
        quick=args.quick,
        callgrind=args.callgrind,
        callgrind_handshakes=args.callgrind_handshakes,
        callgrind_variants=tuple(args.callgrind_variants.split(","))
        if args.callgrind_variants
        else None,
        tracemalloc=args.tracemalloc,
    )
    results = Results(meta={**machine(), "sections": chosen, "quick": args.quick})
    ctx = Context(options, results)
    started = time.perf_counter()
    failed: list[str] = []
    try:
        for name in chosen:
            section_start = time.perf_counter()
            print(f"== {name}", flush=True)
            module = importlib.import_module(f"bench.{name}")
            try:
                asyncio.run(module.run(ctx))
            except Exception as exc:  # report it, run the other sections
                traceback.print_exc()
                results.meta.setdefault("errors", {})[name] = repr(exc)
                failed.append(name)
            results.meta.setdefault("seconds", {})[name] = round(
                time.perf_counter() - section_start, 1
            )
    finally:
        ctx.close()
        if private is not None:
            private.stop()
        results.meta["total_seconds"] = round(time.perf_counter() - started, 1)
        results.write(args.json)
    print()
    print(table(results.rows, markdown=args.markdown))
    print(f"\n{results.meta['total_seconds']} s; results in {args.json}")
    if failed:
        print(f"sections that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
