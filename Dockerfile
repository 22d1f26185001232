# Image of the Sluice broker: `docker build -t sluice .` (see README, "Container").
#
# Stage 1 builds the binary. The dependencies are compiled first, against
# stub sources made from the manifests alone, so that a change of Sluice's
# own code reuses that layer and recompiles only the workspace crates.
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# No debug info in the image's binary (the repository's release profile
# keeps some for profiling).
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=debuginfo
COPY Cargo.toml Cargo.lock ./
COPY protocol/Cargo.toml protocol/
COPY storage/Cargo.toml storage/
# Stubs for every target the manifests of the workspace members (., protocol,
# storage) name: lib, bin, benches; then the dependencies alone.
RUN set -eu; \
    for dir in . protocol storage; do \
        mkdir -p "$dir/src" "$dir/benches"; \
        : > "$dir/src/lib.rs"; \
        for b in $(sed -n '/^\[\[bench\]\]/,/^name/s/^name *= *"\(.*\)"/\1/p' "$dir/Cargo.toml"); do \
            echo 'fn main() {}' > "$dir/benches/$b.rs"; \
        done; \
    done; \
    echo 'fn main() {}' > src/main.rs; \
    cargo build --release --locked --bin sluice; \
    rm -rf src benches protocol/src protocol/benches storage/src storage/benches
COPY . .
# COPY keeps the sources' times, which may be older than the stubs' build.
RUN touch src/lib.rs src/main.rs protocol/src/lib.rs storage/src/lib.rs \
    && cargo build --release --locked --bin sluice \
    && install -m 0755 target/release/sluice /usr/local/bin/sluice

# Stage 2: the binary, a non-root user, a data volume.
FROM ${RUNTIME_IMAGE}
RUN groupadd --system --gid 10001 sluice \
    && useradd --system --uid 10001 --gid sluice --home-dir /var/lib/sluice --shell /usr/sbin/nologin sluice \
    && mkdir -p /var/lib/sluice \
    && chown sluice:sluice /var/lib/sluice
COPY --from=build /usr/local/bin/sluice /usr/local/bin/sluice
COPY deploy/healthcheck.sh /usr/local/bin/sluice-healthcheck
# The Kafka listener on every interface, and the admin listener (/metrics,
# /health, /ready). Clients must be told an address they reach the container
# at: run with -e SLUICE_ADVERTISED_LISTENER=localhost:9092 (with
# -p 9092:9092), or give a configuration file with listeners and
# advertised.listeners (SLUICE_CONFIG; see deploy/).
ENV SLUICE_LISTEN=0.0.0.0:9092 \
    SLUICE_ADMIN_LISTEN=0.0.0.0:9644 \
    SLUICE_DATA_DIR=/var/lib/sluice \
    RUST_LOG=info
EXPOSE 9092 9644
VOLUME /var/lib/sluice
USER sluice:sluice
WORKDIR /var/lib/sluice
# GET /health on the admin listener, with bash alone (no curl in the image).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/sluice-healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sluice"]
