#!/usr/bin/env bash
# The package as a stranger gets it. Builds the wheel and the sdist from the checkout's
# files, runs `twine check --strict`, installs the wheel into a fresh virtualenv, makes a
# project with `django-admin startproject` outside the repository, applies the README's
# adoption steps to it as written (adopt.py), then serves it with Daphne and authenticates
# a real WebSocket client against it: a real issuer (tests/issuer.py) and Redis.
#
#   tests/packaging/check.sh [PYTHON]        PYTHON (or $PYTHON) makes the venvs; python3
#
# DJANGO: a requirement for the fresh venv (e.g. 'django>=6.0,<6.1'); else what pip picks.
# WSAUTH_TEST_REDIS_DB: the Redis database the project uses (11, as the suite).
# KEEP=1 keeps the temporary directory for a look afterwards.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=${1:-${PYTHON:-python3}}
redis_db=${WSAUTH_TEST_REDIS_DB:-11}
# Nothing of the caller's may reach the project: the repository's wsauth least of all.
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV DJANGO_SETTINGS_MODULE

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wsauth-packaging.XXXXXX")
pids=()

step() { echo "== [${SECONDS}s] $*"; }
fail() { echo "packaging check FAILED: $*" >&2; exit 1; }
# Installs use --no-compile: modules compile as they are imported, so the check does not
# wait for all of Django and Twisted to be compiled.
quiet() {  # quiet LOG WHAT COMMAND...: the command's output only when it fails
  local log=$1 what=$2; shift 2
  "$@" >"$log" 2>&1 || { grep -v 'is ignored: it is neither' "$log" | tail -40 >&2; fail "$what"; }
}
cleanup() {
  local rc=$? pid _
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$rc" != 0 ] && [ -s "$tmp/daphne.log" ]; then
    echo "-- the project's Daphne log (last 30 lines):" >&2
    tail -30 "$tmp/daphne.log" >&2
  fi
  if [ -n "${KEEP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "packaging check interrupted" >&2; exit 130' INT TERM

case "$tmp/" in "$repo"/*) fail "the temporary directory $tmp is inside the repository" ;; esac
"$python" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
  || fail "$python is not Python 3.11 or newer"
(exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null || fail "nothing listens on 127.0.0.1:6379 (Redis)"

step "build tools (build, twine) in a throwaway venv"
"$python" -m venv "$tmp/tools"
quiet "$tmp/tools.log" "installing build and twine" "$tmp/tools/bin/pip" install --no-compile build twine

step "wheel and sdist from the checkout's files (tracked and new, not ignored)"
mkdir "$tmp/src"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard) |
  while IFS= read -r -d '' f; do
    [ -e "$repo/$f" ] || continue  # deleted in the work tree
    mkdir -p "$tmp/src/$(dirname "$f")" && cp -p "$repo/$f" "$tmp/src/$f"
  done
# The wheel is built from the sdist (build's default): the sdist must be complete.
quiet "$tmp/build.log" "python -m build" "$tmp/tools/bin/python" -m build --outdir "$tmp/dist" "$tmp/src"
ls "$tmp/dist"
"$tmp/tools/bin/twine" check --strict "$tmp/dist"/* || fail "twine check --strict"
"$tmp/tools/bin/python" "$here/dist_contents.py" "$tmp/dist" "$tmp/src" \
  || fail "the distributions' contents"
wheel=$(echo "$tmp/dist"/*.whl)

step "a fresh venv with the wheel (not editable), from outside the repository"
cd "$tmp"
"$python" -m venv "$tmp/venv"
venv=$tmp/venv
quiet "$tmp/install.log" "installing the wheel" \
  "$venv/bin/pip" install --no-compile "$wheel" "websockets>=13" ${DJANGO:+"$DJANGO"}
"$venv/bin/python" - <<'EOF' || fail "wsauth does not come from the wheel"
import sys, sysconfig
from pathlib import Path
import django, wsauth
site = Path(sysconfig.get_paths()["purelib"]).resolve()
where = Path(wsauth.__file__).resolve()
assert where.is_relative_to(site), f"wsauth imported from {where}, not {site}"
print(f"   wsauth from {where.parent}; Django {django.get_version()}, Python {sys.version.split()[0]}")
EOF

step "a real issuer (tests/issuer.py) with an RS256 token for the README's audience"
"$venv/bin/python" "$here/issuer_serve.py" "$repo/tests/issuer.py" "$tmp/issuer.json" my-api \
  >"$tmp/issuer.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/issuer.json" ] && break; kill -0 "${pids[-1]}" 2>/dev/null || break; sleep 0.1; done
[ -s "$tmp/issuer.json" ] || { cat "$tmp/issuer.log" >&2; fail "the issuer did not start"; }
issuer=$("$venv/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["issuer"])' "$tmp/issuer.json")
echo "   $issuer"

port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

step "django-admin startproject myproject, then the README's adoption steps as written"
mkdir "$tmp/site"
(cd "$tmp/site" && "$venv/bin/django-admin" startproject myproject) || fail "startproject"
project=$tmp/site/myproject
# What a newcomer types in place of the README's examples: their issuer, their Redis
# database, a free port. The audience and the origins stay the README's own.
PATH="$venv/bin:$PATH" "$venv/bin/python" "$here/adopt.py" "$repo/README.md" "$project" \
  --replace "https://login.example.com/realms/main" "$issuer" \
  --replace "redis://127.0.0.1:6379/0" "redis://127.0.0.1:6379/$redis_db" \
  --replace "-p 8000" "-p $port" \
  --serve-file "$tmp/serve.cmd" || fail "the README's adoption steps"
(cd "$project" && "$venv/bin/python" manage.py check --fail-level WARNING) \
  || fail "manage.py check warns about the adopted project"

step "serve it: $(cat "$tmp/serve.cmd")"
[ "$(wc -l <"$tmp/serve.cmd")" = 1 ] || fail "the README's serve block is not one command"
serve=$(cat "$tmp/serve.cmd")
(cd "$project" && PATH="$venv/bin:$PATH" exec bash -c "exec $serve") >"$tmp/daphne.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  kill -0 "${pids[-1]}" 2>/dev/null || fail "the server exited before listening"
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || fail "nothing listens on 127.0.0.1:$port"

step "a real WebSocket client (websockets) against ws://127.0.0.1:$port"
"$venv/bin/python" "$here/client.py" "http://127.0.0.1:$port" "$tmp/issuer.json" "$project" \
  myproject.settings || fail "the WebSocket client's checks"

echo "packaging check passed in ${SECONDS}s"
