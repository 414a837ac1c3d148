#!/bin/sh
# Writes PgBouncer's user list from the environment, then runs it in the
# foreground. PGBOUNCER_USER / PGBOUNCER_PASSWORD: the login role the service
# connects as (stock_tracker_api), which PgBouncer also uses towards
# PostgreSQL.
set -eu

: "${PGBOUNCER_USER:?PGBOUNCER_USER must be set}"
: "${PGBOUNCER_PASSWORD:?PGBOUNCER_PASSWORD must be set}"

umask 077
printf '"%s" "%s"\n' "$PGBOUNCER_USER" "$PGBOUNCER_PASSWORD" > /tmp/userlist.txt
exec pgbouncer /etc/pgbouncer/pgbouncer.ini
