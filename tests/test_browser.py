"""The demo end to end in headless Chromium: the embedded provider's real login page,
the chat by ticket and by subprotocol, two users on two Daphne processes sharing Redis,
a foreign origin refused, and logout."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daphne import (
    REDIS_URL,
    ROOT,
    DaphneServer,
    flush_redis,
    free_port,
    manage,
    migrated_project_env,
    project_env,
)

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
TOKEN_LIFETIME = 20
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Demo:
    def __init__(self, a: DaphneServer, b: DaphneServer, browser) -> None:
        self.a, self.b, self.browser = a, b, browser


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is not installed (tests/run.sh installs it)")
    from playwright.sync_api import sync_playwright

    tmp: Path = tmp_path_factory.mktemp("demo")
    port_a, port_b = free_port(), free_port()
    env = migrated_project_env(
        tmp,
        None,  # the demo's embedded provider
        REDIS_URL,
        DEMO_BASE_URL=f"http://127.0.0.1:{port_a}",
        # Short-lived tokens, so a test can watch the chat outlive one.
        DEMO_TOKEN_LIFETIME=str(TOKEN_LIFETIME),
        WSAUTH_OVERRIDES='{"EXPIRING_LEAD": 8}',
    )
    manage(env, "demo_seed", "--base-url", f"http://127.0.0.1:{port_b}")
    a = DaphneServer(env, tmp / "a.log")
    a.port = port_a
    b = DaphneServer(env, tmp / "b.log")
    b.port = port_b
    a.start()
    b.start()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield Demo(a, b, browser)
        browser.close()
    a.stop()
    b.stop()
    flush_redis()


def login(demo: Demo, server: DaphneServer, username: str, room: str = "lobby"):
    context = demo.browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{server.http}/chat/{room}/")
    # The chat needs a login: mozilla-django-oidc sends us to the provider's login page.
    page.wait_for_selector("#id_username")
    assert "/accounts/login/" in page.url and "code_challenge" in page.url  # PKCE
    page.fill("#id_username", username)
    page.fill("#id_password", username * 2)
    page.click("#signin")
    page.wait_for_url(f"{server.http}/chat/{room}/")
    page.wait_for_selector("#state.state-open")
    return context, page


def send(page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def test_login_and_chat_by_ticket_then_subprotocol(demo, tmp_path):
    context, page = login(demo, demo.a, "alice")
    assert page.inner_text("#me") == "Alice Liddell"
    assert "connected by ticket" in page.inner_text("#messages")
    assert "min" in page.inner_text("#lifetime")
    send(page, "hello by ticket")
    page.wait_for_selector("#messages li:has-text('hello by ticket')")
    assert "Alice Liddell" in page.inner_text("#messages")

    page.select_option("#method", "subprotocol")
    page.wait_for_selector("#messages li:has-text('connected by subprotocol')")
    send(page, "hello by subprotocol")
    page.wait_for_selector("#messages li:has-text('hello by subprotocol')")
    # The README's picture: WSAUTH_UPDATE_SCREENSHOT=1 refreshes docs/chat.png.
    page.set_viewport_size({"width": 900, "height": 640})
    shot = page.screenshot(path=str(tmp_path / "chat.png"))
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("WSAUTH_UPDATE_SCREENSHOT"):
        (ROOT / "docs" / "chat.png").write_bytes(shot)
    page.select_option("#method", "ticket")  # leave the stored choice as it was
    context.close()


def test_chat_stays_open_across_token_expiry(demo):
    context, page = login(demo, demo.a, "alice", room="long")
    page.select_option("#method", "subprotocol")
    page.wait_for_selector("#messages li:has-text('connected by subprotocol')")
    started = time.monotonic()
    # The first token expires TOKEN_LIFETIME s after login; wsauth.js refreshes it in-band.
    while time.monotonic() - started < TOKEN_LIFETIME + 2:
        time.sleep(0.5)
    assert page.inner_text("#state") == "open"
    assert page.inner_text("#messages").count("connected by") == 2  # ticket, then subprotocol
    send(page, "after expiry")
    page.wait_for_selector("#messages li:has-text('after expiry')")
    assert "credential expired" not in demo.a.log()
    page.select_option("#method", "ticket")
    context.close()


def test_two_users_on_two_processes_see_each_other(demo):
    alice_ctx, alice = login(demo, demo.a, "alice", room="duo")
    bob_ctx, bob = login(demo, demo.b, "bob", room="duo")
    send(alice, "hi bob, from process A")
    bob.wait_for_selector("#messages li:has-text('hi bob, from process A')")
    send(bob, "hi alice, from process B")
    alice.wait_for_selector("#messages li:has-text('hi alice, from process B')")
    assert "Bob Builder" in alice.inner_text("#messages")
    assert "Alice Liddell" in bob.inner_text("#messages")
    alice_ctx.close()
    bob_ctx.close()


OPEN_SOCKET = """async ([url, protocols]) => new Promise((resolve) => {
  const ws = new WebSocket(url, protocols);
  ws.onopen = () => { ws.close(); resolve("open"); };
  ws.onerror = () => resolve("error");
  setTimeout(() => resolve("timeout"), 8000);
})"""


def test_page_from_a_foreign_origin_cannot_connect(demo):
    context, page = login(demo, demo.a, "alice", room="origins")
    token = page.evaluate(
        "async () => (await (await fetch('/demo/token/', {method: 'POST', headers: "
        "{'X-CSRFToken': document.querySelector('meta[name=csrf-token]').content}})).json())"
        ".access_token"
    )
    ws_url = f"{demo.a.ws}/ws/echo/"
    protocols = ["chat", "authorization_bearer_" + token]
    assert page.evaluate(OPEN_SOCKET, [ws_url, protocols]) == "open"
    # The same server under another name is another origin, not in the allowed list. The
    # demo's own Content-Security-Policy would stop that page before the server does: a
    # hostile page has none, so this one bypasses it.
    foreign_ctx = demo.browser.new_context(bypass_csp=True)
    foreign = foreign_ctx.new_page()
    foreign.goto(f"http://localhost:{demo.a.port}/")
    assert foreign.evaluate(OPEN_SOCKET, [ws_url, protocols]) == "error"
    assert _wait_log(demo.a, "reason=origin_not_allowed")
    foreign_ctx.close()
    context.close()


def _wait_log(server: DaphneServer, text: str) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if text in server.log():
            return True
        time.sleep(0.1)
    return False


def test_logout_stops_new_connections(demo):
    context, page = login(demo, demo.a, "bob", room="bye")
    page.click("#logout")
    page.wait_for_url(f"{demo.a.http}/")
    status = page.evaluate(
        "async () => (await fetch('/wsauth/ticket/', {method: 'POST', headers: "
        "{'X-CSRFToken': document.querySelector('meta[name=csrf-token]').content}})).status"
    )
    assert status in (401, 403)
    page.goto(f"{demo.a.http}/chat/bye/")
    page.wait_for_selector("#id_username")  # back at the login page, no socket
    context.close()


def test_admin_disconnects_a_users_chat_on_another_process(demo):
    context, page = login(demo, demo.a, "alice", room="watched")
    bob_ctx, bob = login(demo, demo.a, "bob", room="watched")
    # The administrator works on process B; alice's socket lives on process A.
    admin_ctx = demo.browser.new_context()
    admin = admin_ctx.new_page()
    admin.set_default_timeout(15_000)
    admin.goto(f"{demo.b.http}/admin/auth/user/")
    admin.fill("#id_username", "admin")
    admin.fill("#id_password", "adminadmin")
    admin.click("input[type=submit]")
    admin.wait_for_selector("#result_list")
    admin.check("tr:has(a:text-is('alice')) input.action-select")
    admin.select_option("select[name=action]", "disconnect_sockets")
    started = time.monotonic()
    admin.click("button[name=index]")
    admin.wait_for_selector(".messagelist :text('Disconnected the WebSockets of 1 user')")
    page.wait_for_selector("#state.state-stopped", timeout=2_000)
    assert time.monotonic() - started < 4  # 2 s for delivery, the rest is the admin page
    assert "disconnected by the server" in page.inner_text("#messages")
    assert bob.inner_text("#state") == "open"  # others untouched
    send(bob, "still here")
    bob.wait_for_selector("#messages li:has-text('still here')")
    for ctx in (context, bob_ctx, admin_ctx):
        ctx.close()


def test_demo_command_serves_echo_from_a_clean_checkout(tmp_path):
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(checkout)], check=True, timeout=60)
    port = free_port()
    env = project_env(PY=sys.executable, DJANGO_VAR_DIR=str(tmp_path / "var"))
    proc = subprocess.Popen(
        ["bash", "scripts/demo.sh", "127.0.0.1", str(port)],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                opener = urllib.request.build_opener(NoRedirect)
                opener.open(f"http://127.0.0.1:{port}/echo/", timeout=2)
            except urllib.error.HTTPError as exc:
                # /echo/ asks for a login through the OIDC flow.
                assert exc.code == 302
                assert exc.headers["Location"].startswith("/oidc/authenticate/")
                break
            except OSError:
                assert time.monotonic() < deadline, "the demo did not start in time"
                time.sleep(0.3)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/o/.well-known/openid-configuration", timeout=5
        ) as r:
            assert b"jwks_uri" in r.read()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=15)[0].decode()
    assert "alice" in out and f"http://127.0.0.1:{port}/" in out


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def admin_page(demo: Demo, server: DaphneServer, path: str):
    context = demo.browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{server.http}{path}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "adminadmin")
    page.click("input[type=submit]")
    return context, page


def access_token(page) -> str:
    return page.evaluate(
        "async () => (await (await fetch('/demo/token/', {method: 'POST', headers: "
        "{'X-CSRFToken': document.querySelector('meta[name=csrf-token]').content}})).json())"
        ".access_token"
    )


def test_room_shows_who_is_here_across_processes(demo):
    alice_ctx, alice = login(demo, demo.a, "alice", room="presence")
    bob_ctx, bob = login(demo, demo.b, "bob", room="presence")
    for page in (alice, bob):
        page.wait_for_selector("#presence:has-text('Alice Liddell, Bob Builder')")
    bob_ctx.close()  # Bob leaves: his socket's place is given back
    # (a selector, not wait_for_function: the page's CSP forbids evaluating strings)
    alice.wait_for_selector("#presence:text-is('Alice Liddell')", timeout=5_000)
    alice_ctx.close()


def test_live_connections_page_lists_filters_and_disconnects(demo, tmp_path):
    alice_ctx, alice = login(demo, demo.a, "alice", room="live")
    bob_ctx, bob = login(demo, demo.b, "bob", room="live")
    tokens = [access_token(alice), access_token(bob)]
    admin_ctx, admin = admin_page(demo, demo.b, "/admin/wsauth/livesocket/")
    admin.wait_for_selector("#result_list")
    rows = admin.locator("tr.live-socket:has(td:text-is('/ws/chat/live/'))")
    assert rows.count() == 2
    cells = [rows.nth(i).locator("td").all_inner_texts() for i in range(2)]
    assert sorted(c[0] for c in cells) == ["alice", "bob"]
    assert {c[1] for c in cells} == {"ticket"}  # the demo's default method
    assert {c[2] for c in cells} == {
        f"http://127.0.0.1:{demo.a.port}",
        f"http://127.0.0.1:{demo.b.port}",
    }
    assert len({c[4] for c in cells}) == 2  # one socket on each process
    assert all(c[5] and c[6] for c in cells)  # connected, credential expires
    html = admin.content()
    for secret in tokens:
        assert secret not in html and secret.split(".")[2] not in html
    assert "authorization_bearer" not in html and "ticket=" not in html
    shot = admin.screenshot(path=str(tmp_path / "live.png"), full_page=True)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("WSAUTH_UPDATE_SCREENSHOT"):
        (ROOT / "docs" / "live-connections.png").write_bytes(shot)

    admin.fill("#live-user", "alic")
    admin.click("#live-filter input[type=submit]")
    admin.wait_for_url("**/?user=alic")
    users = admin.locator("tr.live-socket td:first-child").all_inner_texts()
    assert users and set(users) == {"alice"}

    # Disconnect alice's socket (on process A) from the admin on process B.
    started = time.monotonic()
    admin.locator(
        "tr.live-socket:has(td:text-is('/ws/chat/live/')) button.disconnect-socket"
    ).click()
    admin.wait_for_selector(".messagelist :text('Disconnected socket')")
    alice.wait_for_selector("#state.state-stopped", timeout=2_000)
    assert time.monotonic() - started < 4
    assert "disconnected by the server" in alice.inner_text("#messages")
    assert bob.inner_text("#state") == "open"
    assert "user=alic" in admin.url  # the filter is kept
    gone = "tr.live-socket[data-user='alice']:has(td:text-is('/ws/chat/live/'))"
    deadline = time.monotonic() + 5
    while admin.locator(gone).count():  # its place is given back as the socket closes
        assert time.monotonic() < deadline, "the disconnected socket is still listed"
        time.sleep(0.3)
        admin.reload()

    # Every socket of bob, through disconnect_user: his page stops.
    admin.goto(f"{demo.b.http}/admin/wsauth/livesocket/?user=bob")
    admin.locator("tr.live-socket button.disconnect-user").first.click()
    admin.wait_for_selector(".messagelist :text('Disconnected every socket of bob')")
    bob.wait_for_selector("#state.state-stopped", timeout=2_000)
    for ctx in (alice_ctx, bob_ctx, admin_ctx):
        ctx.close()


CSP_WATCH = """window.cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.cspViolations.push(e.violatedDirective + " " + e.blockedURI));"""


def test_the_room_runs_under_its_strict_content_security_policy(demo):
    context, page = login(demo, demo.a, "alice", room="csp")
    page.add_init_script(CSP_WATCH)
    response = page.reload()
    assert "default-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector("#state.state-open")
    send(page, "under CSP")
    page.wait_for_selector("#messages li:has-text('under CSP')")
    assert page.evaluate("getComputedStyle(document.body).margin") == "0px"  # demo.css
    assert page.evaluate("window.cspViolations") == []
    # The policy is enforced: an inline script is refused, and reported.
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.inlineRan = true'; document.body.append(s); }"
    )
    assert page.evaluate("window.inlineRan === undefined")
    deadline = time.monotonic() + 5  # the violation event is dispatched asynchronously
    while not page.evaluate("window.cspViolations.length"):
        assert time.monotonic() < deadline, "no violation reported for the inline script"
        time.sleep(0.1)
    assert page.evaluate("window.cspViolations")[0].startswith("script-src")
    context.close()
