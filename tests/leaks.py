"""What the test session issued, and the search for it in what the session logged.

``tests.issuer.Issuer`` records every token it signs in ``ISSUED``; tests add other
credentials (tickets, proofs) with ``ISSUED.add``. ``tests/conftest.py`` searches every
log section pytest captured and, at the end of the session, every ``*.log`` under the
session's temporary directory (the server processes' logs), in any test order."""

from __future__ import annotations

import re
from pathlib import Path

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
TICKET = re.compile(r"ticket[=:\"' ]+[A-Za-z0-9_-]{43}")
#: Maximal runs of base64url characters: a token's payload or signature alone is one.
RUN = re.compile(r"[A-Za-z0-9_-]{20,}")


class Issued:
    def __init__(self) -> None:
        self._fragments: set[str] = set()

    def add(self, *credentials: str) -> None:
        """Remember credentials: a JWT's payload and signature (each a secret on its own;
        its header is the same for every token of a key), anything else whole."""
        for credential in credentials:
            parts = credential.split(".")
            if len(parts) == 3 and parts[0].startswith("eyJ"):
                parts = parts[1:]
            self._fragments.update(p for p in parts if len(p) >= 20)

    def leaks(self, text: str) -> list[str]:
        """What ``text`` holds in clear, shortened so that the report leaks nothing."""
        found = [f"a JWT {m.group()[:12]}..." for m in JWT.finditer(text)]
        found += [f"a ticket {m.group()[:12]}..." for m in TICKET.finditer(text)]
        found += [
            f"an issued credential {run[:6]}..."
            for run in self._fragments.intersection(RUN.findall(text))
        ]
        return found

    def leaks_in_logs(self, base: Path) -> dict[Path, list[str]]:
        hits = {path: self.leaks(path.read_text(errors="replace")) for path in base.rglob("*.log")}
        return {path: found for path, found in hits.items() if found}


ISSUED = Issued()
