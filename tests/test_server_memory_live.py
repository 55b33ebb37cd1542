"""What a live server process keeps of a credential once the socket is open, on every
server of the README's "Servers" table.

Each server keeps the upgrade request for the socket's life (its scope and its own
parsed copies); its adapter (``wsauth.contrib.<server>``) takes the credential out of
them after the accept, finding the server's connection through ``send`` wrappers too.
The probe (``tests.memprobe``) searches every string and bytes object that the
process's tracked objects refer to, in every process that serves the application."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.daphne import REDIS_URL, migrated_project_env
from tests.issuer import Issuer
from tests.servers import KINDS, AsgiServer
from tests.test_middleware_live import PREFIX, post_ticket
from wsauth.contrib.daphne import DaphneAdapter
from wsauth.edge import find

# The probe (tests/memprobe.py: a signal handler walking every object of the live server)
# takes the servers down on Python 3.12 in CI (connection refused after the first probe),
# not on 3.11: the guarantee is checked on 3.11 until the probe is fixed for 3.12.
pytestmark = pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="tests/memprobe.py crashes servers on Python 3.12"
)

#: Who may still hold a spent ticket: the scopes' query string (the application's to
#: read; Daphne's ``_raw_query_string`` is the same bytes) and, on Daphne, urllib's
#: ``urlsplit`` cache (128 entries whatever the number of sockets; autobahn parsed the URI).
TICKET_HOLDERS = {
    "dict[query_string]",
    "dict[_raw_query_string]",
    "SplitResult",
    "_lru_cache_wrapper>tuple",
}


class Probed:
    def __init__(self, kind: str, issuer: Issuer, server: AsgiServer, base: Path) -> None:
        self.kind, self.issuer, self.server, self.base = kind, issuer, server, base

    def holders(self, *needles: str) -> list[list[str]]:
        """For each string, the types of the objects that hold it, in every process that
        serves the application."""
        self.base.with_suffix(".in").write_text("\n".join(needles))
        pids = {int(p) for p in Path(f"{self.base}.pids").read_text().split()}
        outs = []
        for pid in pids:
            out = Path(f"{self.base}.{pid}.out")
            out.unlink(missing_ok=True)
            os.kill(pid, signal.SIGUSR2)
            outs.append(out)
        merged: list[list[str]] = [[] for _ in needles]
        deadline = time.monotonic() + 20
        for out in outs:
            while not out.exists():
                assert time.monotonic() < deadline, self.server.log()
                time.sleep(0.05)
            for i, held in enumerate(json.loads(out.read_text())):
                merged[i] += held
        return merged

    def socket(self, path: str, token: str, subject: str) -> None:
        """Open a socket with ``chat`` and the token offered; check the token is gone."""
        signature = token.rsplit(".", 1)[1]
        with connect(self.server.ws + path, subprotocols=["chat", PREFIX + token]) as ws:
            assert ws.recv(timeout=5).startswith("Hello")
            # hypercorn's read loop holds the last bytes it read (a local of its
            # coroutine) until the client's next frame replaces them.
            [held] = self.holders(signature)
            assert held == (["coroutine"] if self.kind == "hypercorn" else []), held
            ws.send("one frame")
            assert "one frame" in ws.recv(timeout=5)
            held_signature, held_subject = self.holders(signature, subject)
            assert held_subject  # the probe sees the socket's state: its claims are there
            assert held_signature == [], held_signature
            ws.send("still open")
            assert "still open" in ws.recv(timeout=5)


@pytest.fixture(scope="module", params=KINDS)
def probed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Probed]:
    kind = request.param
    tmp: Path = tmp_path_factory.mktemp(f"memprobe-{kind}")
    issuer = Issuer().start()
    base = tmp / "probe"
    env = {**migrated_project_env(tmp, issuer, REDIS_URL), "WSAUTH_MEMPROBE": str(base)}
    server = AsgiServer(kind, env, tmp / f"{kind}.log", app="tests.memprobe_asgi:application")
    server.start()
    yield Probed(kind, issuer, server, base)
    server.stop()
    issuer.stop()


def test_the_token_is_not_kept_once_the_socket_is_open(probed: Probed) -> None:
    subject = f"probe-{probed.kind}-a"
    # Not the server's scope, headers, parsed request or offered protocols, nor wsauth's.
    probed.socket("/ws/echo/", probed.issuer.token(sub=subject, name="Probe A"), subject)


def test_the_ticket_is_not_kept_once_the_socket_is_open(probed: Probed) -> None:
    token = probed.issuer.token(sub=f"probe-{probed.kind}-b", name="Probe B")
    ticket = post_ticket(probed.server, token)
    with connect(probed.server.ws + f"/ws/echo/?ticket={ticket}&room=blue") as ws:
        assert ws.recv(timeout=5) == "Hello Probe B"
        ws.send("one frame")
        assert "one frame" in ws.recv(timeout=5)
        held_ticket, held_room = probed.holders(ticket, "room=blue")
        assert held_ticket and set(held_ticket) <= TICKET_HOLDERS, held_ticket
        assert held_room  # the probe finds the query where it is held


def test_a_send_wrapper_in_front_does_not_defeat_the_adapter(probed: Probed) -> None:
    # A closure around send, as Sentry's and OpenTelemetry's ASGI middleware make.
    subject = f"probe-{probed.kind}-c"
    before = len(probed.server.log())  # the server is the module's: other tests' lines
    probed.socket("/wrapped/ws/echo/", probed.issuer.token(sub=subject, name="C"), subject)
    assert "cannot reach the server's connection" not in probed.server.log()[before:]


def test_a_send_wrapper_that_hides_the_server_is_named_then_server_edge_fixes_it(
    probed: Probed,
) -> None:
    token = probed.issuer.token(sub=f"probe-{probed.kind}-d", name="D")
    with connect(
        probed.server.ws + "/opaque/ws/echo/", subprotocols=["chat", PREFIX + token]
    ) as ws:
        assert ws.recv(timeout=5) == "Hello D"
        deadline = time.monotonic() + 5
        while "cannot reach the server's connection" not in probed.server.log():
            assert time.monotonic() < deadline, probed.server.log()
            time.sleep(0.05)
        assert probed.holders(token.rsplit(".", 1)[1]) != [[]]  # not silent: it is kept
    assert "Wrap the outermost application with wsauth.edge.ServerEdge" in probed.server.log()
    subject = f"probe-{probed.kind}-e"
    probed.socket("/edge/opaque/ws/echo/", probed.issuer.token(sub=subject, name="E"), subject)


def test_sends_of_no_known_server_are_left_alone() -> None:
    import functools

    adapters = [DaphneAdapter()]
    assert find(lambda message: None, adapters) is None
    assert find(functools.partial(print, object()), adapters) is None
