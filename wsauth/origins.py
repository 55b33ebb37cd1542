"""Origin parsing and the per-process allowed-origin set.

The set lives in memory: a handshake costs a set lookup, never a query. The table is
re-read at most every ``ORIGINS_REFRESH_INTERVAL`` seconds, so a change from the admin or
the ``wsauth_origins`` command reaches every process within that time, without a restart.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import NamedTuple
from urllib.parse import urlsplit

from channels.db import database_sync_to_async

from .conf import get_conf, on_reset

logger = logging.getLogger("wsauth.origins")

DEFAULT_PORTS = {"http": 80, "https": 443}


class OriginError(ValueError):
    pass


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int
    wildcard: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        host = f"*.{host}" if self.wildcard else host
        port = "" if DEFAULT_PORTS.get(self.scheme) == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}"


def parse_origin(value: str, *, allow_wildcard: bool = False) -> Origin:
    """Parse and normalise ``scheme://host[:port]`` (RFC 6454), or raise ``OriginError``."""
    if not isinstance(value, str) or not value or len(value) > 300:
        raise OriginError("an origin is 'scheme://host[:port]', e.g. https://chat.example.com")
    if not value.isprintable():
        raise OriginError(f"{value!r} contains control characters")
    value = value.strip()
    wildcard = False
    scheme_sep = value.find("://")
    if allow_wildcard and value[scheme_sep + 3 : scheme_sep + 5] == "*.":
        wildcard = True
        value = value[: scheme_sep + 3] + value[scheme_sep + 5 :]
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise OriginError(f"{value!r} is not a valid origin: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise OriginError(f"{value!r}: the scheme must be http or https")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise OriginError(f"{value!r}: an origin has no user, query or fragment")
    if parts.path not in ("", "/"):
        raise OriginError(f"{value!r}: an origin has no path")
    host = parts.hostname or ""
    if not host:
        raise OriginError(f"{value!r}: no host")
    if port == 0:
        raise OriginError(f"{value!r}: port 0 is not a port")
    bracketed = "[" in parts.netloc
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if bracketed and not isinstance(address, ipaddress.IPv6Address):
        raise OriginError(f"{value!r}: brackets hold an IPv6 address")
    if address is None and all(c.isdigit() or c == "." for c in host):
        raise OriginError(f"{value!r}: not a valid IPv4 address")
    if address is not None:
        if wildcard:
            raise OriginError(f"{value!r}: a wildcard needs a domain name, not an address")
        host = str(address)
    else:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError as exc:
            raise OriginError(f"{value!r}: invalid host name") from exc
        if any(not label or len(label) > 63 for label in host.split(".")) or not all(
            c.isalnum() or c in "-." for c in host
        ):
            raise OriginError(f"{value!r}: invalid host name")
    return Origin(scheme, host, port or DEFAULT_PORTS[scheme], wildcard)


class OriginSet:
    """Exact origins in a set, ``*.`` wildcards as (scheme, port, suffix) triples."""

    def __init__(self, origins: list[Origin]) -> None:
        self.exact = {o[:3] for o in origins if not o.wildcard}
        self.wildcards = [(o.scheme, o.port, "." + o.host) for o in origins if o.wildcard]
        # Origin header -> verdict: a browser sends the same few values on every handshake.
        # Bounded (cleared when full); dropped with the set when the set is reloaded.
        self.verdicts: dict[str, bool] = {}

    def allows(self, origin: Origin) -> bool:
        if origin[:3] in self.exact:
            return True
        return any(
            origin.scheme == s and origin.port == p and origin.host.endswith(suffix)
            for s, p, suffix in self.wildcards
        )


VERDICT_CACHE_SIZE = 1024


class OriginGate:
    """The allowed set of this process, reloaded from the database when it may be stale."""

    def __init__(self) -> None:
        self._set: OriginSet | None = None
        self._loaded_at = -float("inf")
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    def _load_sync(self) -> OriginSet:
        from .models import AllowedOrigin

        origins = [row.as_origin() for row in AllowedOrigin.objects.active()]
        for value in get_conf().allowed_origins:
            origins.append(parse_origin(value, allow_wildcard=True))
        return OriginSet(origins)

    async def current(self) -> OriginSet:
        interval = get_conf().origins_refresh_interval
        if self._set is not None and time.monotonic() - self._loaded_at < interval:
            return self._set
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        async with self._lock[1]:
            if self._set is None or time.monotonic() - self._loaded_at >= interval:
                started = time.monotonic()
                try:
                    self._set = await database_sync_to_async(self._load_sync)()
                except Exception:
                    if self._set is None:
                        raise
                    logger.exception("wsauth: reloading allowed origins failed; keeping the last")
                self._loaded_at = started
        return self._set

    async def allows(self, header: str) -> bool:
        current = await self.current()
        verdict = current.verdicts.get(header)
        if verdict is None:
            try:
                verdict = current.allows(parse_origin(header))
            except OriginError:
                verdict = False
            if len(current.verdicts) >= VERDICT_CACHE_SIZE:
                current.verdicts.clear()
            current.verdicts[header] = verdict
        return verdict

    def invalidate(self) -> None:
        self._loaded_at = -float("inf")


gate = OriginGate()
on_reset(gate.invalidate)
