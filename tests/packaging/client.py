"""A real WebSocket client against the adopted project, run in the wheel's virtualenv.

Asserts that a token in ``Sec-WebSocket-Protocol`` from an allowed origin reaches the
README's consumer as the mapped Django user, that a ticket from the README's
``wsauth/`` URLs works once, and that a refused origin, no credential and a forged
token never get past the handshake.

Usage: client.py BASE_URL ISSUER_JSON PROJECT_DIR SETTINGS_MODULE
"""

from __future__ import annotations

import functools
import json
import os
import sys
import sysconfig
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin, Subprotocol

PATH = "/ws/chat/lobby/"  # the README's route, ws/chat/<str:room>/
ALLOWED = "https://chat.example.com"  # the README's wsauth_origins add ...
WILDCARD = "https://eu.example.com"  # ... https://*.example.com
ADDED = {ALLOWED, "https://*.example.com"}  # the README's origins, as wsauth_origins lists them
# Another site; the allowed host on http; the wildcard's own host (subdomains only); a
# host that merely starts with an allowed one.
REFUSED = (
    "https://attacker.test",
    "http://chat.example.com",
    "https://example.com",
    "https://chat.example.com.attacker.test",
)
GREETING = "Hello Alice Liddell"  # the consumer's "Hello {display_name}": tests/issuer.py's name


class CheckFailed(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def greeting(url: str, origin: str | None, protocols: list[str] | None = None) -> tuple[Any, str]:
    offers = [Subprotocol(p) for p in protocols] if protocols is not None else None
    sent = Origin(origin) if origin is not None else None
    with connect(url, origin=sent, subprotocols=offers, open_timeout=10) as ws:
        return ws.subprotocol, str(ws.recv(timeout=10))


def refused(what: str, attempt: Callable[[], object]) -> None:
    try:
        attempt()
    except InvalidStatus as e:
        status = e.response.status_code
        check(status == 403, f"{what}: HTTP {status}, expected 403")
        print(f"ok   {what}: refused with 403")
        return
    raise CheckFailed(f"{what}: the handshake was accepted")


def ticket(base: str, token: str, origin: str) -> str:
    request = urllib.request.Request(
        base + "/wsauth/ticket/",
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Origin": origin},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.load(response)
    check(isinstance(body.get("ticket"), str), f"the ticket endpoint answered {body!r}")
    return str(body["ticket"])


def run(base: str, issued: dict[str, str], project: Path, settings_module: str) -> None:
    import wsauth

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    check(
        Path(wsauth.__file__).resolve().is_relative_to(site),
        f"wsauth imported from {wsauth.__file__}, not from the wheel in {site}",
    )
    ws_url = base.replace("http://", "ws://", 1) + PATH
    token = issued["token"]
    bearer = ["chat", "authorization_bearer_" + token]

    selected, hello = greeting(ws_url, ALLOWED, bearer)
    check(selected == "chat", f"the server selected {selected!r}, not 'chat'")
    check(hello == GREETING, f"the consumer said {hello!r}, not {GREETING!r}")
    print(f"ok   token subprotocol from {ALLOWED}: {hello!r}, subprotocol {selected!r}")

    _, hello = greeting(ws_url, WILDCARD, bearer)
    check(hello == GREETING, f"from {WILDCARD}: {hello!r}")
    print(f"ok   token subprotocol from {WILDCARD} (https://*.example.com): {hello!r}")

    for origin in REFUSED:
        refused(f"Origin {origin}", functools.partial(greeting, ws_url, origin, bearer))
    refused("no credential", lambda: greeting(ws_url, ALLOWED))
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    refused(
        "a forged signature",
        lambda: greeting(ws_url, ALLOWED, ["chat", "authorization_bearer_" + forged]),
    )

    once = ticket(base, token, ALLOWED)
    _, hello = greeting(f"{ws_url}?ticket={once}", ALLOWED)
    check(hello == GREETING, f"with a ticket: {hello!r}")
    print(f"ok   ticket from POST /wsauth/ticket/: {hello!r}")
    refused("the same ticket again", lambda: greeting(f"{ws_url}?ticket={once}", ALLOWED))

    # scope["user"]: the handshake mapped the token's (iss, sub) to a Django user.
    sys.path.insert(0, str(project))
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django

    django.setup()
    from wsauth.models import AllowedOrigin, OIDCIdentity

    # The exact origin is inside the wildcard: the handshakes alone would not notice a
    # README adding another one.
    added = {str(o) for o in AllowedOrigin.objects.active()}
    check(added == ADDED, f"the allowed origins are {sorted(added)}, not {sorted(ADDED)}")
    print(f"ok   allowed origins: {sorted(added)}")

    identities = list(OIDCIdentity.objects.select_related("user"))
    check(len(identities) == 1, f"{len(identities)} OIDC identities in the project's database")
    identity = identities[0]
    check(
        (identity.issuer, identity.subject) == (issued["issuer"], issued["sub"]),
        f"the identity is {(identity.issuer, identity.subject)}",
    )
    check(identity.user.username == "alice", f"the user is {identity.user.username!r}")
    print(
        f"ok   scope['user']: Django user {identity.user.username!r} for sub {identity.subject!r}"
    )


def main() -> int:
    base, issued_json, project, settings_module = sys.argv[1:5]
    issued = json.loads(Path(issued_json).read_text())
    try:
        run(base, issued, Path(project), settings_module)
    except CheckFailed as e:
        print(f"client.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
