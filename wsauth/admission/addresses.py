"""The client's address, by one rule, and the bucket its limits count in.

The address is the peer's, unless the peer is a trusted proxy (``TRUSTED_PROXIES``):
then it is the rightmost ``X-Forwarded-For`` hop that is not a trusted proxy, as nginx's
``real_ip_recursive`` and Envoy's ``xff_num_trusted_hops`` take it. Hops to the left of
that one were written by the client and are never believed. IPv4-mapped IPv6 addresses
(``::ffff:10.0.0.1``, what a dual-stack bind reports) are taken as IPv4. An IPv6 client
is counted by its network (``IPV6_PREFIX``, /64 by default): one host holds a /64.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Mapping
from typing import Any

from ..conf import Conf, on_reset

logger = logging.getLogger("wsauth")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_trusted: tuple[Network, ...] | None = None
_warned: set[str] = set()


@on_reset
def _reset() -> None:
    global _trusted
    _trusted = None
    _warned.clear()


@functools.lru_cache(maxsize=4096)
def parse(value: str) -> Address | None:
    """An address, IPv4-mapped IPv6 taken as IPv4; None for anything else."""
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted_networks(conf: Conf) -> tuple[Network, ...]:
    global _trusted
    if _trusted is None:
        nets = [ipaddress.ip_network(v.strip(), strict=False) for v in conf.trusted_proxies]
        # An IPv4 proxy also appears as its IPv4-mapped form; parse() maps those back.
        _trusted = tuple(nets)
    return _trusted


def is_trusted(ip: Address | None, conf: Conf) -> bool:
    return ip is not None and any(ip in net for net in _trusted_networks(conf))


def _warn_once(kind: str, message: str, *args: Any) -> None:
    if kind not in _warned:
        _warned.add(kind)
        logger.warning(message, *args)


def client_address(scope: Mapping[str, Any], conf: Conf) -> str:
    """The client's address as text (``-`` when the server gave none)."""
    client = scope.get("client")
    peer = parse(str(client[0])) if client else None
    forwarded = [v for k, v in scope.get("headers") or () if k.lower() == b"x-forwarded-for"]
    if not is_trusted(peer, conf):
        if forwarded:
            hops = b",".join(forwarded).decode("latin-1").split(",")
            if peer is not None and parse(hops[0]) == peer:
                _warn_once(
                    "server-took-xff",
                    "wsauth: the server took the client address from X-Forwarded-For "
                    "(daphne --proxy-headers, uvicorn --proxy-headers): its leftmost hop is "
                    "written by the client. Run the server without --proxy-headers and list "
                    "the proxy in WSAUTH['TRUSTED_PROXIES'].",
                )
            else:
                _warn_once(
                    "untrusted-xff",
                    "wsauth: handshakes carry X-Forwarded-For from %s, which is not in "
                    "WSAUTH['TRUSTED_PROXIES']: the header is ignored and every client "
                    "behind that proxy counts as %s. List the proxy in TRUSTED_PROXIES.",
                    peer,
                    peer,
                )
        return str(peer) if peer is not None else (str(client[0]) if client else "-")
    hops = [h for h in b",".join(forwarded).decode("latin-1").split(",") if h.strip()]
    chosen: Address = peer  # type: ignore[assignment]
    for hop in reversed(hops):
        ip = parse(hop)
        if ip is None:
            break  # garbage from the client side: the last believed hop stands
        chosen = ip
        if not is_trusted(ip, conf):
            break
    return str(chosen)


def bucket(address: str, conf: Conf) -> str:
    """What the address's limits count in: the address, or its IPv6 network."""
    return _bucket(address, conf.ipv6_prefix)


@functools.lru_cache(maxsize=4096)
def _bucket(address: str, prefix: int) -> str:
    ip = parse(address)
    if isinstance(ip, ipaddress.IPv6Address) and prefix < 128:
        return str(ipaddress.IPv6Network((ip, prefix), strict=False))
    return address
