#!/usr/bin/env bash
# The multi-replica check, on loopback, in about 2.5 minutes: a Redis Cluster
# of three masters, a fresh PostgreSQL database behind a PgBouncer in
# transaction mode, RabbitMQ queues of its own, two `stock-tracker serve`
# behind HAProxy, two workers, two beats and a real Prometheus; a minute of
# mixed load through HAProxy, during which one API replica, one worker and
# the leading beat are killed with SIGKILL; then checks that no acknowledged
# write, sync or webhook delivery was lost and that TargetDown fired for
# exactly the killed targets. The logic is in scripts/scale_check.py (what it
# starts and checks: its docstring; the table of a run: docs/operations.md,
# "Replicas under failure").
#
# Installs HAProxy and Prometheus with apt when missing; PostgreSQL, Redis,
# RabbitMQ and PgBouncer come from scripts/services.sh. Nothing is left
# running: every process is stopped, the database dropped, the queues
# deleted and the temporary directory removed, on success, failure or a
# signal.
#
# Environment:
#   STOCK_TRACKER_BIN  the binary; default
#                      ${CARGO_TARGET_DIR:-~/.cache/stock-tracker/target}/debug/stock-tracker
#                      (not built here: `make test` builds it first)
#   SCALE_CHECK_KEEP=1 keep the temporary directory (logs, configs)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/stack-cleanup.sh
source scripts/stack-cleanup.sh

BIN=${STOCK_TRACKER_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/stock-tracker/target}/debug/stock-tracker}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

log() { printf 'scale-check: %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
  log "installing $*"
  if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; then
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
  fi
}

if [ ! -x "$BIN" ]; then
  log "the stock-tracker binary is missing: $BIN"
  log "build it first (cargo build; make test does), or set STOCK_TRACKER_BIN"
  exit 1
fi

missing=()
have haproxy || missing+=(haproxy)
have prometheus || missing+=(prometheus)
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
fi
scripts/services.sh

WORK=$(mktemp -d "${TMPDIR:-/tmp}/scale-check.XXXXXX")
# PgBouncer drops to PostgreSQL's user when started as root: it must reach its files.
chmod 755 "$WORK"
CHECK_PID=""

# Stops the check (which cleans up after itself), then whatever it could not
# stop because it was killed: its children by pid, PgBouncer, the database,
# the queues.
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  stop_check "$CHECK_PID"
  reap_stack "$WORK"
  if [ "${SCALE_CHECK_KEEP:-}" = 1 ]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
# A signal ends the script through its EXIT trap, so everything is stopped too.
trap 'exit 130' INT
trap 'exit 143' TERM

# In the background, so that a signal reaches the trap at once.
python3 scripts/scale_check.py --work "$WORK" --bin "$BIN" &
CHECK_PID=$!
rc=0
wait "$CHECK_PID" || rc=$?
CHECK_PID=""
exit "$rc"
