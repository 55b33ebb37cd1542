"""Signals for auditing and reacting, in the manner of ``django.contrib.auth.signals``.

Each is sent with ``sender=WSAuthMiddleware`` (the consumer's class for a socket that
authenticates by its first frame), on the process that serves the socket, through
``Signal.asend_robust``: a sync receiver runs in Django's thread for sync code (it may use
the ORM), an async one on the event loop, and a receiver's exception is logged by Django
without failing the handshake. The handshake waits for the receivers of
``handshake_accepted`` and ``handshake_refused``: keep them quick. No argument ever holds
a credential (token or ticket); ``address`` is the client's, as the limits see it.
Nothing is sent, and nothing costs, while no receiver is connected.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal

#: A handshake was authenticated and admitted; the application gets the socket next.
#: Arguments: ``user``, ``method`` ("subprotocol", "ticket", "query", "message"),
#: ``socket_id``, ``path``, ``origin``, ``address``, ``claims`` (the verified token
#: claims, or None for a session ticket), ``expires_at`` (epoch seconds, or None).
handshake_accepted = Signal()

#: A handshake (or a first-message authentication) was refused. Arguments: ``reason``
#: (the code in the log line), ``detail``, ``method`` (as ``handshake_accepted``, or
#: "none" when no credential was recognised), ``limited`` (True: answered 4429 by a
#: limit), ``path``, ``origin`` and ``address``.
handshake_refused = Signal()

#: A socket that wsauth admitted and the application accepted has closed. Arguments:
#: ``user``, ``method``, ``socket_id``, ``path``, ``origin``, ``address``, ``code`` (the
#: server's close code when it closed the socket, else the client's; None if unknown)
#: and ``duration`` (seconds since the accept).
socket_closed = Signal()


async def send(signal: Signal, sender: Any, **arguments: Any) -> None:
    """Send ``signal`` if anything listens (the check costs an attribute read)."""
    if signal.receivers:
        await signal.asend_robust(sender=sender, **arguments)
