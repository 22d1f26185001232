# Image of the Sluice broker.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin sluice

FROM debian:bookworm-slim
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
EXPOSE 9092
VOLUME /var/lib/sluice
# Set SLUICE_ADVERTISED_LISTENER=host:port to the address clients reach the container at.
ENV SLUICE_LISTEN=0.0.0.0:9092 SLUICE_DATA_DIR=/var/lib/sluice
ENTRYPOINT ["/usr/local/bin/sluice"]
