"""An audit log fed by wsauth's signals: the README's example, on in the demo with
``DEMO_AUDIT=1``. One line per accepted handshake, refusal and close, on the
``chatdemo.audit`` logger; a project would write rows of its own model instead (a sync
receiver may use the ORM: ``asend_robust`` runs it in Django's sync thread)."""

from __future__ import annotations

import logging
from typing import Any

from wsauth.signals import handshake_accepted, handshake_refused, socket_closed

audit = logging.getLogger("chatdemo.audit")


def connect() -> None:
    handshake_accepted.connect(on_accepted, dispatch_uid="chatdemo-audit-accepted")
    handshake_refused.connect(on_refused, dispatch_uid="chatdemo-audit-refused")
    socket_closed.connect(on_closed, dispatch_uid="chatdemo-audit-closed")


async def on_accepted(
    sender: Any, user: Any, method: str, socket_id: str | None, **kw: Any
) -> None:
    sub = (kw.get("claims") or {}).get("sub", "-")
    audit.info(
        "audit accepted user=%s sub=%s method=%s socket=%s path=%s origin=%s address=%s",
        user.get_username(),
        sub,
        method,
        socket_id,
        kw["path"],
        kw["origin"],
        kw["address"],
    )


async def on_refused(sender: Any, reason: str, method: str, address: str, **kw: Any) -> None:
    audit.info(
        "audit refused reason=%s method=%s limited=%s path=%s origin=%s address=%s",
        reason,
        method,
        kw["limited"],
        kw["path"],
        kw["origin"],
        address,
    )


async def on_closed(sender: Any, user: Any, code: int | None, duration: float, **kw: Any) -> None:
    audit.info(
        "audit closed user=%s socket=%s code=%s duration=%.1fs path=%s",
        user.get_username(),
        kw["socket_id"],
        code,
        duration,
        kw["path"],
    )
