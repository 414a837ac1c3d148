#!/usr/bin/env bash
# Makes sure the local services the API needs are installed and running:
# PostgreSQL on 127.0.0.1:5432, Redis on 127.0.0.1:6379 and RabbitMQ on
# 127.0.0.1:5672 (guest/guest). Installs them
# with apt when missing (Debian/Ubuntu), starts them when stopped, and leaves
# already-running ones alone. Safe to run repeatedly.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

log() { printf 'services: %s\n' "$*" >&2; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do
    if listening "$port"; then return 0; fi
    sleep 0.5
  done
  log "$name did not start listening on 127.0.0.1:$port"
  return 1
}

apt_install() {
  log "installing $*"
  if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; then
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
  fi
}

ensure_postgres() {
  if listening 5432; then return 0; fi
  local fresh=0
  if ! ls /etc/postgresql/*/main/postgresql.conf >/dev/null 2>&1; then
    apt_install postgresql postgresql-client
    fresh=1
  fi
  local version
  version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf "%f\n" | sort -V | tail -n 1)
  log "starting PostgreSQL $version"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for 5432 PostgreSQL
  if [ "$fresh" = 1 ]; then
    # A fresh cluster authenticates TCP clients by password: give `postgres`
    # the one in the default DATABASE_URL (development only).
    $SUDO runuser -u postgres -- psql -q -c "ALTER USER postgres PASSWORD 'postgres'"
  fi
}

ensure_redis() {
  if listening 6379; then return 0; fi
  if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server
  fi
  log "starting Redis"
  # Nothing persisted: the API keeps only caches and rate-limit state in Redis.
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/stock-tracker-redis.log
  wait_for 6379 Redis
}

ensure_rabbitmq() {
  if listening 5672; then return 0; fi
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    apt_install rabbitmq-server
  fi
  log "starting RabbitMQ"
  $SUDO env RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached >/dev/null 2>&1 \
    || $SUDO service rabbitmq-server start || true
  # RabbitMQ takes a while to boot.
  for _ in $(seq 1 120); do
    if listening 5672; then return 0; fi
    sleep 1
  done
  log "RabbitMQ did not start listening on 127.0.0.1:5672"
  return 1
}

ensure_postgres
ensure_redis
ensure_rabbitmq
# Tests start private redis-server processes (their statistics and script
# cache must not be shared): the binary must exist even if Redis runs elsewhere.
if ! command -v redis-server >/dev/null 2>&1; then
  apt_install redis-server
fi
# Tests run the service behind a PgBouncer of their own (scripts/pgbouncer.sh);
# the package's own service is left stopped.
if ! command -v pgbouncer >/dev/null 2>&1; then
  apt_install pgbouncer
fi
log "PostgreSQL, Redis and RabbitMQ are up"
