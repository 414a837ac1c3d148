#!/usr/bin/env bash
# Validates the monitoring stack as code (monitoring/) with the real programs:
#
#   promtool check config / check rules / test rules (a unit test per alert),
#   the generated files (SLO rules, Grafana dashboards) are up to date,
#   amtool check-config, the Alertmanager entrypoint's rendering, amtool route
#   tests for every severity and category, the static checks of
#   monitoring/check/monitoring_check.py (labels, annotations, runbooks,
#   metric names against the app's catalogue and the exporter samples,
#   dashboards), then a real Prometheus and a real Alertmanager on loopback
#   with the shipped files: every rule, dashboard and runbook query must be
#   accepted, every rule group must evaluate, the inhibition rules must hold;
#   last, end to end (monitoring/check/e2e.py): the built app (API and worker),
#   the postgres and redis exporters, Alertmanager (through entrypoint.sh) and
#   Prometheus (config derived from the shipped one, one rule overridden to a
#   test threshold) on loopback; traffic makes the alert reach a local
#   webhook receiver through Alertmanager; the running app's /metrics/catalog
#   is the catalogue of the static checks; every scrape job is up.
#
# Installs what is missing with apt (prometheus, prometheus-alertmanager, the
# postgres and redis exporters, python3-yaml, and the shellcheck package).
# Safe to run repeatedly; about 1.5 minutes once the packages are installed and
# the app is built. Nothing is left running.
#
# Usage: scripts/monitoring-check.sh [--summary | --refresh-samples | --e2e]
#   --summary          print the alert table and the non-catalogue metric names
#   --refresh-samples  re-take monitoring/exporter-samples/ from exporters run
#                      against the local PostgreSQL, Redis and RabbitMQ
#                      (prometheus plugin on :15692), then exit
#   --e2e              only the end-to-end step
# Environment:
#   MONITORING_CATALOG  the app's metric catalogue (JSON of GET /metrics/catalog,
#                       the Rust sources — a directory — or a text list); default
#                       src (each module declares its families there)
#   STOCK_TRACKER_BIN   the app binary of the end-to-end step; default
#                       ${CARGO_TARGET_DIR:-~/.cache/stock-tracker/target}/debug/stock-tracker
#                       (not built here: run `cargo build` first)
#   MONITORING_E2E_KEEP=1  keep the end-to-end step's temporary directory
set -euo pipefail
cd "$(dirname "$0")/.."

MON=monitoring
CATALOG=${MONITORING_CATALOG:-src}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

log() { printf 'monitoring-check: %s\n' "$*" >&2; }
step() { printf '== %s\n' "$*"; }

apt_install() {
  log "installing $*"
  if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; then
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
  fi
}

have() { command -v "$1" >/dev/null 2>&1; }

PYTHON=python3
ensure_tools() {
  local missing=()
  have promtool && have prometheus || missing+=(prometheus)
  have amtool && have prometheus-alertmanager || missing+=(prometheus-alertmanager)
  have shellcheck || missing+=(shellcheck)
  if ! python3 -c 'import yaml' >/dev/null 2>&1; then
    # A python3 from pyenv or a venv may not see Debian's python3-yaml:
    # fall back to the system interpreter that does.
    if /usr/bin/python3 -c 'import yaml' >/dev/null 2>&1; then
      PYTHON=/usr/bin/python3
    else
      missing+=(python3-yaml)
      PYTHON=/usr/bin/python3
    fi
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
  fi
}

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

WORK=""
PIDS=()
stop_children() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
cleanup() {
  stop_children
  if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
# A signal ends the script through its EXIT trap, so children are stopped too.
trap 'exit 130' INT
trap 'exit 143' TERM

show_log() {
  log "last lines of $1:"
  tail -n 30 "$1" >&2 || true
}

ensure_exporters() {
  # apt may enable systemd units for them; nothing here uses those (and where
  # systemd is not running they never start): the checks start their own.
  if ! have prometheus-postgres-exporter || ! have prometheus-redis-exporter; then
    apt_install prometheus-postgres-exporter prometheus-redis-exporter
  fi
}

end_to_end() {
  step "end to end: app, exporters, Prometheus and Alertmanager on loopback; an alert reaches a webhook"
  stop_children # the previous step's Prometheus and Alertmanager: two cores are not many
  ensure_exporters
  scripts/services.sh
  # In the background so that a signal to this script reaches its trap at
  # once; the trap's SIGTERM makes e2e.py stop its processes and drop its database.
  local pid rc=0
  "$PYTHON" "$MON/check/e2e.py" &
  pid=$!
  PIDS+=("$pid")
  wait "$pid" || rc=$?
  PIDS=()
  return "$rc"
}

refresh_samples() {
  ensure_exporters
  scripts/services.sh
  local pg_port redis_port version
  pg_port=$(free_port)
  redis_port=$(free_port)
  DATA_SOURCE_NAME=${DATA_SOURCE_NAME:-postgresql://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable} \
    prometheus-postgres-exporter --web.listen-address="127.0.0.1:$pg_port" >"$WORK/pg-exporter.log" 2>&1 &
  PIDS+=("$!")
  prometheus-redis-exporter --redis.addr=redis://127.0.0.1:6379 --web.listen-address="127.0.0.1:$redis_port" \
    >"$WORK/redis-exporter.log" 2>&1 &
  PIDS+=("$!")
  sleep 2
  version=$(prometheus-postgres-exporter --version 2>&1 | head -n 1)
  "$PYTHON" "$MON/check/monitoring_check.py" sample --url "http://127.0.0.1:$pg_port/metrics" \
    --out postgres-exporter.prom --what "$version against the local PostgreSQL"
  version=$(prometheus-redis-exporter --version 2>&1 | sed -n 's/.*\(Redis Metrics Exporter [^ ]*\).*/\1/p' | head -n 1)
  "$PYTHON" "$MON/check/monitoring_check.py" sample --url "http://127.0.0.1:$redis_port/metrics" \
    --out redis-exporter.prom --what "${version:-redis_exporter} against the local Redis"
  if "$PYTHON" "$MON/check/monitoring_check.py" sample --url http://127.0.0.1:15692/metrics \
    --out rabbitmq.prom --what "the local RabbitMQ's rabbitmq_prometheus plugin (:15692)"; then
    :
  else
    log "RabbitMQ's prometheus plugin is not listening on 127.0.0.1:15692 (rabbitmq-plugins enable rabbitmq_prometheus); rabbitmq.prom kept"
  fi
}

main() {
  local mode=${1:-check}
  case "$mode" in
    check | --summary | --refresh-samples | --e2e) ;;
    *)
      echo "usage: $0 [--summary | --refresh-samples | --e2e]" >&2
      exit 2
      ;;
  esac
  ensure_tools
  WORK=$(mktemp -d)

  if [ "$mode" = --summary ]; then
    "$PYTHON" "$MON/check/monitoring_check.py" summary
    return
  fi
  if [ "$mode" = --refresh-samples ]; then
    refresh_samples
    return
  fi
  if [ "$mode" = --e2e ]; then
    end_to_end
    return
  fi

  step "shellcheck"
  shellcheck scripts/monitoring-check.sh
  shellcheck -s sh "$MON/alertmanager/entrypoint.sh"

  step "generated files are up to date"
  "$PYTHON" "$MON/check/gen_slo_rules.py" --check
  "$PYTHON" "$MON/grafana/generate_dashboards.py" --check

  step "promtool check config / rules"
  promtool check config "$MON/prometheus/prometheus.yml"
  promtool check rules "$MON"/prometheus/rules/*.yml

  step "promtool test rules"
  promtool test rules "$MON"/prometheus/tests/*.yml

  step "amtool check-config"
  amtool check-config "$MON/alertmanager/alertmanager.yml"

  step "alertmanager entrypoint renders settings and secrets from the environment"
  ALERTMANAGER_CONFIG="$MON/alertmanager/alertmanager.yml" SECRETS_DIR="$WORK/secrets" \
    RENDERED_CONFIG="$WORK/rendered/alertmanager.yml" ALERTMANAGER_RENDER_ONLY=1 \
    SLACK_API_URL=https://hooks.slack.example/services/T0/B0/check \
    PAGERDUTY_ROUTING_KEY=check-routing-key SMTP_AUTH_PASSWORD="pass'word" \
    ALERT_WEBHOOK_URL="http://127.0.0.1:9/alerts?token=a'b&c" SLACK_CHANNEL="#check" \
    sh "$MON/alertmanager/entrypoint.sh"
  amtool check-config "$WORK/rendered/alertmanager.yml" >/dev/null
  grep -qF "url: 'http://127.0.0.1:9/alerts?token=a''b&c'  # env ALERT_WEBHOOK_URL" "$WORK/rendered/alertmanager.yml"
  grep -qF "channel: '#check'  # env SLACK_CHANNEL" "$WORK/rendered/alertmanager.yml"
  [ "$(cat "$WORK/secrets/slack_api_url")" = https://hooks.slack.example/services/T0/B0/check ]
  [ "$(cat "$WORK/secrets/pagerduty_routing_key")" = check-routing-key ]
  [ "$(cat "$WORK/secrets/smtp_auth_password")" = "pass'word" ]
  echo "ok   entrypoint.sh: rendered config valid, overrides and secret files written"

  step "static checks (catalogue: $CATALOG)"
  "$PYTHON" "$MON/check/monitoring_check.py" static --catalog "$CATALOG"
  "$PYTHON" "$MON/check/monitoring_check.py" docs

  step "alertmanager routes"
  "$PYTHON" "$MON/check/monitoring_check.py" routes --amtool amtool --config "$MON/alertmanager/alertmanager.yml"

  step "a real Prometheus and Alertmanager on loopback"
  local prom_port am_port
  prom_port=$(free_port)
  am_port=$(free_port)
  prometheus --config.file="$MON/prometheus/prometheus.yml" \
    --storage.tsdb.path="$WORK/prometheus" \
    --web.listen-address="127.0.0.1:$prom_port" \
    >"$WORK/prometheus.log" 2>&1 &
  PIDS+=("$!")
  prometheus-alertmanager --config.file="$MON/alertmanager/alertmanager.yml" \
    --storage.path="$WORK/alertmanager" \
    --web.listen-address="127.0.0.1:$am_port" \
    --cluster.listen-address= \
    >"$WORK/alertmanager.log" 2>&1 &
  PIDS+=("$!")
  if ! "$PYTHON" "$MON/check/monitoring_check.py" prometheus --url "http://127.0.0.1:$prom_port"; then
    show_log "$WORK/prometheus.log"
    return 1
  fi
  if ! "$PYTHON" "$MON/check/monitoring_check.py" alertmanager --url "http://127.0.0.1:$am_port"; then
    show_log "$WORK/alertmanager.log"
    return 1
  fi
  end_to_end
  step "monitoring checks passed"
}

main "$@"
