# shellcheck shell=bash
# Sourced by scripts/scale-check.sh and scripts/client-check.sh: stopping a
# check run by scripts/scale_check.py's Stack (which cleans up after itself),
# then what it could not clean up because it was killed, from the files it
# keeps in its stack directory: its children by pid ("pids"), its database
# ("database") and queues ("queues"), unless it wrote "cleaned".

# SIGTERM to the check PID (if it still runs), up to 30 s for it to clean
# up, then SIGKILL.
stop_check() {
  local pid=$1
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

# Kills what the stack in DIR started, then drops its database and deletes
# its queues unless it did.
reap_stack() {
  local dir=$1 pid _name queue
  if [ -f "$dir/pids" ]; then
    while read -r pid _name; do
      kill -KILL "$pid" 2>/dev/null || true
    done <"$dir/pids"
  fi
  [ ! -f "$dir/cleaned" ] || return 0
  if [ -f "$dir/database" ]; then
    psql -h 127.0.0.1 -U postgres -d postgres -qAtc \
      "DROP DATABASE IF EXISTS \"$(cat "$dir/database")\" WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [ -f "$dir/queues" ]; then
    while read -r queue; do
      rabbitmqctl delete_queue "$queue" >/dev/null 2>&1 || true
    done <"$dir/queues"
  fi
}
