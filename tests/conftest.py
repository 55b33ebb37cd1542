"""Shared fixtures: a live test issuer, and real Daphne processes of the demo project.

Each wsauth module has a test module of its own (tests/test_layout.py checks it):
``wsauth/x.py`` -> ``tests/test_x.py``; ``wsauth/pkg/mod.py`` -> ``tests/test_pkg_mod.py``
and ``wsauth/pkg/__init__.py`` -> ``tests/test_pkg.py``; a management command
``wsauth/management/commands/cmd.py`` -> ``tests/test_management_cmd.py``. Named before
the rule: ``test_admission.py``, ``test_addresses.py``, ``test_revocation.py`` (revoke).
Tests of several modules together (``*_live.py``, topologies, fuzzing) come on top.

Also the ``live`` marker (tests that start processes: servers, Redis topologies,
Chromium; tox's in-process cells deselect them), and the session-wide search for issued
credentials in what the session logged (``tests/leaks.py``)."""

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
from .leaks import ISSUED

# CI draws the same examples every run: a red CI run then means a changed code path,
# not a new random draw. Local runs (the default profile) keep exploring.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

#: Fixtures that start processes (Daphne, Redis topologies): a test using one is live.
LIVE_FIXTURES = {"daphne", "redis_cluster", "redis_sentinel", "redis_replicated", "valkey"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "live: starts server processes or a browser (every *_live.py module, browser tests,"
        " tests using a process fixture); deselected by -m 'not live'",
    )


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if (
            item.path.stem.endswith("_live")
            or item.get_closest_marker("browser")
            or LIVE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        ):
            item.add_marker(pytest.mark.live)


#: Captured sections that held credentials: (test id, section) -> what. (A phase's report
#: repeats the earlier phases' sections.)
_LOGGED: dict[tuple[str, str], list[str]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for section, text in report.sections:
        if found := ISSUED.leaks(text):
            _LOGGED[report.nodeid, section] = found


@pytest.fixture(scope="session", autouse=True)
def no_credential_in_any_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the last test (whichever it is): no log of this session holds a JWT, a
    ticket or a credential the session issued, neither a log section pytest captured nor
    a log file a server process wrote under the session's temporary directory."""
    yield
    in_files = ISSUED.leaks_in_logs(tmp_path_factory.getbasetemp())
    lines = [f"{path}: {', '.join(found[:3])}" for path, found in in_files.items()]
    lines += [
        f"{test} ({section}): {', '.join(found[:3])}" for (test, section), found in _LOGGED.items()
    ]
    assert not lines, "credentials in clear in this session's logs:\n" + "\n".join(lines)


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
