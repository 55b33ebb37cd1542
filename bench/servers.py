"""The processes under test: a migrated demo-project environment and Daphne servers of
any ASGI application in it, optionally under callgrind; CPU and RSS read from /proc.

``free_port``, the environment and ``manage`` resemble ``tests/daphne.py`` but are not
imported from it: an import from ``tests`` puts the test helpers (not type-checked) under
the project's mypy run, which covers ``bench``."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .issuer import AUDIENCE, Issuer
from .wsclient import ORIGIN

ROOT = Path(__file__).resolve().parent.parent
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "5"))  # emptied by the benchmark
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

APPS = {
    "bare": "bench.asgi_bare:application",
    "session": "bench.asgi_session:application",
    "wsauth": "project.asgi:application",
    "wsauth-local": "project.asgi:application",
    "wsauth-unguarded": "project.asgi:application",
}

#: Settings on top of the project's, per app: ``wsauth-local`` turns off the checks that
#: need the shared store at the handshake (address and user limits, revocation markers),
#: to measure what they cost next to the defaults.
APP_SETTINGS: dict[str, dict[str, Any]] = {
    "wsauth-local": {
        "HANDSHAKE_RATE": None,
        "USER_HANDSHAKE_RATE": None,
        "FAILED_AUTH_RATE": None,
        "MAX_SOCKETS_PER_USER": None,
        "REVOCATION_CHECK": False,
    },
    # without the server-side frame limits (bench.frames)
    "wsauth-unguarded": {"MAX_QUEUED_BYTES": None, "MAX_FRAGMENTS": None, "FRAME_RATE": None},
}


#: How much slower Daphne runs under callgrind (measured: 63-89 ms per bare handshake
#: cycle, against 4 ms at full speed). Time-driven work is stretched to match, so that
#: it lands on as many handshakes as at full speed: wsauth's release delay (20 ms, see
#: ``bench.serve``) by this factor; the lazy reloads due every few seconds of wall time
#: (the allowed origins every 2 s, the user cache every 60 s: 20-40 M instructions each,
#: mostly a database query on a thread, which would land on every ~30th handshake instead
#: of every ~500th) to hourly, and a variant of its own counts one reload.
VALGRIND_SLOWDOWN = 16
CALLGRIND_SETTINGS = {"ORIGINS_REFRESH_INTERVAL": 3600, "USER_CACHE_TTL": 3600}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_fd_limit(wanted: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class PrivateRedis:
    """A redis-server of the benchmark's own on a free loopback port: ``INFO
    commandstats`` then counts this run's commands only (the machine's Redis on 6379 is
    shared with tests and other runs). Stopped by PID."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="wsauth-bench-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        import redis

        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=1).ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def use_private_redis() -> PrivateRedis | None:
    """Point the benchmark at a Redis of its own when ``redis-server`` is installed."""
    global REDIS_URL
    if shutil.which("redis-server") is None:
        return None
    private = PrivateRedis().start()
    REDIS_URL = private.url
    return private


def commandstats() -> dict[str, int]:
    """Calls per command so far on the benchmark's Redis."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def flush_redis() -> None:
    """Empty the benchmark's own Redis database (and only that one)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        raise SystemExit(
            "bench: Redis is not running on 127.0.0.1:6379 (see README): " + str(exc)
        ) from exc
    client.flushdb()
    client.close()


class Project:
    """A throwaway demo-project environment: SQLite file, var dir, issuer, Redis db 5."""

    def __init__(self, issuer: Issuer, **overrides: Any) -> None:
        self.issuer = issuer
        self.dir = Path(tempfile.mkdtemp(prefix="wsauth-bench-"))
        wsauth = {"ALLOWED_ORIGINS": [ORIGIN], **overrides}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OIDC_"))}
        env.pop("REDIS_URL", None)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "project.settings",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(ROOT),
                "DJANGO_DEBUG": "0",
                "DJANGO_SECRET_KEY": "bench-" + os.urandom(8).hex(),
                "OIDC_ISSUER": issuer.issuer,
                "OIDC_AUDIENCE": AUDIENCE,
                "DJANGO_DB_PATH": str(self.dir / "db.sqlite3"),
                "DJANGO_VAR_DIR": str(self.dir),
                "REDIS_URL": REDIS_URL,
                "WSAUTH_OVERRIDES": json.dumps(wsauth),
                "WSAUTH_LOG_LEVEL": os.environ.get("BENCH_WSAUTH_LOG_LEVEL", "ERROR"),
            }
        )
        self.env = env
        self.manage("migrate", "-v0")

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def session_cookie(self) -> str:
        """Log a user in the Django way and return the session cookie a browser would send."""
        code = (
            "from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY,"
            " HASH_SESSION_KEY\n"
            "from django.contrib.sessions.backends.db import SessionStore\n"
            "U = get_user_model()\n"
            "u, _ = U.objects.get_or_create(username='bench-session')\n"
            "s = SessionStore()\n"
            "s[SESSION_KEY] = str(u.pk)\n"
            "s[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'\n"
            "s[HASH_SESSION_KEY] = u.get_session_auth_hash()\n"
            "s.create()\n"
            "print(s.session_key)\n"
        )
        key = self.manage("shell", "-c", code).strip().splitlines()[-1]
        return f"sessionid={key}"

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Daphne:
    """One Daphne process serving ``app`` (a key of APPS) with the project's environment."""

    def __init__(
        self,
        project: Project,
        app: str,
        *,
        callgrind_out: Path | None = None,
        tracemalloc_out: Path | None = None,
        wsauth: dict[str, Any] | None = None,
    ) -> None:
        """``wsauth``: WSAUTH settings on top of the project's and the app's (and, under
        callgrind, of ``CALLGRIND_SETTINGS``)."""
        self.app = app
        self.port = free_port()
        self.callgrind_out = callgrind_out
        self.env = project.env
        if callgrind_out is not None:
            wsauth = {**CALLGRIND_SETTINGS, **(wsauth or {})}
        if app in APP_SETTINGS or wsauth:
            overrides = {
                **json.loads(project.env["WSAUTH_OVERRIDES"]),
                **APP_SETTINGS.get(app, {}),
                **(wsauth or {}),
            }
            self.env = {**project.env, "WSAUTH_OVERRIDES": json.dumps(overrides)}
        if tracemalloc_out is not None:  # bench.serve dumps snapshots on SIGUSR2
            self.env = {**self.env, "BENCH_TRACEMALLOC": str(tracemalloc_out)}
        self.log_path = project.dir / f"daphne-{app}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Daphne:
        cmd = [
            sys.executable,
            "-m",
            "bench.serve",  # Daphne's command line (and a GC hook for callgrind)
            "-b",
            "127.0.0.1",
            "-p",
            str(self.port),
            # idle benchmark sockets do not answer pings: keep Daphne from dropping them
            "--ping-interval",
            "3600",
            "--ping-timeout",
            "3600",
            APPS[self.app],
        ]
        env = self.env
        if self.callgrind_out is not None:
            cmd = [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={self.callgrind_out}",
                "--dump-instr=no",
                "--compress-strings=no",
                *cmd,
            ]
            # wsauth's batched limits sync on a wall-clock interval: stretched as the
            # server is, a counted window holds as many syncs as one at full speed.
            overrides = json.loads(env.get("WSAUTH_OVERRIDES") or "{}")
            if "LIMITS_SYNC_INTERVAL" not in overrides:
                overrides["LIMITS_SYNC_INTERVAL"] = 0.5 * VALGRIND_SLOWDOWN
            env = {**env, "PYTHONHASHSEED": "0", "WSAUTH_OVERRIDES": json.dumps(overrides)}
            timeout = max(timeout, 300)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne ({self.app}) exited:\n{self.log()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"daphne ({self.app}) did not start:\n{self.log()[-3000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the server process (all its threads)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120 if self.callgrind_out else 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "_log"):
            self._log.close()


def create_users(project: Project, count: int, prefix: str = "bench-u") -> None:
    """Users ``{prefix}0..`` mapped to the issuer's subjects of the same names, in bulk (a
    first handshake would create each one; the benchmark is not about user creation)."""
    issuer = project.issuer.issuer
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from wsauth.models import OIDCIdentity\n"
        "U = get_user_model()\n"
        f"names = [{prefix!r} + str(i) for i in range({count})]\n"
        "have = set(U.objects.filter(username__in=names).values_list('username', flat=True))\n"
        "U.objects.bulk_create([U(username=n) for n in names if n not in have], batch_size=500)\n"
        "users = U.objects.filter(username__in=names)\n"
        f"OIDCIdentity.objects.bulk_create([OIDCIdentity(user=u, issuer={issuer!r},"
        " subject=u.username) for u in users], batch_size=500, ignore_conflicts=True)\n"
    )
    project.manage("shell", "-c", code)
