#!/usr/bin/env bash
# Fuzzes the running API against its own OpenAPI document with schemathesis:
# no 5xx, and every response's status, content type, headers and body as
# documented. Every route added later is covered without touching this file.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stock-tracker/target}"
export CARGO_TARGET_DIR
VENV="${STOCK_TRACKER_VENV:-$HOME/.cache/stock-tracker/venv}"
REPORT_DIR="${SCHEMATHESIS_REPORT_DIR:-$CARGO_TARGET_DIR/schemathesis}"

# schemathesis, pinned in requirements/schemathesis/requirements.txt, into the
# tests' virtualenv; reinstalled only when that file changes (its hash is
# recorded after a successful install).
REQUIREMENTS=requirements/schemathesis/requirements.txt
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
wanted=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [ "$(cat "$VENV/.requirements-schemathesis" 2>/dev/null || true)" != "$wanted" ]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
  printf '%s' "$wanted" >"$VENV/.requirements-schemathesis"
fi

cargo build -q --bin stock-tracker
BIN="$CARGO_TARGET_DIR/debug/stock-tracker"

if [ -z "${SCHEMATHESIS_DATABASE_URL:-}" ]; then
  # A fresh database per run: nothing a previous run (or an earlier version
  # of an unreleased migration) left behind decides this one.
  psql "postgres://postgres:postgres@127.0.0.1:5432/postgres" -qc \
    "DROP DATABASE IF EXISTS stock_tracker_schemathesis WITH (FORCE)"
fi
export DATABASE_URL="${SCHEMATHESIS_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/stock_tracker_schemathesis}"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export STOCK_TRACKER__SERVER__PORT="$PORT"
export STOCK_TRACKER__REDIS__KEY_PREFIX="schemathesis:$$:"
export STOCK_TRACKER_CONFIG="$PWD/config/fuzzing.toml"
mkdir -p "$REPORT_DIR"
LOG="$REPORT_DIR/server.log"

"$BIN" migrate
"$BIN" serve >"$LOG" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
  if "$BIN" healthcheck --timeout-secs 1 >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER" 2>/dev/null; then cat "$LOG"; exit 1; fi
  sleep 0.2
done

BASE="http://127.0.0.1:$PORT"
run_schemathesis() {
  "$VENV/bin/schemathesis" --config-file schemathesis.toml run "$BASE/openapi.json" \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" \
    --generation-database none \
    --report junit --report-dir "$REPORT_DIR" \
    "$@"
}

# Pass 1: as an anonymous client, every operation.
run_schemathesis

# Pass 2: signed in as a tenant owner, so protected operations are fuzzed
# beyond their 401. Logout, deleting one's own account and deleting the
# tenant are left out: each would end the session mid-run.
TOKEN=$(python3 - "$BASE" <<'PY'
import json, sys, urllib.request, uuid
base = sys.argv[1]
def post(path, body):
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)
email = f"fuzz-{uuid.uuid4().hex}@example.com"
password = "fuzzing-password-" + uuid.uuid4().hex
post("/api/v1/auth/register", {"email": email, "password": password, "tenant_name": "Fuzzing"})
print(post("/api/v1/auth/login", {"email": email, "password": password})["access_token"])
PY
)
run_schemathesis --header "Authorization: Bearer $TOKEN" --exclude-path /api/v1/auth/logout \
  --exclude-name "DELETE /api/v1/users/me" --exclude-name "DELETE /api/v1/tenants/me"
