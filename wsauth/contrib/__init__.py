"""Adapters at the edge: one per ASGI server that keeps the upgrade request (wsauth.edge)."""
