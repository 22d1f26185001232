//! sluice-storage: the partition log engine. No networking, no Kafka wire types
//! beyond the record batch header.
//!
//! Module map:
//! - [`batch`]: the v2 record batch header: parse, validate (CRC-32C), patch; a
//!   small batch builder for tests and benchmarks.
//! - [`index`]: in-memory sparse offset index and time index (greatest lower bound),
//!   written to Kafka's index files when a segment is sealed.
//! - [`open_files`]: the process-wide bound on open (and mapped) segment files.
//! - [`segment`]: one `{base_offset:020}.log` file with its two indexes and its dense
//!   batch-position map (Raft entry → file position).
//! - [`sealed`]: a sealed segment's positions and indexes saved beside it, so a
//!   restart need not walk its batch headers.
//! - [`log`]: ordered segments: append, read, roll, truncate, retention deletes,
//!   durability (group commit), recovery at open; `log::clean` swaps in the
//!   segments a compactor rewrote, crash-safely.
//! - [`txn`]: transactions as the log records them (open ones, coordinator epochs)
//!   and the per-segment aborted-transaction index (`.txnindex`).
//! - [`checkpoint`]: the small files beside the segments (recovery point, log start,
//!   clean-shutdown marker).
//! - [`fs`]: the file-system seam (real files, or faults injected by tests).
//! - [`clock`]: the time seam.
//! - [`error`]: the crate's error type, `StorageError`.

pub mod batch;
pub mod checkpoint;
pub mod clock;
pub mod error;
pub mod fs;
pub mod group_sync;
pub mod index;
pub mod log;
pub mod open_files;
pub mod producers;
pub mod sealed;
pub mod segment;
pub mod stats;
pub mod txn;

pub use batch::{BATCH_HEADER_LEN, BatchHeader};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Result, StorageError};
pub use group_sync::{GroupSync, SyncMethod};
pub use log::{
    AppendInfo, AppendOptions, CleanedSegment, Log, LogConfig, ReadResult, SealedSegment,
    SegmentInfo, SyncPoint,
};
