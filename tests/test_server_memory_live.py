"""What a live Daphne process keeps of a credential once the socket is open.

Daphne's protocol object (autobahn's) keeps the upgrade request for the socket's life;
``wsauth.serverstate`` takes the credential out of it after the accept. The probe
(``tests.memprobe``) searches every string and bytes object that the process's tracked
objects refer to."""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.daphne import DaphneServer, migrated_project_env
from tests.issuer import Issuer
from tests.test_middleware_live import PREFIX, post_ticket
from wsauth.serverstate import forget_credentials


class Probed:
    def __init__(self, issuer: Issuer, server: DaphneServer, base: Path) -> None:
        self.issuer, self.server, self.base = issuer, server, base

    def holders(self, *needles: str) -> list[list[str]]:
        """For each string, the types of the server's objects that hold it."""
        out = self.base.with_suffix(".out")
        out.unlink(missing_ok=True)
        self.base.with_suffix(".in").write_text("\n".join(needles))
        assert self.server.proc is not None
        os.kill(self.server.proc.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 20
        while not out.exists():
            assert time.monotonic() < deadline, self.server.log()
            time.sleep(0.05)
        return json.loads(out.read_text())


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probed]:
    tmp: Path = tmp_path_factory.mktemp("memprobe")
    issuer = Issuer().start()
    base = tmp / "probe"
    env = {**migrated_project_env(tmp, issuer), "WSAUTH_MEMPROBE": str(base)}
    server = DaphneServer(env, tmp / "daphne.log", module="tests.memprobe").start()
    yield Probed(issuer, server, base)
    server.stop()
    issuer.stop()


def test_the_token_is_not_kept_once_the_socket_is_open(probed: Probed) -> None:
    token = probed.issuer.token(sub="probe-subject-a", name="Probe A")
    signature = token.rsplit(".", 1)[1]
    with connect(probed.server.ws + "/ws/echo/", subprotocols=["chat", PREFIX + token]) as ws:
        assert ws.recv(timeout=5) == "Hello Probe A"
        held_signature, held_subject = probed.holders(signature, "probe-subject-a")
        # The probe sees the socket's state: its claims are there.
        assert held_subject
        # No copy of the token: not Daphne's headers, autobahn's raw request, parsed
        # headers or offered protocols, nor any wsauth object.
        assert held_signature == []
        ws.send("still open")
        assert "still open" in ws.recv(timeout=5)


def test_the_ticket_is_not_kept_once_the_socket_is_open(probed: Probed) -> None:
    token = probed.issuer.token(sub="probe-subject-b", name="Probe B")
    ticket = post_ticket(probed.server, token)
    with connect(probed.server.ws + f"/ws/echo/?ticket={ticket}&room=blue") as ws:
        assert ws.recv(timeout=5) == "Hello Probe B"
        held_ticket, held_room = probed.holders(ticket, "room=blue")
        # Only the scopes' query string (the application's to read, the same bytes as
        # Daphne's _raw_query_string) and urllib.parse.urlsplit's own cache (128 entries
        # whatever the number of sockets; autobahn parsed the URI) hold the spent ticket.
        assert sorted(set(held_ticket)) == [
            "SplitResult",
            "_lru_cache_wrapper>tuple",
            "dict[_raw_query_string]",
            "dict[query_string]",
        ]
        assert held_room  # the probe finds the query where it is held


def test_other_servers_sends_are_left_alone() -> None:
    assert forget_credentials(lambda message: None, PREFIX) is False
    assert forget_credentials(functools.partial(print, object()), PREFIX) is False
