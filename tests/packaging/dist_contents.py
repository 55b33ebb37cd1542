"""The built wheel carries exactly the package's tracked files; the sdist those and its own.

SRC is the copy of the checkout's tracked files that was built, so a file added under
``wsauth/`` that the package data misses (a template, a static file, a migration) fails
here, and so does anything else slipping into the distributions.

Usage: dist_contents.py DIST_DIR SRC_DIR
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

# The sdist's own files, besides the package.
SDIST_EXTRA = {"PKG-INFO", "README.md", "pyproject.toml", "setup.cfg", "MANIFEST.in", "LICENSE"}


def package_files(src: Path) -> set[str]:
    return {
        p.relative_to(src).as_posix()
        for p in (src / "wsauth").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def compare(what: str, got: set[str], expected: set[str]) -> list[str]:
    problems = [f"{what} lacks {name}" for name in sorted(expected - got)]
    problems += [
        f"{what} has {name}, which is not the package's" for name in sorted(got - expected)
    ]
    return problems


def main() -> int:
    dist, src = Path(sys.argv[1]), Path(sys.argv[2])
    expected = package_files(src)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")

    with zipfile.ZipFile(wheel) as z:
        names = {n for n in z.namelist() if not n.endswith("/")}
    in_wheel = {n for n in names if not n.split("/")[0].endswith(".dist-info")}
    problems = compare(wheel.name, in_wheel, expected)

    with tarfile.open(sdist) as t:
        members = {m.name.split("/", 1)[1] for m in t.getmembers() if m.isfile()}
    in_sdist = {n for n in members if not n.split("/")[0].endswith(".egg-info")}
    problems += compare(sdist.name, in_sdist, expected | (SDIST_EXTRA & in_sdist))
    licenses = {n for n in names if n.endswith(".dist-info/licenses/LICENSE")}
    if not licenses:
        problems.append(f"{wheel.name} lacks its LICENSE (license-files)")
    for required in ("PKG-INFO", "README.md", "pyproject.toml", "LICENSE"):
        if required not in in_sdist:
            problems.append(f"{sdist.name} lacks {required}")

    if problems:
        print("dist_contents.py:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    data = sorted(n for n in expected if not n.endswith(".py"))
    print(f"ok   {wheel.name}: the {len(expected)} files of wsauth/, data files {data}")
    print(f"ok   {sdist.name}: the same, and {sorted(in_sdist - expected)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
