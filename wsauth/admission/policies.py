"""Limit policies, in the manner of DRF's throttles: each names the counter it needs and
judges the count. They know no backend and build no store arguments.

A policy never refuses a client for what *other* clients at its address did: the
address is charged only for handshakes that did not verify (failures, and sockets that
authenticate by their first frame); a verified credential is charged to its user.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

from ..conf import Conf, on_reset
from ..errors import Limited

_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_UNITS |= {"h": 3600, "hour": 3600}


@dataclass(frozen=True, slots=True)
class Rate:
    count: int
    seconds: float

    @classmethod
    def parse(cls, value: Any) -> Rate | None:
        """``"60/minute"``, ``"10/s"``, ``"100/30"`` (per 30 s) or ``(count, seconds)``;
        None: no limit. Raises ``ValueError`` with the expected form."""
        if value in (None, "", 0):
            return None
        if isinstance(value, list | tuple) and len(value) == 2:
            count, seconds = int(value[0]), float(value[1])
        elif isinstance(value, str) and "/" in value:
            count_s, _, per = value.partition("/")
            per = per.strip().lower()
            count = int(count_s)
            seconds = float(_UNITS[per]) if per in _UNITS else float(per)
        else:
            raise ValueError(f"{value!r} is not a rate: use 'COUNT/second|minute|hour|SECONDS'")
        if count < 1 or seconds <= 0:
            raise ValueError(f"{value!r}: count and period must be positive")
        return cls(count, seconds)

    @property
    def window(self) -> int:
        return max(1, round(self.seconds))


def parse_rate(value: Any) -> tuple[int, float] | None:
    """``Rate.parse`` as ``(count, seconds)``."""
    rate = Rate.parse(value)
    return None if rate is None else (rate.count, rate.seconds)


@functools.lru_cache(maxsize=8192)
def user_tag(pk: Any) -> str:
    """The hash tag of a user's keys: on a Cluster, one slot holds all of them."""
    return "{u" + hashlib.sha256(str(pk).encode()).hexdigest()[:16] + "}"


class RatePolicy:
    """A count of events per subject in a window; over ``rate.count``: ``Limited``."""

    setting: str
    reason: str
    what: str  # "failed authentications", ...

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self._counters: dict[str, tuple[str, int]] = {}

    def key(self, subject: str) -> str:
        return f"wsauth:rl:{self.reason}:{{{subject}}}:{self.rate.window}"

    def counter(self, subject: str) -> tuple[str, int]:
        """``(key, window)``, remembered per subject (bounded: a flood of addresses
        empties it rather than grows it)."""
        found = self._counters.get(subject)
        if found is None:
            if len(self._counters) > 10_000:
                self._counters.clear()
            found = self._counters[subject] = (self.key(subject), self.rate.window)
        return found

    def verdict(self, count: int, subject: str) -> Limited | None:
        if count <= self.rate.count:
            return None
        return Limited(
            self.reason,
            f"more than {self.rate.count} {self.what} from {subject} in "
            f"{self.rate.seconds:g} s ({self.setting})",
            first=count == self.rate.count + 1,
        )


class FailedAuthRate(RatePolicy):
    """Refused handshakes per address: over it, failing handshakes get 4429 and go
    unlogged; a valid credential from the same address is still admitted."""

    setting, reason, what = "FAILED_AUTH_RATE", "too_many_failures", "failed handshakes"


class HandshakeRate(RatePolicy):
    """Handshakes with no credential to verify yet (first-message routes) per address."""

    setting, reason, what = "HANDSHAKE_RATE", "too_many_handshakes", "unauthenticated handshakes"


class UserHandshakeRate(RatePolicy):
    """Verified handshakes per user, whatever their address."""

    setting, reason, what = "USER_HANDSHAKE_RATE", "too_many_user_handshakes", "handshakes"

    def key(self, subject: str) -> str:
        return f"wsauth:{subject}:hs:{self.rate.window}"  # subject: the user's tag


class SocketsPerUser:
    """Open sockets per user, on every process (socket places on leases)."""

    setting, reason = "MAX_SOCKETS_PER_USER", "too_many_sockets"

    def __init__(self, limit: int | None) -> None:
        self.limit = limit

    def verdict(self, taken: bool, held: int, user_pk: Any) -> Limited | None:
        if taken or self.limit is None:
            return None
        return Limited(
            self.reason,
            f"user pk={user_pk} has {held} open sockets ({self.setting} = {self.limit})",
            first=held == self.limit,
        )


@dataclass(frozen=True, slots=True)
class Policies:
    failures: FailedAuthRate | None
    handshakes: HandshakeRate | None
    user_handshakes: UserHandshakeRate | None
    sockets: SocketsPerUser
    message: Rate | None  # frames per socket (a token bucket, in the consumer)


def _rate(policy: type[RatePolicy], value: Any) -> Any:
    rate = Rate.parse(value)
    return None if rate is None else policy(rate)


_policies: Policies | None = None


def policies(conf: Conf) -> Policies:
    global _policies
    if _policies is None:
        _policies = Policies(
            failures=_rate(FailedAuthRate, conf.failed_auth_rate),
            handshakes=_rate(HandshakeRate, conf.handshake_rate),
            user_handshakes=_rate(UserHandshakeRate, conf.user_handshake_rate),
            sockets=SocketsPerUser(conf.max_sockets_per_user),
            message=Rate.parse(conf.message_rate),
        )
    return _policies


@on_reset
def _drop() -> None:
    global _policies
    _policies = None
