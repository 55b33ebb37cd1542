# The demo and the tests. `make demo` needs only python3 (3.11+); `make test` installs
# what it needs (see tests/run.sh).
PYTHON ?= python3
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo demo-env test bench

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

demo-env: $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q -U pip
	$(VENV)/bin/python -m pip install -q -e '.[demo]'

demo: demo-env
	DEMO_BASE_URL=$${DEMO_BASE_URL:-http://$(HOST):$(PORT)} bash scripts/demo.sh $(HOST) $(PORT)

test:
	bash tests/run.sh

# Every figure, instruction counts and memory attribution included (docs/performance.md).
# BENCH_ARGS: sections and flags instead, e.g. make bench BENCH_ARGS='--quick handshakes'
BENCH_ARGS ?= --callgrind --callgrind-handshakes 30 --tracemalloc
AS_ROOT := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
bench: demo-env
	@command -v valgrind >/dev/null || { $(AS_ROOT) apt-get update -qq && \
	  $(AS_ROOT) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
	$(VENV)/bin/python -m bench $(BENCH_ARGS)
