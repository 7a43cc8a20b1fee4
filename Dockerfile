# syntax=docker/dockerfile:1
#
# One image for every binary of the workspace: api, seeder, loadgen.
#
#   docker build -t results:local .                 # the general image (default: api)
#   docker build --target seeder -t results-seeder .  # or a per-binary image
#
# docker-compose.yml builds the general image once and picks the binary per service with
# `command:` (api, seeder). Stages:
#   builder  rust:1-bookworm; the dependency layer is built first from the manifests and dummy
#            sources, so editing a .rs file only rebuilds the workspace's own crates
#   runtime  debian:bookworm-slim, ca-certificates + curl (the compose healthcheck of the api
#            replicas: `api` has no health subcommand), non-root USER 10001, the three binaries
#   api, seeder, loadgen   runtime with that binary as the default command

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
ENV CARGO_TERM_COLOR=never CARGO_INCREMENTAL=0

# 1. Dependencies only: the manifests, the lock file and placeholder crate roots. This layer
#    stays cached until a Cargo.toml or Cargo.lock changes. Afterwards the placeholder builds of
#    the workspace's own crates are forgotten (their fingerprints removed): mtimes alone are not
#    a reliable signal, as COPY keeps the sources' mtimes, which can be older than the placeholders.
COPY Cargo.toml Cargo.lock ./
# The patched fred (Cargo.toml's [patch.crates-io], vendor/README.md) is a dependency like any other.
COPY vendor vendor
COPY results-core/Cargo.toml results-core/Cargo.toml
COPY seeder/Cargo.toml seeder/Cargo.toml
COPY api/Cargo.toml api/Cargo.toml
COPY loadgen/Cargo.toml loadgen/Cargo.toml
COPY loadgen-report/Cargo.toml loadgen-report/Cargo.toml
# xtask (the project's automation) and test-support (the tests' fixtures) are workspace members
# the image never builds: cargo needs their manifests and placeholder targets to load the
# workspace; their sources are not copied, so editing them does not invalidate the build below.
COPY xtask/Cargo.toml xtask/Cargo.toml
COPY test-support/Cargo.toml test-support/Cargo.toml
RUN set -eux; \
    for crate in results-core seeder api loadgen loadgen-report xtask test-support; do mkdir -p "$crate/src"; done; \
    for lib in results-core seeder api loadgen-report test-support; do echo '//! placeholder' >"$lib/src/lib.rs"; done; \
    for bin in seeder api loadgen xtask; do echo 'fn main() {}' >"$bin/src/main.rs"; done; \
    echo '//! placeholder' >xtask/src/lib.rs; \
    cargo build --release --locked -p api -p seeder -p loadgen; \
    rm -rf target/release/.fingerprint/api-* target/release/.fingerprint/seeder-* \
        target/release/.fingerprint/loadgen-* target/release/.fingerprint/results-core-* \
        results-core/src seeder/src api/src loadgen/src loadgen-report/src

# 2. The real sources. migrations/ is embedded into the seeder at compile time (sqlx::migrate!).
COPY migrations migrations
COPY results-core/src results-core/src
COPY seeder/src seeder/src
COPY api/src api/src
# The OpenAPI document is embedded at compile time (include_str!, api/src/openapi.rs).
COPY api/openapi.json api/openapi.json
COPY loadgen/src loadgen/src
COPY loadgen-report/src loadgen-report/src
# The charts embed their font at compile time (include_bytes!).
COPY loadgen-report/assets loadgen-report/assets
RUN set -eux; \
    cargo build --release --locked -p api -p seeder -p loadgen; \
    mkdir -p /out; \
    cp target/release/api target/release/seeder target/release/loadgen /out/

# ---------------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 results; \
    useradd --system --uid 10001 --gid 10001 --home-dir /app --create-home \
        --shell /usr/sbin/nologin results
COPY --from=builder /out/api /out/seeder /out/loadgen /usr/local/bin/
WORKDIR /app
# Inside a container the replicas must listen on every interface (the binary's default is
# loopback). The admin port (/metrics, pprof when API_PPROF=on) is only ever reachable on the
# compose network or from the monitoring namespace: it is not EXPOSEd, so `docker run -P` and
# platforms that publish exposed ports never publish it.
ENV API_LISTEN=0.0.0.0:8081 \
    API_ADMIN_LISTEN=0.0.0.0:8181
EXPOSE 8081
USER 10001:10001
CMD ["api"]

# Per-binary targets (`docker build --target seeder`): the same image, another default command.
FROM runtime AS seeder
CMD ["seeder"]

FROM runtime AS loadgen
CMD ["loadgen"]

FROM runtime AS api
CMD ["api"]

# The default target (last stage): the general image, api by default.
FROM runtime AS default
