"""What wsauth keeps across processes, as one small interface.

The store knows no policy: it counts, keeps a user's socket places on leases, and keeps
short-lived values (tickets, revocation markers, replay caches). Keys come made (with the
cache's prefix) from the caller; keys that one command must touch together share a
hash tag (``{...}``), so the same commands run on Redis Cluster.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(slots=True)
class Place:
    """A request for one of a user's socket places.

    ``member`` describes the socket (JSON: process, since, method, ...): the registry is
    a sorted set of members scored by when their lease ends, so it answers "which
    sockets does this user have" by itself."""

    key: str  # the user's places
    member: str
    lease: float  # seconds
    limit: int | None  # None: no limit, the place is only registered


@dataclass(slots=True)
class Admission:
    """The store's answer to ``admit``."""

    count: int  # the counter after this hit (0 when none was asked)
    taken: bool  # the place was taken
    places: int  # the user's places, this one included when taken
    markers: dict[str, str]  # the markers found, by key


class Store(ABC):
    """The shared store's operations. Async methods run on the event loop; the ``*_sync``
    ones are for threads (views and signal handlers through ``sync_to_async``)."""

    #: Other processes see what this store keeps (False: local memory, one process).
    shared: bool = True

    def __init__(self, make_key: Callable[[str], str]) -> None:
        self.make_key = make_key

    @abstractmethod
    async def admit(
        self,
        counter: tuple[str, int] | None,
        place: Place | None,
        markers: Sequence[str] = (),
    ) -> Admission:
        """In one request where the backend allows: count ``counter`` (key, window s),
        take ``place`` (when fewer than its limit are held, after dropping lapsed ones),
        and read ``markers``. ``counter`` and ``place`` share a hash tag."""

    @abstractmethod
    async def hit(self, key: str, window: int) -> int:
        """Count one in the window that opened at the key's first hit; the count."""

    @abstractmethod
    async def sync(
        self,
        counters: Sequence[tuple[str, int, int]],
        places: Mapping[str, tuple[Sequence[str], Sequence[str]]],
        until: float,
        lease: float,
    ) -> tuple[list[tuple[int, float]], dict[str, int]]:
        """One process's batch: add each counter's delta (key, delta, window; the window
        opens at the key's first hit) and read back its total and the seconds its window
        has left; apply each user's place changes (key: added members, leased until
        ``until``; removed members) after dropping lapsed places, and read back how many
        each user holds."""

    @abstractmethod
    async def renew(self, places: Mapping[str, Sequence[str]], until: float, ttl: int) -> None:
        """Extend the leases of ``places`` (key: members) to epoch ``until``."""

    @abstractmethod
    async def release(self, key: str, member: str) -> None: ...

    @abstractmethod
    async def members(self, key: str, now: float) -> list[tuple[str, float]]:
        """The places of ``key`` whose lease runs past ``now``, with its end."""

    @abstractmethod
    async def getdel(self, key: str) -> str | None:
        """The value, removed: of simultaneous callers exactly one gets it."""

    @abstractmethod
    async def set(self, key: str, value: str, ttl: int) -> None: ...

    @abstractmethod
    async def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """The values present, read from the primary."""

    @abstractmethod
    async def values_matching(self, pattern: str) -> dict[str, str]:
        """Every key matching the glob ``pattern`` (on every node), with its value: for a
        process's bootstrap, never on a handshake."""

    @abstractmethod
    def add_sync(self, key: str, ttl: int) -> bool:
        """True the first time ``key`` is set within ``ttl`` (SET NX), on any process."""

    def places_sync(
        self, prefix: str, suffix: str, now: float
    ) -> dict[str, list[tuple[str, float]]]:
        """Every places key (made) that starts with ``prefix`` and ends with ``suffix``,
        with its places whose lease runs past ``now``: all users' sockets, for operators'
        pages and metrics scrapes. It scans the keyspace: never call it on a handshake."""
        raise NotImplementedError(f"{type(self).__name__} cannot list every socket place")

    @abstractmethod
    def version_sync(self) -> str | None:
        """The server's ``redis_version`` (Valkey reports its Redis compatibility level);
        None for local memory. Raises when unreachable."""
