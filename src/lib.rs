//! Sluice: a Kafka-compatible event broker.
//!
//! Module map:
//! - [`bench`]: `sluice bench`, the throughput and latency load generator.
//! - [`cli`]: the admin CLI (`sluice topic`, `group`, `produce`, `consume`, …), a Kafka client.
//! - [`client`]: a small Kafka wire client (bench, CLI, broker-to-broker requests).
//! - [`alloc`]: the global allocator that keeps lying element counts from aborting.
//! - [`config`]: configuration from defaults, TOML file, flags and `SLUICE_*` variables.
//! - [`server`]: the listener, the connection limit, graceful shutdown.
//! - [`connection`]: one client connection, requests served in order.
//! - [`handlers`]: one file per Kafka API, and the table of served versions.
//! - [`broker`]: shared state: metadata image, open topics and partitions.
//! - [`group`]: the group coordinator: consumer groups and committed offsets.
//! - [`partition`]: a partition's log, producer state and high watermark.
//! - [`recompress`]: re-encodes batches with a topic's compression.type.
//! - [`retention`]: which old segments retention.ms / retention.bytes delete (pure).
//! - [`producer_state`]: idempotent-producer sequence checks (pure logic).
//! - [`metadata`]: the persisted cluster metadata image.
//! - [`topic_config`]: topic configs with Kafka's names, defaults and validation.
//! - [`error`]: broker errors and their mapping to Kafka error codes.
//! - [`log_limit`]: log lines rate-limited per cause ([`warn_limited!`]).
//! - [`limits`]: the open-file limit raised at start, and the open-segment budget.

// First: its macros are used by the modules below.
#[macro_use]
pub mod log_limit;
pub mod alloc;
pub mod bench;
pub mod broker;
pub mod cleaner;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod error;
pub mod group;
pub mod handlers;
pub mod limits;
pub mod logging;
pub mod metadata;
pub mod metrics;
pub mod partition;
pub mod producer_state;
pub mod recompress;
pub mod replication;
pub mod retention;
pub mod security;
pub mod server;
pub mod topic_config;
pub mod txn;
pub mod zero_copy;
