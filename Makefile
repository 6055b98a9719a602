# The two commands of the README: `make run` and `make test`. Each installs what is
# missing, starts the local stack (PostgreSQL 18 + pgvector, Redis 7) and goes on.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/fibonacco-target
BIN := $(CARGO_TARGET_DIR)/debug/fibonacco
STACK := scripts/stack.sh
# Load the stack's DATABASE_URL / REDIS_URL unless the caller set them.
WITH_ENV = set -a; [ -f .stack/env ] && . .stack/env; set +a;

.PHONY: run test stack stop status build bench lint fmt openapi clean-test-dbs notebooks release

stack:
	@$(STACK) install
	@$(STACK) up
	@scripts/models.sh

build:
	cargo build --bin fibonacco

run: stack build
	@$(WITH_ENV) $(BIN) migrate
	@$(WITH_ENV) token=$$($(BIN) seed --demo) && port=$${APP_PORT:-8000} && \
	  echo "" && \
	  echo "Fibonacco is starting on http://127.0.0.1:$$port" && \
	  echo "Demo token: $$token" && \
	  echo "Try:" && \
	  echo "  curl -s -H 'Authorization: Bearer $$token' http://127.0.0.1:$$port/api/v1/customers | head -c 600" && \
	  echo "  curl -s -X POST -H 'Authorization: Bearer $$token' -H 'Content-Type: application/json' \\" && \
	  echo "       -d '{\"name\":\"New Co\",\"email\":\"hi@newco.example\"}' http://127.0.0.1:$$port/api/v1/customers" && \
	  echo "Docs: http://127.0.0.1:$$port/docs   Stop: Ctrl-C, then 'make stop'" && echo "" && \
	  exec $(BIN) run

test: stack
	@$(STACK) drop-test-dbs
	@$(WITH_ENV) cargo nextest run --workspace --no-fail-fast
	@# The binary nextest just built for the CLI tests (same features, no second build).
	@scripts/contract.sh 25

# `make bench` runs the API benchmark; `make bench AREA=queue BENCH_ARGS="--workers 8"` another area.
AREA ?= api
bench: stack
	@$(WITH_ENV) cargo run --release --bin fibonacco -- bench $(AREA) $(BENCH_ARGS)

# The shippable binary: built with line tables (split DWARF packed into fibonacco.dwp),
# then stripped; its debug info goes beside it in fibonacco.debug, found again through the
# binary's .gnu_debuglink, so backtraces can still name files and lines.
REL := $(CARGO_TARGET_DIR)/release
release:
	cargo build --release --bin fibonacco
	@mkdir -p dist
	cp $(REL)/fibonacco dist/fibonacco
	cp $(REL)/fibonacco.dwp dist/fibonacco.dwp
	cd dist && objcopy --only-keep-debug fibonacco fibonacco.debug && \
	  objcopy --strip-debug --add-gnu-debuglink=fibonacco.debug fibonacco
	@ls -la dist

# Executes the notebooks against the current lake and database; executed copies and HTML
# (open notebooks/html/*.html in a browser) land in notebooks/html/.
notebooks: stack
	@$(WITH_ENV) .venv/bin/python scripts/run_notebooks.py notebooks/html

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

openapi:
	@cargo run -q --bin fibonacco -- openapi

stop:
	@$(STACK) down

status:
	@$(STACK) status
