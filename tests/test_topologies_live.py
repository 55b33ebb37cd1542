"""The demo project on real Daphne processes over Sentinel and over Cluster: handshakes,
tickets, chat across processes and revocation, before and after a Sentinel failover."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from . import topology
from .daphne import DaphneServer, manage, migrated_project_env
from .issuer import Issuer
from .test_faults_live import handshake, ticket
from .topology import Cluster, SentinelSet

redis_sentinel = topology.redis_sentinel
redis_cluster = topology.redis_cluster

PREFIX = "authorization_bearer_"
RECOVERY_BUDGET = 30.0


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    iss = Issuer().start()
    yield iss
    iss.stop()


def servers(tmp: Path, issuer: Issuer, **env: str) -> tuple[dict[str, str], list[DaphneServer]]:
    project = migrated_project_env(tmp, issuer, None, **env)
    started = [DaphneServer(project, tmp / f"daphne-{i}.log").start() for i in range(2)]
    return project, started


def chat_across(a: DaphneServer, b: DaphneServer, token: str, room: str) -> dict[str, Any]:
    """A message sent on ``a`` as it arrives on ``b``."""
    with (
        connect(a.ws + f"/ws/chat/{room}/", subprotocols=["chat", PREFIX + token]) as left,
        connect(b.ws + f"/ws/chat/{room}/", subprotocols=["chat", PREFIX + token]) as right,
    ):
        deadline = time.monotonic() + 10
        while True:  # the join of ``right`` may land a moment after its accept
            left.send(json.dumps({"message": "hello"}))
            try:
                return json.loads(right.recv(timeout=1))
            except TimeoutError:
                assert time.monotonic() < deadline, "no message across processes"


def until(what: str, check: Any, budget: float = RECOVERY_BUDGET) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < budget, f"{what} did not recover in {budget} s"
        time.sleep(0.2)
    return time.monotonic() - started


def test_sentinel_failover_under_two_daphnes(
    tmp_path: Path, issuer: Issuer, redis_sentinel: SentinelSet
) -> None:
    hosts = ",".join(f"{h}:{p}" for h, p in redis_sentinel.sentinels)
    env, (a, b) = servers(tmp_path, issuer, REDIS_SENTINELS=hosts)
    try:
        token = issuer.token(sub="sentinel-user")
        echo_a, echo_b = a.ws + "/ws/echo/", b.ws + "/ws/echo/"
        assert handshake(echo_a, ["chat", PREFIX + token]) == "ok"
        status, body = ticket(a, token)
        assert status == 200 and handshake(f"{echo_b}?ticket={body['ticket']}") == "ok"
        assert chat_across(a, b, token, "before")["message"] == "hello"

        # Written before the failover: a ticket, and a revocation of another person.
        status, body = ticket(a, token)
        kept = body["ticket"]
        revoked = issuer.token(sub="sentinel-revoked", iat=int(time.time()) - 5)
        manage(
            env,
            "shell",
            "-c",
            f"from wsauth.revoke import disconnect_subject; "
            f"disconnect_subject('sentinel-revoked', {issuer.issuer!r})",
        )
        assert handshake(echo_b, ["chat", PREFIX + revoked]) == 403
        redis_sentinel.primary.client().execute_command("WAIT", 1, 2000)

        old = redis_sentinel.primary.address
        redis_sentinel.failover()
        assert redis_sentinel.primary.address != old

        took = until("handshakes", lambda: handshake(echo_a, ["chat", PREFIX + token]) == "ok")
        assert handshake(f"{echo_b}?ticket={kept}") == "ok"  # honoured after the failover
        assert handshake(echo_a, ["chat", PREFIX + revoked]) == 403  # so is the marker
        status, body = ticket(b, token)
        assert status == 200 and handshake(f"{echo_a}?ticket={body['ticket']}") == "ok"
        assert chat_across(a, b, token, "after")["message"] == "hello"
        assert took < RECOVERY_BUDGET
        for server in (a, b):
            assert "read only replica" not in server.log()
    finally:
        a.stop()
        b.stop()


def test_cluster_under_two_daphnes(tmp_path: Path, issuer: Issuer, redis_cluster: Cluster) -> None:
    env, (a, b) = servers(tmp_path, issuer, REDIS_CLUSTER=redis_cluster.startup_url)
    try:
        token = issuer.token(sub="cluster-user")
        echo_a, echo_b = a.ws + "/ws/echo/", b.ws + "/ws/echo/"
        assert handshake(echo_a, ["chat", PREFIX + token]) == "ok"
        for _ in range(5):  # tickets of keys on any node, redeemed on the other process
            status, body = ticket(a, token)
            assert status == 200 and handshake(f"{echo_b}?ticket={body['ticket']}") == "ok"
        assert chat_across(a, b, token, "cluster")["message"] == "hello"
        revoked = issuer.token(sub="cluster-revoked", iat=int(time.time()) - 5)
        assert handshake(echo_b, ["chat", PREFIX + revoked]) == "ok"
        manage(
            env,
            "shell",
            "-c",
            f"from wsauth.revoke import disconnect_subject; "
            f"disconnect_subject('cluster-revoked', {issuer.issuer!r})",
        )
        assert handshake(echo_a, ["chat", PREFIX + revoked]) == 403
        for server in (a, b):
            log = server.log()
            assert "CROSSSLOT" not in log and "non local key" not in log
    finally:
        a.stop()
        b.stop()
