"""Settings for wsauth, read from one ``WSAUTH`` dict with safe defaults.

mozilla-django-oidc's ``OIDC_*`` settings serve as fallbacks, so a project configures its
identity provider once. Values are resolved once and cached; Django's ``setting_changed``
signal (``override_settings`` in tests) drops the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

#: Asymmetric algorithms only: never ``none``, never HMAC next to a public key set.
DEFAULT_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)

DEFAULTS: dict[str, Any] = {
    # Identity provider
    "ISSUER": None,  # exact ``iss``; discovery at {ISSUER}/.well-known/openid-configuration
    "JWKS_URL": None,  # explicit JWKS URL; fallback OIDC_OP_JWKS_ENDPOINT, then discovery
    "AUDIENCE": None,  # str or list; fallback OIDC_RP_CLIENT_ID
    "VERIFY_AUDIENCE": True,
    "ALGORITHMS": DEFAULT_ALGORITHMS,  # fallback OIDC_RP_SIGN_ALGO when set explicitly
    "LEEWAY": 10,  # seconds, for exp/nbf/iat at the handshake
    "MAX_TOKEN_SIZE": 12 * 1024,
    "TYP_POLICY": "default",  # "default": at+jwt, JWT or none; "strict": at+jwt only
    "ACCEPT_DPOP_BOUND_AS_BEARER": False,
    # ``cnf`` members other than ``jkt`` (e.g. "x5t#S256", RFC 8705) wsauth cannot check,
    # accepted anyway: False, True (any member) or a list of member names
    "ACCEPT_UNVERIFIED_CNF": False,
    # Key set
    "JWKS_TIMEOUT": 3.0,  # seconds per HTTP request; must fit Daphne's 5 s handshake budget
    "JWKS_CACHE_TTL": 300,  # refresh (in the background) after this many seconds
    "JWKS_MAX_STALE": 24 * 3600,  # last good keys are used this long while the issuer is down
    "JWKS_UNKNOWN_KID_COOLDOWN": 10,  # seconds between refetches caused by unknown kids (>= 5)
    "VERIFIED_TOKEN_CACHE_SIZE": 10_000,
    # Credentials on the handshake
    "AUTHENTICATORS": (
        "wsauth.authenticators.SubprotocolAuthenticator",
        "wsauth.authenticators.TicketAuthenticator",
        "wsauth.authenticators.QueryTokenAuthenticator",
    ),
    "SUBPROTOCOL_PREFIX": "authorization_bearer_",
    "ALLOW_TOKEN_ONLY_SUBPROTOCOL": True,  # echo the token back when it is the only offer
    "TICKET_CACHE": "default",  # Django cache alias shared by all processes
    "TICKET_TTL": 30,  # seconds
    "TICKET_KEY_PREFIX": "wsauth:ticket:",
    "TICKET_BIND_ORIGIN": True,
    "ALLOW_QUERY_TOKEN": False,  # ?access_token=: off; tickets keep tokens out of URLs
    # The life of a socket
    "EXPIRING_LEAD": 60,  # seconds before exp that wsauth.expiring is sent
    "AUTH_TIMEOUT": 5.0,  # seconds for the first frame on first-message-auth routes
    "REFRESH_BURST": 3,  # refreshes allowed at once ...
    "REFRESH_INTERVAL": 10.0,  # ... then one per this many seconds; beyond: close 4429
    # Revocation (disconnect_user, back-channel logout)
    "REVOCATION_CHECK": True,  # handshakes and refreshes consult the revocation markers
    "REVOCATION_CACHE": None,  # Django cache alias; None: TICKET_CACHE
    "REVOCATION_TTL": 24 * 3600,  # seconds a marker lives: longer than any access token
    "REVOCATION_KEY_PREFIX": "wsauth:revoked:",
    "LOGOUT_AUDIENCE": None,  # logout tokens' aud; fallback OIDC_RP_CLIENT_ID, then AUDIENCE
    "LOGOUT_TOKEN_MAX_AGE": 300,  # seconds; older logout tokens (by iat) are refused
    # DPoP (RFC 9449) on the ticket endpoint
    "DPOP_PROOF_MAX_AGE": 60,  # seconds a proof's iat may lie in the past (or future)
    "DPOP_REQUIRE_NONCE": False,  # demand a server nonce (DPoP-Nonce) in every proof
    # The shared store: None: the Redis of TICKET_CACHE (and REVOCATION_CACHE,
    # RATE_LIMIT_CACHE); else a URL or {"URL"|"SENTINELS"+"SERVICE_NAME"|"CLUSTER", ...}
    "REDIS": None,
    # Abuse limits, shared by every process through the store. A verified credential is
    # never refused for what other clients at its address did.
    "HANDSHAKE_TIMEOUT": 4.0,  # seconds to authenticate a handshake (Daphne allows 5)
    "FAILED_AUTH_RATE": "30/minute",  # refused handshakes per address; then 4429 for those
    "HANDSHAKE_RATE": "1200/minute",  # handshakes without credentials (first-message routes)
    "USER_HANDSHAKE_RATE": "1200/minute",  # verified handshakes per user
    "MAX_SOCKETS_PER_USER": None,  # open sockets per user on all processes; None: no limit
    "SOCKET_LEASE": 30,  # seconds a dead process's socket places outlive it (5 to 300)
    "IPV6_PREFIX": 64,  # IPv6 clients are counted by network: one host holds a /64
    # Limits are counted in each process and synced with the store this often (seconds);
    # 0: every check is one store request (exact, one round trip per handshake).
    "LIMITS_SYNC_INTERVAL": 0.5,
    "MAX_MESSAGE_SIZE": 256 * 1024,  # bytes per frame on the authenticated base; else 4009
    "MESSAGE_RATE": "100/second",  # frames per socket (burst as large); else 4429
    # Enforced by the server where frames and the write buffer are visible (Daphne):
    "MAX_QUEUED_BYTES": 1024 * 1024,  # unsent bytes for a client that does not read; 4008
    "MAX_FRAGMENTS": 64,  # frames per message; else 4009
    "FRAME_RATE": "200/second",  # every frame a client sends, before auth too; else 4429
    "RATE_LIMIT_CACHE": None,  # Django cache alias; None: TICKET_CACHE
    "TRUSTED_PROXIES": (),  # proxy addresses/CIDRs whose X-Forwarded-For is believed
    # Origins
    "ALLOWED_ORIGINS": (),  # always allowed, in addition to the AllowedOrigin table
    "REQUIRE_ORIGIN": False,
    "ORIGINS_REFRESH_INTERVAL": 2.0,  # seconds; an admin change is seen within this
    # Users
    "USER_BACKEND": "wsauth.backends.OIDCBackend",
    "CREATE_USERS": None,  # fallback OIDC_CREATE_USER, else True
    "USER_CACHE_TTL": 60,  # seconds
    # Servers: adapters that take the credential out of the server's copies of the upgrade
    # request once the socket is accepted (wsauth.edge); None: every built-in one
    "SERVER_ADAPTERS": None,
    # Operations
    "METRICS": None,  # Prometheus metrics: None: on when prometheus_client is installed
}


@dataclass(frozen=True)
class Conf:
    issuer: str | None
    jwks_url: str | None
    audience: tuple[str, ...]
    verify_audience: bool
    algorithms: frozenset[str]
    leeway: float
    max_token_size: int
    typ_policy: str
    accept_dpop_bound_as_bearer: bool
    accept_unverified_cnf: Literal[True] | frozenset[str]  # True: any member
    jwks_timeout: float
    jwks_cache_ttl: float
    jwks_max_stale: float
    jwks_unknown_kid_cooldown: float
    verified_token_cache_size: int
    authenticators: tuple[str, ...]
    subprotocol_prefix: str
    allow_token_only_subprotocol: bool
    ticket_cache: str
    ticket_ttl: int
    ticket_key_prefix: str
    ticket_bind_origin: bool
    allow_query_token: bool
    expiring_lead: float
    auth_timeout: float
    refresh_burst: int
    refresh_interval: float
    revocation_check: bool
    revocation_cache: str
    revocation_ttl: int
    revocation_key_prefix: str
    logout_audience: tuple[str, ...]
    logout_token_max_age: float
    dpop_proof_max_age: float
    dpop_require_nonce: bool
    redis: Any
    handshake_timeout: float
    handshake_rate: Any
    user_handshake_rate: Any
    failed_auth_rate: Any
    max_sockets_per_user: int | None
    socket_lease: float
    max_message_size: int | None
    message_rate: Any
    max_queued_bytes: int | None
    max_fragments: int | None
    frame_rate: Any
    rate_limit_cache: str
    trusted_proxies: tuple[str, ...]
    ipv6_prefix: int
    limits_sync_interval: float
    allowed_origins: tuple[str, ...]
    require_origin: bool
    origins_refresh_interval: float
    user_backend: str
    create_users: bool
    user_cache_ttl: float
    server_adapters: tuple[str, ...] | None
    metrics: bool | None
    raw: dict[str, Any] = field(repr=False, compare=False)


def _as_tuple(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(v for v in value if v)


def _positive(value: Any) -> int | None:
    """A limit: a positive integer, or None (off). Anything else is None here and an
    error in ``manage.py check`` (wsauth.E023)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _cnf_members(value: Any) -> Literal[True] | frozenset[str]:
    if value is True:
        return True
    return frozenset(_as_tuple(value))


def _load() -> Conf:
    user = getattr(django_settings, "WSAUTH", {}) or {}
    unknown = set(user) - set(DEFAULTS)
    raw = {**DEFAULTS, **user, "_unknown": sorted(unknown)}

    audience = raw["AUDIENCE"]
    if not audience:
        audience = getattr(django_settings, "OIDC_RP_CLIENT_ID", None)
    algorithms = raw["ALGORITHMS"]
    if "ALGORITHMS" not in user and getattr(django_settings, "OIDC_RP_SIGN_ALGO", None):
        algorithms = (django_settings.OIDC_RP_SIGN_ALGO,)
    jwks_url = raw["JWKS_URL"] or getattr(django_settings, "OIDC_OP_JWKS_ENDPOINT", None)
    create_users = raw["CREATE_USERS"]
    if create_users is None:
        create_users = getattr(django_settings, "OIDC_CREATE_USER", True)
    issuer = raw["ISSUER"]
    logout_audience = raw["LOGOUT_AUDIENCE"] or getattr(django_settings, "OIDC_RP_CLIENT_ID", None)
    return Conf(
        issuer=issuer,
        jwks_url=jwks_url,
        audience=_as_tuple(audience),
        verify_audience=bool(raw["VERIFY_AUDIENCE"]),
        algorithms=frozenset(_as_tuple(algorithms)),
        leeway=float(raw["LEEWAY"]),
        max_token_size=int(raw["MAX_TOKEN_SIZE"]),
        typ_policy=str(raw["TYP_POLICY"]),
        accept_dpop_bound_as_bearer=bool(raw["ACCEPT_DPOP_BOUND_AS_BEARER"]),
        accept_unverified_cnf=_cnf_members(raw["ACCEPT_UNVERIFIED_CNF"]),
        jwks_timeout=float(raw["JWKS_TIMEOUT"]),
        jwks_cache_ttl=float(raw["JWKS_CACHE_TTL"]),
        jwks_max_stale=float(raw["JWKS_MAX_STALE"]),
        jwks_unknown_kid_cooldown=float(raw["JWKS_UNKNOWN_KID_COOLDOWN"]),
        verified_token_cache_size=int(raw["VERIFIED_TOKEN_CACHE_SIZE"]),
        authenticators=_as_tuple(raw["AUTHENTICATORS"]),
        subprotocol_prefix=str(raw["SUBPROTOCOL_PREFIX"]),
        allow_token_only_subprotocol=bool(raw["ALLOW_TOKEN_ONLY_SUBPROTOCOL"]),
        ticket_cache=str(raw["TICKET_CACHE"]),
        ticket_ttl=int(raw["TICKET_TTL"]),
        ticket_key_prefix=str(raw["TICKET_KEY_PREFIX"]),
        ticket_bind_origin=bool(raw["TICKET_BIND_ORIGIN"]),
        allow_query_token=bool(raw["ALLOW_QUERY_TOKEN"]),
        expiring_lead=float(raw["EXPIRING_LEAD"]),
        auth_timeout=float(raw["AUTH_TIMEOUT"]),
        refresh_burst=int(raw["REFRESH_BURST"]),
        refresh_interval=float(raw["REFRESH_INTERVAL"]),
        revocation_check=bool(raw["REVOCATION_CHECK"]),
        revocation_cache=str(raw["REVOCATION_CACHE"] or raw["TICKET_CACHE"]),
        revocation_ttl=int(raw["REVOCATION_TTL"]),
        revocation_key_prefix=str(raw["REVOCATION_KEY_PREFIX"]),
        logout_audience=_as_tuple(logout_audience) or _as_tuple(audience),
        logout_token_max_age=float(raw["LOGOUT_TOKEN_MAX_AGE"]),
        dpop_proof_max_age=float(raw["DPOP_PROOF_MAX_AGE"]),
        dpop_require_nonce=bool(raw["DPOP_REQUIRE_NONCE"]),
        redis=raw["REDIS"] or None,
        handshake_timeout=float(raw["HANDSHAKE_TIMEOUT"]),
        handshake_rate=raw["HANDSHAKE_RATE"],
        user_handshake_rate=raw["USER_HANDSHAKE_RATE"],
        failed_auth_rate=raw["FAILED_AUTH_RATE"],
        max_sockets_per_user=int(raw["MAX_SOCKETS_PER_USER"] or 0) or None,
        socket_lease=float(raw["SOCKET_LEASE"]),
        max_message_size=int(raw["MAX_MESSAGE_SIZE"] or 0) or None,
        message_rate=raw["MESSAGE_RATE"],
        max_queued_bytes=_positive(raw["MAX_QUEUED_BYTES"]),
        max_fragments=_positive(raw["MAX_FRAGMENTS"]),
        frame_rate=raw["FRAME_RATE"],
        rate_limit_cache=str(raw["RATE_LIMIT_CACHE"] or raw["TICKET_CACHE"]),
        trusted_proxies=_as_tuple(raw["TRUSTED_PROXIES"]),
        ipv6_prefix=int(raw["IPV6_PREFIX"]),
        limits_sync_interval=float(raw["LIMITS_SYNC_INTERVAL"] or 0),
        allowed_origins=_as_tuple(raw["ALLOWED_ORIGINS"]),
        require_origin=bool(raw["REQUIRE_ORIGIN"]),
        origins_refresh_interval=float(raw["ORIGINS_REFRESH_INTERVAL"]),
        user_backend=str(raw["USER_BACKEND"]),
        create_users=bool(create_users),
        user_cache_ttl=float(raw["USER_CACHE_TTL"]),
        server_adapters=(
            None if raw["SERVER_ADAPTERS"] is None else _as_tuple(raw["SERVER_ADAPTERS"])
        ),
        metrics=raw["METRICS"] if raw["METRICS"] in (None, True, False) else None,
        raw=raw,
    )


_conf: Conf | None = None
_reset_hooks: list[Any] = []


def get_conf() -> Conf:
    global _conf
    if _conf is None:
        _conf = _load()
    return _conf


def on_reset(hook: Any) -> Any:
    """Register a callable run whenever settings change (caches built from settings)."""
    _reset_hooks.append(hook)
    return hook


def reset() -> None:
    global _conf
    _conf = None
    for hook in _reset_hooks:
        hook()


@receiver(setting_changed)
def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in {
        "WSAUTH",
        "OIDC_RP_CLIENT_ID",
        "OIDC_RP_SIGN_ALGO",
        "OIDC_OP_JWKS_ENDPOINT",
        "OIDC_CREATE_USER",
        "CACHES",
    }:
        reset()
