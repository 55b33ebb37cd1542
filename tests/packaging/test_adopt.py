"""The README's adoption blocks parse, and adopt.py refuses what it cannot apply as written.

check.sh applies the blocks for real (a wheel, startproject, Daphne); this runs in the
suite in milliseconds, so a README edit that breaks a marker fails there too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.packaging.adopt import AdoptError, Block, apply, extract, substitute

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_blocks_are_what_check_sh_replaces_and_python_that_parses():
    blocks = extract(README.read_text())
    for block in blocks:
        if block.path and block.path.endswith(".py"):
            ast.parse(block.text, filename=f"README line {block.line}")
    assert [b.action for b in blocks].count("serve") == 1
    # check.sh's replacements: each must still be in the README.
    substitute(
        blocks,
        [
            ("https://login.example.com/realms/main", "http://127.0.0.1:1/realms/test"),
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/11"),
            ("-p 8000", "-p 1"),
        ],
    )


def test_a_replacement_the_readme_lacks_is_an_error():
    blocks = extract(README.read_text())
    with pytest.raises(AdoptError, match=re.escape("contains 'https://gone.example'")):
        substitute(blocks, [("https://gone.example", "x")])


@pytest.mark.parametrize(
    ("readme", "error"),
    [
        ("text\n", "no <!-- adopt"),
        ("<!-- adopt: run -->\nnot a fence\n", "not followed by a fence"),
        ("<!-- adopt: run -->\n```sh\ntrue\n", "never closed"),
        ("<!-- adopt: copy x.py -->\n```\n```\n", "unknown adopt action 'copy'"),
        ("<!-- adopt: write -->\n```\n```\n", "needs a path"),
        ("<!-- adopt: run x -->\n```\n```\n", "takes no path"),
        ("<!-- adopt: write a.py b.py -->\n", "malformed"),
        ("1. step\n\n   <!-- adopt: run -->\n   ```sh\n true\n   ```\n", "outdented"),
    ],
)
def test_malformed_markers_are_errors(readme, error):
    with pytest.raises(AdoptError, match=error):
        extract(readme)


def test_blocks_in_a_list_item_are_dedented_and_applied_in_order(tmp_path):
    readme = (
        "1. Step:\n\n"
        "   <!-- adopt: write app/a.py -->\n"
        "   ```python\n   A = 1\n\n   if A:\n       B = 2\n   ```\n\n"
        "   <!-- adopt: append app/a.py -->\n   ```python\n   C = 3\n   ```\n\n"
        "   <!-- adopt: run -->\n   ```sh\n   cat app/a.py > copied.txt\n   ```\n\n"
        "   <!-- adopt: serve -->\n   ```sh\n   sleep 1\n   ```\n"
    )
    (tmp_path / "app").mkdir()
    serve = tmp_path / "serve.cmd"
    apply(extract(readme), tmp_path, serve)
    assert (tmp_path / "app/a.py").read_text() == "A = 1\n\nif A:\n    B = 2\n\nC = 3\n"
    assert (tmp_path / "copied.txt").read_text() == (tmp_path / "app/a.py").read_text()
    assert serve.read_text() == "sleep 1\n"


@pytest.mark.parametrize(
    ("block", "error"),
    [
        (Block("append", "missing.py", "x\n", 3), "does not exist"),
        (Block("write", "nodir/x.py", "x\n", 3), "no directory"),
        (Block("write", "../outside.py", "x\n", 3), "outside the project"),
        (Block("run", None, "exit 3\n", 3), "exited 3"),
    ],
)
def test_what_cannot_be_applied_as_written_is_an_error(tmp_path, block, error):
    project = tmp_path / "project"
    project.mkdir()
    serve = Block("serve", None, "true\n", 9)
    with pytest.raises(AdoptError, match=f"README line 3: .*{error}"):
        apply([block, serve], project, None)
    assert not (tmp_path / "outside.py").exists()
