"""What the sections share: options, the issuer, the project environment, servers."""

from __future__ import annotations

from dataclasses import dataclass

from .issuer import Issuer
from .report import Results
from .servers import Daphne, Project, flush_redis

#: The algorithms the benchmark's wsauth servers accept (the demo defaults to RS256).
ALGORITHMS = ["RS256", "ES256", "EdDSA"]

#: The abuse limits stay on (their code and their Redis round trips are part of the cost)
#: with ceilings one load generator on one loopback address never reaches.
LIMIT_CEILINGS = {
    "HANDSHAKE_RATE": "100000000/minute",
    "USER_HANDSHAKE_RATE": "100000000/minute",
    "MESSAGE_RATE": "100000000/second",
    "FRAME_RATE": "100000000/second",
    "FAILED_AUTH_RATE": "100000000/minute",
    "MAX_SOCKETS_PER_USER": 100000000,
}


@dataclass
class Options:
    quick: bool = False
    callgrind: bool = False
    callgrind_handshakes: int = 100
    #: Only these callgrind variants (None: all), e.g. the metrics pair on its own.
    callgrind_variants: tuple[str, ...] | None = None
    tracemalloc: bool = False


class Context:
    def __init__(self, options: Options, results: Results) -> None:
        self.options = options
        self.results = results
        self.issuer = Issuer().start()
        self._project: Project | None = None
        self._servers: dict[str, Daphne] = {}
        self._cookie: str | None = None

    @property
    def project(self) -> Project:
        if self._project is None:
            flush_redis()
            self._project = Project(self.issuer, ALGORITHMS=ALGORITHMS, **LIMIT_CEILINGS)
        return self._project

    @property
    def session_cookie(self) -> str:
        if self._cookie is None:
            self._cookie = self.project.session_cookie()
        return self._cookie

    def server(self, name: str, app: str | None = None) -> Daphne:
        """A running Daphne named ``name`` serving ``app`` (default: the name)."""
        server = self._servers.get(name)
        if server is None or server.proc is None or server.proc.poll() is not None:
            server = self._servers[name] = Daphne(self.project, app or name).start()
        return server

    def fresh_server(self, name: str, app: str) -> Daphne:
        self.stop_server(name)
        return self.server(name, app)

    def stop_server(self, name: str) -> None:
        server = self._servers.pop(name, None)
        if server is not None:
            server.stop()

    def close(self) -> None:
        for name in list(self._servers):
            self.stop_server(name)
        self.issuer.stop()
        if self._project is not None:
            self._project.cleanup()
            flush_redis()
