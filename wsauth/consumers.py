"""The authenticated base consumers (raw frames, and JSON) and the echo consumer.

The base consumer owns the life of the credential on an open socket: it warns before
expiry (``wsauth.expiring``), closes at expiry (4001), takes in-band refreshes
(``wsauth.refresh``), and, on routes that opt in, first-message authentication
(``wsauth.auth``). Control frames are handled before the application sees anything; an
application frame costs one anchored regular-expression match.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer

from . import admission, close_codes, metrics, revoke, signals, tickets
from .admission.places import socket_id
from .conf import get_conf
from .errors import Limited, Refused
from .loops import PerLoop
from .tokens import TokenError, shared_claims, validate_access_token
from .users import UserRefused, display_name, require_active, user_by_pk, user_for_claims

logger = logging.getLogger("wsauth")

_CONTROL = re.compile(r'\s*\{\s*"type"\s*:\s*"wsauth\.')


def _frame(**fields: Any) -> str:
    return json.dumps(fields, separators=(",", ":"))


class _Deadlines:
    """The credential deadlines of one event loop's sockets, by whole epoch second: one
    timer per second that has any, not one per socket (a ``TimerHandle``, its context,
    arguments and bound method are about 350 B for each socket's life). ``exp`` is a
    whole second, so a socket still closes when its credential expires; a deadline with
    a fraction (a fractional ``EXPIRING_LEAD``) fires at the next whole second."""

    __slots__ = ("due", "handles", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.due: dict[int, dict[AuthenticatedWebsocketConsumer, str]] = {}
        self.handles: dict[int, asyncio.TimerHandle] = {}

    def add(self, consumer: AuthenticatedWebsocketConsumer, at: float, method: str) -> int:
        """Call ``consumer.<method>()`` at epoch time ``at``; returns the second to remove."""
        second = math.ceil(at)
        due = self.due.get(second)
        if due is None:
            due = self.due[second] = {}
            delay = max(0.0, second - time.time())
            self.handles[second] = self.loop.call_later(delay, self._fire, second)
        due[consumer] = method  # a literal method name: shared, nothing per socket
        return second

    def remove(self, consumer: AuthenticatedWebsocketConsumer, second: int) -> None:
        due = self.due.get(second)
        if due is not None and due.pop(consumer, None) is not None and not due:
            del self.due[second]
            self.handles.pop(second).cancel()

    def _fire(self, second: int) -> None:
        self.handles.pop(second, None)
        for consumer, method in self.due.pop(second, {}).items():
            consumer._deadline = None
            consumer._start(getattr(consumer, method))


_deadlines: PerLoop[_Deadlines] = PerLoop(lambda: _Deadlines(asyncio.get_running_loop()))


#: Every attribute a socket's life sets on its consumer, with its starting value: what
#: Channels' ``AsyncConsumer.__call__`` sets, then the consumer's own (immutable values:
#: shared by every instance until it sets its own).
_SOCKET_STATE: dict[str, Any] = {
    **dict.fromkeys(("scope", "channel_layer", "channel_name", "channel_receive", "base_send")),
    "_timer": None,
    "_deadline": None,
    "_timer_task": None,
    "_accepted": False,
    "_warned_for": None,
    "_refresh_allowance": None,
    "_refresh_stamp": 0.0,
    "_revocation_groups": (),
    "_msg_allowance": -1.0,
    "_msg_stamp": 0.0,
    "_closing": False,
    "_slot": None,
}


class AuthenticatedWebsocketConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # (untyped)
    """Base for consumers behind ``WSAuthMiddleware``.

    Set ``first_message_auth = True`` (or route ``Consumer.as_asgi(first_message_auth=True)``)
    to accept sockets without handshake credentials whose first frame must be
    ``{"type": "wsauth.auth", "token": ...}`` within ``AUTH_TIMEOUT`` seconds.
    """

    first_message_auth: bool = False

    # A socket's own state; every one starts at its value in _SOCKET_STATE.
    _timer: asyncio.TimerHandle | None  # the first-frame authentication timeout
    _deadline: int | None  # the second of this socket's entry in _Deadlines
    _timer_task: asyncio.Task[None] | None
    _accepted: bool
    _warned_for: float | None
    _refresh_allowance: float | None
    _refresh_stamp: float
    _revocation_groups: tuple[str, ...]
    _msg_allowance: float  # frames this socket may send now (a token bucket); -1: unset
    _msg_stamp: float
    _closing: bool
    _slot: admission.SocketPlace | None  # the user's socket place, first-frame auth only

    def __init__(self, *args: Any, first_message_auth: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if first_message_auth is not None:  # the route option: as_asgi(first_message_auth=True)
            self.first_message_auth = first_message_auth
        # Every attribute a socket's life sets, set now. CPython 3.11 and 3.12 keep an
        # instance's attributes inline only for names its class knew when the instance was
        # made: a name first set later, once many sockets were open (a burst of handshakes
        # makes them all before the first accepts), gives every instance a dict of its
        # own. Measured: 512 B per socket at 10k sockets, allocated at the first accept.
        for name, value in _SOCKET_STATE.items():
            setattr(self, name, value)

    @property
    def wsauth(self) -> dict[str, Any]:
        return self.scope.get("wsauth") or {}

    @property
    def socket_id(self) -> str | None:
        """This socket's id in the deployment (``scope["wsauth"]["socket_id"]``): what
        the admin's live page and ``revoke.disconnect_socket`` target."""
        return self.wsauth.get("socket_id")

    @property
    def display_name(self) -> str:
        return display_name(self.scope["user"], self.wsauth.get("claims"))

    @property
    def pending(self) -> bool:
        return self.wsauth.get("method") == "pending"

    # -- connection ---------------------------------------------------------------------------

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        if self.pending and self.first_message_auth:
            await self.accept()
            self._set_timer(get_conf().auth_timeout, self._auth_timed_out)
            return
        user = self.scope.get("user")
        if self.pending or not self.wsauth or user is None or not user.is_authenticated:
            # Served without WSAuthMiddleware: refuse rather than run unauthenticated.
            logger.error("wsauth: %s got an unauthenticated handshake", type(self).__name__)
            await self.close()
            return
        await super().websocket_connect(message)

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        if self._accepted:  # connect() after first-message authentication
            return
        self._accepted = True
        if not await self._accept_revocable():  # before accept: no unrevocable window
            return
        await super().accept(subprotocol or self.wsauth.get("subprotocol"), headers)
        self._schedule_expiry()

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        self._cancel_timer()
        if self._revocation_groups:
            revoke.leave(self, self._revocation_groups)
            self._revocation_groups = ()
        slot, self._slot = self._slot, None
        if slot is not None and not slot.release_locally():
            await asyncio.shield(slot.release())
        await super().websocket_disconnect(message)

    async def _join_revocation_groups(self) -> None:
        """Register with this process's revocation registry (no I/O after the first)."""
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return
        info = self.wsauth
        claims = info.get("claims") or info.get("session")  # a session ticket's OpenID session
        groups = revoke.groups_for(user, claims)
        new = [g for g in groups if g not in self._revocation_groups]
        if new:
            try:
                await revoke.join(
                    self,
                    new,
                    self.channel_layer,
                    since=info.get("checked_at"),
                    user_pk=user.pk,
                    claims=claims,
                )
            finally:  # registered even when revoked meanwhile: leave() on disconnect
                self._revocation_groups += tuple(new)

    async def _accept_revocable(self) -> bool:
        """Join revocation; if the channel layer is down, refuse the socket rather than
        open one no revocation could reach."""
        try:
            await self._join_revocation_groups()
        except revoke.Revoked as exc:  # between the handshake's check and now
            self._closing = True
            await self.close_for(close_codes.FORBIDDEN, f"{exc.reason}: {exc.detail}")
            return False
        except Exception as exc:
            logger.error(
                "wsauth: refused socket path=%s: channel layer unavailable: %s",
                self.scope.get("path"),
                exc,
            )
            await self.close()
            return False
        return True

    async def wsauth_revoke(self, event: dict[str, Any]) -> None:
        """A revocation for one of our groups, from any process (via the registry)."""
        target = event.get("socket")
        if self._closing or (target is not None and target != self.socket_id):
            return
        self._closing = True
        reason = event.get("reason")
        await self.close_for(close_codes.FORBIDDEN, f"revoked: {str(reason)[:200]}")

    async def close_for(self, code: int, reason: str) -> None:
        """Close with a wsauth close code, and say why in the server log."""
        self._cancel_timer()
        user = self.scope.get("user")
        logger.info(
            "wsauth: closing socket code=%s user=%s path=%s: %s",
            code,
            user.get_username() if user is not None else "-",
            self.scope.get("path"),
            reason,
        )
        await self.close(code=code)

    # -- frames -------------------------------------------------------------------------------

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        text = message.get("text")
        refusal = self._frame_refusal(text, message.get("bytes"))
        if refusal is not None:
            if not self._closing:
                self._closing = True
                if refusal[0] == close_codes.RATE_LIMITED:
                    metrics.limit_hit("too_many_frames")
                await self.close_for(*refusal)
            return
        if text is not None and _CONTROL.match(text) and await self._control(text):
            return
        if self.pending:
            await self.close_for(close_codes.CREDENTIAL_INVALID, "application frame before auth")
            return
        await super().websocket_receive(message)

    def _frame_refusal(self, text: str | None, data: bytes | None) -> tuple[int, str] | None:
        """MAX_MESSAGE_SIZE (close 4009) and MESSAGE_RATE (close 4429), per socket: a few
        arithmetic operations per frame, no I/O."""
        conf = get_conf()
        limit = conf.max_message_size
        if limit is not None:
            size = len(data) if data is not None else len(text or "")
            if size * 4 > limit and text is not None:  # characters to bytes only when close
                size = len(text.encode("utf-8", "surrogatepass"))
            if size > limit:
                return close_codes.MESSAGE_TOO_BIG, f"frame of {size} bytes > {limit}"
        rate = admission.policies(conf).message
        if rate is not None:
            count, period = rate.count, rate.seconds
            now = time.monotonic()
            if self._msg_allowance < 0:
                self._msg_allowance = float(count)
            else:
                refill = (now - self._msg_stamp) * count / period
                self._msg_allowance = min(float(count), self._msg_allowance + refill)
            self._msg_stamp = now
            if self._msg_allowance < 1:
                return close_codes.RATE_LIMITED, "too many frames (MESSAGE_RATE)"
            self._msg_allowance -= 1
        return None

    async def _control(self, text: str) -> bool:
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):
            return False
        kind = frame.get("type") if isinstance(frame, dict) else None
        if not isinstance(kind, str) or not kind.startswith("wsauth."):
            return False
        if kind == "wsauth.auth":
            if self.pending:
                await self._authenticate_first_message(frame)
            else:
                await self._error("already_authenticated", "this socket is authenticated")
        elif kind == "wsauth.refresh":
            if self.pending:
                await self.close_for(close_codes.CREDENTIAL_INVALID, "refresh before auth")
            elif "ticket" in frame:
                await self._refresh_by_ticket(frame.get("ticket"))
            else:
                await self._refresh(frame)
        else:
            await self._error("unknown_type", f"unknown control frame {kind[:40]!r}")
        return True

    async def _error(self, error: str, detail: str) -> None:
        await self.send(text_data=_frame(type="wsauth.error", error=error, detail=detail))

    async def _verify(self, frame: dict[str, Any], admit: bool = False) -> tuple[Any, Any] | None:
        """Verify a control frame's token; close 4401/4403 and return None if refused.
        With ``admit`` (first-frame authentication), the same checks as a handshake with
        credentials: a refused token counts against ``FAILED_AUTH_RATE``, and the socket
        takes one of the user's ``MAX_SOCKETS_PER_USER`` places (4429 when none is free)."""
        token = frame.get("token")
        try:
            if not isinstance(token, str):
                raise TokenError("malformed", "the frame has no 'token' string")
            verified = await validate_access_token(token)
        except TokenError as exc:
            if admit:  # counted as a failed authentication of the client's address
                error = await admission.failed(self._attempt(), Refused(exc.reason, exc.detail))
                await self._refused(error.reason, error.detail, isinstance(error, Limited))
            await self.close_for(close_codes.CREDENTIAL_INVALID, f"{exc.reason}: {exc.detail}")
            return None
        try:
            user = await user_for_claims(verified.claims)
            if admit:  # the same admission as a handshake with credentials
                self._slot = await admission.admit(
                    self._attempt(),
                    user,
                    verified.claims,
                    None,
                    method="message",
                    expires_at=verified.expires_at,
                )
            else:  # a refresh: the database says whether the user is still active
                await require_active(user)
                await revoke.check(user, verified.claims, None)
        except (UserRefused, revoke.Revoked) as exc:
            if admit:
                await self._refused(exc.reason, exc.detail, False)
            await self.close_for(close_codes.FORBIDDEN, exc.detail)
            return None
        except Limited as exc:
            if admit:
                await self._refused(exc.reason, exc.detail, True)
            await self.close_for(close_codes.RATE_LIMITED, exc.detail)
            return None
        return verified, user

    async def _refused(self, reason: str, detail: str, limited: bool) -> None:
        """A first-message authentication refused: counted and signalled as a handshake."""
        metrics.handshake("limited" if limited else "refused", reason, "message")
        if limited:
            metrics.limit_hit(reason)
        attempt = self._attempt()
        if signals.handshake_refused.receivers:
            await signals.send(
                signals.handshake_refused,
                type(self),
                reason=reason,
                detail=detail,
                method="message",
                limited=limited,
                path=attempt.path,
                origin=attempt.origin,
                address=attempt.address,
            )

    def _attempt(self) -> admission.Attempt:
        return admission.Attempt.of(self.scope, get_conf(), self.wsauth.get("origin"))

    async def _authenticate_first_message(self, frame: dict[str, Any]) -> None:
        checked_at = time.time()  # before the revocation markers are read
        result = await self._verify(frame, admit=True)
        if result is None:
            return
        verified, user = result
        self._cancel_timer()
        self.scope["user"] = user
        # In place: the middleware's copy of the scope shares this dict (socket_closed).
        info = self.scope["wsauth"]
        info.update(
            method="message",
            claims=verified.claims,
            expires_at=verified.expires_at,
            checked_at=checked_at,
            socket_id=socket_id(self._slot.member) if self._slot is not None else None,
            user=user,
        )
        self._schedule_expiry()
        metrics.handshake("accepted", "ok", "message")
        if signals.handshake_accepted.receivers:
            attempt = self._attempt()
            await signals.send(
                signals.handshake_accepted,
                type(self),
                user=user,
                method="message",
                socket_id=info["socket_id"],
                path=attempt.path,
                origin=attempt.origin,
                address=attempt.address,
                claims=verified.claims,
                expires_at=verified.expires_at,
            )
        if await self._accept_revocable():
            await self.connect()

    def _refresh_allowed(self) -> bool:
        conf = get_conf()
        now = time.monotonic()
        if self._refresh_allowance is None:
            self._refresh_allowance = float(conf.refresh_burst)
        else:
            refill = (now - self._refresh_stamp) / max(conf.refresh_interval, 0.001)
            self._refresh_allowance = min(
                float(conf.refresh_burst), self._refresh_allowance + refill
            )
        self._refresh_stamp = now
        if self._refresh_allowance < 1:
            return False
        self._refresh_allowance -= 1
        return True

    async def _refresh(self, frame: dict[str, Any]) -> None:
        if not self._refresh_allowed():
            metrics.refresh("limited")
            metrics.limit_hit("too_many_refreshes")
            await self.close_for(close_codes.RATE_LIMITED, "too many refreshes")
            return
        if self.wsauth.get("dpop_jkt") is not None:
            # No proof can ride on a frame; the ticket endpoint checks one. The socket stays
            # open: a client that cannot do this reconnects with a DPoP ticket at 4001.
            await self._error(
                "ticket_required",
                "this socket is bound to a DPoP key: refresh it with "
                '{"type": "wsauth.refresh", "ticket": <a fresh DPoP ticket>}',
            )
            return
        checked_at = time.time()  # before the revocation markers are read
        result = await self._verify(frame)
        if result is None:
            metrics.refresh("refused")
            return
        verified, user = result
        claims = self.wsauth.get("claims")
        if claims is not None:
            same = (claims.get("iss"), claims.get("sub")) == (verified.issuer, verified.subject)
        else:  # a session ticket: the token must belong to the same user
            same = user.pk == self.scope["user"].pk
        if not same:
            metrics.refresh("refused")
            await self.close_for(close_codes.FORBIDDEN, "refresh for another subject")
            return
        await self._renewed(checked_at, claims=verified.claims, expires_at=verified.expires_at)

    async def _refresh_by_ticket(self, ticket: Any) -> None:
        """``{"type": "wsauth.refresh", "ticket": ...}``: a fresh ticket from the ticket
        endpoint, for the same user (the same ``iss`` and ``sub`` when both carry claims)
        and, on a DPoP-bound socket, bound to the same key: its proof was checked where
        one can be sent, on the ticket request (RFC 9449)."""
        if not self._refresh_allowed():
            metrics.refresh("limited")
            metrics.limit_hit("too_many_refreshes")
            await self.close_for(close_codes.RATE_LIMITED, "too many refreshes")
            return
        checked_at = time.time()
        try:
            record = await tickets.redeem(ticket) if isinstance(ticket, str) else None
        except tickets.TicketStoreError:
            await self._error("unavailable", "the ticket store is unavailable; retry shortly")
            return
        if record is None:
            metrics.refresh("refused")
            await self.close_for(close_codes.CREDENTIAL_INVALID, "invalid_ticket on refresh")
            return
        bound = record.get("origin")
        if bound and bound != self.wsauth.get("origin"):
            metrics.refresh("refused")
            await self.close_for(close_codes.CREDENTIAL_INVALID, "ticket_origin_mismatch")
            return
        conf = get_conf()
        claims = record.get("claims")
        claims = shared_claims(claims, conf) if isinstance(claims, dict) else None
        old = self.wsauth.get("claims")
        session = record.get("session") if record.get("via") == "session" else None
        try:
            user = await user_by_pk(record.get("uid"))
            await require_active(user)
            if user.pk != self.scope["user"].pk or (
                claims is not None
                and old is not None
                and (claims.get("iss"), claims.get("sub")) != (old.get("iss"), old.get("sub"))
            ):
                raise UserRefused("other_subject", "refresh for another subject")
            jkt = self.wsauth.get("dpop_jkt")
            if jkt is not None and record.get("dpop_jkt") != jkt:
                raise UserRefused("other_key", "refresh bound to another DPoP key")
            issued_at = record.get("login_at") if claims is None else None  # a session's login
            await revoke.check(user, claims if claims is not None else session, issued_at)
        except (UserRefused, revoke.Revoked) as exc:
            metrics.refresh("refused")
            await self.close_for(close_codes.FORBIDDEN, f"{exc.reason}: {exc.detail}")
            return
        expires_at = record.get("credential_expires_at")
        await self._renewed(checked_at, claims=claims, expires_at=expires_at, session=session)

    async def _renewed(self, checked_at: float, **record: Any) -> None:
        """The socket's credential is now ``record``: re-arm its deadlines, join any new
        revocation group, and say so."""
        # In place: the middleware's copy of the scope shares this dict.
        self.scope["wsauth"].update(record, checked_at=checked_at)
        self._schedule_expiry()
        if not await self._accept_revocable():
            metrics.refresh("refused")
            return
        metrics.refresh("accepted")
        expires_at = self.wsauth.get("expires_at")
        await self.send(text_data=_frame(type="wsauth.refreshed", expires_at=expires_at))

    # -- timers: the first-frame timeout, the credential's deadlines ----------------------------

    def _set_timer(self, delay: float, callback: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._cancel_timer()
        # A bound method and its argument, not a closure (first-frame sockets only).
        self._timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._fire, callback)

    def _set_deadline(self, at: float, method: str) -> None:
        """Call ``self.<method>()`` at epoch time ``at`` (through this loop's _Deadlines)."""
        self._cancel_timer()
        self._deadline = _deadlines.get().add(self, at, method)

    def _fire(self, callback: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._timer = None
        self._start(callback)

    def _start(self, callback: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._timer_task = asyncio.get_running_loop().create_task(callback())  # kept alive

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._deadline is not None:
            _deadlines.get().remove(self, self._deadline)
            self._deadline = None

    def _schedule_expiry(self) -> None:
        expires_at = self.wsauth.get("expires_at")
        if expires_at is None:
            self._cancel_timer()
            return
        if self._warned_for == expires_at:
            self._set_deadline(float(expires_at), "_expire")
        else:
            self._set_deadline(float(expires_at) - get_conf().expiring_lead, "_warn")

    async def _warn(self) -> None:
        expires_at = self.wsauth.get("expires_at")
        self._warned_for = expires_at
        await self.send(text_data=_frame(type="wsauth.expiring", expires_at=expires_at))
        self._schedule_expiry()

    async def _expire(self) -> None:
        await self.close_for(close_codes.CREDENTIAL_EXPIRED, "credential expired")

    async def _auth_timed_out(self) -> None:
        await self.close_for(close_codes.AUTH_TIMEOUT, "no wsauth.auth frame in time")


class EchoConsumer(AuthenticatedWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data=f"Hello {self.display_name}")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            await self.send(text_data=f'I\'m not very smart, all I can do is repeat: "{text_data}"')


# (Re-exported: the JSON consumer's close codes, defined with the others.)
UNSUPPORTED_DATA = close_codes.UNSUPPORTED_DATA
INVALID_PAYLOAD = close_codes.INVALID_PAYLOAD


class AuthenticatedJsonWebsocketConsumer(
    AuthenticatedWebsocketConsumer,
    AsyncJsonWebsocketConsumer,  # type: ignore[misc]  # (channels is untyped)
):
    """Channels' ``AsyncJsonWebsocketConsumer`` behind wsauth: ``receive_json(content)``,
    ``send_json(content, close=False)`` and the ``encode_json``/``decode_json``
    classmethods are Channels' own; ``wsauth.*`` control frames never reach
    ``receive_json``.

    Two frames Channels lets end the consumer with an exception (Daphne closes with
    1011, ``disconnect()`` never runs and ``groups`` are never left) are answered instead:
    a text frame ``decode_json`` refuses goes to ``receive_invalid_json``, which closes
    with 4007 (``INVALID_PAYLOAD``) unless overridden; a binary frame closes with 4003
    (``UNSUPPORTED_DATA``).

    Once the consumer has sent its close, ``send`` and ``send_json`` send nothing: until
    the client's close reply, group messages keep arriving, and a send into the closing
    socket raises in the server (Daphne: autobahn's ``Disconnected``), which ends the
    consumer the same way.
    """

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if text_data is None:
            await self.close(code=UNSUPPORTED_DATA)
            return
        try:
            content = await self.decode_json(text_data)
        except (ValueError, RecursionError):  # json.JSONDecodeError is a ValueError
            await self.receive_invalid_json(text_data)
            return
        await self.receive_json(content, **kwargs)

    async def receive_invalid_json(self, text_data: str) -> None:
        """A text frame ``decode_json`` refused: override to answer instead of closing."""
        await self.close(code=INVALID_PAYLOAD)

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        if not self._closing:
            await super().send(text_data, bytes_data, close)

    async def send_json(self, content: Any, close: bool = False) -> None:
        if not self._closing:  # Channels' send_json calls past send() above
            await super().send_json(content, close)

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        self._closing = True
        await super().close(code, reason)
