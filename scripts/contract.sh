#!/usr/bin/env bash
# The OpenAPI document is the API's contract: schemathesis (PyPI) generates requests
# from it for every operation (phases examples, coverage, fuzzing; not stateful), runs
# every check, once with a tenant's token and once with another tenant's, against the
# real binary on a fresh database. Exit status 0 only with no failure.
#
# Usage: scripts/contract.sh [MAX_EXAMPLES]   (default 12 per operation and phase)
# Needs the stack (scripts/stack.sh up) and the debug binary (cargo build --bin fibonacco).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MAX_EXAMPLES=${1:-${CONTRACT_MAX_EXAMPLES:-12}}
BIN=${CARGO_TARGET_DIR:-$HOME/.cache/fibonacco-target}/debug/fibonacco
VENV="$ROOT/.venv"
OUT="$ROOT/.stack/contract"
log() { printf '[contract] %s\n' "$*" >&2; }

if ! "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("schemathesis") is None)' 2>/dev/null; then
  log "installing schemathesis into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4.3,<5'
fi
[ -x "$BIN" ] || { log "no $BIN: build it first (cargo build --bin fibonacco, or make test)"; exit 1; }
set -a; . .stack/env; set +a

# A database of its own (named like the tests', so `stack.sh drop-test-dbs` clears it).
DB=fibtest_contract
scripts/stack.sh psql -d postgres -c "drop database if exists $DB with (force)"
scripts/stack.sh psql -d postgres -c "create database $DB owner fibonacco"
export DATABASE_URL="${DATABASE_URL%/*}/$DB"
export QUEUE_PREFIX="contract-$$" APP_ENV=testing APP_HOST=127.0.0.1 STRIPE_WEBHOOK_SECRET=whsec_contract_only
# The contract is about shapes, not fair use: limits and budgets are off here (their
# 429s are still in the document and tested in api/tests/fairness.rs).
export RATE_LIMIT_PER_TOKEN=0 RATE_LIMIT_PER_TENANT=0 RATE_LIMIT_GENERATION_PER_TENANT=0 AI_TENANT_DAILY_TOKENS=0
# Without a provider key generation answers 503; the contract checks the routes' own
# answers, so they run on the demo templates.
export AI_LOCAL_TEMPLATES=true
# Tests never reach a real LLM or embedding provider, whatever the environment says.
unset OPENAI_API_KEY OPENROUTER_API_KEY EMBEDDING_BASE_URL
"$BIN" migrate >/dev/null
"$BIN" tenant create --name "Contract A" --slug contract-a >/dev/null
"$BIN" tenant create --name "Contract B" --slug contract-b >/dev/null
TOKEN_A=$("$BIN" token create --tenant contract-a | tail -n 1)
TOKEN_B=$("$BIN" token create --tenant contract-b | tail -n 1)

PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$OUT"
APP_PORT=$PORT SEARCH_PORT=0 "$BIN" api >"$OUT/api.log" 2>&1 &
API_PID=$!
trap 'kill $API_PID 2>/dev/null || true; wait $API_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.2
done

# Every check, with each tenant's token; any failure fails the run. The operations whose
# handlers also check rules JSON Schema cannot state (a referenced record exists, one
# field against another, a time in the future, a workflow state) are listed, with why,
# in scripts/schemathesis.toml: only there may a request valid by the document get 422.
# One worker: hypothesis's lambda introspection is not thread-safe on Python 3.11. No
# example database: every run (here and in CI's fresh clone) generates from the seed alone.
run_st() {
  local out=$1; shift
  "$VENV/bin/schemathesis" --no-color --config-file "$ROOT/scripts/schemathesis.toml" \
    run "http://127.0.0.1:$PORT/api/v1/openapi.json" \
    --phases examples,coverage,fuzzing --max-examples "$MAX_EXAMPLES" --seed 1 --workers 1 \
    --generation-database none \
    --request-timeout 30 --checks all "$@" >"$OUT/$out.txt" 2>&1
}
summary() { grep -E "generated,|failures|passed" "$OUT/$1.txt" | tail -n 2 | sed "s/^/[contract] $1: /" >&2; }

status=0
for who in A B; do
  token_var="TOKEN_$who"
  log "schemathesis, tenant $who's token, every check, $MAX_EXAMPLES examples per operation and phase"
  # The webhook needs Stripe's signature over each body, which no generator can make:
  # its requests are checked for status, content type and schema, not for acceptance.
  if ! run_st "$who" --header "Authorization: Bearer ${!token_var}" --exclude-path /api/stripe/webhook \
    || ! run_st "$who-webhook" --header "Authorization: Bearer ${!token_var}" --include-path /api/stripe/webhook \
      --exclude-checks positive_data_acceptance; then
    status=1
    grep -hE "^_{3,}|ST[0-9]{3}|Received|Documented|curl" "$OUT/$who.txt" "$OUT/$who-webhook.txt" | head -n 80 >&2
  fi
  summary "$who"
done
exit $status
