"""WebSocket close codes used by wsauth (documented in the README)."""

#: The credential expired: get a fresh token and reconnect.
CREDENTIAL_EXPIRED = 4001
#: The credential is invalid (bad refresh or first-message token): log in again.
CREDENTIAL_INVALID = 4401
#: Forbidden: subject changed on refresh, user disabled, logged out or revoked.
FORBIDDEN = 4403
#: First-message authentication was not received in time: reconnect.
AUTH_TIMEOUT = 4408
#: A rate or connection limit was reached: back off, then reconnect.
RATE_LIMITED = 4429
#: A frame larger than MAX_MESSAGE_SIZE. The standard 1009 cannot be sent: Daphne's
#: autobahn accepts only 1000 and 3000-4999 from an application.
MESSAGE_TOO_BIG = 4009
#: The client does not read what is sent to it: more than MAX_QUEUED_BYTES wait in the
#: server for it (as Centrifugo's 3008, in the private range). Reconnect.
SLOW_CLIENT = 4008
#: Close codes for frames a JSON consumer cannot take: RFC 6455's 1003 and 1007 moved to
#: 4xxx, as 4009 is, because Daphne (autobahn) refuses to send 1001-2999 and the
#: application's send raises instead. A binary frame:
UNSUPPORTED_DATA = 4003
#: A text frame that is not JSON:
INVALID_PAYLOAD = 4007
