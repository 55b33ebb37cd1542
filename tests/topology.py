"""Real Redis topologies on free loopback ports: one server, primary + replicas, Sentinel,
Cluster; Valkey through ``binary``.

Every process runs in its own temporary directory with persistence off and is stopped by
PID (SIGTERM, SIGKILL after a timeout, always reaped). Test modules bind the fixtures
they use: ``redis_cluster = topology.redis_cluster`` (``from .topology import
redis_cluster  # noqa: F401`` works too, but ruff then reports F811 at every test that
takes the fixture).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Self

import pytest
import redis
from redis.crc import key_slot

HOST = "127.0.0.1"
#: Where tests/run.sh unpacks bookworm-backports' valkey-server (not installed as a
#: package: its postinst would start a service on port 6379).
VALKEY_DIR = Path("/opt/valkey")

Address = tuple[str, int]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10) -> None:
    """Poll ``check`` until true; connection errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def valkey_server() -> str:
    """The path of a ``valkey-server`` binary ($VALKEY_SERVER, $PATH, or /opt/valkey)."""
    for candidate in (
        os.environ.get("VALKEY_SERVER"),
        shutil.which("valkey-server"),
        str(VALKEY_DIR / "usr/bin/valkey-server"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        "valkey-server not found: run tests/run.sh as root (it unpacks Debian "
        "bookworm-backports' valkey-server into /opt/valkey), or "
        "`apt-get install -t bookworm-backports valkey-server`, or set VALKEY_SERVER"
    )


class RedisServer:
    """One ``redis-server`` (or ``valkey-server``: ``binary=``) on a free loopback port.

    ``args`` are extra command-line options; ``config`` is written to a file given as the
    first argument (Sentinel needs a writable config file); ``cluster`` makes a cluster
    node (its own nodes.conf, a free bus port).
    """

    def __init__(
        self,
        *args: str,
        binary: str = "redis-server",
        config: str | None = None,
        cluster: bool = False,
    ) -> None:
        self.args = args
        self.binary = binary
        self.config = config
        self.cluster = cluster
        self.port = 0
        self._dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def dir(self) -> Path:
        """The server's own temporary directory (made on first use, removed by stop())."""
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="wsauth-redis-"))
        return self._dir

    @property
    def address(self) -> Address:
        return (HOST, self.port)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def client(self, **kwargs: Any) -> redis.Redis:
        """A synchronous client of this server (caller closes it)."""
        return redis.Redis(HOST, self.port, socket_timeout=2, **kwargs)

    @property
    def _log_path(self) -> Path:
        return self.dir / "server.log"

    def log(self) -> str:
        """The end of the server's log and of its console output (config errors)."""
        paths = (self._log_path, self.dir / "console.log")
        return "".join(p.read_text(errors="replace")[-3000:] for p in paths if p.exists())

    def start(self, timeout: float = 10) -> Self:
        # A free port can be taken between probing and binding (other tests run
        # alongside): retry on a fresh one.
        for _ in range(3):
            self.port = free_port()
            cmd = [self.binary]
            if self.config is not None:
                conf = self.dir / "server.conf"
                conf.write_text(self.config)
                cmd.append(str(conf))
            cmd += [
                *("--port", str(self.port), "--bind", HOST, "--dir", str(self.dir)),
                *("--save", "", "--appendonly", "no", "--logfile", str(self._log_path)),
                *self.args,
            ]
            if self.cluster:
                # The default bus port (port + 10000) may be taken or above 65535.
                cmd += ["--cluster-enabled", "yes", "--cluster-port", str(free_port())]
                cmd += ["--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"]
            self._log_path.unlink(missing_ok=True)
            with open(self.dir / "console.log", "wb") as console:
                self.proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=console, stderr=console, cwd=self.dir
                )
            try:
                wait_for(f"{self.binary} on {self.port}", self._ready, timeout)
                return self
            except TimeoutError:
                self.stop(keep_dir=True)
                if "Address already in use" not in self.log():
                    raise RuntimeError(f"{cmd} did not start:\n{self.log()}") from None
        raise RuntimeError(f"{self.binary}: no free port after 3 tries")

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise TimeoutError("exited")  # fails fast; start() reports the log
        with self.client(socket_connect_timeout=0.5) as c:
            return bool(c.ping())

    def stop(self, timeout: float = 5, keep_dir: bool = False) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s; reaped either way."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None:
            self.proc.wait()
        if self._dir is not None and not keep_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL (a crash: no shutdown), reaped."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def info(self, section: str) -> dict[str, Any]:
        with self.client() as c:
            return dict(c.info(section))

    def info_cluster(self) -> dict[str, Any]:
        with self.client() as c:
            return dict(c.cluster("info"))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Topology:
    """Starts servers in order and stops every one of them, also when starting fails."""

    def __init__(self) -> None:
        self._stack = ExitStack()

    def _start(self, server: RedisServer) -> RedisServer:
        self._stack.callback(server.stop)  # before start(): a failed start is cleaned too
        return server.start()

    def start(self) -> Self:
        try:
            self._build()
        except BaseException:
            self.stop()
            raise
        return self

    def _build(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stack.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_link_up(replica: RedisServer) -> None:
    wait_for(
        f"replica {replica.port} in sync",
        lambda: replica.info("replication").get("master_link_status") == "up",
    )


# Replicas sync at once (diskless, no 5 s delay waiting for more replicas).
_PRIMARY_ARGS = ("--repl-diskless-sync-delay", "0")


class Replicated(_Topology):
    """A primary and ``replicas`` replicas (``--replicaof``), all in sync when started."""

    def __init__(self, replicas: int = 1, binary: str = "redis-server") -> None:
        super().__init__()
        self.binary = binary
        self.primary = RedisServer(*_PRIMARY_ARGS, binary=binary)
        self.replicas = [RedisServer(binary=binary) for _ in range(replicas)]

    def _build(self) -> None:
        self._start(self.primary)
        for replica in self.replicas:
            replica.args = ("--replicaof", HOST, str(self.primary.port), *_PRIMARY_ARGS)
            self._start(replica)
        for replica in self.replicas:
            _wait_link_up(replica)


class SentinelSet(_Topology):
    """A primary, one replica and ``sentinels`` Sentinels (quorum 1) watching them as
    ``mymaster``. ``primary`` and ``replica`` follow the roles: ``failover()`` swaps
    them."""

    service_name = "mymaster"

    def __init__(
        self,
        sentinels: int = 1,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 2000,
        binary: str = "redis-server",
    ) -> None:
        super().__init__()
        self.binary = binary
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.primary = RedisServer(*_PRIMARY_ARGS, binary=binary)
        self.replica = RedisServer(binary=binary)
        self.sentinel_servers = [RedisServer(binary=binary) for _ in range(sentinels)]

    @property
    def sentinels(self) -> list[Address]:
        return [s.address for s in self.sentinel_servers]

    def _build(self) -> None:
        self._start(self.primary)
        self.replica.args = ("--replicaof", HOST, str(self.primary.port), *_PRIMARY_ARGS)
        self._start(self.replica)
        _wait_link_up(self.replica)
        name = self.service_name
        for sentinel in self.sentinel_servers:
            sentinel.config = (
                f"sentinel monitor {name} {HOST} {self.primary.port} 1\n"
                f"sentinel down-after-milliseconds {name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {name} {self.failover_timeout_ms}\n"
            )
            sentinel.args = ("--sentinel",)
            self._start(sentinel)
            # Sentinel waits 4 publish periods (8 s) before demoting a returning old
            # primary, and asks replicas for INFO every 10 s: shorten both (Redis >= 7).
            self._sentinel_call(
                sentinel, "SENTINEL", "DEBUG", *("info-period", "200", "publish-period", "250")
            )
        # SENTINEL FAILOVER needs a replica the sentinel knows and has heard from.
        for sentinel in self.sentinel_servers:
            wait_for(
                f"sentinel {sentinel.port} to see the replica",
                functools.partial(self._knows_replica, sentinel),
            )

    def _sentinel_call(self, sentinel: RedisServer, *command: str) -> Any:
        with sentinel.client(decode_responses=True) as c:
            return c.execute_command(*command)

    def _knows_replica(self, sentinel: RedisServer) -> bool:
        replicas = self._sentinel_call(sentinel, "SENTINEL", "REPLICAS", self.service_name)
        for fields in replicas:  # redis-py parses each entry into a dict
            if (
                int(fields["port"]) == self.replica.port
                and fields["flags"] == "slave"
                and fields["master-link-status"] == "ok"
            ):
                return True
        return False

    def primary_address(self) -> Address:
        """The primary's address as the first sentinel reports it."""
        host, port = self._sentinel_call(
            self.sentinel_servers[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name
        )
        return (host, int(port))

    def _wait_switched(self, old: RedisServer, new: RedisServer, demoted: bool) -> None:
        timeout = (self.down_after_ms + 2 * self.failover_timeout_ms) / 1000 + 5
        wait_for(
            f"sentinels to report {new.port} as primary",
            lambda: all(
                tuple(
                    self._sentinel_call(s, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)
                )
                == (HOST, str(new.port))
                for s in self.sentinel_servers
            ),
            timeout,
        )
        wait_for(f"{new.port} to be a primary", lambda: new.info("replication")["role"] == "master")
        if demoted:
            wait_for(
                f"{old.port} to be demoted",
                lambda: old.info("replication")["role"] == "slave",
                timeout,
            )
        self.primary, self.replica = new, old

    def failover(self) -> Address:
        """``SENTINEL FAILOVER``; returns when the sentinels name the new primary and the
        old one is a replica. Returns the new primary's address."""
        old, new = self.primary, self.replica
        _wait_link_up(new)  # a replica that is not in sync is refused (NOGOODSLAVE)
        wait_for(
            "the sentinel to see the replica", lambda: self._knows_replica(self.sentinel_servers[0])
        )
        self._sentinel_call(self.sentinel_servers[0], "SENTINEL", "FAILOVER", self.service_name)
        self._wait_switched(old, new, demoted=True)
        return new.address

    def kill_primary(self) -> Address:
        """SIGKILL the primary; returns the new primary's address once the sentinels
        promoted the replica (about ``down_after_ms`` plus the election). ``replica`` is
        then the dead server."""
        old, new = self.primary, self.replica
        old.kill()
        self._wait_switched(old, new, demoted=False)
        return new.address


class Cluster(_Topology):
    """A Redis Cluster of ``masters`` masters, no replicas, every node ``cluster_state:ok``."""

    def __init__(self, masters: int = 3, binary: str = "redis-server") -> None:
        super().__init__()
        self.binary = binary
        self.nodes = [RedisServer(binary=binary, cluster=True) for _ in range(masters)]

    @property
    def startup_url(self) -> str:
        return self.nodes[0].url

    def _build(self) -> None:
        for node in self.nodes:
            self._start(node)
        cli = shutil.which("redis-cli") or "redis-cli"
        addresses = [f"{HOST}:{n.port}" for n in self.nodes]
        created = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if created.returncode:
            raise RuntimeError(f"redis-cli --cluster create: {created.stdout}{created.stderr}")
        wait_for(
            "cluster_state:ok on every node",
            lambda: all(n.info_cluster()["cluster_state"] == "ok" for n in self.nodes),
        )

    def node_for(self, key: str | bytes) -> RedisServer:
        """The node serving ``key``'s hash slot."""
        slot = key_slot(key.encode() if isinstance(key, str) else key)
        with self.nodes[0].client() as c:
            for start, end, (_host, port, *_) in (
                (int(r[0]), int(r[1]), r[2]) for r in c.execute_command("CLUSTER SLOTS")
            ):
                if start <= slot <= end:
                    return next(n for n in self.nodes if n.port == int(port))
        raise LookupError(f"slot {slot} not served")


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def redis_replicated() -> Iterator[Replicated]:
    """A primary and one replica, fresh per test."""
    with Replicated() as topology:
        yield topology


@pytest.fixture
def redis_sentinel() -> Iterator[SentinelSet]:
    """A primary, a replica and one sentinel, fresh per test (``failover()`` changes it)."""
    with SentinelSet() as topology:
        yield topology


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[Cluster]:
    """A 3-master cluster shared by the module's tests: use keys of your own."""
    with Cluster() as topology:
        yield topology


@pytest.fixture(scope="module")
def valkey() -> Iterator[RedisServer]:
    """One ``valkey-server`` shared by the module's tests."""
    with RedisServer(binary=valkey_server()) as server:
        yield server
