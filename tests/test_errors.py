"""wsauth.errors: the refusal family, and how each member is answered and charged."""

from __future__ import annotations

import pytest

from wsauth import close_codes
from wsauth.errors import (
    Limited,
    Refused,
    RevocationUnavailable,
    Revoked,
    Unavailable,
    WSAuthError,
)


@pytest.mark.parametrize(
    ("cls", "close_code", "charged"),
    [
        (Refused, None, True),  # before accept: HTTP 403
        (Revoked, None, True),
        (Unavailable, None, False),  # the server's fault, not the client's
        (RevocationUnavailable, None, False),
        (Limited, close_codes.RATE_LIMITED, True),
    ],
)
def test_answer_and_charge(cls, close_code, charged):
    error = cls("reason_code", "a sentence")
    assert isinstance(error, WSAuthError)
    assert error.close_code == close_code
    assert error.charged is charged


def test_revocation_unavailable_fails_closed_as_a_revocation():
    # Code that catches Revoked (close 4403, refuse) also catches the markers being down.
    assert issubclass(RevocationUnavailable, Revoked)
    assert issubclass(RevocationUnavailable, Unavailable)


def test_detail_defaults_to_the_reason_and_the_credential_is_kept_apart():
    error = Refused("bad_token", credential="eyJsecret")
    assert (error.reason, error.detail, str(error)) == ("bad_token", "bad_token", "bad_token")
    assert "eyJsecret" not in str(error)
    assert error.credential == "eyJsecret"


def test_limited_says_whether_it_is_the_first_of_its_window():
    assert Limited("too_many").first is True
    assert Limited("too_many", "again", first=False).first is False
