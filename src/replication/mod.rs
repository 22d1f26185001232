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

pub mod directory;
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

/// A replica's Raft id: its broker's node id in the low 32 bits and, above
/// them, the broker's incarnation (how many times it came back with a new
/// data folder, see [`directory`]). A broker whose disk was wiped has lost
/// its votes and its log: it comes back as a new Raft member (the same
/// broker, a new id), which the partition's leader adds as a learner,
/// fills, and swaps for the old one with an ordinary membership change —
/// so the old member's votes stay its own, and nothing it acknowledged is
/// counted twice. Incarnation 0 is the bare node id (logs written before
/// incarnations keep their ids).
pub fn raft_id(broker: u64, incarnation: u32) -> u64 {
    (broker & 0xFFFF_FFFF) | (u64::from(incarnation) << 32)
}

/// The broker a Raft id belongs to (see [`raft_id`]).
pub fn broker_of(raft_id: u64) -> u64 {
    raft_id & 0xFFFF_FFFF
}
