"""Revocation: close a user's or a session's sockets on every process, at once.

Each process keeps a registry of its open authenticated sockets by revocation group (the
user's, and the OpenID session's when the access token carries ``sid``) and listens on
one channel-layer group, ``BROADCAST_GROUP``. A revocation is one message to that group;
every process closes its matching sockets with 4403.

Closing open sockets is half the job: a revoked credential must not open a new one. The
revocation also leaves a marker in the shared cache (``WSAUTH["REVOCATION_CACHE"]``, the
ticket store by default) that handshakes and refreshes consult:

- ``sid`` marker: every token of that session is refused until the marker expires;
- ``sub`` or user marker: credentials issued (``iat``) at or before the revocation are
  refused; credentials issued afterwards (the user logged in again) are accepted.

Between a revocation and its delivery lie one channel-layer hop (milliseconds with
Redis) and, for a process whose store is unreachable, nothing at all: see
``docs/security.md``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import logging
import math
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.db import close_old_connections
from django.dispatch import Signal

from . import metrics, store, stores
from .conf import get_conf, on_reset
from .errors import RevocationUnavailable
from .errors import Revoked as Revoked  # (re-exported: callers catch revoke.Revoked)
from .loops import PerLoop
from .tokens import forget_verified
from .users import forget_user

logger = logging.getLogger("wsauth")

#: Sent on the process that revokes, once per revocation, with ``user`` (or None),
#: ``issuer``, ``subject``, ``sid`` (or None) and ``reason``.
sockets_revoked = Signal()

#: The one channel-layer group every process joins: a revocation is one message per
#: process, not one group membership per socket (which cost two Redis round trips per
#: socket, measured at 15 % of a handshake).
BROADCAST_GROUP = "wsauth.revocations"
EVENT = "wsauth.revoke"
#: One socket to close (``disconnect_socket``), found among its user's sockets.
SOCKET_EVENT = "wsauth.revoke_socket"
#: channels-redis forgets group members after ``group_expiry`` (a day by default).
REJOIN_INTERVAL = 3600.0
#: How long a process remembers the revocations it delivered: a socket whose handshake
#: checked the markers before a revocation and registers after it is closed from this
#: log (no I/O); one that registers later than this asks the store again.
RECENT_SECONDS = 300.0


def _digest(*parts: Any) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[:40]


@functools.lru_cache(maxsize=4096)
def user_group(pk: Any) -> str:
    """Cached: every socket of a user shares one string (and one SHA-256)."""
    return f"wsauth.user.{_digest(pk)}"


def session_group(issuer: str, sid: str) -> str:
    return f"wsauth.sid.{_digest(issuer, sid)}"


def groups_for(user: Any, claims: dict[str, Any] | None) -> list[str]:
    """The revocation groups a socket belongs to: its user's and its OpenID session's."""
    groups = [user_group(user.pk)]
    sid = (claims or {}).get("sid")
    if isinstance(sid, str) and sid:
        groups.append(session_group(str(claims.get("iss")), sid))  # type: ignore[union-attr]
    return groups


# -- this process's sockets, and the listener that closes them ---------------------------------


class Member(Protocol):
    async def wsauth_revoke(self, event: dict[str, Any]) -> None: ...


class _Registry:
    """The open sockets of this process by revocation group: a list append per socket.

    Weak references keyed by group (a consumer that dies without a disconnect leaves
    nothing behind), in a plain list per group: a ``WeakSet`` costs about 1 KB per group
    (its own set, guards and callback) and a group is one user's or one session's few
    sockets. A dead reference's callback only queues it; the lists change only in
    ``add``/``discard``, never under ``deliver``'s iteration (or a collection inside it)."""

    def __init__(self) -> None:
        self.members: dict[str, list[weakref.KeyedRef[str, Member]]] = {}
        self._dead: list[weakref.KeyedRef[str, Member]] = []
        self._on_death = self._dead.append  # one bound method for every reference
        #: (when it arrived, epoch seconds; its groups) for the last RECENT_SECONDS
        self.recent: collections.deque[tuple[float, frozenset[str]]] = collections.deque()

    def add(self, member: Member, groups: Iterable[str]) -> None:
        self._purge()
        for group in groups:
            ref = weakref.KeyedRef(member, self._on_death, group)
            self.members.setdefault(group, []).append(ref)

    def discard(self, member: Member, groups: Iterable[str]) -> None:
        self._purge()
        for group in groups:
            refs = self.members.get(group)
            if refs is not None:
                self._remove(group, refs, lambda ref: ref() is member)

    def _purge(self) -> None:
        while self._dead:
            dead = self._dead.pop()
            refs = self.members.get(dead.key)
            if refs is not None:
                self._remove(dead.key, refs, lambda ref: ref is dead)  # noqa: B023

    def _remove(self, group: str, refs: list[weakref.KeyedRef[str, Member]], match: Any) -> None:
        refs[:] = [ref for ref in refs if not match(ref)]
        if not refs:
            del self.members[group]

    def revoked_since(self, groups: Iterable[str], since: float) -> bool:
        """Whether a revocation of one of ``groups`` arrived at or after ``since``."""
        wanted = frozenset(groups)
        return any(at >= since and not wanted.isdisjoint(hit) for at, hit in self.recent)

    async def deliver(self, event: dict[str, Any]) -> int:
        now = time.time()
        self.recent.append((now, frozenset(event.get("groups") or ())))
        while self.recent[0][0] < now - RECENT_SECONDS:
            self.recent.popleft()
        targets: dict[int, Member] = {}  # by identity: consumers need not be hashable
        for group in event.get("groups") or ():
            for ref in tuple(self.members.get(group, ())):
                member = ref()
                if member is not None:
                    targets[id(member)] = member
        for member in targets.values():
            try:
                await member.wsauth_revoke(event)
            except Exception as exc:  # one socket's failure must not spare the others
                logger.warning("wsauth: closing a revoked socket failed: %s", exc)
        return len(targets)

    async def deliver_socket(self, event: dict[str, Any]) -> int:
        """Close the one socket ``event["socket"]`` names, if this process holds it
        among the members of ``event["groups"]`` (its user's). Not a revocation: nothing
        is remembered for sockets still registering."""
        wanted = event.get("socket")
        closed = 0
        for group in event.get("groups") or ():
            for ref in tuple(self.members.get(group, ())):
                member = ref()
                if member is None or getattr(member, "socket_id", None) != wanted:
                    continue
                try:
                    await member.wsauth_revoke(event)
                    closed += 1
                except Exception as exc:
                    logger.warning("wsauth: closing a disconnected socket failed: %s", exc)
        return closed


registry = _Registry()
_listeners: PerLoop[_Listener | None] = PerLoop(lambda: None)


class _Listener:
    """One per process (per event loop): a channel in ``BROADCAST_GROUP`` whose messages
    close this process's matching sockets."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.ready = asyncio.Event()
        self.error: Exception | None = None
        #: since when this process receives every revocation (epoch seconds)
        self.joined_at = math.inf
        #: This process's copy of the markers (unmade key: (revoked at, expires at)):
        #: complete while ``current``, so a handshake asks memory, not the store.
        self.markers: dict[str, tuple[float, float]] = {}
        self.current = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    def found(self, keys: Iterable[str]) -> dict[str, float]:
        now = time.time()
        hits = {}
        for key in keys:
            entry = self.markers.get(key)
            if entry is not None and entry[1] > now:
                hits[key] = entry[0]
        return hits

    def absorb(self, markers: dict[str, Any], ttl: float) -> None:
        now = time.time()
        for key, revoked_at in markers.items():
            at = float(revoked_at)
            self.markers[key] = (at, at + ttl)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "wsauth: revocation marker arrived %.1f ms after it was written",
                    (now - at) * 1000,
                )
        if len(self.markers) > 10_000:  # drop the expired ones now and then
            self.markers = {k: v for k, v in self.markers.items() if v[1] > now}

    async def _bootstrap(self) -> None:
        """Every marker in the store, read after joining the group: a marker written
        before is in the store, one written after arrives by the group."""
        markers = store.get("revocation")
        prefix = markers.make_key(get_conf().revocation_key_prefix)
        found = await markers.values_matching(prefix + "*")
        unmade = len(markers.make_key(""))
        self.markers = {}
        self.absorb({k[unmade:]: v for k, v in found.items()}, get_conf().revocation_ttl)

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                channel = await self.layer.new_channel()
                await self.layer.group_add(BROADCAST_GROUP, channel)
                self.joined_at = time.time()  # messages sent before it were not seen
                await self._bootstrap()
                self.current = True
                self.error = None
                self.ready.set()
                delay, joined = 0.5, time.monotonic()
                while True:
                    if time.monotonic() - joined > REJOIN_INTERVAL:
                        await self.layer.group_add(BROADCAST_GROUP, channel)
                        joined = time.monotonic()
                    try:
                        async with asyncio.timeout(REJOIN_INTERVAL):
                            event = await self.layer.receive(channel)
                    except TimeoutError:
                        continue
                    kind = event.get("type")
                    if kind == EVENT:
                        self.absorb(event.get("markers") or {}, get_conf().revocation_ttl)
                        metrics.revocation_delivered(event, await registry.deliver(event))
                    elif kind == SOCKET_EVENT:
                        closed = await registry.deliver_socket(event)
                        metrics.revocation_delivered(event, closed)
            except asyncio.CancelledError:
                self.current = False
                raise
            except Exception as exc:  # the layer is down: retry, with backoff
                logger.error("wsauth: revocation listener failed, retrying: %s", exc)
                self.current = False  # handshakes read the store meanwhile (fail closed)
                self.error = exc
                self.ready.set()  # wake the waiters: they refuse their sockets meanwhile
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


@on_reset
def _distrust_copies() -> None:
    """Settings changed (tests): the copies were read from what may be another store.
    Their handshakes read the store until the listener joins again."""
    for listener in list(_listeners._by_loop.values()):
        if listener is not None:
            listener.current = False


def listen() -> None:
    """Start this event loop's revocation listener if there is none (it joins the
    broadcast group in the background). Called at every handshake, before its checks: a
    new process is then in the group before most of its first sockets register, and
    their registration needs no store read (see ``join``)."""
    if _listeners.peek() is None:
        layer = get_channel_layer()
        if layer is not None:
            _listener(layer)


def _listener(layer: Any) -> _Listener:
    """This event loop's listener on ``layer``, started if it has none (or a stopped one)."""
    listener = _listeners.get()
    if listener is None or listener.task.done() or listener.layer is not layer:
        listener = _listeners.replace(_Listener(layer))
    return listener  # type: ignore[return-value]


async def join(
    member: Member,
    groups: list[str],
    layer: Any,
    since: float | None = None,
    user_pk: Any = None,
    claims: dict[str, Any] | None = None,
) -> None:
    """Register a socket for revocation; the first one on a process starts the listener
    and waits until it is in the broadcast group (no window without revocation).

    ``since``: when the credential's markers were checked (epoch seconds). A revocation
    between that check and this registration reached neither, so it is looked up here:
    in the process's log of recent revocations, or, when the log does not reach back
    that far (the listener joined later, or ``RECENT_SECONDS`` have passed), in the
    store's markers of ``user_pk`` and ``claims``. Raises ``Revoked``."""
    if layer is None:
        return
    listener = _listener(layer)
    if not listener.ready.is_set():
        async with asyncio.timeout(5):
            await listener.ready.wait()
    if listener.error is not None:
        raise RuntimeError(f"the revocation listener is down: {listener.error}")
    registry.add(member, groups)
    if since is None:
        return
    if since >= listener.joined_at and since >= time.time() - RECENT_SECONDS:
        if registry.revoked_since(groups, since):
            raise Revoked("revoked", "revoked while the socket was being opened")
    elif get_conf().revocation_check and user_pk is not None:
        keys = marker_keys(user_pk, claims)
        # A marker at or after ``since`` is a revocation the handshake could not see.
        judge(await found_markers(keys), keys, since)


def leave(member: Member, groups: tuple[str, ...]) -> None:
    registry.discard(member, groups)


# -- markers in the shared store ---------------------------------------------------------------


def _key(kind: str, *parts: Any) -> str:
    return f"{get_conf().revocation_key_prefix}{kind}:{_digest(*parts)}"


async def _mark(kind: str, *parts: Any) -> dict[str, float]:
    """Write a marker; ``{its key: when}``, for the broadcast."""
    now = time.time()
    markers = store.get("revocation")
    key = _key(kind, *parts)
    await markers.set(markers.make_key(key), repr(now), get_conf().revocation_ttl)
    return {key: now}


def marker_keys(user_pk: Any, claims: dict[str, Any] | None) -> dict[str, str]:
    """The markers that could revoke this credential: ``{cache key: kind}`` (shared
    between calls: read it, never change it)."""
    iss = sub = sid = None
    if claims:
        iss, sub, sid = claims.get("iss"), claims.get("sub"), claims.get("sid")
        if not (isinstance(sid, str) and sid):
            sid = None
    try:
        return _marker_keys(user_pk, iss, sub, sid)
    except TypeError:  # an unhashable claim: not worth a cache entry
        return _marker_keys.__wrapped__(user_pk, iss, sub, sid)


@functools.lru_cache(maxsize=8192)
def _marker_keys(user_pk: Any, iss: Any, sub: Any, sid: str | None) -> dict[str, str]:
    """Cached: three SHA-256 digests per handshake otherwise."""
    keys: dict[str, str] = {_key("user", user_pk): "user"}
    if sub is not None:
        keys[_key("sub", iss, sub)] = "sub"
    if sid is not None:
        keys[_key("sid", iss, sid)] = "sid"
    return keys


on_reset(_marker_keys.cache_clear)  # the key prefix is a setting


def issued_at_of(claims: dict[str, Any] | None, issued_at: float | None) -> float | None:
    if issued_at is None and claims:
        iat = claims.get("iat")
        issued_at = float(iat) if isinstance(iat, int | float) else None
    return issued_at


def judge(found: dict[str, Any], keys: dict[str, str], issued_at: float | None) -> bool:
    """Raise ``Revoked`` if a marker found in the store revokes the credential. Returns
    True when a user marker is newer than the credential: the caller then asks the
    database (``check_active``), since other processes may still cache the user."""
    recheck = False
    for key, revoked_at in found.items():
        kind = keys[key]
        if kind == "sid":
            raise Revoked("session_logged_out", "the token's session has logged out")
        if issued_at is None or issued_at <= float(revoked_at):
            raise Revoked("revoked", f"credentials issued before the {kind}'s revocation")
        recheck = recheck or kind == "user"
    return recheck


def check_active(user_pk: Any) -> None:
    """Blocking: refuse a user the database says is inactive (or gone)."""
    forget_user(user_pk)
    model = get_user_model()
    fields = {f.name for f in model._meta.get_fields()}
    active = model._default_manager.filter(pk=user_pk)
    if "is_active" in fields:
        active = active.filter(is_active=True)
    try:
        if not active.exists():
            raise Revoked("inactive_user", "the user is disabled")
    finally:
        close_old_connections()


async def read_markers(keys: dict[str, str]) -> dict[str, Any]:
    """The markers present in the shared store, or ``Revoked`` if it cannot be read."""
    if not keys:
        return {}
    try:
        markers = store.get("revocation")
        made = {markers.make_key(k): k for k in keys}
        return {made[k]: v for k, v in (await markers.get_many(list(made))).items()}
    except Exception as exc:  # the store is down: fail closed, like the ticket store
        raise RevocationUnavailable(
            "revocation_store_unavailable", f"cannot check revocation: {exc}"
        ) from exc


async def found_markers(keys: dict[str, str]) -> dict[str, Any]:
    """The markers of ``keys`` that exist: from this process's copy while its listener is
    current (no I/O), else from the store (``RevocationUnavailable`` if unreadable)."""
    if not keys:
        return {}
    listener = _listeners.peek()
    if listener is not None and listener.current:
        return listener.found(keys)
    return await read_markers(keys)


def pushed() -> bool:
    """Whether this process's markers are current (fed by the broadcast)."""
    listener = _listeners.peek()
    return listener is not None and listener.current


async def settle(
    found: dict[str, Any], keys: dict[str, str], user_pk: Any, issued_at: float | None
) -> None:
    """Raise ``Revoked`` for the markers ``found`` of ``keys``, asking the database when
    only a user marker newer than the credential was found."""
    if judge(found, keys, issued_at):
        await stores.run(check_active, user_pk)


async def check(user: Any, claims: dict[str, Any] | None, issued_at: float | None) -> None:
    """Raise ``Revoked`` when a credential is revoked; ``issued_at`` is the token's
    ``iat`` (or, for a session ticket, the ticket's issue time)."""
    if not get_conf().revocation_check:
        return
    keys = marker_keys(user.pk, claims)
    await settle(await found_markers(keys), keys, user.pk, issued_at_of(claims, issued_at))


# -- revoking ---------------------------------------------------------------------------------


async def _send(groups: list[str], reason: str, markers: dict[str, float]) -> None:
    """To every process: the sockets to close, and the markers to add to their copies."""
    event = {
        "type": EVENT,
        "groups": groups,
        "reason": reason,
        "markers": markers,
        "sent_at": time.time(),
    }
    listener = _listeners.peek()
    if listener is not None:  # this process's copy at once, as every other's
        listener.absorb(markers, get_conf().revocation_ttl)
    await registry.deliver(event)  # this process's sockets at once
    layer = get_channel_layer()
    if layer is None:
        logger.warning("wsauth: no channel layer configured; other processes keep sockets")
        return
    await layer.group_send(BROADCAST_GROUP, event)  # one message per process


def _forget(user: Any = None, issuer: str | None = None, subject: str | None = None) -> None:
    if user is not None:
        forget_user(user.pk)
    if subject is not None:
        forget_verified(lambda t: t.subject == subject and (issuer is None or t.issuer == issuer))


async def adisconnect_user(user: Any, *, reason: str = "revoked") -> None:
    """Close every socket of ``user`` on every process (4403) and refuse credentials
    issued before now."""
    marker = await _mark("user", user.pk)
    _forget(user)
    await _send([user_group(user.pk)], reason, marker)
    logger.info("wsauth: revoked sockets of user pk=%s: %s", user.pk, reason)
    await sync_to_async(_signal)(user, None, None, None, reason)


def disconnect_user(user: Any, *, reason: str = "revoked") -> None:
    """Sync form of ``adisconnect_user`` (views, admin actions, signal handlers)."""
    async_to_sync(adisconnect_user)(user, reason=reason)


#: Users per broadcast message of ``adisconnect_users``: a few KiB of group names each.
BULK_CHUNK = 500


async def _revoke_users(users: list[Any], reason: str) -> None:
    markers: dict[str, float] = {}
    for marker in await asyncio.gather(*(_mark("user", user.pk) for user in users)):
        markers.update(marker)
    for user in users:
        _forget(user)
    await _send([user_group(user.pk) for user in users], reason, markers)
    for user in users:
        await sync_to_async(_signal)(user, None, None, None, reason)


def _chunks(users: Iterable[Any]) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for user in users:
        chunk.append(user)
        if len(chunk) == BULK_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def adisconnect_users(users: Any, *, reason: str = "revoked") -> int:
    """``adisconnect_user`` for many users, e.g. after a directory sync deactivated them
    with ``QuerySet.update`` (which sends no signal): their markers, then one broadcast
    per ``BULK_CHUNK`` users instead of one each. ``users``: an iterable, or an async one
    such as a QuerySet. Returns how many users."""
    if hasattr(users, "__aiter__"):
        users = [user async for user in users]
    count = 0
    for chunk in _chunks(users):
        count += len(chunk)
        await _revoke_users(chunk, reason)
    logger.info("wsauth: revoked sockets of %d users: %s", count, reason)
    return count


def disconnect_users(users: Iterable[Any], *, reason: str = "revoked") -> int:
    """Sync form of ``adisconnect_users``: ``users`` (a QuerySet's ``iterator()``, say) is
    read here, in sync code, a chunk at a time."""
    count = 0
    for chunk in _chunks(users):
        count += len(chunk)
        async_to_sync(_revoke_users)(chunk, reason)
    logger.info("wsauth: revoked sockets of %d users: %s", count, reason)
    return count


def _user_for_subject(issuer: str, subject: str) -> Any:
    from django.utils.module_loading import import_string

    backend = import_string(get_conf().user_backend)()
    return backend.user_for_claims({"iss": issuer, "sub": subject}, create=False)


async def adisconnect_subject(
    subject: str, issuer: str | None = None, *, reason: str = "revoked"
) -> None:
    """Close every socket of the person ``(issuer, subject)`` and refuse their tokens
    issued before now. ``issuer`` defaults to ``WSAUTH["ISSUER"]``."""
    issuer = issuer or get_conf().issuer or ""
    # The user first: between the marker's write and its broadcast nothing else runs,
    # so other processes have it within milliseconds (test_hot_path_live.py).
    user = await sync_to_async(_user_for_subject)(issuer, subject)
    marker = await _mark("sub", issuer, subject)
    _forget(user, issuer, subject)
    if user is not None:
        # Every socket of the user closes, so every credential of the user is refused:
        # a session that logged in by password too (its tickets carry no ``sub``).
        marker.update(await _mark("user", user.pk))
    await _send([user_group(user.pk)] if user is not None else [], reason, marker)
    logger.info("wsauth: revoked sockets of sub=%s: %s", subject, reason)
    await sync_to_async(_signal)(user, issuer, subject, None, reason)


def disconnect_subject(subject: str, issuer: str | None = None, *, reason: str = "revoked") -> None:
    async_to_sync(adisconnect_subject)(subject, issuer, reason=reason)


async def adisconnect_session(sid: str, issuer: str | None = None, *, reason: str) -> None:
    """Close the sockets whose token carried ``sid`` and refuse that session's tokens
    until the marker expires (``REVOCATION_TTL``)."""
    issuer = issuer or get_conf().issuer or ""
    marker = await _mark("sid", issuer, sid)
    forget_verified(lambda t: t.claims.get("sid") == sid and t.issuer == issuer)
    await _send([session_group(issuer, sid)], reason, marker)
    logger.info("wsauth: revoked sockets of an OpenID session: %s", reason)
    await sync_to_async(_signal)(None, issuer, None, sid, reason)


def _signal(
    user: Any, issuer: str | None, subject: str | None, sid: str | None, reason: str
) -> None:
    sockets_revoked.send(
        sender=None, user=user, issuer=issuer, subject=subject, sid=sid, reason=reason
    )


async def adisconnect_socket(socket_id: str, user_pk: Any, *, reason: str = "disconnected") -> None:
    """Close one socket, ``socket_id`` (``scope["wsauth"]["socket_id"]``, as the socket
    registry lists it: ``admission.all_sockets_sync``), on whichever process holds it,
    with 4403. ``user_pk`` is its user's. Its credential stays valid: to keep the person
    out, ``adisconnect_user`` also refuses their credentials issued before now."""
    event = {
        "type": SOCKET_EVENT,
        "groups": [user_group(user_pk)],
        "socket": socket_id,
        "reason": reason,
        "sent_at": time.time(),
    }
    await registry.deliver_socket(event)  # here at once
    layer = get_channel_layer()
    if layer is None:
        logger.warning("wsauth: no channel layer configured; other processes keep sockets")
        return
    await layer.group_send(BROADCAST_GROUP, event)
    logger.info("wsauth: disconnecting socket %s of user pk=%s: %s", socket_id, user_pk, reason)


def disconnect_socket(socket_id: str, user_pk: Any, *, reason: str = "disconnected") -> None:
    """Sync form of ``adisconnect_socket`` (the admin's live page)."""
    async_to_sync(adisconnect_socket)(socket_id, user_pk, reason=reason)
