#!/usr/bin/env bash
# The whole test suite, as CI runs it, on a fresh machine or a warm one: ruff and mypy
# (.venv), then the tox matrix (tox.ini: every Python and Django pair, the live tests on
# the oldest and the newest), then the coverage of all of it, gated (pyproject.toml), then
# the packaging check (tests/packaging/check.sh: a wheel adopted outside this repository).
# Extra arguments go to pytest in every cell (e.g. -k ticket, -x).
# Installs what it needs: Debian's chromium (browser tests), Redis if none answers on
# 127.0.0.1:6379, Valkey (unpacked into /opt/valkey), .venv, and the interpreters' paths.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- system packages -----------------------------------------------------------------
[ -x /usr/bin/chromium ] || { echo "== installing chromium"; apt_install chromium; }
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  command -v redis-server >/dev/null || { echo "== installing redis"; apt_install redis-server; }
  echo "== starting redis-server"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

# Valkey (tests/topology.py) comes from bookworm-backports. The package is unpacked into
# $VALKEY_DIR, not installed: its postinst would start a service on 6379, Redis's port.
VALKEY_DIR=/opt/valkey
install_valkey() {
  local sources=/etc/apt/sources.list.d/debian.sources
  local backports=/etc/apt/sources.list.d/bookworm-backports.sources
  local uri tmp deps dep
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # The archive this machine already uses: the URI of the stanza listing "bookworm".
    uri=$(awk 'BEGIN { RS = "" } {
      uri = ""; main = 0; n = split($0, lines, "\n")
      for (i = 1; i <= n; i++) {
        m = split(lines[i], w, /[ \t]+/)
        if (w[1] == "URIs:") uri = w[2]
        if (w[1] == "Suites:") for (j = 2; j <= m; j++) if (w[j] == "bookworm") main = 1
      }
      if (main && uri != "") { print uri; exit }
    }' "$sources")
    [ -n "$uri" ] || { echo "no bookworm archive URI in $sources"; exit 1; }
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
      "$uri" /usr/share/keyrings/debian-archive-keyring.gpg | as_root tee "$backports" >/dev/null
  fi
  # Refresh only the backports index, keeping the others' lists.
  as_root apt-get update -qq -o Dir::Etc::sourcelist="$backports" \
    -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0
  tmp=$(mktemp -d)
  (cd "$tmp" && as_root apt-get download -qq -o APT::Sandbox::User=root \
    -t bookworm-backports valkey-server valkey-tools)
  # The binaries' libraries (adduser is for the service account, not needed here).
  deps=$(dpkg-deb -f "$tmp"/valkey-tools_*.deb Depends | tr ',' '\n' \
    | sed -e 's/[(|].*//' -e 's/ //g' | grep -vx adduser || true)
  for dep in $deps; do
    dpkg-query -W -f='${Status}' "$dep" 2>/dev/null | grep -q "ok installed" \
      || apt_install "$dep"
  done
  for deb in "$tmp"/*.deb; do as_root dpkg-deb -x "$deb" "$VALKEY_DIR"; done
  as_root rm -rf "$tmp"
}
if ! command -v valkey-server >/dev/null && [ ! -x "$VALKEY_DIR/usr/bin/valkey-server" ]; then
  echo "== unpacking valkey-server (bookworm-backports) into $VALKEY_DIR"
  install_valkey
fi
"$(command -v valkey-server || echo "$VALKEY_DIR/usr/bin/valkey-server")" --version

# --- Python environments ---------------------------------------------------------------
find_python() {  # find_python 3.12 -> a python3.12 executable
  local v=$1 p
  for p in "python$v" "$(pyenv root 2>/dev/null)"/versions/"$v"*/bin/"python$v"; do
    if "$p" -c 'import sys' >/dev/null 2>&1; then command -v "$p" || echo "$p"; return; fi
  done
  return 1
}

PY311=$(find_python 3.11 || command -v python3)
# tox looks interpreters up on PATH (python3.12, python3.13): put pyenv's there.
for v in 3.12 3.13; do
  py=$(find_python "$v") || { echo "python$v not found (pyenv install $v)"; exit 1; }
  PATH="$(dirname "$py"):$PATH"
done
export PATH

# .venv: Django 5.2 LTS on Python 3.11 with the dev tools (ruff, mypy, tox, coverage).
[ -x .venv/bin/python ] || "$PY311" -m venv .venv
.venv/bin/python -m pip install -q -U pip 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -e ".[dev]" "django>=5.2,<6.0" 2>&1 \
  | grep -v '^WARNING: Location' || true
.venv/bin/python -c "import django, wsauth; print('== .venv Django', django.get_version())"

# --- checks ------------------------------------------------------------------------------
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy

# --- the matrix --------------------------------------------------------------------------
.venv/bin/coverage erase
echo "== tox: creating the environments"
.venv/bin/tox run-parallel --notest --parallel-no-spinner -p 3 -q
status=0
.venv/bin/tox run -- "$@" || status=$?

echo "== coverage of wsauth, every cell and process"
.venv/bin/coverage combine -q
.venv/bin/coverage report || status=$?

# The wheel and sdist, twine check, and the README's adoption steps in a project that
# django-admin startproject makes outside this repository (tests/packaging/check.sh).
echo "== packaging"
bash tests/packaging/check.sh "$PY311" || status=$?
exit "$status"
