#!/usr/bin/env bash
# The tests' Python virtualenv: the Celery client, for the test that enqueues
# a task from Python (interoperability with the Rust worker), and aiosmtpd,
# the SMTP server the account-email tests send to. What it holds is pinned in
# requirements/test/requirements.txt. Cached outside the clone; reinstalled
# only when that file changes. Prints nothing when all is there.
set -euo pipefail
REQUIREMENTS="$(cd "$(dirname "$0")/.." && pwd)/requirements/test/requirements.txt"
VENV="${STOCK_TRACKER_VENV:-$HOME/.cache/stock-tracker/venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# The file's hash, recorded after a successful install: an edited pin (or a
# venv that never finished installing) reinstalls, an unchanged one costs nothing.
wanted=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [ "$(cat "$VENV/.requirements-test" 2>/dev/null || true)" != "$wanted" ]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
  printf '%s' "$wanted" >"$VENV/.requirements-test"
fi
