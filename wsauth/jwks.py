"""The issuer's signing keys: discovery, fetching and a per-process cache by ``kid``.

Why not ``PyJWKClient``: it is synchronous (its fetch would block Daphne's event loop or
Channels' single database thread), keeps no last good key set when the issuer is down,
restarts its unknown-kid cool-down on every fetch, and treats an RSA key without ``alg``
as RS256 only. Here fetches run in a worker thread, one in flight per issuer however many
handshakes wait for it; keys are parsed by pyjwt's own algorithm classes and kept as ready
key objects by ``(kid, alg)``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from jwt.algorithms import get_default_algorithms

from . import metrics
from .conf import Conf, get_conf, on_reset

logger = logging.getLogger("wsauth.jwks")

_ALGORITHMS = get_default_algorithms()

#: The JWK key type (and curve) each JWS algorithm may verify with.
_KTY_FOR_ALG = {
    **dict.fromkeys(("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"), ("RSA", None)),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "ES256K": ("EC", "secp256k1"),
    "EdDSA": ("OKP", None),
    **dict.fromkeys(("HS256", "HS384", "HS512"), ("oct", None)),
}

MAX_DOCUMENT_SIZE = 512 * 1024
#: After a failed fetch, handshakes wait this long before the next attempt, so an issuer
#: that is down is not hammered once per handshake.
RETRY_AFTER_FAILURE = 1.0


class KeyError_(Exception):
    """Base for key lookup failures; ``reason`` is a short code for logs and errors."""

    reason = "key_error"


class KeysUnavailable(KeyError_):
    reason = "jwks_unavailable"


class UnknownKey(KeyError_):
    reason = "unknown_kid"


class KeyMismatch(KeyError_):
    reason = "key_alg_mismatch"


def _http_get_json(url: str, timeout: float) -> dict[str, Any]:
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"not an http(s) URL: {url!r}")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        body = response.read(MAX_DOCUMENT_SIZE + 1)
    if len(body) > MAX_DOCUMENT_SIZE:
        raise ValueError(f"document at {url} is larger than {MAX_DOCUMENT_SIZE} bytes")
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError(f"document at {url} is not a JSON object")
    return document


def parse_jwks(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Signing keys of a JWKS document by ``kid`` (``""`` for a key without one)."""
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise ValueError("JWKS document has no 'keys' list")
    by_kid: dict[str, dict[str, Any]] = {}
    for jwk in keys:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        kid = jwk.get("kid")
        by_kid[kid if isinstance(kid, str) else ""] = jwk
    return by_kid


class JWKSCache:
    """Keys of one issuer, refreshed in the background and kept while the issuer is down."""

    def __init__(self, conf: Conf) -> None:
        self.issuer = conf.issuer
        self.jwks_url = conf.jwks_url
        self.timeout = conf.jwks_timeout
        self.ttl = conf.jwks_cache_ttl
        self.max_stale = conf.jwks_max_stale
        self.cooldown = max(conf.jwks_unknown_kid_cooldown, 5.0)
        self._jwks: dict[str, dict[str, Any]] = {}
        self._keys: dict[tuple[str, str], Any] = {}
        self._fetched_at: float | None = None
        self._last_kid_refetch = -float("inf")
        self._last_failure = -float("inf")
        self._inflight: tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]] | None = None
        self.fetch_count = 0  # HTTP fetches of the key set; read by tests and benchmarks

    # -- fetching ---------------------------------------------------------------------------

    def _discover_jwks_url(self) -> str:
        if self.jwks_url:
            return self.jwks_url
        if not self.issuer:
            raise KeysUnavailable("no issuer or JWKS URL configured")
        document = _http_get_json(
            self.issuer.rstrip("/") + "/.well-known/openid-configuration", self.timeout
        )
        if document.get("issuer") not in (None, self.issuer):
            raise ValueError(f"discovery document names issuer {document.get('issuer')!r}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise ValueError("discovery document has no jwks_uri")
        self.jwks_url = jwks_uri
        return jwks_uri

    def _fetch_sync(self) -> dict[str, dict[str, Any]]:
        url = self._discover_jwks_url()
        self.fetch_count += 1
        return parse_jwks(_http_get_json(url, self.timeout))

    def install(self, document: dict[str, Any]) -> None:
        """Use this key set as if just fetched (``wsauth.testing``: keys without HTTP)."""
        self._jwks = parse_jwks(document)
        self._keys = {}
        self._fetched_at = time.monotonic()

    async def _refresh(self) -> bool:
        """Fetch the key set once, sharing the fetch with every concurrent caller."""
        loop = asyncio.get_running_loop()
        if self._inflight is not None and self._inflight[0] is loop:
            return await asyncio.shield(self._inflight[1])
        future: asyncio.Future[bool] = loop.create_future()
        self._inflight = (loop, future)
        try:
            # Its own thread: a burst of handshakes must not queue the fetch behind the
            # store calls it is waiting with (measured: every handshake timed out).
            jwks = await loop.run_in_executor(_fetcher, self._fetch_sync)
        except Exception as exc:  # any failure keeps the last good keys
            logger.warning("wsauth: fetching the key set of %s failed: %s", self.issuer, exc)
            self._last_failure = time.monotonic()
            ok = False
        else:
            self._jwks = jwks
            self._keys = {}
            self._fetched_at = time.monotonic()
            ok = True
        finally:
            if self._inflight is not None and self._inflight[1] is future:
                self._inflight = None
        metrics.jwks_fetch(ok)
        future.set_result(ok)
        return ok

    def _background_refresh(self) -> None:
        if self._inflight is None:
            task = asyncio.get_running_loop().create_task(self._refresh())
            _background.add(task)
            task.add_done_callback(_background.discard)

    # -- lookup -----------------------------------------------------------------------------

    async def get_key(self, kid: str | None, alg: str) -> Any:
        """Return a ready key object for ``kid`` able to verify ``alg``, or raise KeyError_."""
        now = time.monotonic()
        may_fetch = now - self._last_failure >= RETRY_AFTER_FAILURE
        if self._fetched_at is None:
            if may_fetch:
                await self._refresh()
        elif now - self._fetched_at > self.max_stale:
            if not (may_fetch and await self._refresh()):
                raise KeysUnavailable("the last good key set is older than JWKS_MAX_STALE")
        elif now - self._fetched_at > self.ttl and may_fetch:
            self._background_refresh()
        if self._fetched_at is None:
            raise KeysUnavailable("the issuer's key set could not be fetched")

        jwk = self._find(kid)
        if jwk is None:
            now = time.monotonic()
            if now - self._last_kid_refetch < self.cooldown:
                raise UnknownKey(f"unknown kid {kid!r} (refetch cooling down)")
            self._last_kid_refetch = now
            await self._refresh()
            jwk = self._find(kid)
            if jwk is None:
                raise UnknownKey(f"unknown kid {kid!r}")
        return self._prepare(kid or "", alg, jwk)

    def _find(self, kid: str | None) -> dict[str, Any] | None:
        if kid is not None:
            return self._jwks.get(kid)
        # A token without kid is accepted only when the set has exactly one key.
        if len(self._jwks) == 1:
            return next(iter(self._jwks.values()))
        return None

    def _prepare(self, kid: str, alg: str, jwk: dict[str, Any]) -> Any:
        cached = self._keys.get((kid, alg))
        if cached is not None:
            return cached
        kty, crv = _KTY_FOR_ALG.get(alg, (None, None))
        if kty is None or jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
            raise KeyMismatch(f"key {kid!r} ({jwk.get('kty')}) cannot verify {alg}")
        if jwk.get("alg") not in (None, alg):
            raise KeyMismatch(f"key {kid!r} is for {jwk.get('alg')}, token says {alg}")
        try:
            key = _ALGORITHMS[alg].from_jwk(jwk)
        except Exception as exc:
            raise KeyMismatch(f"key {kid!r} is not a valid {kty} key: {exc}") from exc
        self._keys[(kid, alg)] = key
        return key


_background: set[asyncio.Task[Any]] = set()
_caches: dict[tuple[str | None, str | None], JWKSCache] = {}
_fetcher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="wsauth-jwks")


def get_jwks_cache(conf: Conf | None = None) -> JWKSCache:
    conf = conf or get_conf()
    key = (conf.issuer, conf.jwks_url)
    cache = _caches.get(key)
    if cache is None:
        cache = _caches[key] = JWKSCache(conf)
    return cache


@on_reset
def _drop_caches() -> None:
    _caches.clear()
