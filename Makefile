# Entry points. `make run` serves the API; `make test` runs every test.
# The cargo target directory lives outside the clone so rebuilds are incremental.
CARGO_TARGET_DIR ?= $(HOME)/.cache/stock-tracker/target
export CARGO_TARGET_DIR

.PHONY: run test lint services python-tools migrate openapi schemathesis worker beat monitoring-check scale-check deploy-check client-check bench bench-smoke

## Install/start PostgreSQL, Redis and RabbitMQ if needed, migrate, and serve on 127.0.0.1:8000.
run: services
	cargo run --bin stock-tracker -- migrate
	cargo run --bin stock-tracker -- serve

# The plan test that seeds a tenant of 1,000,000 products.
SEEDS_A_MILLION = query_plans::a_small_tenant_reads_a_bounded_number_of_buffers_next_to_a_million_products

# Every repository, row-level security, the workers, job leases, beat's lead
# and revocations across replicas: what a pooler can break.
POOLER_SUITES = row_level_security:: auth_flows:: users_and_keys:: roles_and_isolation:: \
	products:: marketplaces:: catalog_cache:: webhooks:: telegram:: notifications:: workers:: \
	retention:: durability:: replicas:: accounts:: invitations:: audit_log:: tenant_lifecycle::

## Every test: unit and integration tests against the local PostgreSQL, Redis
## and RabbitMQ (then those of the benchmark's `bench-layers` build: the layer
## switch and the list settings that name layers), then the database-backed
## suites through a real PgBouncer in transaction mode, then the relative links
## of README.md and docs/ (a second), then the monitoring stack against the real Prometheus and Alertmanager,
## then the multi-replica check (replicas behind HAProxy, one of each role
## killed under load), then the Dockerfile, compose file and Kubernetes
## manifests with the real validators, then the Python and TypeScript clients
## generated from openapi.json, type-checked, the Python one walked through
## the running API (the scripts install their tools when missing).
test: services python-tools
	cargo test --all-targets -- --skip $(SEEDS_A_MILLION)
	# Alone: its seeding loads PostgreSQL for minutes, which would slow the timed tests.
	cargo test --test api -- $(SEEDS_A_MILLION)
	cargo test --features bench-layers --lib --test api -- layer every_list_type
	# The database-backed suites again, through a PgBouncer in transaction mode
	# with fewer server connections than the service's pool (docs/testing.md).
	scripts/pgbouncer.sh run 2 cargo test --test api -- $(POOLER_SUITES)
	python3 scripts/check-doc-links.py
	scripts/monitoring-check.sh
	scripts/scale-check.sh
	scripts/deploy-check.sh
	scripts/client-check.sh

## Formatting and lints, as CI runs them; first the dependency guard
## (foundations -> domains -> entry points, no cycles between modules).
lint:
	python3 scripts/check-deps.py
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features bench-layers -- -D warnings

## Fuzz the running API against its own OpenAPI document.
schemathesis: services
	scripts/schemathesis.sh

services:
	scripts/services.sh

python-tools:
	scripts/python-tools.sh

## The background roles (with `make run` in another terminal).
worker: services
	cargo run --bin stock-tracker -- worker

beat: services
	cargo run --bin stock-tracker -- beat

migrate: services
	cargo run --bin stock-tracker -- migrate

openapi:
	@cargo run -q --bin stock-tracker -- openapi

## The monitoring checks alone (after a build: the end-to-end step runs the binary).
monitoring-check:
	scripts/monitoring-check.sh

## The multi-replica check alone, ~2 min (after a build: it runs the binary).
scale-check:
	scripts/scale-check.sh

## The deployment checks alone (after a build: the probe check runs the binary).
deploy-check:
	scripts/deploy-check.sh

## The generated clients alone, ~20 s: generate from openapi.json, type-check,
## run the Python scenario against a fresh serve and worker (builds the binary if needed).
client-check: services
	scripts/client-check.sh

## The load benchmark: release build, fresh seeded database, the API as its own
## process, wrk from another; the table goes to bench/results/ and docs/performance.md.
bench: services
	scripts/bench.sh

## The same in a few seconds per scenario on the debug build, writing nothing:
## CI runs it so the benchmark cannot rot.
bench-smoke: services
	scripts/bench.sh --smoke
