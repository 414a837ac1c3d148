# syntax=docker/dockerfile:1
#
# Stock Tracker: one image for every role (serve, worker, beat, migrate, ...).
#
#   docker build -t stock-tracker .
#   docker run --rm stock-tracker --help
#
# Stages:
#   deps    compiles the dependencies only, from Cargo.toml/Cargo.lock and stub
#           sources; this layer is reused until the manifest or lockfile changes.
#   build   compiles the real sources on top of it (release profile).
#   runtime distroless cc (glibc, libgcc, CA certificates, no shell, no package
#           manager), running as an unprivileged numeric user.
#
# Database access uses runtime-checked queries only (`sqlx::query`, not the
# compile-time-checked `sqlx::query!` macros: `grep -rn 'query[a-z_]*!' src`
# finds none), so no database and no `.sqlx/` data are needed to build.
# SQLX_OFFLINE=true is set anyway: if a `query!` macro is ever added without
# committing `.sqlx/` (`cargo sqlx prepare`), the build fails at once instead
# of trying to reach a database that does not exist at image build time.
# Migrations are embedded in the binary (`sqlx::migrate!`): run
# `stock-tracker migrate` (the compose `migrate` service, the k8s Job).

# Rust 1.95.0 is the toolchain the project is developed and tested with
# (Cargo.toml's rust-version is the minimum, 1.88). Bookworm matches the
# runtime's glibc (distroless cc-debian12).
ARG RUST_IMAGE=rust:1.95.0-slim-bookworm
# Distroless publishes no version tags: pin the digest at release time
# (`gcr.io/distroless/cc-debian12:nonroot@sha256:...`, e.g. via Renovate).
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS deps
# make: tikv-jemalloc-sys builds jemalloc with configure + make (the slim image
# has gcc and libc6-dev, but no make). Versions come from the pinned base image's
# Debian release; pinning them here too would break on every Debian point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    SQLX_OFFLINE=true
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
# Stub targets with the manifest's paths (the lib, the binary and the declared
# integration test), build, then forget the stubs' own artifacts so the next
# stage recompiles the crate itself, whatever the files' timestamps.
RUN mkdir -p src tests/api \
    && printf 'fn main() {}\n' > src/main.rs \
    && : > src/lib.rs \
    && printf 'fn main() {}\n' > tests/api/main.rs \
    && cargo build --release --locked --bin stock-tracker \
    && rm -rf src \
        target/release/stock-tracker* \
        target/release/deps/stock_tracker-* \
        target/release/deps/libstock_tracker-* \
        target/release/.fingerprint/stock-tracker-*

FROM deps AS build
COPY config ./config
COPY migrations ./migrations
COPY src ./src
RUN cargo build --release --locked --bin stock-tracker \
    && install -D -m 0755 target/release/stock-tracker /out/stock-tracker \
    && /out/stock-tracker --version

FROM ${RUNTIME_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="stock-tracker" \
      org.opencontainers.image.description="Multi-tenant stock tracking REST backend for marketplace sellers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /out/stock-tracker /usr/local/bin/stock-tracker
# In a container the HTTP listeners must accept connections from outside the
# container (the defaults, 127.0.0.1, suit a developer machine). JSON logs are
# already the default.
ENV STOCK_TRACKER__SERVER__HOST=0.0.0.0 \
    STOCK_TRACKER__WORKER__HOST=0.0.0.0 \
    STOCK_TRACKER__BEAT__HOST=0.0.0.0
# 65532 is distroless's `nonroot`; numeric so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# 8000: the API (`serve`); 8001: the worker's /metrics and /health/* (`worker`);
# 8002: beat's /metrics and /health/live (`beat`).
EXPOSE 8000 8001 8002
# Probes the API's liveness endpoint on 127.0.0.1:`server.port` (exit 0 on 200),
# i.e. `healthcheck --role api`: right for the default CMD, `serve`. An image
# cannot know which role a container runs, so the other roles override it
# (docker-compose.yml): worker and beat with their own endpoint
# (`healthcheck --role worker|beat`, or `--url`), migrate disables it.
# Kubernetes ignores HEALTHCHECK; its probes are in k8s/base/.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/stock-tracker", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/stock-tracker"]
CMD ["serve"]
