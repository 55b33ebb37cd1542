"""A look at what a live server process holds: serve ``tests.memprobe_asgi:application``
(the demo project's application) on any server. In every process that loads it, on SIGUSR2,
it reads strings, one a line, from ``$WSAUTH_MEMPROBE.in``, looks for each inside every
string and bytes object that any object tracked by the garbage collector refers to
(dicts, lists, tuples, instances, frames: whatever keeps a str alive refers to it),
directly or through untracked containers, and writes ``$WSAUTH_MEMPROBE.<pid>.out``:
JSON, for each string, its holders: type names, for a dict the keys that hold it, and
``tracked>untracked`` for a holder reached through an untracked container. Each such
process appends its PID to ``$WSAUTH_MEMPROBE.pids`` (a server's workers load the
application: hypercorn's worker process, gunicorn's two)."""

from __future__ import annotations

import gc
import json
import os
import signal
from pathlib import Path
from typing import Any


def holders(needles: list[str]) -> list[list[str]]:
    wanted = [(n, n.encode()) for n in needles]
    found: list[list[str]] = [[] for _ in needles]
    own = {id(needles), id(wanted), id(found), *map(id, wanted), *map(id, found)}
    gc.collect()  # what is only waiting for the collector is not held
    objects = gc.get_objects()
    own.add(id(objects))
    for tracked in objects:
        if id(tracked) in own:
            continue
        for holder, ref in _texts(tracked):
            if isinstance(ref, str):
                hits = [i for i, (text, _) in enumerate(wanted) if text in ref]
            else:
                hits = [i for i, (_, raw) in enumerate(wanted) if raw in ref]
            if not hits:
                continue
            name = _name(holder, ref)
            if holder is not tracked:
                name = f"{_name(tracked, None)}>{name}"
            for i in hits:
                found[i].append(name)
    return found


def _texts(holder: Any) -> list[tuple[Any, str | bytes | bytearray]]:
    """``(container, text)`` for the strings and bytes ``holder`` refers to, also through
    the containers the collector does not track (a dict or tuple of strings only is
    untracked: autobahn's parsed headers are such a dict)."""
    out: list[tuple[Any, Any]] = []
    stack = [holder]
    while stack:
        container = stack.pop()
        for ref in gc.get_referents(container):
            # type(), not isinstance(): a lazy object (Django's LazyObject, the admin
            # site) answers isinstance() by setting itself up, which may not be possible
            # in the middle of a worker's imports.
            kind = type(ref)
            if issubclass(kind, str | bytes | bytearray):
                out.append((container, ref))
            elif issubclass(kind, dict | tuple | list | set | frozenset) and not gc.is_tracked(ref):
                stack.append(ref)
    return out


def _name(holder: Any, ref: Any) -> str:
    """The holder's type, and for a dict the keys under which it holds ``ref``."""
    name = type(holder).__qualname__
    if issubclass(type(holder), dict) and ref is not None:
        keys = sorted(str(k) for k, v in list(holder.items()) if v is ref)
        if keys:
            return f"{name}[{','.join(keys)}]"
    return name


def _probe(*_: Any) -> None:
    base = Path(os.environ["WSAUTH_MEMPROBE"])
    needles = base.with_suffix(".in").read_text().split()
    result = holders(needles)
    out = Path(f"{base}.{os.getpid()}.out")
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.rename(out)


def install() -> None:
    """Answer SIGUSR2 in this process (tests/memprobe_asgi.py calls it on import)."""
    signal.signal(signal.SIGUSR2, _probe)
    with open(f"{os.environ['WSAUTH_MEMPROBE']}.pids", "a") as pids:
        pids.write(f"{os.getpid()}\n")
