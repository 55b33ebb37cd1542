"""wsauth.js in headless Chromium against a real Daphne: both methods, in-band refresh,
reconnect with backoff on 4001/4408/4429 and network drops, stop on 4401/4403."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daphne import DaphneServer, free_port, manage, migrated_project_env, with_overrides
from tests.issuer import Issuer
from tests.test_browser import ARGS, CHROMIUM

pytestmark = pytest.mark.browser


class Harness:
    def __init__(self, issuer, env, server, strict, nonce, browser, tmp) -> None:
        self.issuer, self.env, self.server, self.strict = issuer, env, server, strict
        self.nonce = nonce
        self.browser, self.tmp = browser, tmp
        self.tokens: Callable[[int], str] = lambda n: issuer.token()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is not installed (tests/run.sh installs it)")
    from playwright.sync_api import sync_playwright

    tmp: Path = tmp_path_factory.mktemp("js")
    issuer = Issuer().start()
    overrides = {"EXPIRING_LEAD": 2, "AUTH_TIMEOUT": 1.5}
    env = migrated_project_env(tmp, issuer, WSAUTH_OVERRIDES=json.dumps(overrides))
    server = DaphneServer(env, tmp / "main.log").start()
    strict = DaphneServer(with_overrides(env, REFRESH_BURST=0), tmp / "strict.log").start()
    nonce = DaphneServer(with_overrides(env, DPOP_REQUIRE_NONCE=True), tmp / "nonce.log").start()
    manage(env, "wsauth_origins", "add", server.http, strict.http, nonce.http)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield Harness(issuer, env, server, strict, nonce, browser, tmp)
        browser.close()
    for daphne in (server, strict, nonce):
        daphne.stop()
    issuer.stop()


START = """async ([url, method]) => {
  window.events = [];
  const {connect} = await import("/static/wsauth/wsauth.js");
  window.conn = connect(url, {
    method, protocols: ["chat"], ticketWithToken: true, initialDelay: 200, maxDelay: 800,
    getToken: () => window.mintToken(),
    onMessage: (d) => window.events.push(["msg", d]),
    onStateChange: (s, d) => window.events.push(["state", s, String(d)]),
    onControl: (f) => window.events.push(["control", f.type]),
  });
}"""


def run(
    harness: Harness,
    tokens: Callable[[int], object],
    path: str = "/ws/echo/",
    method: str = "subprotocol",
    server: DaphneServer | None = None,
):
    server = server or harness.server
    page = harness.browser.new_page()
    calls = {"n": 0}

    def mint() -> object:
        calls["n"] += 1
        return tokens(calls["n"])

    page.expose_function("mintToken", mint)
    page.goto(server.http + "/")
    page.evaluate(START, [server.ws + path, method])
    return page


def events(page) -> list:
    return page.evaluate("window.events")


def wait_for(page, predicate, timeout: float = 10.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        seen = events(page)
        if predicate(seen):
            return seen
        assert time.monotonic() < deadline, f"not seen in time: {seen}"
        time.sleep(0.1)


def states(seen: list) -> list:
    return [e[1] for e in seen if e[0] == "state"]


def opened(n: int):
    return lambda seen: states(seen).count("open") >= n


def short_then_long(harness: Harness, sub: str, first_exp: int) -> Callable[[int], str]:
    """Tokens for ``sub``: the first expires at ``first_exp``, later ones 5 minutes on."""
    return lambda n: harness.issuer.token(
        sub=sub, exp=first_exp if n == 1 else int(time.time()) + 300
    )


def test_subprotocol_method(harness):
    page = run(harness, lambda n: harness.issuer.token(name="Sub"))
    seen = wait_for(page, lambda s: ["msg", "Hello Sub"] in s)
    assert states(seen)[:2] == ["connecting", "open"]
    page.close()


DEFAULTS = """async ([url, protocols]) => {
  const {connect} = await import("/static/wsauth/wsauth.js");
  const options = {getToken: () => window.mintToken()};
  if (protocols !== null) options.protocols = protocols;
  return await new Promise((resolve) => {
    const conn = connect(url, {...options, onMessage: (d) => resolve([conn.socket.protocol, d])});
  });
}"""


@pytest.mark.parametrize("protocols", [None, []])
def test_an_application_protocol_is_offered_by_default(harness, protocols):
    # With no protocols (or none), the token is never the selected subprotocol.
    page = harness.browser.new_page()
    page.expose_function("mintToken", lambda: harness.issuer.token(name="Default"))
    page.goto(harness.server.http + "/")
    selected, greeting = page.evaluate(DEFAULTS, [harness.server.ws + "/ws/echo/", protocols])
    assert (selected, greeting) == ("wsauth", "Hello Default")


def test_a_large_message_from_chromium_passes_the_frame_limits(harness):
    """MAX_FRAGMENTS and FRAME_RATE count what Chromium sends for a 200 KB message."""
    page = run(harness, lambda n: harness.issuer.token(name="Big"))
    wait_for(page, lambda s: ["msg", "Hello Big"] in s)
    page.evaluate("() => window.conn.send('b'.repeat(200000))")
    seen = wait_for(page, lambda s: any(e[0] == "msg" and len(e[1]) > 200000 for e in s))
    assert states(seen) == ["connecting", "open"]
    page.close()


def test_ticket_method(harness):
    page = run(harness, lambda n: harness.issuer.token(name="Tick"), method="ticket")
    wait_for(page, lambda s: ["msg", "Hello Tick"] in s)
    page.close()


def test_refresh_before_expiry_keeps_the_socket(harness):
    first_exp = int(time.time()) + 4
    page = run(harness, short_then_long(harness, "js-ref", first_exp))
    seen = wait_for(page, lambda s: ["control", "wsauth.refreshed"] in s)
    assert ["control", "wsauth.expiring"] in seen
    while time.time() < first_exp + 1.5:
        time.sleep(0.2)
    seen = events(page)
    assert states(seen).count("open") == 1 and states(seen)[-1] == "open"
    assert not any(e[0] == "msg" and "wsauth." in e[1] for e in seen)  # never the app's
    page.close()


def test_reconnects_on_4001(harness):
    short = {"token": None, "exp": 0}

    def tokens(n: int) -> str:
        # The same short-lived token until it is spent: the refresh cannot extend it.
        if time.time() > short["exp"] - 1:
            short["exp"] = int(time.time()) + 3
            short["token"] = harness.issuer.token(sub="js-4001", exp=short["exp"])
        return short["token"]

    page = run(harness, tokens)
    seen = wait_for(page, opened(2), timeout=15)
    assert ["state", "closed", "4001"] in seen
    page.close()


def test_reconnects_on_4408(harness):
    def tokens(n: int):
        if n == 1:
            time.sleep(3)  # slower than AUTH_TIMEOUT: the server gives up with 4408
        return harness.issuer.token(name="Late")

    page = run(harness, tokens, path="/ws/echo/inband/", method="message")
    seen = wait_for(page, lambda s: ["msg", "Hello Late"] in s, timeout=15)
    assert ["state", "closed", "4408"] in seen
    page.close()


def test_reconnects_on_4429(harness):
    exp = int(time.time()) + 4
    page = run(harness, short_then_long(harness, "js-4429", exp), server=harness.strict)
    seen = wait_for(page, opened(2), timeout=15)
    assert ["state", "closed", "4429"] in seen
    page.close()


@pytest.mark.parametrize(("second", "code"), [("garbage", "4401"), ("other", "4403")])
def test_stops_on_4401_and_4403(harness, second, code):
    def tokens(n: int) -> str:
        if n == 1:
            return harness.issuer.token(sub="js-stop", exp=int(time.time()) + 3)
        return "garbage" if second == "garbage" else harness.issuer.token(sub="someone-else")

    page = run(harness, tokens)
    seen = wait_for(page, lambda s: "stopped" in states(s))
    assert ["state", "stopped", code] in seen
    time.sleep(1.5)  # no reconnect after a stop
    assert states(events(page)).count("connecting") == 1
    page.close()


DPOP_START = """async ([url]) => {
  window.events = [];
  const {connect} = await import("/static/wsauth/wsauth.js");
  // The page's key: the private half never leaves WebCrypto.
  const key = await crypto.subtle.generateKey({name: "ECDSA", namedCurve: "P-256"}, false, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", key.publicKey);
  const publicJwk = {kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y};
  window.conn = connect(url, {
    method: "ticket", dpopKey: key, initialDelay: 200, maxDelay: 800,
    getToken: () => window.mintToken(publicJwk),
    onMessage: (d) => window.events.push(["msg", d]),
    onStateChange: (s, d) => window.events.push(["state", s, String(d)]),
    onControl: (f) => window.events.push(["control", f.type]),
  });
}"""


def jwk_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638, written here rather than taken from wsauth."""
    members = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


@pytest.mark.parametrize("nonce", [False, True], ids=["no-nonce", "server-nonce"])
def test_a_dpop_bound_socket_renews_with_a_fresh_dpop_ticket(harness, nonce):
    """A DPoP-bound socket cannot refresh with a token (no proof rides on a frame); it
    trades a fresh token and proof for a ticket and refreshes with that, without a
    reconnect. Before, the refresh was closed with 4401 and wsauth.js stopped."""
    server = harness.nonce if nonce else harness.server
    first_exp = int(time.time()) + 4
    keys: list[str] = []

    def mint(jwk: dict[str, str]) -> str:
        keys.append(jwk_thumbprint(jwk))
        exp = first_exp if len(keys) == 1 else int(time.time()) + 300
        return harness.issuer.token(sub="js-dpop", name="Bound", exp=exp, cnf={"jkt": keys[-1]})

    logged = len(server.log())
    page = harness.browser.new_page()
    page.expose_function("mintToken", mint)
    page.goto(server.http + "/")
    page.evaluate(DPOP_START, [server.ws + "/ws/echo/"])
    seen = wait_for(page, lambda s: ["control", "wsauth.refreshed"] in s)
    assert ["msg", "Hello Bound"] in seen
    while time.time() < first_exp + 1.5:
        time.sleep(0.2)
    seen = events(page)
    assert states(seen) == ["connecting", "open"], seen  # one socket, renewed in place
    assert len(keys) == 2 and len(set(keys)) == 1
    assert "closing socket" not in server.log()[logged:]
    page.close()


def test_reconnects_after_a_network_drop(harness):
    port = free_port()
    server = DaphneServer(harness.env, harness.tmp / "drop.log")
    server.port = port
    server.start()
    manage(harness.env, "wsauth_origins", "add", server.http)
    page = run(harness, lambda n: harness.issuer.token(name="Drop"), server=server)
    wait_for(page, opened(1))
    server.stop()
    wait_for(page, lambda s: states(s)[-1] in ("closed", "connecting"))
    restarted = DaphneServer(harness.env, harness.tmp / "drop2.log")
    restarted.port = port
    restarted.start()
    try:
        # The greeting follows the open event: wait for both, not for the open alone.
        greeted = lambda s: s.count(["msg", "Hello Drop"]) == 2  # noqa: E731
        seen = wait_for(page, lambda s: opened(2)(s) and greeted(s), timeout=15)
        assert states(seen).count("open") == 2
    finally:
        page.close()
        restarted.stop()
