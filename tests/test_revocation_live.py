"""Revocation and DPoP through real processes: two Daphne processes sharing Redis, a real
HTTP issuer, real keys. disconnect_user, back-channel logout, DPoP-bound tickets."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.daphne import (
    REDIS_URL,
    DaphneServer,
    flush_redis,
    manage,
    migrated_project_env,
    with_overrides,
)
from tests.issuer import AUDIENCE, Issuer

PREFIX = "authorization_bearer_"
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")
CLIENT_ID = "wsauth-tests-rp"  # the logout token's audience: the RP's client id
EVENT = "http://schemas.openid.net/event/backchannel-logout"


class Stack:
    def __init__(self, issuer: Issuer, env: dict[str, str], servers: list[DaphneServer]):
        self.issuer, self.env = issuer, env
        self.a, self.b, self.dpop_lenient = servers


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("revoke")
    issuer = Issuer().start()
    env = migrated_project_env(tmp, issuer, REDIS_URL, OIDC_CLIENT_ID=CLIENT_ID)
    lenient = with_overrides(env, ACCEPT_DPOP_BOUND_AS_BEARER=True)
    servers = [
        DaphneServer(env, tmp / "a.log").start(),
        DaphneServer(env, tmp / "b.log").start(),
        DaphneServer(lenient, tmp / "c.log").start(),
    ]
    yield Stack(issuer, env, servers)
    for server in servers:
        server.stop()
    issuer.stop()
    flush_redis()


# -- helpers ----------------------------------------------------------------------------------


def open_echo(server: DaphneServer, token: str) -> ClientConnection:
    ws = connect(server.ws + "/ws/echo/", subprotocols=["chat", PREFIX + token])
    assert ws.recv(timeout=5).startswith("Hello ")
    return ws


def still_echoes(ws: ClientConnection) -> bool:
    ws.send("ping")
    return "ping" in str(ws.recv(timeout=5))


def closed_with(ws: ClientConnection, within: float) -> int:
    """The close code the server sent within ``within`` seconds."""
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code
    except TimeoutError:
        pass
    pytest.fail(f"the socket was not closed within {within} s")


def refused(server: DaphneServer, token: str) -> bool:
    try:
        open_echo(server, token).close()
    except InvalidStatus as exc:
        assert exc.response.status_code == 403
        return True
    return False


def post(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=data or b"", method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def logout_token(issuer: Issuer, typ: str = "logout+jwt", **claims: Any) -> str:
    body = {
        "iss": issuer.issuer,
        "aud": CLIENT_ID,
        "iat": int(time.time()),
        "jti": uuid.uuid4().hex,
        "events": {EVENT: {}},
        **claims,
    }
    body = {k: v for k, v in body.items() if v is not None}
    kid = issuer.default_kid
    return jwt.encode(body, issuer.keys[kid][0], "RS256", headers={"typ": typ, "kid": kid})


def backchannel(server: DaphneServer, token: str) -> int:
    data = urllib.parse.urlencode({"logout_token": token}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return post(server.http + "/wsauth/backchannel-logout/", data, headers)[0]


def person() -> dict[str, str]:
    name = "p" + uuid.uuid4().hex[:10]
    return {"sub": "sub-" + name, "preferred_username": name}


# -- disconnect_user --------------------------------------------------------------------------


def test_disconnect_user_closes_their_sockets_on_both_processes(stack: Stack) -> None:
    alice, bob = person(), person()
    token = stack.issuer.token(**alice)
    sockets = [open_echo(stack.a, token), open_echo(stack.b, token)]
    other = open_echo(stack.a, stack.issuer.token(**bob))

    started = time.monotonic()
    manage(stack.env, "wsauth_disconnect", alice["preferred_username"])
    for ws in sockets:
        assert closed_with(ws, within=max(0.1, 2.0 - (time.monotonic() - started))) == 4403
    assert still_echoes(other)
    other.close()

    # The revoked credential cannot open a new socket; one issued afterwards can.
    assert refused(stack.b, token)
    time.sleep(1.1)  # iat has one-second resolution
    open_echo(stack.b, stack.issuer.token(**alice)).close()


def test_disconnect_subject_closes_sockets_of_that_subject(stack: Stack) -> None:
    carol = person()
    ws = open_echo(stack.b, stack.issuer.token(**carol))
    manage(stack.env, "wsauth_disconnect", "--subject", carol["sub"])
    assert closed_with(ws, within=2.0) == 4403


def test_a_bulk_deactivation_then_disconnect_inactive(stack: Stack) -> None:
    """``QuerySet.update`` sends no signal: the refresh asks the database, and
    ``wsauth_disconnect --inactive`` closes the rest on every process at once."""
    fred, gina = person(), person()
    refreshing = open_echo(stack.a, stack.issuer.token(**fred))
    idle = open_echo(stack.b, stack.issuer.token(**gina))
    names = [fred["preferred_username"], gina["preferred_username"]]
    manage(
        stack.env,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.filter(username__in={names!r}).update(is_active=False)",
    )
    refreshing.send(json.dumps({"type": "wsauth.refresh", "token": stack.issuer.token(**fred)}))
    assert closed_with(refreshing, within=5) == 4403
    assert still_echoes(idle)  # nothing told process B yet
    started = time.monotonic()
    out = manage(stack.env, "wsauth_disconnect", "--inactive").stdout
    assert closed_with(idle, within=max(0.1, 2.0 - (time.monotonic() - started))) == 4403
    assert "inactive users" in out


# -- back-channel logout ----------------------------------------------------------------------


def test_backchannel_logout_by_sid_closes_that_session_only(stack: Stack) -> None:
    dave = person()
    session, other_session = "sid-" + uuid.uuid4().hex, "sid-" + uuid.uuid4().hex
    token = stack.issuer.token(sid=session, **dave)
    in_session = [open_echo(stack.a, token), open_echo(stack.b, token)]
    elsewhere = open_echo(stack.b, stack.issuer.token(sid=other_session, **dave))

    started = time.monotonic()
    logout = logout_token(stack.issuer, sid=session, sub=dave["sub"])
    assert backchannel(stack.a, logout) == 200
    for ws in in_session:
        assert closed_with(ws, within=max(0.1, 2.0 - (time.monotonic() - started))) == 4403
    assert still_echoes(elsewhere)

    # Replayed: refused, on either process.
    assert backchannel(stack.b, logout) == 400
    assert backchannel(stack.a, logout) == 400

    # The session's tokens are refused from now on, even one minted later...
    assert refused(stack.a, stack.issuer.token(sid=session, **dave))
    # ... and as a refresh on another socket of the same person.
    elsewhere.send(json.dumps({"type": "wsauth.refresh", "token": token}))
    assert closed_with(elsewhere, within=5) == 4403


def test_backchannel_logout_by_sub_closes_every_socket_of_the_subject(stack: Stack) -> None:
    erin = person()
    token = stack.issuer.token(sid="s-" + uuid.uuid4().hex, **erin)
    sockets = [open_echo(stack.a, token), open_echo(stack.b, stack.issuer.token(**erin))]
    assert backchannel(stack.b, logout_token(stack.issuer, sub=erin["sub"])) == 200
    for ws in sockets:
        assert closed_with(ws, within=2.0) == 4403
    assert refused(stack.a, token)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"events": None}, id="no-events"),
        pytest.param({"events": {"http://example.test/other": {}}}, id="wrong-event"),
        pytest.param({"nonce": "n-1"}, id="nonce"),
        pytest.param({"aud": AUDIENCE}, id="access-token-audience"),
        pytest.param({"iss": "http://127.0.0.1:1/evil"}, id="wrong-issuer"),
        pytest.param({"jti": None}, id="no-jti"),
        pytest.param({"sub": None, "sid": None}, id="neither-sid-nor-sub"),
        pytest.param({"iat": int(time.time()) - 3600}, id="stale-iat"),
        pytest.param({"typ": "at+jwt"}, id="access-token-type"),
        pytest.param({"signature": "bad"}, id="bad-signature"),
        pytest.param({"raw": "not.a.jwt"}, id="malformed"),
    ],
)
def test_bad_logout_tokens_are_refused(stack: Stack, change: dict[str, Any]) -> None:
    victim = person()
    ws = open_echo(stack.a, stack.issuer.token(**victim))
    claims: dict[str, Any] = {"sub": victim["sub"]}
    typ = change.pop("typ", "logout+jwt")
    raw = change.pop("raw", None)
    bad_signature = change.pop("signature", None)
    claims.update(change)
    token = raw or logout_token(stack.issuer, typ=typ, **claims)
    if bad_signature:
        head, body, sig = token.split(".")
        token = f"{head}.{body}.{sig[:-6]}AAAAAA"
    assert backchannel(stack.a, token) == 400
    assert still_echoes(ws)
    ws.close()


def test_backchannel_logout_needs_post_and_a_token(stack: Stack) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(stack.a.http + "/wsauth/backchannel-logout/", timeout=5)
    assert info.value.code == 405
    assert post(stack.a.http + "/wsauth/backchannel-logout/")[0] == 400


# -- DPoP -------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class DPoPClient:
    """A client holding a DPoP key, as RFC 9449 describes (written here, not imported)."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.jwk = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        members = {k: self.jwk[k] for k in ("crv", "kty", "x", "y")}
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
        self.jkt = b64(hashlib.sha256(canonical).digest())

    def proof(self, htu: str, token: str | None, htm: str = "POST", **override: Any) -> str:
        claims = {"jti": uuid.uuid4().hex, "htm": htm, "htu": htu, "iat": int(time.time())}
        if token is not None:
            claims["ath"] = b64(hashlib.sha256(token.encode()).digest())
        claims.update(override)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.key, "ES256", headers={"typ": "dpop+jwt", "jwk": self.jwk})


def dpop_ticket(
    server: DaphneServer, token: str, proof: str, host: str | None = None
) -> tuple[int, dict, dict]:
    sent = {"Authorization": f"DPoP {token}", "DPoP": proof}
    if host:  # the public name every process is reached by, as behind a load balancer
        sent["Host"] = host
    status, headers, body = post(server.http + "/wsauth/ticket/", headers=sent)
    return status, headers, json.loads(body or b"{}")


def test_dpop_proof_gets_a_ticket_that_works_once(stack: Stack) -> None:
    client = DPoPClient()
    token = stack.issuer.token(cnf={"jkt": client.jkt}, **person())
    url = stack.a.http + "/wsauth/ticket/"
    status, _, body = dpop_ticket(stack.a, token, client.proof(url, token))
    assert status == 200, body
    ticket_url = stack.b.ws + "/ws/echo/?ticket=" + body["ticket"]
    with connect(ticket_url) as ws:
        assert ws.recv(timeout=5).startswith("Hello ")
    with pytest.raises(InvalidStatus):
        connect(ticket_url).close()


def _wrong_key(client: DPoPClient, url: str, token: str) -> str:
    return DPoPClient().proof(url, token)


@pytest.mark.parametrize(
    "make_proof",
    [
        pytest.param(_wrong_key, id="wrong-key"),
        pytest.param(lambda c, u, t: c.proof(u.replace("/ticket/", "/other/"), t), id="htu"),
        pytest.param(lambda c, u, t: c.proof(u, t, htm="GET"), id="htm"),
        pytest.param(lambda c, u, t: c.proof(u, t, iat=int(time.time()) - 600), id="stale-iat"),
        pytest.param(lambda c, u, t: c.proof(u, None), id="no-ath"),
        pytest.param(lambda c, u, t: c.proof(u, t + "x"), id="wrong-ath"),
        pytest.param(lambda c, u, t: c.proof(u, t, jti=None), id="no-jti"),
    ],
)
def test_bad_dpop_proofs_are_refused(stack: Stack, make_proof: Any) -> None:
    client = DPoPClient()
    token = stack.issuer.token(cnf={"jkt": client.jkt}, **person())
    url = stack.a.http + "/wsauth/ticket/"
    status, headers, body = dpop_ticket(stack.a, token, make_proof(client, url, token))
    assert status == 401, body
    assert 'DPoP error="invalid_dpop_proof"' in headers["WWW-Authenticate"]


def test_replayed_dpop_proof_is_refused_on_any_process(stack: Stack) -> None:
    client = DPoPClient()
    token = stack.issuer.token(cnf={"jkt": client.jkt}, **person())
    proof = client.proof(stack.a.http + "/wsauth/ticket/", token)
    assert dpop_ticket(stack.a, token, proof)[0] == 200
    # The same proof, replayed against the same URL (htu names process A)...
    status, _, body = dpop_ticket(stack.a, token, proof)
    assert status == 401 and "used before" in body["detail"]
    # ... and on process B, reached by the same name (so htu matches there too).
    status, _, body = dpop_ticket(stack.b, token, proof, host=f"127.0.0.1:{stack.a.port}")
    assert status == 401 and "used before" in body["detail"]


def test_dpop_bound_token_refused_as_bearer_and_on_the_upgrade_by_default(stack: Stack) -> None:
    client = DPoPClient()
    token = stack.issuer.token(cnf={"jkt": client.jkt}, **person())
    status, _, _ = post(
        stack.a.http + "/wsauth/ticket/", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 401
    assert refused(stack.a, token)
    # With ACCEPT_DPOP_BOUND_AS_BEARER (the oidc-spa guide's choice) the upgrade accepts it.
    open_echo(stack.dpop_lenient, token).close()
    # An unbound token with the DPoP scheme is refused too.
    plain = stack.issuer.token(**person())
    url = stack.a.http + "/wsauth/ticket/"
    assert dpop_ticket(stack.a, plain, client.proof(url, plain))[0] == 401


def test_a_dpop_bound_socket_renews_only_with_a_dpop_ticket_of_its_key(stack: Stack) -> None:
    """No proof can ride on a frame: a token refresh gets an error frame (the socket stays
    open, so an old client reconnects at 4001 instead of stopping at 4401); a fresh DPoP
    ticket of the same key renews it; one of another key, or a spent one, does not."""
    client, someone = DPoPClient(), DPoPClient()
    who = person()
    url = stack.a.http + "/wsauth/ticket/"

    def fresh_ticket(holder: DPoPClient, exp: int) -> str:
        token = stack.issuer.token(cnf={"jkt": holder.jkt}, exp=exp, **who)
        status, _, body = dpop_ticket(stack.a, token, holder.proof(url, token))
        assert status == 200, body
        return str(body["ticket"])

    now = int(time.time())
    ws = connect(stack.b.ws + "/ws/echo/?ticket=" + fresh_ticket(client, now + 180))
    assert ws.recv(timeout=5).startswith("Hello ")
    bound = stack.issuer.token(cnf={"jkt": client.jkt}, **who)
    ws.send(json.dumps({"type": "wsauth.refresh", "token": bound}))
    error = json.loads(ws.recv(timeout=5))
    assert (error["type"], error["error"]) == ("wsauth.error", "ticket_required")
    assert still_echoes(ws)
    renewal = fresh_ticket(client, now + 600)
    ws.send(json.dumps({"type": "wsauth.refresh", "ticket": renewal}))
    assert json.loads(ws.recv(timeout=5)) == {"type": "wsauth.refreshed", "expires_at": now + 600}
    ws.send(json.dumps({"type": "wsauth.refresh", "ticket": renewal}))  # spent
    assert closed_with(ws, within=5) == 4401

    ws = connect(stack.a.ws + "/ws/echo/?ticket=" + fresh_ticket(client, now + 180))
    assert ws.recv(timeout=5).startswith("Hello ")
    ws.send(json.dumps({"type": "wsauth.refresh", "ticket": fresh_ticket(someone, now + 600)}))
    assert closed_with(ws, within=5) == 4403
