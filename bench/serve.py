"""``python -m bench.serve [daphne arguments]``: Daphne's command line, with hooks for the
instruction counts under callgrind and for memory snapshots.

- SIGUSR1 runs a full garbage collection. A freshly started process owes a full
  collection for everything its imports and first requests allocated; under callgrind it
  lands inside whichever variant's measured window comes first after the debt crosses
  the threshold (about 40 M instructions, 1.3 M per handshake at N = 30).
  ``instructions()`` settles it before every window, for every variant alike, so each
  window sees the steady state of a long-running server.
- With ``BENCH_TRACEMALLOC=PATH``, tracemalloc traces every allocation and SIGUSR2 dumps a
  snapshot of what is alive (after a full collection) to ``PATH.0``, ``PATH.1``, ...
"""

from __future__ import annotations

import gc
import os
import signal
import sys


def _snapshot(out: str) -> None:
    """Dump a tracemalloc snapshot of what is alive now, after a full collection."""
    import tracemalloc

    gc.collect()
    count = len(_snapshots)
    tracemalloc.take_snapshot().dump(f"{out}.{count}.tmp")
    os.replace(f"{out}.{count}.tmp", f"{out}.{count}")
    _snapshots.append(count)


_snapshots: list[int] = []


def main() -> None:
    signal.signal(signal.SIGUSR1, lambda *_: gc.collect())
    if os.environ.get("BENCH_TRACEMALLOC"):  # SIGUSR2: a snapshot to BENCH_TRACEMALLOC.<n>
        import tracemalloc

        tracemalloc.start(1)
        out = os.environ["BENCH_TRACEMALLOC"]
        signal.signal(signal.SIGUSR2, lambda *_: _snapshot(out))
    from daphne.cli import CommandLineInterface

    sys.argv[0] = "daphne"
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
