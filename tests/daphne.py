"""Real Daphne processes serving the demo project, for handshake tests.

Each server gets the environment a deployment would: OIDC_ISSUER pointing at a test
issuer, a shared SQLite file, and optionally REDIS_URL on a test-only Redis database
(``migrated_project_env`` builds it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from .issuer import AUDIENCE, Issuer

ROOT = Path(__file__).resolve().parent.parent

#: Redis database for tests, flushed by the tests that use it.
REDIS_DB = int(os.environ.get("WSAUTH_TEST_REDIS_DB", "11"))
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def project_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OIDC_"))}
    env.pop("REDIS_URL", None)
    env.update({"DJANGO_SETTINGS_MODULE": "project.settings", "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


def manage(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


def flush_redis(url: str = REDIS_URL) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def project_env_for(
    tmp: Path, issuer: Issuer | None, redis_url: str | None = None, **extra: str
) -> dict[str, str]:
    """The demo project's environment with its database and files in ``tmp``, trusting
    ``issuer`` (None: the demo's embedded provider), on ``redis_url`` if given, plus
    ``extra`` variables."""
    return project_env(
        **({"OIDC_ISSUER": issuer.issuer, "OIDC_AUDIENCE": AUDIENCE} if issuer else {}),
        DJANGO_DB_PATH=str(tmp / "db.sqlite3"),
        DJANGO_VAR_DIR=str(tmp),
        **({"REDIS_URL": redis_url} if redis_url else {}),
        **extra,
    )


def migrated_project_env(
    tmp: Path, issuer: Issuer | None, redis_url: str | None = None, **extra: str
) -> dict[str, str]:
    """``project_env_for``, with the Redis database (if any) flushed first and the
    database migrated."""
    if redis_url:
        flush_redis(redis_url)
    env = project_env_for(tmp, issuer, redis_url, **extra)
    manage(env, "migrate", "-v0")
    return env


def with_overrides(env: dict[str, str], **overrides: Any) -> dict[str, str]:
    """``env`` with more WSAUTH settings in WSAUTH_OVERRIDES (merged over its own)."""
    merged = {**json.loads(env.get("WSAUTH_OVERRIDES") or "{}"), **overrides}
    return {**env, "WSAUTH_OVERRIDES": json.dumps(merged)}


#: Every test's handshakes come from 127.0.0.1: per-address limits are off unless a test
#: sets them in WSAUTH_OVERRIDES.
TEST_LIMITS = {
    "HANDSHAKE_RATE": None,
    "USER_HANDSHAKE_RATE": None,
    "FAILED_AUTH_RATE": None,
    "MAX_SOCKETS_PER_USER": None,
}


class DaphneServer:
    def __init__(self, env: dict[str, str], log_path: Path, module: str = "daphne") -> None:
        overrides = {**TEST_LIMITS, **json.loads(env.get("WSAUTH_OVERRIDES") or "{}")}
        env = {**env, "WSAUTH_OVERRIDES": json.dumps(overrides)}
        self.env = env
        self.port = free_port()
        self.log_path = log_path
        self.module = module  # what ``python -m`` runs: Daphne's command line or a wrapper
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> DaphneServer:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                self.module,
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "project.asgi:application",
            ],
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"daphne did not start: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "_log"):
            self._log.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown path runs, as after an OOM kill or a lost node."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> DaphneServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
