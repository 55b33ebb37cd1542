"""Prometheus metrics, in the manner of django-prometheus.

Optional: ``pip install django-wsauth[metrics]`` (``prometheus_client``). Without it, or
with ``WSAUTH["METRICS"] = False``, every function here is a no-op. The metrics live in
``prometheus_client``'s default registry, so a project that serves django-prometheus's
``/metrics`` exports them with its own; ``metrics_view`` serves them otherwise.

Labels are bounded: outcomes, reason codes, methods, close codes, limit and operation
names, never a user, an address, a path or a token. The hot path pays a dictionary
lookup and a locked increment per event: label children are resolved once.

Gauges over the whole deployment (every process's sockets, from the socket registry)
and the key set's age are computed when scraped, not on the handshake.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any, TypeVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from .conf import get_conf, on_reset

try:
    import prometheus_client
    from prometheus_client.core import GaugeMetricFamily
except ImportError:  # the optional extra is not installed
    prometheus_client = None  # type: ignore[assignment]

logger = logging.getLogger("wsauth")

#: Seconds a scrape reuses the deployment's socket count: several Prometheus servers,
#: or several processes scraped at once, scan the registry once.
DEPLOYMENT_CACHE_SECONDS = 5.0

#: Close codes kept as labels; any other (an application's 3000-4999) is "other".
_KNOWN_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
    | {4001, 4009, 4401, 4403, 4408, 4429}
)
#: A limit's reason code -> the setting to tune (the ``limit`` label).
LIMITS = {
    "too_many_failures": "failed_auth_rate",
    "too_many_handshakes": "handshake_rate",
    "too_many_user_handshakes": "user_handshake_rate",
    "too_many_sockets": "max_sockets_per_user",
    "too_many_frames": "message_rate",
    "too_many_refreshes": "refresh_rate",
}
#: How many raw-value children ``Metrics.raw_child`` remembers.
_RAW_CHILDREN = 512
_REASON = re.compile(r"[a-z][a-z0-9_]{0,47}")
_METHODS = frozenset({"subprotocol", "ticket", "query", "message", "none"})

_SOCKET_BUCKETS = (1, 10, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5)
_STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


def available() -> bool:
    """Whether ``prometheus_client`` is installed."""
    return prometheus_client is not None


def reason_label(reason: str) -> str:
    """A reason code as a label: wsauth's codes pass, anything else is "other"."""
    return reason if _REASON.fullmatch(reason) else "other"


def method_label(method: str | None) -> str:
    if method == "pending":  # a first-message route's socket, before its frame
        return "message"
    return method if method in _METHODS else "none"


def close_code_label(code: Any) -> str:
    if code is None:
        return "none"
    return str(code) if code in _KNOWN_CLOSE_CODES else "other"


class Metrics:
    """wsauth's metric objects, registered once per process."""

    def __init__(self, registry: Any) -> None:
        pc = prometheus_client
        ns = str(getattr(settings, "PROMETHEUS_METRIC_NAMESPACE", "") or "")
        kw: dict[str, Any] = {"registry": registry, "namespace": ns}
        self.handshakes = pc.Counter(
            "wsauth_handshakes",
            "WebSocket handshakes by outcome (accepted, refused, limited, unavailable, "
            "error), reason code and credential method.",
            ["outcome", "reason", "method"],
            **kw,
        )
        self.sockets_open = pc.Gauge(
            "wsauth_sockets_open",
            "Sockets open on this process, by credential method.",
            ["method"],
            multiprocess_mode="livesum",
            **kw,
        )
        self.closes = pc.Counter(
            "wsauth_socket_closes",
            "Sockets closed, by close code (the server's when it closed, else the client's).",
            ["code"],
            **kw,
        )
        self.socket_seconds = pc.Histogram(
            "wsauth_socket_duration_seconds",
            "How long sockets stayed open.",
            buckets=_SOCKET_BUCKETS,
            **kw,
        )
        self.refreshes = pc.Counter(
            "wsauth_refreshes",
            "In-band credential refreshes (wsauth.refresh), by outcome.",
            ["outcome"],
            **kw,
        )
        self.revocations = pc.Counter(
            "wsauth_revocations_delivered",
            "Revocations this process received from the broadcast, by target "
            "(user, session, socket).",
            ["target"],
            **kw,
        )
        self.revoked_sockets = pc.Counter(
            "wsauth_revoked_sockets",
            "Sockets this process closed for a revocation, by target.",
            ["target"],
            **kw,
        )
        self.revocation_latency = pc.Histogram(
            "wsauth_revocation_latency_seconds",
            "From the revocation on one process to its delivery on this one.",
            buckets=_LATENCY_BUCKETS,
            **kw,
        )
        self.limits = pc.Counter(
            "wsauth_limit_hits",
            "Refusals by a limit, by the setting that sets it.",
            ["limit"],
            **kw,
        )
        self.jwks = pc.Counter(
            "wsauth_jwks_fetches",
            "Fetches of the issuer's key set (discovery included), by result.",
            ["result"],
            **kw,
        )
        self.tickets = pc.Counter(
            "wsauth_tickets",
            "One-time tickets issued, redeemed, expired (redeemed too late) and invalid "
            "(unknown or already used).",
            ["event"],
            **kw,
        )
        self.store_requests = pc.Counter(
            "wsauth_store_requests",
            "Requests to the shared store (Redis), one round trip each, by operation.",
            ["operation"],
            **kw,
        )
        self.store_errors = pc.Counter(
            "wsauth_store_errors",
            "Store requests that failed (unreachable, timed out, refused), by operation.",
            ["operation"],
            **kw,
        )
        self.store_seconds = pc.Histogram(
            "wsauth_store_request_seconds",
            "Store request latency, by operation.",
            ["operation"],
            buckets=_STORE_BUCKETS,
            **kw,
        )
        self.scrape = _ScrapeCollector(ns)
        registry.register(self.scrape)
        self._children: dict[tuple[Any, ...], Any] = {}
        # The hot path's children by the raw values they are called with (no label
        # mapping, no key tuple made per call), one table per event: bounded, as a value
        # from outside wsauth may be anything.
        self.by_handshake: dict[tuple[str, str, str | None], Any] = {}
        self.by_method: dict[str, Any] = {}
        self.by_code: dict[Any, Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """The labelled child, resolved once (``labels()`` validates and locks)."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def open_child(self, method: str) -> Any:
        found = self.by_method.get(method)
        if found is None:
            found = _remember(self.by_method, method, self.child(self.sockets_open, method))
        return found

    # -- events --------------------------------------------------------------------------

    def handshake(self, outcome: str, reason: str, method: str | None) -> None:
        key = (outcome, reason, method)
        found = self.by_handshake.get(key)
        if found is None:
            labels = (outcome, reason_label(reason), method_label(method))
            found = _remember(self.by_handshake, key, self.child(self.handshakes, *labels))
        found.inc()

    def limit(self, reason: str) -> None:
        self.child(self.limits, LIMITS.get(reason, "other")).inc()


class _ScrapeCollector:
    """Gauges computed when scraped: the deployment's sockets (from the registry, every
    process) and the key set's age."""

    def __init__(self, namespace: str) -> None:
        self.prefix = f"{namespace}_" if namespace else ""
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, int], int] | None = None

    def _families(self) -> tuple[Any, Any, Any]:
        p = self.prefix
        return (
            GaugeMetricFamily(
                f"{p}wsauth_deployment_sockets",
                "Sockets open on every process of the deployment (the socket registry), "
                "by method: the same on every process, so take max(), not sum().",
                labels=["method"],
            ),
            GaugeMetricFamily(
                f"{p}wsauth_deployment_processes",
                "Processes holding at least one socket, from the socket registry.",
            ),
            GaugeMetricFamily(
                f"{p}wsauth_jwks_age_seconds",
                "Seconds since this process last fetched the issuer's key set.",
            ),
        )

    def describe(self) -> Iterator[Any]:  # registering must not scan the store
        yield from self._families()

    def collect(self) -> Iterator[Any]:
        if active() is None:
            return
        sockets, processes, age = self._families()
        counted = self._deployment()
        if counted is not None:
            by_method, process_count = counted
            for method in sorted(_METHODS - {"none"}):
                sockets.add_metric([method], by_method.get(method, 0))
            processes.add_metric([], process_count)
            yield sockets
            yield processes
        seconds = _jwks_age()
        if seconds is not None:
            age.add_metric([], seconds)
            yield age

    def _deployment(self) -> tuple[dict[str, int], int] | None:
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < DEPLOYMENT_CACHE_SECONDS:
                return self._cached[1], self._cached[2]
            from .admission.places import all_sockets_sync

            try:
                found = all_sockets_sync()
            except Exception as exc:  # a scrape must not fail for the store: say why
                logger.warning("wsauth: metrics cannot read the socket registry: %s", exc)
                return None
            by_method: dict[str, int] = {}
            for info in found:
                method = method_label(info.get("method"))
                by_method[method] = by_method.get(method, 0) + 1
            processes = len({info.get("process") for info in found})
            self._cached = (now, by_method, processes)
            return by_method, processes


def _jwks_age() -> float | None:
    from . import jwks

    conf = get_conf()
    cache = jwks._caches.get((conf.issuer, conf.jwks_url))
    fetched = getattr(cache, "_fetched_at", None)
    return None if fetched is None else max(0.0, time.monotonic() - fetched)


_built: Metrics | None = None
_UNSET: Any = object()
_active: Metrics | None = _UNSET
_build_lock = threading.Lock()


def active() -> Metrics | None:
    """The metrics when they are on (installed, and ``METRICS`` not False), else None."""
    global _active, _built
    if _active is _UNSET:
        if prometheus_client is None or get_conf().metrics is False:
            _active = None
        else:
            with _build_lock:
                if _built is None:
                    _built = Metrics(prometheus_client.REGISTRY)
            _active = _built
    return _active


@on_reset
def _settings_changed() -> None:
    global _active
    _active = _UNSET


# -- what the rest of wsauth calls: each a no-op when the metrics are off ---------------------


def handshake(outcome: str, reason: str, method: str | None) -> None:
    m = active()
    if m is not None:
        m.handshake(outcome, reason, method)


def limit_hit(reason: str) -> None:
    m = active()
    if m is not None:
        m.limit(reason)


def socket_opened(method: str) -> None:
    m = active()
    if m is not None:
        m.open_child(method).inc()


def socket_closed(method: str, code: Any, duration: float) -> None:
    m = active()
    if m is not None:
        m.open_child(method).dec()
        closes = m.by_code.get(code)
        if closes is None:
            closes = _remember(m.by_code, code, m.child(m.closes, close_code_label(code)))
        closes.inc()
        m.socket_seconds.observe(duration)


def _remember(table: dict[Any, Any], key: Any, child: Any) -> Any:
    if len(table) < _RAW_CHILDREN:
        table[key] = child
    return child


def refresh(outcome: str) -> None:
    m = active()
    if m is not None:
        m.child(m.refreshes, outcome).inc()


def revocation_delivered(event: dict[str, Any], closed: int) -> None:
    m = active()
    if m is None:
        return
    target = _target_of(event)
    m.child(m.revocations, target).inc()
    if closed:
        m.child(m.revoked_sockets, target).inc(closed)
    sent_at = event.get("sent_at")
    if isinstance(sent_at, int | float) and math.isfinite(sent_at):
        m.revocation_latency.observe(max(0.0, time.time() - sent_at))


def _target_of(event: dict[str, Any]) -> str:
    if event.get("socket"):
        return "socket"
    groups = event.get("groups") or ()
    if any(str(g).startswith("wsauth.sid.") for g in groups):
        return "session"
    return "user"


def jwks_fetch(ok: bool) -> None:
    m = active()
    if m is not None:
        m.child(m.jwks, "ok" if ok else "error").inc()


def ticket(event: str) -> None:
    m = active()
    if m is not None:
        m.child(m.tickets, event).inc()


_S = TypeVar("_S")  # a store, given back as it came (its own type)


def instrument(store: _S) -> _S:
    """Count ``store``'s requests, errors and latency per operation: each operation of
    the ``Store`` interface, wrapped on this instance (nothing when the metrics are off,
    nor for local memory, which makes no round trips)."""
    m = active()
    if m is None or not getattr(store, "shared", False):
        return store
    from .store.base import Store

    for name, attribute in vars(Store).items():
        if name.startswith("_") or not inspect.isfunction(attribute):
            continue
        setattr(store, name, _timed(m, name, getattr(store, name)))
    return store


def _timed(m: Metrics, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    requests = m.child(m.store_requests, name)
    errors = m.child(m.store_errors, name)
    seconds = m.child(m.store_seconds, name)
    clock = time.perf_counter
    if inspect.iscoroutinefunction(function):

        @wraps(function)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return await function(*args, **kwargs)
            except Exception:
                errors.inc()
                raise
            finally:
                requests.inc()
                seconds.observe(clock() - start)

        return timed_async

    @wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return function(*args, **kwargs)
        except Exception:
            errors.inc()
            raise
        finally:
            requests.inc()
            seconds.observe(clock() - start)

    return timed


# -- export --------------------------------------------------------------------------------


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition of the default registry, as django-prometheus's
    ``ExportToDjangoView`` serves it (multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR``
    is set). Route it at ``/metrics`` and keep it off the public internet (allow your
    Prometheus at the proxy)."""
    if prometheus_client is None:
        return HttpResponse(
            "prometheus_client is not installed: pip install django-wsauth[metrics]\n",
            status=501,
            content_type="text/plain",
        )
    active()  # registered even before the first handshake
    registry: Any = prometheus_client.REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return HttpResponse(
        prometheus_client.generate_latest(registry),
        content_type=prometheus_client.CONTENT_TYPE_LATEST,
    )
