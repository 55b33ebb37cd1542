"""Admission: whether a client whose credential verified may have a socket now.

``admit`` runs once per socket, after the authenticators: the user's handshake rate, the
revocation markers and the user's socket place, in one store request where the
backend allows. ``failed`` runs once per refusal: it counts the failure against the
client's address and turns it into a cheap 4429 once the address is over
``FAILED_AUTH_RATE``. Nothing else in wsauth talks to the store about limits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import revoke, store
from ..conf import Conf, get_conf
from ..errors import Limited, RevocationUnavailable, WSAuthError
from ..loops import PerLoop
from . import sync
from .addresses import bucket, client_address
from .places import SocketPlace, describe, keep, places_key, sockets_of
from .policies import Rate, parse_rate, policies, user_tag

__all__ = [
    "Attempt",
    "Rate",
    "SocketPlace",
    "admit",
    "admit_unverified",
    "client_address",
    "failed",
    "parse_rate",
    "policies",
    "sockets_of",
    "sync_now",
    "user_tag",
]

logger = logging.getLogger("wsauth")


@dataclass(slots=True)
class Attempt:
    """A handshake (or a first frame) as admission sees it."""

    address: str
    bucket: str
    path: str
    origin: str | None
    method: str | None = None  # the credential's, once an authenticator claimed it

    @classmethod
    def of(cls, scope: Mapping[str, Any], conf: Conf, origin: str | None = None) -> Attempt:
        """``origin``: the handshake's, once parsed (``Handshake.origin``)."""
        address = client_address(scope, conf)
        return cls(address, bucket(address, conf), str(scope.get("path", "")), origin)


class _Quiet:
    """Refusals answered without a log line, counted and reported once per window."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.timer: asyncio.TimerHandle | None = None

    def note(self, subject: str, window: float) -> None:
        self.counts[subject] = self.counts.get(subject, 0) + 1
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(window, self.flush, window)

    def flush(self, window: float) -> None:
        self.timer = None
        for who, count in sorted(self.counts.items()):
            logger.warning(
                "wsauth: %d more failing handshakes from %s answered 4429 within %.0f s "
                "(FAILED_AUTH_RATE), not logged one by one",
                count,
                who,
                window,
            )
        self.counts.clear()


_quiet: PerLoop[_Quiet] = PerLoop(_Quiet)

_store_error_at = 0.0


def _store_down(exc: BaseException) -> None:
    """Limits fail open: say so at most once a minute, not once per handshake."""
    global _store_error_at
    now = time.monotonic()
    if now - _store_error_at > 60:
        _store_error_at = now
        logger.error("wsauth: the store is unavailable, limits not enforced: %s", exc)


async def sync_now() -> None:
    """Sync this process's counts and places with the store now, not at the next
    interval (tests; before reading the registry for a page)."""
    await sync.get().flush()


async def _count(key: str, window: int) -> int | None:
    """One hit on a counter (a key before the store's prefix): in memory, synced in
    batches, or with ``LIMITS_SYNC_INTERVAL = 0`` one store request. None: the store is
    down (limits fail open)."""
    limits = store.get("limits")
    made = limits.make_key(key)
    if get_conf().limits_sync_interval > 0:
        return sync.get().hit(made, window)
    try:
        return await limits.hit(made, window)
    except Exception as exc:
        _store_down(exc)
        return None


async def failed(attempt: Attempt, error: WSAuthError) -> WSAuthError:
    """Count a refusal against the client's address; the answer to send: ``error``, or
    ``Limited`` when the address is over its failure limit (then logged once per window)."""
    rules = policies(get_conf())
    if isinstance(error, Limited) or not error.charged or rules.failures is None:
        return error
    count = await _count(*rules.failures.counter(attempt.bucket))
    limited = None if count is None else rules.failures.verdict(count, attempt.bucket)
    if limited is None:
        return error
    if not limited.first:
        _quiet.get().note(attempt.bucket, rules.failures.rate.seconds)
    return limited


async def admit_unverified(attempt: Attempt) -> None:
    """A handshake with no credential yet (a first-message route): charge its address
    (``HANDSHAKE_RATE``); raises ``Limited``."""
    rule = policies(get_conf()).handshakes
    if rule is None:
        return
    count = await _count(*rule.counter(attempt.bucket))
    limited = None if count is None else rule.verdict(count, attempt.bucket)
    if limited is not None:
        raise limited


async def admit(
    attempt: Attempt,
    user: Any,
    claims: dict[str, Any] | None,
    issued_at: float | None,
    *,
    method: str,
    expires_at: float | None,
) -> SocketPlace | None:
    """Admit a verified credential's socket, or raise ``Limited`` / ``Revoked``. Returns
    the socket's place (registered, renewed by this process's heartbeat), to release
    when the socket closes; None when the store holds no registry (it is down)."""
    conf = get_conf()
    rules = policies(conf)
    limits = store.get("limits")
    pk = user.pk
    counter = None
    if rules.user_handshakes is not None:
        key, window = rules.user_handshakes.counter(user_tag(pk))
        counter = (limits.make_key(key), window)
    place = store.Place(
        limits.make_key(places_key(pk)),
        describe(pk, method, attempt.origin, attempt.path, expires_at),
        conf.socket_lease,
        rules.sockets.limit,
    )
    markers = revoke.marker_keys(pk, claims) if conf.revocation_check else {}
    if conf.limits_sync_interval > 0:  # memory only: counted here, synced in batches
        local = sync.get()
        count = local.hit(*counter) if counter is not None else 0
        taken_now, held = local.take(place.key, place.member, place.limit)
        answer: store.Admission | None = store.Admission(count, taken_now, held, {})
        found = await revoke.found_markers(markers)
    else:
        answer, found = await _admit_exact(limits, counter, place, markers)
    taken = SocketPlace(place.key, place.member) if answer is not None and answer.taken else None
    try:
        if answer is not None and rules.user_handshakes is not None:
            limited = rules.user_handshakes.verdict(answer.count, f"user pk={pk}")
            if limited is not None:
                raise limited
        if markers:
            await revoke.settle(found, markers, pk, revoke.issued_at_of(claims, issued_at))
        if answer is not None:
            limited = rules.sockets.verdict(answer.taken, answer.places, pk)
            if limited is not None:
                raise limited
    except BaseException:  # refused, a database fault, or the handshake's timeout
        if taken is not None:
            await taken.release()
        raise
    if taken is not None:
        keep(taken)
    return taken


async def _admit_exact(
    limits: store.Store,
    counter: tuple[str, int] | None,
    place: store.Place,
    markers: dict[str, str],
) -> tuple[store.Admission | None, dict[str, Any]]:
    """``LIMITS_SYNC_INTERVAL = 0``: the counter and the place in one store request, the
    markers too when this process's copy is not current and they share the store."""
    together = bool(markers) and not revoke.pushed() and store.same("limits", "revocation")
    made = {limits.make_key(k): k for k in markers} if together else {}
    try:
        answer = await limits.admit(counter, place, list(made))
    except Exception as exc:
        if together:  # revocation fails closed
            raise RevocationUnavailable(
                "revocation_store_unavailable", f"cannot check revocation: {exc}"
            ) from exc
        _store_down(exc)
        answer = None
    if together:
        found = {made[k]: v for k, v in answer.markers.items()} if answer else {}
    else:
        found = await revoke.found_markers(markers)
    return answer, found
