"""wsauth.close_codes: the values the README and the JavaScript client rely on."""

from __future__ import annotations

import re
from pathlib import Path

from wsauth import close_codes

ROOT = Path(__file__).resolve().parent.parent


def codes() -> dict[str, int]:
    return {n: v for n, v in vars(close_codes).items() if n.isupper() and isinstance(v, int)}


def test_the_documented_values():
    known = {
        "CREDENTIAL_EXPIRED": 4001,
        "CREDENTIAL_INVALID": 4401,
        "FORBIDDEN": 4403,
        "AUTH_TIMEOUT": 4408,
        "RATE_LIMITED": 4429,
        "MESSAGE_TOO_BIG": 4009,
    }
    assert {name: codes().get(name) for name in known} == known  # newer codes may join


def test_each_is_an_application_code_autobahn_lets_through():
    # Daphne's autobahn accepts 1000 and 3000-4999 from an application; 4000-4999 are
    # private-use (RFC 6455 7.4.2).
    assert all(4000 <= code <= 4999 for code in codes().values())
    assert len(set(codes().values())) == len(codes())


def test_the_readme_documents_every_code():
    readme = (ROOT / "README.md").read_text()
    for code in codes().values():
        assert re.search(rf"\b{code}\b", readme), code


def test_the_client_reconnects_or_stops_by_these_codes():
    client = (ROOT / "wsauth" / "static" / "wsauth" / "wsauth.js").read_text()
    for code in (4001, 4401, 4403, 4408, 4429):
        assert str(code) in client, code
