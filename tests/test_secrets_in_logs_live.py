"""No token or ticket in clear in any log.

``test_every_credential_path_logs_masked`` drives every credential path of a Daphne
process (accepted, refused, replayed, query token on and off, first-message auth,
refresh by token and by ticket, DPoP, back-channel logout) with wsauth's DEBUG logging on, then looks for each
token and ticket it used. Every other log of the session, whatever the test order, is
searched at its end (``tests/leaks.py``, ``tests/conftest.py``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.daphne import DaphneServer, migrated_project_env, with_overrides
from tests.issuer import Issuer
from tests.leaks import ISSUED, JWT, TICKET

PREFIX = "authorization_bearer_"


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

    ISSUED.add(*(secret for secret in secrets if secret))  # for every log of the session
    log = server.log() + strict.log()
    assert "reason=bad_signature" in log and "reason=invalid_ticket" in log  # it did log
    assert "authenticated" in log  # DEBUG lines too
    leaked = [mask for mask in secrets if mask and mask in log]
    assert not leaked, f"{len(leaked)} credentials appear in clear in the server log"
    assert not JWT.search(log) and not TICKET.search(log)
