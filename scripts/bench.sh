#!/usr/bin/env bash
# The load benchmark (docs/performance.md). Installs wrk when missing, builds
# the binary and runs bench/run.py, which seeds a fresh database, starts the
# API as its own process and drives it with wrk from another.
#
#   scripts/bench.sh            release build, full run; writes bench/results/ and the figures in docs/performance.md
#   scripts/bench.sh --smoke    debug build, a few seconds per scenario, writes nothing (CI runs this)
#
# Further arguments go to bench/run.py (e.g. --duration 20 --concurrency 64).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stock-tracker/target}"

if ! command -v wrk >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "bench: installing wrk" >&2
  if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk; then
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk
  fi
fi

if [ "${1:-}" = "--smoke" ]; then
  # The harness is what a smoke run checks, not the figures: a debug build
  # (with the layer switch, like every benchmark build) is enough.
  cargo build --features bench-layers --bin stock-tracker
  exec python3 bench/run.py --binary "$CARGO_TARGET_DIR/debug/stock-tracker" "$@"
fi
cargo build --release --features bench-layers --bin stock-tracker
exec python3 bench/run.py --binary "$CARGO_TARGET_DIR/release/stock-tracker" "$@"
