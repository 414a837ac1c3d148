#!/bin/sh
# Runs once, when the postgres container initialises an empty data volume
# (docker-entrypoint-initdb.d). Creates the login role the API, worker and
# beat connect as, so that they never hold the tables' owner's or a
# superuser's credentials (docs/operations.md, "Database roles"):
#
#   stock_tracker_app  NOLOGIN: what every query runs as (`SET LOCAL ROLE` in
#                      each transaction); the first migration grants it its
#                      privileges and creates it only when missing.
#   stock_tracker_api  LOGIN, member of stock_tracker_app: DATABASE_URL of
#                      api, worker and beat ($APP_DB_PASSWORD).
#
# `stock-tracker migrate` runs as $POSTGRES_USER, the owner of the schema.
set -eu

: "${APP_DB_PASSWORD:?APP_DB_PASSWORD must be set (see .env.example)}"

psql -v ON_ERROR_STOP=1 -v app_password="$APP_DB_PASSWORD" \
  --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE stock_tracker_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
CREATE ROLE stock_tracker_api LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE
  PASSWORD :'app_password' IN ROLE stock_tracker_app;
SQL
