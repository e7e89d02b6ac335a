# neoevents — developer entry points. `make run` and `make test` set everything up themselves.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CACHE ?= $(HOME)/.cache/neoevents
PORT ?= 8000

.PHONY: run test lint typecheck unit conformance deps-system deps-node deps-bench-node centrifugo bench clean proto

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/neoevents serve --port $(PORT)

# System services the tests start themselves (redis-server, nats-server, chromium).
deps-system:
	@bash scripts/install-system-deps.sh

# The official JavaScript SDK (npm `centrifuge` with `ws`) for the conformance tests.
deps-node:
	@cd tests/conformance/js && ( [ -d node_modules/centrifuge ] || npm ci --no-audit --no-fund --silent )

# The benchmark's Node.js peer (socket.io), pinned in bench/peers/package-lock.json.
deps-bench-node:
	@cd bench/peers && ( [ -d node_modules/socket.io ] || npm ci --no-audit --no-fund --silent )

# Real Centrifugo, built from the Go module proxy: a test and benchmark reference only.
centrifugo:
	@bash scripts/build-centrifugo.sh "$(CACHE)/bin"

lint: $(STAMP)
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit tests/contract

test: $(STAMP) deps-system deps-node deps-bench-node centrifugo lint typecheck
	NEOEVENTS_CENTRIFUGO_BIN="$(CACHE)/bin/centrifugo" $(PY) -m pytest -q -p no:cacheprovider tests

proto: $(STAMP)
	$(PY) -m pip install -q grpcio-tools==1.85.1
	$(PY) -m grpc_tools.protoc -I. --python_out=. neoevents/protocol/client.proto neoevents/protocol/control.proto

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Benchmarks against Centrifugo, nats-server, floor servers and peers (socket.io, python-socketio, Django
# Channels); writes bench/results/ and docs/benchmarks.md.
# BENCH_ARGS="--quick" for a run of seconds, e.g. BENCH_ARGS="--scenarios fanout --targets neoevents,centrifugo".
BENCH_ARGS ?=
bench: $(STAMP) deps-system deps-node deps-bench-node centrifugo
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m bench run $(BENCH_ARGS)
