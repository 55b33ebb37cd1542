"""wsauth.logutil: masking credentials in log lines, and the filter on servers' loggers."""

from __future__ import annotations

import logging
import sys

import pytest

from wsauth.logutil import CredentialFilter, filter_server_logs, mask, mask_text

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"


@pytest.mark.parametrize(
    ("secret", "masked"),
    [(None, "-"), ("", "-"), ("short", "…[5]"), ("x" * 12, "…[12]"), (JWT, f"eyJhbG…[{len(JWT)}]")],
)
def test_mask(secret, masked):
    assert mask(secret) == masked


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("GET /ws/?ticket=abcdefghijklmnop HTTP/1.1", "abcdefghijklmnop"),
        (f"GET /ws/?a=1&access_token={JWT}&b=2", JWT),
        (f"Sec-WebSocket-Protocol: chat, authorization_bearer_{JWT}", JWT),
        (f"'{JWT}'", JWT),
    ],
)
def test_mask_text_hides_credentials_and_keeps_the_rest(text, hidden):
    masked = mask_text(text)
    assert hidden not in masked
    assert masked.split("…")[0] in text  # what is left is a prefix of the original


def test_text_without_credentials_is_returned_as_is():
    text = "GET /ws/echo/ HTTP/1.1 101"
    assert mask_text(text) is text


def record(msg, args, exc_info=None):
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, msg, args, exc_info)


def test_filter_masks_message_tuple_and_mapping_arguments():
    f = CredentialFilter()
    rec = record("%s - %s", ("127.0.0.1", "/ws/?ticket=abcdefghijklmnop"))
    assert f.filter(rec) is True
    assert "abcdefghijklmnop" not in rec.getMessage()
    rec = record("%(path)s", ({"path": f"/ws/?access_token={JWT}", "n": 1},))
    f.filter(rec)
    assert JWT not in rec.getMessage()
    rec = record(f"bad header {JWT}", None)
    f.filter(rec)
    assert JWT not in rec.getMessage()


def test_filter_masks_tracebacks():
    try:
        raise ValueError(f"invalid protocol authorization_bearer_{JWT}")
    except ValueError:
        rec = record("handshake failed", None, sys.exc_info())
    CredentialFilter().filter(rec)
    assert "ValueError" in rec.exc_text
    assert JWT not in rec.exc_text
    assert JWT not in logging.Formatter().format(rec)


def test_filter_server_logs_installs_once():
    name = "wsauth-test-server-logger"
    filter_server_logs([name, name])
    filter_server_logs([name])
    target = logging.getLogger(name)
    assert sum(isinstance(f, CredentialFilter) for f in target.filters) == 1
