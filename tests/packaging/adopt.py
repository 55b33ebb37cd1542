"""Apply the README's adoption steps, as written, to a project fresh from ``startproject``.

The README marks each block a newcomer copies with an HTML comment on the line before
its fence, invisible on a rendered page:

- ``<!-- adopt: write PATH -->``: the block is the whole of PATH (new or replaced);
- ``<!-- adopt: append PATH -->``: the block goes at the end of PATH, which must exist;
- ``<!-- adopt: run -->``: shell commands, run in the project directory;
- ``<!-- adopt: serve -->``: the command that serves the project, written to
  ``--serve-file`` for the caller to start (it must know the PID to stop it).

Blocks are applied in the README's order. ``--replace OLD NEW`` stands for what a newcomer
types in place of the README's examples (the issuer, a port); each OLD must occur in some
block, so a README that drops one fails here instead of passing untested.

Usage: adopt.py README PROJECT_DIR [--replace OLD NEW]... [--serve-file FILE]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

MARKER = re.compile(r"^\s*<!--\s*adopt:\s*(?P<action>[a-z]+)(?:\s+(?P<path>\S+))?\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)")
ACTIONS = {"write": True, "append": True, "run": False, "serve": False}  # action: takes PATH


class AdoptError(Exception):
    pass


@dataclass
class Block:
    action: str
    path: str | None
    text: str
    line: int  # the marker's line in the README, 1-based


def extract(readme: str) -> list[Block]:
    lines = readme.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        marker = MARKER.match(lines[i])
        i += 1
        if not marker:
            if "adopt:" in lines[i - 1] and "<!--" in lines[i - 1]:
                raise AdoptError(f"README line {i}: malformed adopt marker {lines[i - 1]!r}")
            continue
        action, path, at = marker["action"], marker["path"], i
        if action not in ACTIONS:
            raise AdoptError(f"README line {at}: unknown adopt action {action!r}")
        if ACTIONS[action] != (path is not None):
            need = "needs a path" if ACTIONS[action] else "takes no path"
            raise AdoptError(f"README line {at}: 'adopt: {action}' {need}")
        while i < len(lines) and not lines[i].strip():
            i += 1
        opening = FENCE.match(lines[i]) if i < len(lines) else None
        if not opening:
            raise AdoptError(f"README line {at}: 'adopt: {action}' is not followed by a fence")
        indent, fence = opening["indent"], opening["fence"]
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            if lines[i].strip() and not lines[i].startswith(indent):
                raise AdoptError(f"README line {i + 1}: a line of the block is outdented")
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AdoptError(f"README line {at}: the block's fence is never closed")
        i += 1
        text = textwrap.dedent("\n".join(body)) + "\n"
        blocks.append(Block(action, path, text, at))
    if not blocks:
        raise AdoptError("the README has no <!-- adopt: ... --> blocks")
    return blocks


def substitute(blocks: list[Block], replacements: list[tuple[str, str]]) -> None:
    for old, new in replacements:
        hits = [b for b in blocks if old in b.text]
        if not hits:
            raise AdoptError(f"no adopt block of the README contains {old!r} any more")
        for block in hits:
            block.text = block.text.replace(old, new)


def target(project: Path, block: Block) -> Path:
    assert block.path is not None
    path = (project / block.path).resolve()
    if not path.is_relative_to(project.resolve()):
        raise AdoptError(f"README line {block.line}: {block.path} is outside the project")
    return path


def apply(blocks: list[Block], project: Path, serve_file: Path | None) -> None:
    serves = [b for b in blocks if b.action == "serve"]
    if len(serves) != 1:
        raise AdoptError(f"the README must have one 'adopt: serve' block, not {len(serves)}")
    for block in blocks:
        where = f"README line {block.line}"
        if block.action == "write":
            path = target(project, block)
            if not path.parent.is_dir():
                raise AdoptError(f"{where}: no directory {path.parent} to write {block.path} in")
            path.write_text(block.text)
            print(f"== {where}: wrote {block.path}")
        elif block.action == "append":
            path = target(project, block)
            if not path.is_file():
                raise AdoptError(f"{where}: {block.path} does not exist to append to")
            with path.open("a") as f:
                f.write("\n" + block.text)
            print(f"== {where}: appended to {block.path}")
        elif block.action == "run":
            print(f"== {where}: running\n{textwrap.indent(block.text, '   $ ')}", end="")
            sys.stdout.flush()
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=project)
            if done.returncode:
                raise AdoptError(f"{where}: the commands exited {done.returncode}")
        elif block.action == "serve":
            print(f"== {where}: the server command: {block.text.strip()}")
            if serve_file is not None:
                serve_file.write_text(block.text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("readme", type=Path)
    parser.add_argument("project", type=Path)
    parser.add_argument("--replace", nargs=2, action="append", default=[], metavar=("OLD", "NEW"))
    parser.add_argument("--serve-file", type=Path)
    args = parser.parse_args()
    try:
        blocks = extract(args.readme.read_text())
        substitute(blocks, [tuple(r) for r in args.replace])
        apply(blocks, args.project, args.serve_file)
    except AdoptError as e:
        print(f"adopt.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
