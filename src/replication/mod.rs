//! Raft replication of partitions (raft-rs): the partition log is the Raft
//! log.
//!
//! - [`store`]: `raft::Storage` over `sluice_storage::Log`: one entry per
//!   batch, the term in the partition leader epoch, Raft's own entries as
//!   control batches, the hard state in `raft-state`.
//! - [`replica`]: one replica's `RawNode`, driven by tick / step / propose /
//!   ready calls that return messages and the high watermark.
//! - [`transport`]: broker-to-broker TCP: one connection per peer, messages
//!   of all groups batched per destination.
//! - [`host`]: one thread driving every replica of a node over the transport.
//! - [`metadata`]: the controller quorum's records, the cluster image they
//!   build, and replica assignment.
//! - [`sim`]: an in-memory network of replicas (cuts, crashes, restarts) on
//!   which the tests run elections, truncation and catch-up without sockets.
//!
//! The broker uses them through [`crate::cluster`] and
//! [`crate::partition`] (docs/ARCHITECTURE.md, "Cluster mode").

pub mod host;
pub mod metadata;
pub mod replica;
pub mod sim;
pub mod store;
pub mod transport;

#[cfg(test)]
mod compaction_tests;
#[cfg(test)]
mod membership_tests;
#[cfg(test)]
mod tests;
