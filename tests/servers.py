"""Every ASGI server the README's "Servers" table names, serving the demo project.

``AsgiServer(kind, env, log_path)`` starts one real server process on a free loopback
port, with the command line the table gives (``COMMANDS``), and stops it by PID.
``tests.memprobe`` runs the same command lines with the memory probe installed.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from .daphne import ROOT, DaphneServer

APP = "project.asgi:application"

#: The websockets library caps one header line at 8192 bytes: a 12 KiB token needs more.
WEBSOCKETS_LINE = {"WEBSOCKETS_MAX_LINE_LENGTH": "16384"}

#: kind -> (the ``python -m`` command line after the module, with {port}; environment).
COMMANDS: dict[str, tuple[list[str], dict[str, str]]] = {
    "daphne": (["daphne", "-b", "127.0.0.1", "-p", "{port}", APP], {}),
    "uvicorn": (
        ["uvicorn", "--host", "127.0.0.1", "--port", "{port}", APP],
        WEBSOCKETS_LINE,
    ),
    "uvicorn-websockets": (
        ["uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--ws", "websockets", APP],
        WEBSOCKETS_LINE,
    ),
    "uvicorn-wsproto": (
        ["uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--ws", "wsproto", APP],
        {},
    ),
    "hypercorn": (["hypercorn", "--bind", "127.0.0.1:{port}", APP], {}),
    "gunicorn": (
        [
            "gunicorn",
            "-k",
            "uvicorn_worker.UvicornWorker",
            "-w",
            "2",
            "-b",
            "127.0.0.1:{port}",
            "--graceful-timeout",
            "5",
            APP,
        ],
        WEBSOCKETS_LINE,
    ),
}

KINDS = tuple(COMMANDS)


def command(kind: str, port: int, app: str = APP) -> tuple[list[str], dict[str, str]]:
    """The module and arguments for ``python -m``, and the server's environment."""
    args, env = COMMANDS[kind]
    return [app if a == APP else a.replace("{port}", str(port)) for a in args], env


class AsgiServer(DaphneServer):
    """A server of any kind, as ``DaphneServer`` runs Daphne, serving ``app`` (for example
    ``tests.memprobe_asgi:application``), with ``extra_env`` over the kind's environment."""

    def __init__(
        self,
        kind: str,
        env: dict[str, str],
        log_path: Path,
        app: str = APP,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(env, log_path)
        self.kind = kind
        args, server_env = command(kind, self.port, app)
        self.args = ["-m", *args]
        self.env = {**self.env, **server_env, **(extra_env or {})}

    def start(self, timeout: float = 30) -> AsgiServer:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.kind} did not start: {self.log()}")
