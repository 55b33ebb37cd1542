"""System checks name the problem and the fix."""

from __future__ import annotations

import socket
import socketserver
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import pytest

from tests.daphne import ROOT, project_env
from wsauth import conf as wsauth_conf
from wsauth.checks import check_redis_version, check_settings

REDIS_LAYER = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}


def ids(settings, **wsauth):
    settings.WSAUTH = {**settings.WSAUTH, **wsauth}
    wsauth_conf.reset()
    return {e.id for e in check_settings()}


def test_default_test_settings_have_no_errors(settings):
    settings.DEBUG = True
    assert ids(settings) == set()


def test_server_adapters(settings):
    assert "wsauth.E019" in ids(settings, SERVER_ADAPTERS=["wsauth.contrib.nowhere.Adapter"])
    assert "wsauth.E019" in ids(settings, SERVER_ADAPTERS=["wsauth.edge.ServerEdge"])
    assert "wsauth.W004" in ids(settings, SERVER_ADAPTERS=[])
    assert not {"wsauth.E019", "wsauth.W004"} & ids(
        settings, SERVER_ADAPTERS=["wsauth.contrib.uvicorn.UvicornAdapter"]
    )
    settings.WSAUTH = {**settings.WSAUTH, "SERVER_ADAPTERS": ["wsauth.edge.ServerEdge"]}
    wsauth_conf.reset()
    [error] = [e for e in check_settings() if e.id == "wsauth.E019"]
    assert "not a wsauth.edge.ServerAdapter subclass" in error.msg
    assert "wsauth.contrib.daphne.DaphneAdapter" in error.hint


def test_missing_issuer(settings):
    assert "wsauth.E002" in ids(settings, ISSUER=None)


def test_missing_audience(settings):
    settings.OIDC_RP_CLIENT_ID = None
    assert "wsauth.E003" in ids(settings, AUDIENCE=None)


def test_audience_fallback_and_explicit_opt_out(settings):
    settings.OIDC_RP_CLIENT_ID = "client"
    assert "wsauth.E003" not in ids(settings, AUDIENCE=None)
    settings.OIDC_RP_CLIENT_ID = None
    assert "wsauth.E003" not in ids(settings, AUDIENCE=None, VERIFY_AUDIENCE=False)


def test_none_algorithm(settings):
    assert "wsauth.E004" in ids(settings, ALGORITHMS=["RS256", "none"])


def test_hmac_algorithms(settings):
    assert "wsauth.E005" in ids(settings, ALGORITHMS=["RS256", "HS256"])


def test_hmac_from_mozilla_fallback(settings):
    settings.OIDC_RP_SIGN_ALGO = "HS256"
    settings.WSAUTH = {k: v for k, v in settings.WSAUTH.items() if k != "ALGORITHMS"}
    wsauth_conf.reset()
    assert "wsauth.E005" in {e.id for e in check_settings()}


def test_short_cooldown(settings):
    assert "wsauth.E007" in ids(settings, JWKS_UNKNOWN_KID_COOLDOWN=1)


def test_unknown_setting(settings):
    assert "wsauth.E001" in ids(settings, ISUSER="typo")


def test_bad_allowed_origin(settings):
    assert "wsauth.E010" in ids(settings, ALLOWED_ORIGINS=["example.com"])


def test_local_memory_tickets_with_redis_layer(settings):
    settings.CHANNEL_LAYERS = REDIS_LAYER
    errors = [e for e in check_settings() if e.id == "wsauth.W001"]
    assert errors and "RedisCache" in errors[0].hint


def test_in_memory_layer_without_debug(settings):
    settings.DEBUG = False
    assert "wsauth.W002" in ids(settings)


def test_unknown_ticket_cache(settings):
    assert "wsauth.E011" in ids(settings, TICKET_CACHE="nope")


@pytest.mark.parametrize(
    ("env", "expected"),
    [({"OIDC_ISSUER": "http://127.0.0.1:9/realms/x"}, 0), ({"OIDC_AUDIENCE": ""}, 1)],
)
def test_manage_py_check(env, expected, tmp_path):
    environment = project_env(DJANGO_VAR_DIR=str(tmp_path), **env)
    if expected:
        environment["OIDC_ISSUER"] = "http://127.0.0.1:9/realms/x"
        environment["OIDC_CLIENT_ID"] = ""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "ERROR"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == expected, result.stderr
    if expected:
        assert "wsauth.E003" in result.stderr and "AUDIENCE" in result.stderr


# -- check --deploy: the Redis version -------------------------------------------------------


class OldRedis(socketserver.StreamRequestHandler):
    """Answers like a Redis 6.2 server with a password: ``AUTH`` accepted, ``INFO`` with its
    version, an error to anything else (as 6.2 answers redis-py's ``CLIENT SETINFO``)."""

    def handle(self) -> None:
        while line := self.rfile.readline():
            if not line.startswith(b"*"):
                continue
            words = []
            for _ in range(int(line[1:])):
                size = int(self.rfile.readline()[1:])
                words.append(self.rfile.read(size + 2)[:-2].upper())
            if words[:1] == [b"INFO"]:
                body = b"# Server\r\nredis_version:6.2.14\r\nredis_mode:standalone\r\n"
                self.wfile.write(b"$%d\r\n%s\r\n" % (len(body), body))
            elif words[:1] == [b"AUTH"]:
                self.wfile.write(b"+OK\r\n")
            else:
                self.wfile.write(b"-ERR unknown command\r\n")


@pytest.fixture
def old_redis() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), OldRedis)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def redis_ids(settings, location: str) -> list:
    alias = f"redis-{uuid.uuid4().hex[:6]}"  # a new alias: stores keeps instances by alias
    settings.CACHES = {
        **settings.CACHES,
        alias: {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": location},
    }
    settings.WSAUTH = {**settings.WSAUTH, "TICKET_CACHE": alias}
    wsauth_conf.reset()
    return check_redis_version()


def test_deploy_check_passes_this_machines_redis(settings):
    assert redis_ids(settings, "redis://127.0.0.1:6379/9") == []


def test_deploy_check_refuses_redis_older_than_7(settings, old_redis):
    [error] = redis_ids(settings, f"redis://:hunter2@127.0.0.1:{old_redis}/0")
    assert error.id == "wsauth.E015"
    assert "6.2.14" in error.msg and "7.0" in error.hint
    assert "hunter2" not in error.msg


def test_deploy_check_warns_when_redis_cannot_be_reached(settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    [warning] = redis_ids(settings, f"redis://127.0.0.1:{port}/0")
    assert warning.id == "wsauth.W003" and str(port) in warning.msg


def test_local_memory_stores_need_no_redis_check(settings):
    wsauth_conf.reset()
    assert check_redis_version() == []  # tests/settings.py: LocMemCache only


def test_check_deploy_runs_the_redis_version_check(settings, old_redis):
    """The README's claim: ``manage.py check --deploy`` (not only the function) refuses an
    old Redis, and plain ``check`` does not connect."""
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    redis_ids(settings, f"redis://127.0.0.1:{old_redis}/0")
    call_command("check", tags=["caches"])  # no deploy: no version check, no error
    with pytest.raises(SystemCheckError, match=r"wsauth\.E015"):
        call_command("check", tags=["caches"], deploy=True)


@pytest.mark.parametrize(
    ("name", "value"),
    [("MAX_QUEUED_BYTES", 0), ("MAX_QUEUED_BYTES", "1MB"), ("MAX_FRAGMENTS", -1)],
)
def test_frame_limits_must_be_positive_or_none(settings, name, value):
    assert "wsauth.E023" in ids(settings, **{name: value})
    assert "wsauth.E023" not in ids(settings, **{name: None})


def test_a_frame_rate_below_the_message_rate_is_a_warning(settings):
    assert "wsauth.W006" in ids(settings, FRAME_RATE="50/second", MESSAGE_RATE="100/second")
    assert "wsauth.W006" not in ids(settings, FRAME_RATE="200/second")
    assert "wsauth.E012" in ids(settings, FRAME_RATE="often")


def test_signed_cookie_sessions_are_a_warning(settings):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    assert "wsauth.W007" in ids(settings)
