"""Faults through a real Daphne: Redis going down and coming back (its own redis-server
on a free port, killed and restarted by the test), the database disappearing under the
user lookup, and the issuer unreachable at start. Refusals are clean, nothing is
half-redeemed, and the service recovers by itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.daphne import DaphneServer, free_port, migrated_project_env
from tests.issuer import Issuer

PREFIX = "authorization_bearer_"


class RedisServer:
    """A redis-server of our own, so the test can kill it without hurting anyone else."""

    def __init__(self, tmp: Path) -> None:
        self.port, self.tmp = free_port(), tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (tests/run.sh installs it)"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def ticket(server: DaphneServer, token: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        server.http + "/wsauth/ticket/",
        data=b"",
        method="POST",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def handshake(url: str, subprotocols: list[str] | None = None) -> Any:
    try:
        with connect(url, subprotocols=subprotocols, open_timeout=10) as ws:
            return "ok" if ws.recv(timeout=5).startswith("Hello ") else "?"
    except InvalidStatus as exc:
        return exc.response.status_code
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else "dropped"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def test_redis_down_then_back(tmp_path: Path, own_redis: RedisServer) -> None:
    issuer = Issuer().start()
    env = migrated_project_env(tmp_path, issuer, own_redis.url)
    server = DaphneServer(env, tmp_path / "daphne.log").start()
    try:
        token = issuer.token()
        echo = server.ws + "/ws/echo/"
        status, body = ticket(server, token)
        assert status == 200
        issued_before_outage = body["ticket"]

        with connect(server.ws + "/ws/chat/outage/", subprotocols=["chat", PREFIX + token]) as chat:
            own_redis.stop()
            # Tickets: a clean 503, never a 500 or a hang.
            status, body = ticket(server, token)
            assert status == 503 and body["error"] == "unavailable"
            # Redeeming fails closed: a clean refusal (403), not a crash.
            assert handshake(f"{echo}?ticket={issued_before_outage}") == 403
            # Revocation cannot be checked: token handshakes are refused too (fail closed),
            # once the process's listener has noticed the lost subscription (its copy of
            # the markers was current when Redis stopped, and nothing can be revoked
            # while it is down).
            deadline = time.monotonic() + 10
            while handshake(echo, ["chat", PREFIX + token]) != 403:
                assert time.monotonic() < deadline, "handshakes did not fail closed"
                time.sleep(0.2)
            # The open chat cannot reach its room: the server closes it, the client
            # reconnects (wsauth.js does so on any drop) once Redis is back.
            with pytest.raises(ConnectionClosed):
                chat.send(json.dumps({"message": "into the void"}))
                chat.recv(timeout=15)

        own_redis.start()  # same port, empty: the service recovers by itself
        deadline = time.monotonic() + 15
        while ticket(server, token)[0] != 200:
            assert time.monotonic() < deadline, "tickets did not recover"
            time.sleep(0.2)
        # Sockets wait for the revocation listener to rejoin (it retries every 2 s).
        while handshake(echo, ["chat", PREFIX + token]) != "ok":
            assert time.monotonic() < deadline + 5, "handshakes did not recover"
            time.sleep(0.2)
        status, body = ticket(server, token)
        assert handshake(f"{echo}?ticket={body['ticket']}") == "ok"
        with connect(server.ws + "/ws/chat/outage/", subprotocols=["chat", PREFIX + token]) as chat:
            chat.send(json.dumps({"message": "back"}))
            assert json.loads(chat.recv(timeout=5))["message"] == "back"
        log = server.log()
        assert "reason=ticket_store_unavailable" in log
        assert "reason=revocation_store_unavailable" in log
        assert '"POST /wsauth/ticket/" 503' in log
        assert '"POST /wsauth/ticket/" 500' not in log  # refusals, never a server error
    finally:
        server.stop()
        issuer.stop()


def test_database_gone_under_the_user_lookup(tmp_path: Path) -> None:
    issuer = Issuer().start()
    env = migrated_project_env(tmp_path, issuer)
    db = tmp_path / "db.sqlite3"
    server = DaphneServer(env, tmp_path / "daphne.log").start()
    echo = server.ws + "/ws/echo/"
    try:
        assert handshake(echo, ["chat", PREFIX + issuer.token()]) == "ok"
        db.rename(tmp_path / "away.sqlite3")  # SQLite opens an empty file in its place
        assert (
            handshake(echo, ["chat", PREFIX + issuer.token(sub="new-" + uuid.uuid4().hex)]) == 403
        )
        (tmp_path / "db.sqlite3").unlink(missing_ok=True)
        (tmp_path / "away.sqlite3").rename(db)
        assert (
            handshake(echo, ["chat", PREFIX + issuer.token(sub="new-" + uuid.uuid4().hex)]) == "ok"
        )
        assert "reason=server_error" in server.log()
    finally:
        server.stop()
        issuer.stop()


def test_issuer_unreachable_at_start_refuses_then_recovers(tmp_path: Path) -> None:
    issuer = Issuer().start()
    issuer.down = True
    env = migrated_project_env(
        tmp_path, issuer, WSAUTH_OVERRIDES=json.dumps({"JWKS_UNKNOWN_KID_COOLDOWN": 5})
    )
    server = DaphneServer(env, tmp_path / "daphne.log").start()
    echo = server.ws + "/ws/echo/"
    try:
        started = time.monotonic()
        assert handshake(echo, ["chat", PREFIX + issuer.token()]) == 403
        assert time.monotonic() - started < 5  # a refusal, not a hang
        issuer.down = False
        deadline = time.monotonic() + 15
        while handshake(echo, ["chat", PREFIX + issuer.token()]) != "ok":
            assert time.monotonic() < deadline, "did not recover once the issuer was back"
            time.sleep(0.5)
        assert "Traceback" not in server.log()
    finally:
        server.stop()
        issuer.stop()
