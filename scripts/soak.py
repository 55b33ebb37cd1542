"""Soak test: two Daphne processes of the demo project sharing Redis, under steady churn.

    .venv/bin/python scripts/soak.py [--minutes 5] [--clients 40] [--redis-url URL]

For the given time, ``--clients`` virtual clients connect (by token subprotocol or by a
one-time ticket from ``POST /wsauth/ticket/``), talk on ``/ws/echo/`` or in a chat room,
and disconnect, over and over; a few offer a bad token and must be refused. Every 10 s the
resident memory (RSS) of both Daphne processes is sampled and a table row printed.

At the end it fails (exit status 1) when:
- either process's memory grew by 10 % or more (mean of the last third of the samples
  taken after the warm-up, against the mean of the first third);
- a Daphne log holds a traceback or an ERROR/CRITICAL line;
- a client saw anything unexpected (a lost or wrong echo, a refused good handshake...).

The Redis database given by ``--redis-url`` (default: database 6) is flushed at the start
and at the end. Not part of the test suite: it runs for minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import InvalidStatus  # noqa: E402

from tests.daphne import DaphneServer, migrated_project_env  # noqa: E402
from tests.issuer import Issuer  # noqa: E402

PREFIX = "authorization_bearer_"
USERS = 60
ROOMS = 5
TOKEN_REUSE = 60.0  # seconds a client keeps its access token before getting a new one
ECHO = "I'm not very smart, all I can do is repeat: "
BAD_LOG_MARKERS = ("Traceback", " ERROR ", " CRITICAL ")


@dataclass
class Stats:
    connects: int = 0
    by_ticket: int = 0
    refused_as_expected: int = 0
    messages: int = 0
    open_sockets: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        if len(self.failures) < 50:
            self.failures.append(what)
        else:
            self.failures[-1] = f"... and more ({what})"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def post_ticket(server: DaphneServer, token: str) -> str:
    request = urllib.request.Request(  # noqa: S310 (a loopback http URL of ours)
        server.http + "/wsauth/ticket/",
        method="POST",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return str(json.load(response)["ticket"])


class Client:
    """One virtual user: connects, talks, disconnects, again and again."""

    def __init__(self, n: int, issuer: Issuer, servers: list[DaphneServer], stats: Stats):
        self.n = n
        self.issuer = issuer
        self.servers = servers
        self.stats = stats
        self.rng = random.Random(n)  # noqa: S311 (load shape, not security)
        self.sub = f"soak-{n % USERS}"
        self.name = f"Soak User {n % USERS}"
        self.token = ""
        self.token_at = -float("inf")
        self.seq = 0
        self.phase = "idle"

    def fresh_token(self) -> str:
        if time.monotonic() - self.token_at > TOKEN_REUSE:
            self.token = self.issuer.token(sub=self.sub, name=self.name)
            self.token_at = time.monotonic()
        return self.token

    async def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                await self.session()
                self.phase = "idle"
            except Exception as exc:
                self.stats.fail(f"client {self.n} ({self.phase}): {type(exc).__name__}: {exc}")
                await asyncio.sleep(1.0)
            await asyncio.sleep(self.rng.uniform(0.05, 0.5))

    async def session(self) -> None:
        server = self.rng.choice(self.servers)
        roll = self.rng.random()
        if roll < 0.05:
            await self.refused(server)
            return
        chat = roll < 0.45
        path = f"/ws/chat/soak-{self.rng.randrange(ROOMS)}/" if chat else "/ws/echo/"
        token = self.fresh_token()
        self.phase = f"connect {path} on {server.port}"
        if self.rng.random() < 0.5:
            ticket = await asyncio.to_thread(post_ticket, server, token)
            url, protocols = f"{server.ws}{path}?ticket={ticket}", None
            self.stats.by_ticket += 1
        else:
            url, protocols = server.ws + path, ["chat", PREFIX + token]
        ws = await connect(
            url,
            subprotocols=protocols,  # type: ignore[arg-type]
            open_timeout=10,
            ping_interval=None,
            compression=None,
            max_queue=None,
        )
        self.stats.connects += 1
        self.stats.open_sockets += 1
        self.phase = f"talk {path} on {server.port}"
        try:
            if chat:
                await self.chat(ws)
            else:
                await self.echo(ws)
            self.phase = "stay"
            await asyncio.sleep(self.rng.uniform(0, 2))  # stay a while
        finally:
            self.stats.open_sockets -= 1
            await ws.close()

    async def recv(self, ws: ClientConnection) -> str:
        while True:
            async with asyncio.timeout(10):
                frame = await ws.recv()
            if isinstance(frame, str) and not frame.startswith('{"type":"wsauth.'):
                return frame

    async def echo(self, ws: ClientConnection) -> None:
        greeting = await self.recv(ws)
        if greeting != f"Hello {self.name}":
            self.stats.fail(f"client {self.n}: greeting {greeting!r}")
        count = self.rng.randint(1, 20)
        texts = [f"{self.n}-{self.seq + i}-" + "x" * self.rng.randrange(200) for i in range(count)]
        self.seq += count
        for text in texts:
            await ws.send(text)
        for text in texts:
            got = await self.recv(ws)
            if got != f'{ECHO}"{text}"':
                self.stats.fail(f"client {self.n}: echo {got[:80]!r} for {text[:40]!r}")
                return
            self.stats.messages += 1

    async def chat(self, ws: ClientConnection) -> None:
        for _ in range(self.rng.randint(1, 5)):
            self.seq += 1
            text = f"{self.n}:{self.seq}"
            await ws.send(json.dumps({"message": text}))
            while True:  # other people's messages may come first
                event = json.loads(await self.recv(ws))
                if event.get("type") != "message":
                    self.stats.fail(f"client {self.n}: chat frame {event}")
                    return
                if event["message"] == text:
                    if event["user"] != self.name:
                        self.stats.fail(f"client {self.n}: chat user {event['user']!r}")
                    break
            self.stats.messages += 1
            await asyncio.sleep(self.rng.uniform(0, 0.3))

    async def refused(self, server: DaphneServer) -> None:
        self.phase = f"bad token on {server.port}"
        bad = self.issuer.token(sub=self.sub, aud="someone-else")
        try:
            offered: Any = ["chat", PREFIX + bad]
            ws = await connect(server.ws + "/ws/echo/", subprotocols=offered, open_timeout=10)
        except InvalidStatus as exc:
            if exc.response.status_code == 403:
                self.stats.refused_as_expected += 1
                return
            self.stats.fail(f"client {self.n}: bad token got HTTP {exc.response.status_code}")
            return
        await ws.close()
        self.stats.fail(f"client {self.n}: a bad token was accepted")


def mean(values: list[int]) -> float:
    return sum(values) / len(values)


async def first_logins(server: DaphneServer, issuer: Issuer) -> None:
    """Create the users through one process. First logins racing on two processes that
    share the demo's SQLite file can fail with "database is locked" (an HTTP 500), which
    is a matter for the database, not for this soak."""
    for n in range(USERS):
        token = issuer.token(sub=f"soak-{n}", name=f"Soak User {n}")
        async with connect(server.ws + "/ws/echo/", subprotocols=[PREFIX + token]) as ws:  # type: ignore[list-item]
            await ws.recv()


async def soak(args: argparse.Namespace, servers: list[DaphneServer], issuer: Issuer) -> int:
    await first_logins(servers[0], issuer)
    stats = Stats()
    started = time.monotonic()
    deadline = started + args.minutes * 60
    warmup = min(30.0, args.minutes * 60 * 0.2)
    clients = [Client(n, issuer, servers, stats) for n in range(args.clients)]
    tasks = [asyncio.create_task(c.run(deadline)) for c in clients]

    pids = [s.proc.pid for s in servers if s.proc is not None]
    samples: list[tuple[float, list[int]]] = []
    print(
        f"{'time':>6} {'rss A MiB':>10} {'rss B MiB':>10} {'connects':>9} {'tickets':>8} "
        f"{'messages':>9} {'open':>5} {'refused':>8} {'failures':>8}"
    )

    def sample() -> None:
        elapsed = time.monotonic() - started
        rss = [rss_kib(pid) for pid in pids]
        if elapsed >= warmup:
            samples.append((elapsed, rss))
        mark = "" if elapsed >= warmup else "  (warm-up)"
        print(
            f"{elapsed:6.0f} {rss[0] / 1024:10.1f} {rss[1] / 1024:10.1f} {stats.connects:9d} "
            f"{stats.by_ticket:8d} {stats.messages:9d} {stats.open_sockets:5d} "
            f"{stats.refused_as_expected:8d} {len(stats.failures):8d}{mark}",
            flush=True,
        )

    sample()
    while time.monotonic() < deadline:
        await asyncio.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))
        sample()
    await asyncio.gather(*tasks)
    await asyncio.sleep(1.0)
    sample()

    ok = True
    print()
    if len(samples) < 3:
        print("FAIL: too few samples after the warm-up; run longer")
        ok = False
    else:
        third = max(1, len(samples) // 3)
        for index, name in enumerate("AB"):
            first = mean([rss[index] for _, rss in samples[:third]])
            last = mean([rss[index] for _, rss in samples[-third:]])
            growth = (last - first) / first
            verdict = "ok" if growth < args.max_growth else "FAIL"
            print(
                f"daphne {name}: first third {first / 1024:.1f} MiB, last third "
                f"{last / 1024:.1f} MiB, growth {growth:+.1%} ({verdict})"
            )
            ok &= growth < args.max_growth
    for name, server in zip("AB", servers, strict=True):
        bad = [
            line for line in server.log().splitlines() if any(m in line for m in BAD_LOG_MARKERS)
        ]
        killed = server.log().count("took too long to shut down and was killed")
        print(
            f"daphne {name} log: {len(bad)} traceback/error lines, {killed} application "
            f"instances killed for taking too long to shut down ({server.log_path})"
        )
        for line in bad[:10]:
            print("   ", line)
        ok &= not bad
    print(
        f"clients: {stats.connects} connections ({stats.by_ticket} by ticket), "
        f"{stats.messages} messages, {stats.refused_as_expected} bad tokens refused, "
        f"{len(stats.failures)} failures"
    )
    for failure in stats.failures[:10]:
        print("   ", failure)
    ok &= not stats.failures
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=40, help="concurrent virtual clients")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--max-growth", type=float, default=0.10)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6")
    parser.add_argument(
        "--wsauth-overrides", default="", help="JSON for the demo's WSAUTH_OVERRIDES"
    )
    args = parser.parse_args()

    client = redis.Redis.from_url(args.redis_url)
    client.ping()
    tmp = Path(tempfile.mkdtemp(prefix="wsauth-soak-"))
    issuer = Issuer().start()
    env = migrated_project_env(  # flushes the Redis database
        tmp,
        issuer,
        args.redis_url,
        **({"WSAUTH_OVERRIDES": args.wsauth_overrides} if args.wsauth_overrides else {}),
    )
    servers = [DaphneServer(env, tmp / "daphne-a.log"), DaphneServer(env, tmp / "daphne-b.log")]
    try:
        for server in servers:
            server.start()
        print(
            f"soak: {args.minutes:g} min, {args.clients} clients, Daphne A "
            f"pid {servers[0].proc.pid if servers[0].proc else '?'} port {servers[0].port}, "
            f"B pid {servers[1].proc.pid if servers[1].proc else '?'} port {servers[1].port}, "
            f"logs in {tmp}",
            flush=True,
        )
        return asyncio.run(soak(args, servers, issuer))
    finally:
        for server in servers:
            server.stop()
        issuer.stop()
        client.flushdb()
        client.close()


if __name__ == "__main__":
    sys.exit(main())
