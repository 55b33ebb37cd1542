"""A user's socket places: a registry of open sockets on short leases.

Each open socket holds a place in its user's sorted set (``wsauth:{u…}:sockets``), scored
by when its lease ends. Every process renews the leases of its own sockets in one
heartbeat (every third of ``SOCKET_LEASE``); a process that dies, however it dies
(SIGKILL, OOM, a lost node, a shutdown that never cancels its applications), stops
renewing, and its places lapse within one lease. Nothing relies on a ``finally`` block
running. The member is the socket's description (process, since, method, origin, path,
credential expiry), so the same set answers "which sockets does this user have, where,
since when" (``sockets_of``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import socket
import time
from typing import Any

from .. import store
from ..conf import get_conf
from ..loops import PerLoop
from . import sync
from .policies import user_tag

logger = logging.getLogger("wsauth")

_counter = itertools.count(1)
_process: tuple[int, str] | None = None


def process_id() -> str:
    """``host:pid``, made again after a fork (gunicorn's workers)."""
    global _process
    pid = os.getpid()
    if _process is None or _process[0] != pid:
        _process = (pid, f"{socket.gethostname()}:{pid}")
    return _process[1]


def places_key(user_pk: Any) -> str:
    return f"wsauth:{user_tag(user_pk)}:sockets"


#: JSON for a string, in C: what ``json.dumps`` writes for one (ASCII, escaped).
_text = json.encoder.encode_basestring_ascii
_head: tuple[str, str] | None = None


def _json(value: Any) -> str:
    if isinstance(value, str):
        return str(_text(value))
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return str(_text(str(value)))


def _member_head() -> str:
    """The members' common start on this process, ``{"process":"host:pid","socket":``."""
    global _head
    process = process_id()
    if _head is None or _head[0] != process:
        _head = (process, f'{{"process":{_json(process)},"socket":')
    return _head[1]


def describe(
    user_pk: Any, method: str, origin: str | None, path: str, expires_at: float | None
) -> str:
    """A socket's member in its user's places: unique, and all the registry tells (a
    JSON object, written by hand: ``json.dumps`` of a dict was a tenth of admission)."""
    return (
        f'{_member_head()}{next(_counter)},"user":{_json(user_pk)},"method":{_json(method)},'
        f'"origin":{_json(origin)},"path":{_json(path)},"since":{time.time():.3f},'
        f'"expires_at":{_json(expires_at)}}}'
    )


class SocketPlace:
    """One socket's place; ``release()`` when it closes. (Slotted: it lives as long as
    the socket.)"""

    __slots__ = ("key", "member")

    def __init__(self, key: str, member: str) -> None:
        self.key, self.member = key, member

    def release_locally(self) -> bool:
        """Give the place back with the next sync, without awaiting (no task, nothing
        to shield on a closing socket); False in the exact mode: ``await release()``."""
        if get_conf().limits_sync_interval <= 0:
            return False
        _keeper.get().forget(self)
        sync.get().release(self.key, self.member)
        return True

    async def release(self) -> None:
        if self.release_locally():
            return
        _keeper.get().forget(self)
        try:
            await store.get("limits").release(self.key, self.member)
        except Exception as exc:  # it lapses with its lease
            logger.warning("wsauth: cannot give a socket place back (it lapses): %s", exc)


class _Keeper:
    """This event loop's held places, and the heartbeat that renews their leases."""

    def __init__(self) -> None:
        self.held: dict[str, dict[str, None]] = {}
        self.task: asyncio.Task[None] | None = None
        self.failing_since: float | None = None

    def keep(self, place: SocketPlace) -> None:
        self.held.setdefault(place.key, {})[place.member] = None
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._beat())

    def forget(self, place: SocketPlace) -> None:
        members = self.held.get(place.key)
        if members is not None:
            members.pop(place.member, None)
            if not members:
                del self.held[place.key]

    async def _beat(self) -> None:
        while self.held:
            lease = get_conf().socket_lease
            await asyncio.sleep(lease / 3)
            await self.renew(lease)
        self.task = None

    async def renew(self, lease: float) -> None:
        places = {key: list(members) for key, members in self.held.items()}
        if not places:
            return
        try:
            await store.get("limits").renew(places, time.time() + lease, int(lease) + 1)
        except Exception as exc:  # once a minute while it lasts, not once a beat
            now = time.monotonic()
            if self.failing_since is None or now - self.failing_since > 60:
                self.failing_since = now
                logger.error("wsauth: cannot renew socket places (they lapse): %s", exc)
        else:
            self.failing_since = None


_keeper: PerLoop[_Keeper] = PerLoop(_Keeper)


def keep(place: SocketPlace) -> None:
    """Renew ``place`` with this process's heartbeat until it is released."""
    _keeper.get().keep(place)


async def renew_now() -> None:
    """Renew this loop's places at once (tests; a process that was paused)."""
    await _keeper.get().renew(get_conf().socket_lease)


def socket_id(member: str) -> str:
    """The socket's id in the deployment, ``host:pid/number``: what the admin's
    "disconnect" and ``revoke.disconnect_socket`` target. (Read from the member: this
    process's by its known start, without parsing the JSON.)"""
    head = _member_head()
    if member.startswith(head):
        end = member.find(",", len(head))
        number = member[len(head) : end]
        if end > 0 and number.isdigit():
            return f"{process_id()}/{number}"
    info = json.loads(member)
    return f"{info['process']}/{info['socket']}"


def _described(rows: list[tuple[str, float]]) -> list[dict[str, Any]]:
    found = []
    for member, lease_ends in rows:
        try:
            info = json.loads(member)
        except ValueError:
            continue
        if isinstance(info, dict):
            info["id"] = f"{info.get('process')}/{info.get('socket')}"
            found.append({**info, "lease_ends": lease_ends})
    return found


async def sockets_of(user_pk: Any) -> list[dict[str, Any]]:
    """The user's open sockets on every process, oldest first: each a dict with ``id``,
    ``process``, ``socket``, ``user``, ``method``, ``origin``, ``path``, ``since``,
    ``expires_at`` and ``lease_ends``."""
    limits = store.get("limits")
    rows = await limits.members(limits.make_key(places_key(user_pk)), time.time())
    return sorted(_described(rows), key=lambda info: info.get("since") or 0)


def all_sockets_sync() -> list[dict[str, Any]]:
    """Blocking: every user's open sockets on every process, oldest first, as
    ``sockets_of`` describes them. It scans the store's keyspace (SCAN, every node of a
    Cluster): for the admin's live page, metrics scrapes and presence, never per
    handshake. Raises when the store is unreachable."""
    limits = store.get("limits")
    made = limits.make_key(places_key("\0"))  # the made form, around one user's tag
    tag = user_tag("\0")
    prefix, _, suffix = made.partition(tag)
    found: list[dict[str, Any]] = []
    for rows in limits.places_sync(prefix + "{u", "}" + suffix, time.time()).values():
        found += _described(rows)
    return sorted(found, key=lambda info: info.get("since") or 0)
