#!/usr/bin/env bash
# The whole test suite, as CI runs it, on a fresh machine or a warm one:
#   Django 5.2 LTS on Python 3.11 (.venv) and Django 6.0 on Python 3.12 (.venv312),
#   plus ruff and mypy. Extra arguments go to pytest (e.g. -k ticket, -x).
# Installs what it needs: Debian's chromium (browser tests), Redis if none answers on
# 127.0.0.1:6379, and both virtual environments.
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

# --- Python environments ---------------------------------------------------------------
find_python() {  # find_python 3.12 -> a python3.12 executable
  local v=$1 p
  for p in "python$v" "$(pyenv root 2>/dev/null)"/versions/"$v"*/bin/"python$v"; do
    if "$p" -c 'import sys' >/dev/null 2>&1; then command -v "$p" || echo "$p"; return; fi
  done
  return 1
}
make_venv() {  # make_venv DIR PYTHON DJANGO_SPEC EXTRAS
  local dir=$1 py=$2 django=$3 extras=$4
  [ -x "$dir/bin/python" ] || "$py" -m venv "$dir"
  "$dir/bin/python" -m pip install -q -U pip 2>&1 | grep -v '^WARNING: Location' || true
  "$dir/bin/python" -m pip install -q -e ".[$extras]" "$django" 2>&1 \
    | grep -v '^WARNING: Location' || true
  "$dir/bin/python" -c "import django, wsauth; print('==', '$dir', 'Django', django.get_version())"
}

PY311=$(find_python 3.11 || command -v python3)
PY312=$(find_python 3.12) || { echo "python3.12 not found (pyenv install 3.12)"; exit 1; }
make_venv .venv "$PY311" "django>=5.2,<6.0" dev
make_venv .venv312 "$PY312" "django>=6.0,<6.1" test

# --- checks ------------------------------------------------------------------------------
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy

echo "== tests: Django 5.2 / Python 3.11"
.venv/bin/python -m pytest "$@"
echo "== tests: Django 6.0 / Python 3.12"
.venv312/bin/python -m pytest "$@"
