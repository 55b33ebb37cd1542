#!/usr/bin/env bash
# Migrate, seed and serve the demo on Daphne: scripts/demo.sh [HOST] [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=${1:-127.0.0.1}
PORT=${2:-8000}
export DEMO_BASE_URL=${DEMO_BASE_URL:-http://$HOST:$PORT}
PY=${PY:-.venv/bin/python}
$PY manage.py migrate -v0
$PY manage.py demo_seed
cat <<MSG

  wsauth demo: $DEMO_BASE_URL/
  log in as alice / alicealice or bob / bobbob (two browsers, or one private window)
  administrator admin / adminadmin at /admin/: WebSocket authentication › Live connections
  Prometheus metrics: $DEMO_BASE_URL/metrics   audit log lines: DEMO_AUDIT=1
  rooms: $DEMO_BASE_URL/chat/lobby/   echo: $DEMO_BASE_URL/echo/
  channel layer: ${REDIS_URL:-in memory (set REDIS_URL to use Redis)}

MSG
exec $PY -m daphne -b "$HOST" -p "$PORT" project.asgi:application
