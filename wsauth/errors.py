"""One exception family for every refusal, and the one rule for how it is answered.

Every refusal carries a ``reason`` (a short code, logged, never sent to the client) and a
``detail`` (one human sentence for the server log). ``Refused`` is answered before accept
(Daphne turns that into HTTP 403); ``Limited`` is answered with close code 4429, which
tells a client (``wsauth.js``) to back off and retry instead of giving up.
"""

from __future__ import annotations

from . import close_codes


class WSAuthError(Exception):
    """A handshake, a refresh or a first frame that wsauth refuses."""

    #: The close code after accept; ``None``: refused before accept (HTTP 403).
    close_code: int | None = None
    #: Counted against the client's address as a failed authentication.
    charged = True

    def __init__(self, reason: str, detail: str = "", credential: str | None = None) -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail or reason
        self.credential = credential  # masked in the log, never shown whole


class Refused(WSAuthError):
    """Not authenticated or not allowed: 403 at the handshake."""


class Unavailable(Refused):
    """The server cannot decide (a store is down): refused, but not charged to the
    client's address as a failure."""

    charged = False


class Revoked(Refused):
    """The credential was revoked (``disconnect_user``, back-channel logout)."""


class RevocationUnavailable(Unavailable, Revoked):
    """The markers cannot be read: revocation fails closed."""


class Limited(WSAuthError):
    """A limit was reached: 4429, back off."""

    close_code = close_codes.RATE_LIMITED

    def __init__(self, reason: str, detail: str = "", *, first: bool = True) -> None:
        super().__init__(reason, detail)
        self.first = first  # the first refusal of its window: log it; count the others


class StoreUnavailable(Exception):
    """The shared store cannot be reached. Callers decide: tickets and revocation fail
    closed (refuse, or 503), limits fail open (log once a minute)."""
