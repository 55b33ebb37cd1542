"""Serve tests/issuer.py's OpenID issuer until SIGTERM, for a project outside the repo.

Writes ``{"issuer": ..., "token": ..., "sub": ...}`` to OUT (atomically, once the issuer
answers) with an RS256 access token for AUDIENCE. Only pyjwt and cryptography are
needed, which wsauth brings; the repository's ``wsauth`` is not imported.

Usage: issuer_serve.py PATH/TO/tests/issuer.py OUT AUDIENCE
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import threading
import types
import uuid
from pathlib import Path


def main() -> int:
    issuer_py, out, audience = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    # Loaded by path: putting tests/ on sys.path would expose its other modules. A package
    # of its own resolves issuer.py's relative import (leaks.py, which records tokens).
    package = types.ModuleType("wsauth_tests")
    package.__path__ = [str(issuer_py.parent)]
    sys.modules["wsauth_tests"] = package
    spec = importlib.util.spec_from_file_location("wsauth_tests.issuer", issuer_py)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    issuer = module.Issuer().start()
    sub = "packaging-" + uuid.uuid4().hex[:8]
    token = issuer.token(sub=sub, aud=audience)
    partial = out.with_suffix(".partial")
    partial.write_text(json.dumps({"issuer": issuer.issuer, "token": token, "sub": sub}))
    os.replace(partial, out)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    issuer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
