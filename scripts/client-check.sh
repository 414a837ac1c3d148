#!/usr/bin/env bash
# Generated clients as tests, in about a minute: from the committed
# openapi.json, generates a Python client (openapi-python-client) and a
# TypeScript client (@hey-api/openapi-ts, fetch client) into a temporary
# directory; type-checks both (mypy --strict over the generated package and
# clients/scenario.py; tsc --strict over the generated code and
# clients/usage.ts); then starts a fresh database, `stock-tracker migrate`,
# `serve` and `worker` on free loopback ports (clients/stack.py, with RabbitMQ
# queues and a Redis key prefix of the run's own) and runs clients/scenario.py
# through the generated Python client. Prints a summary; exits non-zero on
# any failure.
#
# The generators' warnings are faults of the document: each one fails the
# check unless clients/known-generator-warnings.txt lists it, and a listed
# one that no longer appears fails it too (so the list only shrinks).
#
# Tools are installed when missing or when their pins change, outside the
# clone: a virtualenv from clients/requirements.txt and an npm prefix from
# clients/package.json and clients/package-lock.json, each stamped with the
# hash of its pin files. Nothing is left running: processes stopped, the
# database dropped, the queues deleted and the temporary directory removed,
# on success, failure or a signal.
#
# Environment:
#   STOCK_TRACKER_BIN    the binary; else `cargo build -q --bin stock-tracker`
#                        and ${CARGO_TARGET_DIR:-~/.cache/stock-tracker/target}/debug/stock-tracker
#   CLIENT_CHECK_KEEP=1  keep the temporary directory (generated code, logs)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/stack-cleanup.sh
source scripts/stack-cleanup.sh

CACHE="$HOME/.cache/stock-tracker"
VENV="$CACHE/clients-venv"
NPM_PREFIX="$CACHE/clients-npm"
DOCUMENT="$ROOT/openapi.json"
KNOWN="$ROOT/clients/known-generator-warnings.txt"
# @hey-api/openapi-ts 0.95 runs on Node.js 20.19 or later.
NODE_MIN=20.19

START=$SECONDS
SUMMARY=()
WORK=""
CHECK_PID=""
PASSED=0

log() { printf 'client-check: %s\n' "$*" >&2; }
row() { SUMMARY+=("$(printf '%-22s %4s s  %s' "$1" "$(( SECONDS - PHASE ))" "$2")"); }
fail() {
  log "FAIL: $*"
  exit 1
}

# Stops the scenario's stack (which cleans up after itself), then whatever it
# could not stop because it was killed: its children by pid, the database,
# the queues, the run's Redis keys; then prints the summary.
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  local rc=$? i
  stop_check "$CHECK_PID"
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    reap_stack "$WORK/stack"
    if [ -f "$WORK/stack/redis-prefix" ]; then
      redis-cli -h 127.0.0.1 --scan --pattern "$(cat "$WORK/stack/redis-prefix")*" 2>/dev/null \
        | xargs -r -n 500 redis-cli -h 127.0.0.1 DEL >/dev/null 2>&1 || true
    fi
    if [ "${CLIENT_CHECK_KEEP:-}" = 1 ]; then
      log "kept $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
  echo
  echo "client check summary"
  for i in "${SUMMARY[@]}"; do
    echo "  $i"
  done
  if [ "$rc" -eq 0 ] && [ "$PASSED" -eq 1 ]; then
    echo "client check: passed in $(( SECONDS - START )) s"
  else
    echo "client check: FAILED in $(( SECONDS - START )) s (exit $rc)"
    [ "$rc" -ne 0 ] || rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT
# A signal ends the script through its EXIT trap, so everything is stopped too.
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- tools
PHASE=$SECONDS
have() { command -v "$1" >/dev/null 2>&1; }
for tool in python3 node npm; do
  have "$tool" || fail "$tool not found on PATH"
done
node_version=$(node -p 'process.versions.node')
if [ "$(printf '%s\n%s\n' "$NODE_MIN" "$node_version" | sort -V | head -1)" != "$NODE_MIN" ]; then
  fail "Node.js $node_version is older than $NODE_MIN, which @hey-api/openapi-ts needs"
fi

stamp() { cat "$@" | sha256sum | cut -d' ' -f1; }
installed=()
want=$(stamp clients/requirements.txt)
if [ "$(cat "$VENV/.pins" 2>/dev/null || true)" != "$want" ] || [ ! -x "$VENV/bin/python" ]; then
  log "installing the Python tools into $VENV (clients/requirements.txt)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r clients/requirements.txt
  # Written last: an interrupted install is redone.
  echo "$want" >"$VENV/.pins"
  installed+=(venv)
fi
want=$(stamp clients/package.json clients/package-lock.json)
if [ "$(cat "$NPM_PREFIX/.pins" 2>/dev/null || true)" != "$want" ] || [ ! -x "$NPM_PREFIX/node_modules/.bin/tsc" ]; then
  log "installing the npm tools into $NPM_PREFIX (clients/package-lock.json)"
  rm -rf "$NPM_PREFIX"
  mkdir -p "$NPM_PREFIX"
  cp clients/package.json clients/package-lock.json "$NPM_PREFIX/"
  (cd "$NPM_PREFIX" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$NPM_PREFIX/.pins"
  installed+=(npm)
fi
py_gen_version=$("$VENV/bin/openapi-python-client" --version | awk '{print $NF}')
ts_gen_version=$(node -p "require('$NPM_PREFIX/node_modules/@hey-api/openapi-ts/package.json').version")
tsc_version=$("$NPM_PREFIX/node_modules/.bin/tsc" --version | awk '{print $NF}')
mypy_version=$("$VENV/bin/mypy" --version | awk '{print $2}')
row tools "$( [ "${#installed[@]}" -gt 0 ] && echo "installed ${installed[*]}" || echo cached ): openapi-python-client $py_gen_version, mypy $mypy_version, @hey-api/openapi-ts $ts_gen_version, typescript $tsc_version"

# The binary: given, or built (a no-op in `make test`, which has built it).
PHASE=$SECONDS
if [ -n "${STOCK_TRACKER_BIN:-}" ]; then
  BIN=$STOCK_TRACKER_BIN
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
  cargo build -q --bin stock-tracker
  BIN="$CARGO_TARGET_DIR/debug/stock-tracker"
fi
[ -x "$BIN" ] || fail "the stock-tracker binary is missing: $BIN"
row binary "$BIN"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/client-check.XXXXXX")
GEN="$WORK/generated"
mkdir -p "$GEN/python" "$WORK/stack"
operations=$(python3 -c '
import json, sys
doc = json.load(open(sys.argv[1]))
print(sum(1 for item in doc["paths"].values() for op in item.values() if isinstance(op, dict) and "operationId" in op))
' "$DOCUMENT")

# ---------------------------------------------------------------- generate
PHASE=$SECONDS
# The generator formats its output with ruff, from the virtualenv.
if ! PATH="$VENV/bin:$PATH" "$VENV/bin/openapi-python-client" generate --path "$DOCUMENT" \
  --output-path "$GEN/python/stock_tracker_client" --meta none >"$WORK/python-generator.log" 2>&1; then
  cat "$WORK/python-generator.log" >&2
  fail "openapi-python-client could not generate the client"
fi
# Each warning: its heading, a tab, the first line of its reason.
awk '
  /^(Unable to process schema|Unable to parse|WARNING parsing|Cannot parse|Skipping Integration)/ {
    if (heading != "") print heading "\t" reason
    heading = $0; reason = ""; next
  }
  heading != "" && reason == "" && NF { reason = $0 }
  END { if (heading != "") print heading "\t" reason }
' "$WORK/python-generator.log" >"$WORK/warnings"
if grep -q "encountered while generating" "$WORK/python-generator.log" && [ ! -s "$WORK/warnings" ]; then
  cat "$WORK/python-generator.log" >&2
  fail "openapi-python-client warned in a form this script does not read (above)"
fi
grep -v '^\s*\(#\|$\)' "$KNOWN" >"$WORK/known" || true
new=0 gone=0 known=0
while IFS=$'\t' read -r heading reason; do
  if grep -qxF "$heading" "$WORK/known"; then
    known=$((known + 1))
    log "known generator warning (a fault of the document): $heading $reason"
  else
    new=$((new + 1))
    log "NEW generator warning: $heading $reason"
  fi
done <"$WORK/warnings"
while read -r heading; do
  if ! cut -f1 "$WORK/warnings" | grep -qxF "$heading"; then
    gone=$((gone + 1))
    log "no longer warned, remove it from clients/known-generator-warnings.txt with its workaround: $heading"
  fi
done <"$WORK/known"
if [ "$new" -gt 0 ] || [ "$gone" -gt 0 ]; then
  sed -n '/encountered while generating/,$p' "$WORK/python-generator.log" >&2
  fail "openapi-python-client: $new new warning(s), $gone listed warning(s) gone (clients/known-generator-warnings.txt)"
fi
py_ops=$(find "$GEN/python/stock_tracker_client/api" -name '*.py' ! -name '__init__.py' | wc -l)
py_models=$(find "$GEN/python/stock_tracker_client/models" -name '*.py' ! -name '__init__.py' | wc -l)
[ "$py_ops" -eq "$operations" ] || fail "the Python client has $py_ops operations, the document $operations"
row "generate python" "$py_ops/$operations operations, $py_models models; $known known warning(s) (clients/known-generator-warnings.txt)"

PHASE=$SECONDS
if ! NO_COLOR=1 FORCE_COLOR=0 "$NPM_PREFIX/node_modules/.bin/openapi-ts" -i "$DOCUMENT" -o "$GEN/ts" \
  -c @hey-api/client-fetch --no-log-file >"$WORK/ts-generator.log" 2>&1; then
  cat "$WORK/ts-generator.log" >&2
  fail "@hey-api/openapi-ts could not generate the client"
fi
if grep -qiE 'warn|error' "$WORK/ts-generator.log"; then
  cat "$WORK/ts-generator.log" >&2
  fail "@hey-api/openapi-ts warned (above)"
fi
ts_ops=$(grep -c '^export const ' "$GEN/ts/sdk.gen.ts" || true)
[ "$ts_ops" -eq "$operations" ] || fail "the TypeScript client has $ts_ops operations, the document $operations"
row "generate typescript" "$ts_ops/$operations operations, no warnings"

# ---------------------------------------------------------------- type-check
PHASE=$SECONDS
if ! MYPYPATH="$GEN/python" "$VENV/bin/mypy" --config-file clients/mypy.ini --cache-dir "$WORK/mypy-cache" \
  "$GEN/python/stock_tracker_client" clients/scenario.py >"$WORK/mypy.log" 2>&1; then
  cat "$WORK/mypy.log" >&2
  fail "mypy --strict found errors in the generated Python client or clients/scenario.py"
fi
row "mypy --strict" "$(tail -1 "$WORK/mypy.log")"

PHASE=$SECONDS
# clients/tsconfig.json with the generated directory as the module "stock-tracker-client".
cat >"$GEN/tsconfig.json" <<EOF
{
  "extends": "$ROOT/clients/tsconfig.json",
  "compilerOptions": {
    "paths": {
      "stock-tracker-client": ["./ts/index.ts"],
      "stock-tracker-client/*": ["./ts/*"]
    }
  },
  "include": ["ts/**/*.ts", "$ROOT/clients/usage.ts"]
}
EOF
if ! "$NPM_PREFIX/node_modules/.bin/tsc" -p "$GEN/tsconfig.json" >"$WORK/tsc.log" 2>&1; then
  cat "$WORK/tsc.log" >&2
  fail "tsc --strict found errors in the generated TypeScript client or clients/usage.ts"
fi
ts_files=$(find "$GEN/ts" -name '*.ts' | wc -l)
row "tsc --strict" "no errors in $ts_files generated files and clients/usage.ts"

# ---------------------------------------------------------------- scenario
PHASE=$SECONDS
scripts/services.sh
# In the background, so that a signal reaches the trap at once.
"$VENV/bin/python" clients/stack.py --work "$WORK/stack" --bin "$BIN" --python "$VENV/bin/python" \
  --client-path "$GEN/python" --summary-file "$WORK/scenario-summary" &
CHECK_PID=$!
rc=0
wait "$CHECK_PID" || rc=$?
CHECK_PID=""
closing=$(cat "$WORK/scenario-summary" 2>/dev/null || true)
if [ "$rc" -ne 0 ] || ! grep -q "passed, 0 failed" <<<"$closing"; then
  row scenario "FAILED: ${closing:-no closing line}"
  fail "the scenario against the live API failed (above)"
fi
row scenario "$closing"
PASSED=1
