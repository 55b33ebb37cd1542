"""Every wsauth module has a test module of its own (tests/conftest.py names the rule):
a module added without one fails here, naming the file to create."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"

#: Modules whose tests were named before the rule; each name is the module's own test.
ALIASES = {
    "admission": "test_admission.py",
    "admission/addresses": "test_addresses.py",
    "revoke": "test_revocation.py",
    "contrib/daphne_limits": "test_frame_limits.py",
}
#: Modules without a test module of their own, and why.
EXEMPT = {
    "asgi": "type definitions only: mypy checks them, and the middleware's tests the scope",
}


def expected_names(module: str) -> list[str]:
    """``wsauth/a/b.py`` -> ``test_a_b.py`` (``management/commands/`` shortened to
    ``management``), or ``test_b.py``; a package's ``__init__`` is the package."""
    parts = module.split("/")
    if parts[:2] == ["management", "commands"]:
        parts = ["management", *parts[2:]]
    names = ["test_" + "_".join(parts) + ".py", f"test_{parts[-1]}.py"]
    if module in ALIASES:
        names.insert(0, ALIASES[module])
    return names


def modules() -> list[str]:
    found = []
    for path in sorted((ROOT / "wsauth").rglob("*.py")):
        relative = path.relative_to(ROOT / "wsauth").with_suffix("").as_posix()
        if relative.startswith("migrations/") or relative == "__init__":
            continue
        if relative.endswith("/__init__"):
            body = ast.parse(path.read_text()).body
            if all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body):
                continue  # a package marker: nothing but a docstring
            relative = relative.removesuffix("/__init__")
        found.append(relative)
    return found


def test_the_rule_sees_the_modules():
    found = set(modules())
    assert {"tokens", "store", "store/redisstore", "contrib/daphne"} <= found
    assert "management/commands/wsauth_origins" in found
    assert not {"contrib", "management", "migrations/0001_initial"} & found
    assert (
        expected_names("management/commands/wsauth_origins")[0]
        == "test_management_wsauth_origins.py"
    )


def test_every_module_has_its_test_module():
    missing = [
        f"wsauth/{module}.py: create tests/{expected_names(module)[-2]}"
        for module in modules()
        if module not in EXEMPT
        and not any((TESTS / name).exists() for name in expected_names(module))
    ]
    assert not missing, "\n".join(missing)
