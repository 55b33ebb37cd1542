"""OpenID Connect authentication for Django Channels WebSockets, correct by default."""

__version__ = "0.1.0"
