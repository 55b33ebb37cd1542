"""A cold Daphne process (no keys fetched, no revocation listener yet) takes a burst of
handshakes. In a module of its own: it flushes the test Redis database, which the load
tests' module-wide servers use."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from tests.daphne import REDIS_URL, DaphneServer, flush_redis, migrated_project_env
from tests.issuer import Issuer
from tests.test_load_live import PREFIX, close_all, open_sockets, raise_fd_limit, recv_app

pytestmark = pytest.mark.timeout(90)


async def test_cold_process_burst_completes_with_one_key_fetch(tmp_path: Path) -> None:
    """A process that has fetched no keys and started no revocation listener takes a
    burst (25 handshakes in flight, the listen backlog's share): every handshake
    completes and the issuer's keys are fetched once. The benchmark's 1,000 at once
    (``bench jwks``) is the harsher form; this one keeps CI honest about the path."""
    raise_fd_limit()
    issuer = Issuer().start()
    env = migrated_project_env(tmp_path, issuer, REDIS_URL)
    server = DaphneServer(env, tmp_path / "cold.log").start()
    try:
        sub = f"cold-{uuid.uuid4().hex[:8]}"  # one user, a token per socket
        tokens = [issuer.token(sub=sub, jti=uuid.uuid4().hex) for _ in range(300)]
        sockets = await open_sockets(
            [server.ws + "/ws/echo/"] * len(tokens), [["chat", PREFIX + t] for t in tokens]
        )
        greetings = await asyncio.gather(*(recv_app(ws) for ws in sockets))
        assert len(greetings) == 300 and all(g.startswith("Hello ") for g in greetings)
        assert issuer.jwks_fetches == 1
        await close_all(sockets)
        log = server.log()
        assert "Traceback" not in log and "refused handshake" not in log, log[-4000:]
    finally:
        server.stop()
        issuer.stop()
        flush_redis()
