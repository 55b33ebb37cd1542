"""No token or ticket in clear in any log.

``test_every_credential_path_logs_masked`` drives every credential path of a Daphne
process (accepted, refused, replayed, query token on and off, first-message auth,
refresh by token and by ticket, DPoP, back-channel logout) with wsauth's DEBUG logging on, then looks for each
token and ticket it used. ``test_no_secret_in_any_log_of_this_run`` runs last (file
name) and greps every log file that the test run's Daphne processes wrote."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.daphne import DaphneServer, migrated_project_env, with_overrides
from tests.issuer import Issuer

PREFIX = "authorization_bearer_"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
TICKET = re.compile(r"ticket[=:\"' ]+[A-Za-z0-9_-]{43}")


def _try(url: str, subprotocols: list[str] | None = None, send: list[str] = ()) -> None:
    try:
        with connect(url, subprotocols=subprotocols, open_timeout=5) as ws:
            for frame in send:
                ws.send(frame)
            while True:
                ws.recv(timeout=1)
    except (InvalidStatus, ConnectionClosed, TimeoutError):
        pass


def _post(url: str, headers: dict[str, str], data: bytes = b"") -> str:
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read()).get("ticket", "")
    except urllib.error.HTTPError:
        return ""


def test_every_credential_path_logs_masked(tmp_path: Path) -> None:
    issuer = Issuer().start()
    env = migrated_project_env(
        tmp_path,
        issuer,
        WSAUTH_LOG_LEVEL="DEBUG",
        WSAUTH_OVERRIDES=json.dumps({"ALLOW_QUERY_TOKEN": True}),
    )
    server = DaphneServer(env, tmp_path / "daphne.log").start()
    strict_env = with_overrides(env, ALLOW_QUERY_TOKEN=False)
    strict = DaphneServer(strict_env, tmp_path / "strict.log").start()
    secrets: list[str] = []
    try:
        good, expired = issuer.token(), issuer.token(exp=1)
        bad = good[:-10] + "AAAAAAAAAA"
        secrets += [good, expired, bad]
        echo, inband = server.ws + "/ws/echo/", server.ws + "/ws/echo/inband/"
        for token in (good, expired, bad):
            _try(echo, ["chat", PREFIX + token])
            _try(echo, [PREFIX + token])
            _try(f"{echo}?access_token={token}")
            _try(f"{strict.ws}/ws/echo/?access_token={token}")
            _try(inband, send=[json.dumps({"type": "wsauth.auth", "token": token})])
            _try(
                echo,
                ["chat", PREFIX + good],
                [json.dumps({"type": "wsauth.refresh", "token": token})],
            )
            secrets.append(
                _post(server.http + "/wsauth/ticket/", {"Authorization": f"Bearer {token}"})
            )
        ticket = _post(server.http + "/wsauth/ticket/", {"Authorization": f"Bearer {good}"})
        secrets.append(ticket)
        _try(f"{echo}?ticket={ticket}")
        _try(f"{echo}?ticket={ticket}")  # replayed: refused, and logged
        _try(f"{echo}?ticket={'x' * 43}")
        renewal = _post(server.http + "/wsauth/ticket/", {"Authorization": f"Bearer {good}"})
        secrets.append(renewal)
        for _ in range(2):  # a refresh by ticket, then the same ticket spent
            _try(
                echo,
                ["chat", PREFIX + good],
                [json.dumps({"type": "wsauth.refresh", "ticket": renewal})],
            )
        dpop_bound = issuer.token(cnf={"jkt": "x" * 43})
        secrets.append(dpop_bound)
        _post(
            server.http + "/wsauth/ticket/", {"Authorization": f"DPoP {dpop_bound}", "DPoP": good}
        )
        logout = urllib.parse.urlencode({"logout_token": good}).encode()
        _post(server.http + "/wsauth/backchannel-logout/", {}, logout)
    finally:
        server.stop()
        strict.stop()
        issuer.stop()

    log = server.log() + strict.log()
    assert "reason=bad_signature" in log and "reason=invalid_ticket" in log  # it did log
    assert "authenticated" in log  # DEBUG lines too
    leaked = [mask for mask in secrets if mask and mask in log]
    assert not leaked, f"{len(leaked)} credentials appear in clear in the server log"
    assert not JWT.search(log) and not TICKET.search(log)


def test_no_secret_in_any_log_of_this_run(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.getbasetemp()
    logs = list(base.rglob("*.log"))
    if not logs:
        pytest.skip("no server logs in this run (run with the live tests)")
    for path in logs:
        text = path.read_text(errors="replace")
        jwt_hit, ticket_hit = JWT.search(text), TICKET.search(text)
        assert not jwt_hit, f"{path}: a JWT in clear: {jwt_hit.group()[:12]}..."  # type: ignore[union-attr]
        assert not ticket_hit, f"{path}: a ticket in clear: {ticket_hit.group()[:12]}..."  # type: ignore[union-attr]
