#!/usr/bin/env bash
# A PgBouncer of the tests' own, in transaction mode (as production runs it),
# on a free loopback port, in front of the PostgreSQL of a URL: every
# database, POOL_SIZE server connections per database and user.
#
#   pgbouncer.sh start DIR POOL_SIZE URL   writes DIR's config, starts it, prints its port
#   pgbouncer.sh stop DIR                  stops the one started in DIR
#   pgbouncer.sh run POOL_SIZE CMD...      runs CMD with one started for it, its port in
#                                          STOCK_TRACKER_TEST_PGBOUNCER_PORT
#                                          (URL: $DATABASE_URL or the default)
#
# The tests' fixture (`tests/api/processes.rs`) and `make test`'s pass
# through the pooler both start it here, so there is one configuration.
set -euo pipefail

DEFAULT_URL="postgres://postgres:postgres@127.0.0.1:5432/stock_tracker"

start() {
  local dir=$1 pool_size=$2 url=$3
  # postgres://user:password@host:port/...
  local rest=${url#*://} credentials user password address host port
  credentials=${rest%%@*}
  user=${credentials%%:*}
  password=""
  [[ $credentials == *:* ]] && password=${credentials#*:}
  address=${rest#*@}
  address=${address%%/*}
  host=${address%%:*}
  port=5432
  [[ $address == *:* ]] && port=${address#*:}
  if ! command -v pgbouncer >/dev/null 2>&1; then
    echo "pgbouncer is not installed (scripts/services.sh installs it)" >&2
    exit 1
  fi
  mkdir -p "$dir"
  # PgBouncer checks clients' passwords against this file and logs in to
  # PostgreSQL with it.
  printf '"%s" "%s"\n' "$user" "$password" > "$dir/users.txt"
  if [ "$(id -u)" -eq 0 ]; then
    # PgBouncer refuses to run as root: it drops to PostgreSQL's user.
    chmod 755 "$dir"
    chmod 644 "$dir/users.txt"
  fi
  # A free port is only free until someone else binds it: between the probe
  # and PgBouncer's bind, another process (a parallel test's server, an
  # outgoing connection's local port) may take it. PgBouncer then exits,
  # and the port may even answer for that other process, so success is
  # PgBouncer itself alive and listening; otherwise try another port.
  local attempt listen pid
  for attempt in 1 2 3 4 5; do
    listen=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    write_config "$dir" "$host" "$port" "$listen" "$pool_size"
    pgbouncer "$dir/pgbouncer.ini" > "$dir/pgbouncer.log" 2>&1 &
    pid=$!
    echo "$pid" > "$dir/pid"
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      if listening "$dir" "$listen"; then
        echo "$listen"
        return 0
      fi
      sleep 0.05
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "pgbouncer did not start on 127.0.0.1:$listen (attempt $attempt):" >&2
    cat "$dir/pgbouncer.log" >&2
  done
  exit 1
}

# Whether the PgBouncer started in DIR bound PORT itself (its log says so;
# one that lost the port logs why and exits) and accepts connections there.
listening() {
  local dir=$1 listen=$2
  grep -q "listening on 127.0.0.1:$listen\$" "$dir/pgbouncer.log" \
    && (exec 3<>"/dev/tcp/127.0.0.1/$listen") 2>/dev/null
}

write_config() {
  local dir=$1 host=$2 port=$3 listen=$4 pool_size=$5
  cat > "$dir/pgbouncer.ini" <<EOF
[databases]
* = host=$host port=$port

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $listen
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/users.txt
pool_mode = transaction
default_pool_size = $pool_size
max_client_conn = 500
server_tls_sslmode = disable
EOF
  if [ "$(id -u)" -eq 0 ]; then
    echo "user = postgres" >> "$dir/pgbouncer.ini"
    chmod 644 "$dir/pgbouncer.ini"
  fi
}

stop() {
  local dir=$1
  if [ -f "$dir/pid" ]; then
    kill "$(cat "$dir/pid")" 2>/dev/null || true
    rm -f "$dir/pid"
  fi
}

case "${1:-}" in
  start) start "$2" "$3" "$4" ;;
  stop) stop "$2" ;;
  run)
    pool_size=$2
    shift 2
    dir=$(mktemp -d)
    trap 'stop "$dir"; rm -rf "$dir"' EXIT
    STOCK_TRACKER_TEST_PGBOUNCER_PORT=$(start "$dir" "$pool_size" "${DATABASE_URL:-$DEFAULT_URL}")
    export STOCK_TRACKER_TEST_PGBOUNCER_PORT
    "$@"
    ;;
  *)
    echo "usage: $0 start DIR POOL_SIZE URL | stop DIR | run POOL_SIZE CMD..." >&2
    exit 2
    ;;
esac
