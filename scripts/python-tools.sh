#!/usr/bin/env bash
# A Python virtualenv with the Celery client, for the test that enqueues a
# task from Python (interoperability with the Rust worker), and aiosmtpd, the
# SMTP server the account-email tests send to. Cached outside the clone; installs only what is missing. Prints nothing when all is there.
set -euo pipefail
VENV="${STOCK_TRACKER_VENV:-$HOME/.cache/stock-tracker/venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# 5.6 or later: `task_create_missing_queue_type`, for the quorum queues.
if ! "$VENV/bin/python" -c "import celery, sys; sys.exit(tuple(map(int, celery.__version__.split('.')[:2])) < (5, 6))" >/dev/null 2>&1; then
  "$VENV/bin/pip" install -q "celery>=5.6,<6"
fi
# The SMTP server the account-email tests send to (tests/smtp_sink.py).
if ! "$VENV/bin/python" -c "import aiosmtpd" >/dev/null 2>&1; then
  "$VENV/bin/pip" install -q "aiosmtpd>=1.4,<2"
fi
