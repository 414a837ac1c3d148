#!/bin/sh
# Container entrypoint for Alertmanager: configuration from the environment.
#
# Alertmanager 0.25 does not expand environment variables in its
# configuration, so this script (POSIX sh: it runs in the busybox-based
# prom/alertmanager image) does it before starting Alertmanager:
#
#  1. Secrets: for each variable below that is set, writes its value to the
#     file alertmanager.yml reads (mode 0600), unless that file already exists
#     (a mounted Docker/Kubernetes secret wins):
#       SLACK_API_URL          -> $SECRETS_DIR/slack_api_url
#       PAGERDUTY_ROUTING_KEY  -> $SECRETS_DIR/pagerduty_routing_key
#       SMTP_AUTH_PASSWORD     -> $SECRETS_DIR/smtp_auth_password
#  2. Settings: copies the configuration to $RENDERED_CONFIG, replacing the
#     value of every line that ends in "# env NAME" with $NAME when NAME is
#     set and not empty (e.g. ALERT_WEBHOOK_URL, SLACK_CHANNEL, SMTP_SMARTHOST).
#  3. Runs alertmanager with --config.file=$RENDERED_CONFIG and the arguments
#     given to this script.
#
# Environment (defaults in brackets):
#   ALERTMANAGER_CONFIG   [/etc/alertmanager/alertmanager.yml]  the template
#   SECRETS_DIR           [/etc/alertmanager/secrets]  must match alertmanager.yml
#   RENDERED_CONFIG       [/tmp/alertmanager/alertmanager.yml]
#   ALERTMANAGER_BIN      [/bin/alertmanager]
#   ALERTMANAGER_RENDER_ONLY=1  render and exit (used by the checks)
set -eu

config=${ALERTMANAGER_CONFIG:-/etc/alertmanager/alertmanager.yml}
secrets_dir=${SECRETS_DIR:-/etc/alertmanager/secrets}
rendered=${RENDERED_CONFIG:-/tmp/alertmanager/alertmanager.yml}
binary=${ALERTMANAGER_BIN:-/bin/alertmanager}

write_secret() {
  # $1: variable name, $2: file name under $secrets_dir
  eval "value=\${$1:-}"
  [ -n "$value" ] || return 0
  target="$secrets_dir/$2"
  if [ -e "$target" ]; then
    echo "entrypoint: $target exists; ignoring \$$1" >&2
    return 0
  fi
  mkdir -p "$secrets_dir"
  (umask 077 && printf '%s' "$value" > "$target")
}

write_secret SLACK_API_URL slack_api_url
write_secret PAGERDUTY_ROUTING_KEY pagerduty_routing_key
write_secret SMTP_AUTH_PASSWORD smtp_auth_password

mkdir -p "$(dirname "$rendered")"
# Values become single-quoted YAML scalars (a quote inside is doubled), so
# any character is safe; the "# env NAME" tag stays for the next render.
awk '
  match($0, /# env [A-Z_][A-Z0-9_]*[ \t]*$/) {
    name = substr($0, RSTART + 6)
    sub(/[ \t]+$/, "", name)
    value = ENVIRON[name]
    if (value != "") {
      gsub(/\047/, "\047\047", value)
      key = $0
      sub(/:.*/, "", key)
      print key ": \047" value "\047  # env " name
      next
    }
  }
  { print }
' "$config" > "$rendered"

if [ "${ALERTMANAGER_RENDER_ONLY:-0}" = 1 ]; then
  exit 0
fi
exec "$binary" --config.file="$rendered" "$@"
