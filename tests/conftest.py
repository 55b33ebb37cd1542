"""Shared fixtures: a live test issuer, and real Daphne processes of the demo project.

Each wsauth module has a test module of its own (tests/test_layout.py checks it):
``wsauth/x.py`` -> ``tests/test_x.py``; ``wsauth/pkg/mod.py`` -> ``tests/test_pkg_mod.py``
and ``wsauth/pkg/__init__.py`` -> ``tests/test_pkg.py``; a management command
``wsauth/management/commands/cmd.py`` -> ``tests/test_management_cmd.py``. Named before
the rule: ``test_admission.py``, ``test_addresses.py``, ``test_revocation.py`` (revoke).
Tests of several modules together (``*_live.py``, topologies, fuzzing) come on top.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import settings as hypothesis_settings

from wsauth import conf as wsauth_conf

from .daphne import REDIS_URL, DaphneServer, manage, project_env_for
from .issuer import AUDIENCE, Issuer

# CI draws the same examples every run: a red CI run then means a changed code path,
# not a new random draw. Local runs (the default profile) keep exploring.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    """A fresh issuer (own keys, own counters) per test."""
    iss = Issuer().start()
    yield iss
    iss.stop()


@pytest.fixture
def wsauth_settings(settings: Any, issuer: Issuer) -> Any:
    """Point the in-process settings at the live issuer."""
    settings.WSAUTH = {**settings.WSAUTH, "ISSUER": issuer.issuer, "AUDIENCE": AUDIENCE}
    wsauth_conf.reset()
    yield settings
    wsauth_conf.reset()


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379 (see README)")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def project(tmp_path: Path, issuer: Issuer) -> Callable[..., dict[str, str]]:
    """Build a migrated demo-project environment: ``env = project(redis_url, **extra)``."""
    made: dict[str, dict[str, str]] = {}

    def make(redis_url: str | None = None, **extra: str) -> dict[str, str]:
        key = f"{redis_url}|{sorted(extra.items())}"
        if key in made:
            return made[key]
        env = project_env_for(tmp_path, issuer, redis_url, **extra)
        if not (tmp_path / "db.sqlite3").exists():
            manage(env, "migrate", "-v0")
        made[key] = env
        return env

    return make


@pytest.fixture
def daphne(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], DaphneServer]]:
    """Start real Daphne processes: ``server = daphne(env)``; all stopped after the test."""
    servers: list[DaphneServer] = []

    def start(env: dict[str, str]) -> DaphneServer:
        server = DaphneServer(env, tmp_path / f"daphne-{len(servers)}.log").start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def script_calls() -> Callable[[Any], list[tuple[Any, ...]]]:
    """``script_calls(client)``: the list that records each EVALSHA of a redis.asyncio
    client from now on (the arguments; Redis still runs every call)."""

    def spy(client: Any) -> list[tuple[Any, ...]]:
        calls: list[tuple[Any, ...]] = []
        real = client.evalsha

        async def recording(*args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            return await real(*args, **kwargs)

        client.evalsha = recording
        return calls

    return spy
