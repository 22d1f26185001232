//! The transactions of one partition as its leader predicts them: the log's
//! own record of them ([`sluice_storage::txn`]: which producers have a
//! transaction open, the coordinator epoch of each one's last marker, the
//! aborted transactions) brought up to date with every batch the leader
//! appends or proposes, plus the KIP-890 verification guards.
//!
//! It is rebuilt from the log ([`PartitionTxns::from_log`]) at startup and
//! when a replica becomes leader: the log keeps the aborted-transaction
//! index per segment, so that costs no replay of the whole log.

use std::collections::HashMap;

use bytes::Bytes;
use sluice_storage::txn::TxnState;
use sluice_storage::{BatchHeader, Log};

pub use sluice_storage::txn::{AbortedTxn, Marker, marker_record};

#[derive(Debug, Default)]
pub struct PartitionTxns {
    state: TxnState,
    /// By marker offset, ascending.
    aborted: Vec<AbortedTxn>,
    /// KIP-890 verification guards: a leader asking a remote coordinator
    /// whether this partition is in a producer's transaction leaves a token
    /// here first; a marker for the producer removes it, so an answer that
    /// a marker overtook no longer lets a batch in.
    guards: HashMap<i64, u64>,
    next_guard: u64,
    /// Transactions a marker completed, as (first offset, marker offset),
    /// by marker offset, while the high watermark may not have passed the
    /// marker yet: until it has, the transaction still bounds the last
    /// stable offset (Kafka's completed but unreplicated transactions), so
    /// the LSO never stops at a marker not yet readable.
    completing: Vec<(i64, i64)>,
}

/// Completed transactions kept at most while their markers wait for the
/// high watermark (a bound only: the high watermark trails the log end by
/// one flush or one commit).
const COMPLETING_KEPT: usize = 1024;

/// The marker a batch is, if it is a transaction's COMMIT or ABORT (see
/// [`sluice_storage::txn::marker_of`]).
pub fn marker_of(h: &BatchHeader, batch: &Bytes) -> Option<(Marker, i32)> {
    sluice_storage::txn::marker_of(h, batch)
}

impl PartitionTxns {
    /// The transactions of `log` as it stands, without the aborted ones
    /// wholly below its start.
    pub fn from_log(log: &Log) -> Result<Self, sluice_storage::StorageError> {
        let mut txns = Self {
            state: log.txn_state().clone(),
            aborted: log.aborted_txns()?,
            ..Self::default()
        };
        txns.truncate_head(log.log_start_offset());
        Ok(txns)
    }

    /// Records a batch now in the log at `first..=last`; `marker` when it is
    /// a COMMIT or ABORT marker (see [`marker_of`]).
    pub fn observe(
        &mut self,
        h: &BatchHeader,
        first: i64,
        last: i64,
        marker: Option<(Marker, i32)>,
    ) {
        if marker.is_some() {
            self.guards.remove(&h.producer_id);
            if let Some(since) = self.open_since(h.producer_id) {
                if self.completing.len() == COMPLETING_KEPT {
                    self.completing.remove(0);
                }
                self.completing.push((since, last));
            }
        }
        if let Some(a) = self.state.observe(h, first, last, marker) {
            self.aborted.push(a);
        }
    }

    /// Whether `producer_id` has a transaction open on this partition.
    pub fn is_open(&self, producer_id: i64) -> bool {
        self.state.open.contains_key(&producer_id)
    }

    /// The epoch of the batch that opened the producer's transaction here.
    pub fn open_epoch(&self, producer_id: i64) -> Option<i16> {
        self.state.open.get(&producer_id).map(|o| o.epoch)
    }

    /// Leaves a fresh verification guard for the producer (see `guards`).
    pub fn guard(&mut self, producer_id: i64) -> u64 {
        self.next_guard += 1;
        self.guards.insert(producer_id, self.next_guard);
        self.next_guard
    }

    /// Whether the producer's guard is still `token`.
    pub fn guarded(&self, producer_id: i64, token: u64) -> bool {
        self.guards.get(&producer_id) == Some(&token)
    }

    /// The first offset of the transaction `producer_id` has open here.
    pub fn open_since(&self, producer_id: i64) -> Option<i64> {
        self.state.open.get(&producer_id).map(|o| o.first_offset)
    }

    /// The coordinator epoch of the producer's last marker here.
    pub fn coordinator_epoch(&self, producer_id: i64) -> Option<i32> {
        self.state.coordinator_epochs.get(&producer_id).copied()
    }

    /// The first offset of the oldest open transaction.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.state.first_unstable_offset()
    }

    /// The last stable offset for a high watermark: nothing at or above the
    /// first offset of an open transaction is stable, nor of one whose
    /// marker the high watermark has not passed yet (see `completing`).
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        let completing = self
            .completing
            .iter()
            .filter(|&&(_, marker)| marker >= high_watermark)
            .map(|&(first, _)| first)
            .min();
        [self.first_unstable_offset(), completing]
            .into_iter()
            .flatten()
            .fold(high_watermark, i64::min)
    }

    /// Forgets the completed transactions whose markers are below the high
    /// watermark (they no longer bound the last stable offset).
    pub fn passed(&mut self, high_watermark: i64) {
        let n = self
            .completing
            .partition_point(|&(_, marker)| marker < high_watermark);
        self.completing.drain(..n);
    }

    /// The aborted transactions a read of `from..upto` must know of: those
    /// whose range meets it (ended at or after `from`, started before
    /// `upto`), by first offset.
    pub fn aborted_between(&self, from: i64, upto: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        let mut out: Vec<AbortedTxn> = self.aborted[start..]
            .iter()
            .filter(|a| a.first_offset < upto)
            .copied()
            .collect();
        out.sort_by_key(|a| a.first_offset);
        out
    }

    /// Forgets aborted transactions wholly below the log start.
    pub fn truncate_head(&mut self, log_start: i64) {
        let n = self.aborted.partition_point(|a| a.last_offset < log_start);
        self.aborted.drain(..n);
    }

    /// The producers with a transaction open, and where each began.
    pub fn open_transactions(&self) -> Vec<(i64, i64)> {
        let mut v: Vec<(i64, i64)> = self
            .state
            .open
            .iter()
            .map(|(&pid, o)| (pid, o.first_offset))
            .collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::batch::{BuildOptions, RecordSpec, build};

    fn header(pid: i64, transactional: bool, marker: Option<Marker>) -> (BatchHeader, Bytes) {
        let (key, value) = marker_record(marker.unwrap_or(Marker::Commit), 3);
        let spec = if marker.is_some() {
            RecordSpec {
                key: Some(&key),
                value: Some(&value),
                timestamp: 1,
            }
        } else {
            RecordSpec {
                key: Some(b"k"),
                value: Some(b"v"),
                timestamp: 1,
            }
        };
        let b = Bytes::from(build(
            &[spec],
            BuildOptions {
                producer_id: pid,
                producer_epoch: 0,
                base_sequence: if marker.is_some() { -1 } else { 0 },
                control: marker.is_some(),
                transactional,
            },
        ));
        (BatchHeader::parse(&b).unwrap(), b)
    }

    fn feed(t: &mut PartitionTxns, pid: i64, offset: i64, marker: Option<Marker>) {
        let (h, b) = header(pid, true, marker);
        t.observe(&h, offset, offset, marker_of(&h, &b));
    }

    #[test]
    fn the_last_stable_offset_stops_at_the_oldest_open_transaction() {
        let mut t = PartitionTxns::default();
        assert_eq!(t.last_stable_offset(10), 10);
        feed(&mut t, 1, 3, None);
        feed(&mut t, 2, 5, None);
        feed(&mut t, 1, 6, None);
        assert_eq!(t.last_stable_offset(10), 3);
        assert_eq!(t.last_stable_offset(2), 2);
        feed(&mut t, 1, 7, Some(Marker::Commit));
        assert_eq!(t.last_stable_offset(10), 5);
        feed(&mut t, 2, 8, Some(Marker::Abort));
        assert_eq!(t.last_stable_offset(10), 10);
        // Until the high watermark passes a marker, its transaction is not
        // stable yet: the LSO stays at its first offset.
        assert_eq!(t.last_stable_offset(7), 3);
        assert_eq!(t.last_stable_offset(8), 5);
        assert_eq!(t.last_stable_offset(9), 9);
        t.passed(8);
        assert_eq!(t.last_stable_offset(7), 5);
        t.passed(9);
        assert_eq!(t.last_stable_offset(7), 7);
        assert_eq!(
            t.aborted_between(0, 10),
            vec![AbortedTxn {
                producer_id: 2,
                first_offset: 5,
                last_offset: 8,
                last_stable_offset: 9,
            }]
        );
        assert!(t.open_transactions().is_empty());
    }

    #[test]
    fn a_read_learns_only_the_aborted_transactions_it_overlaps() {
        let mut t = PartitionTxns::default();
        for (pid, first, last) in [(1, 0, 2), (2, 3, 9), (3, 10, 12)] {
            feed(&mut t, pid, first, None);
            feed(&mut t, pid, last, Some(Marker::Abort));
        }
        let ids = |v: Vec<AbortedTxn>| v.into_iter().map(|a| a.producer_id).collect::<Vec<_>>();
        assert_eq!(ids(t.aborted_between(0, 100)), vec![1, 2, 3]);
        assert_eq!(ids(t.aborted_between(3, 10)), vec![2]);
        assert_eq!(ids(t.aborted_between(9, 11)), vec![2, 3]);
        assert_eq!(ids(t.aborted_between(13, 20)), Vec::<i64>::new());
        t.truncate_head(10);
        assert_eq!(ids(t.aborted_between(0, 100)), vec![3]);
    }

    #[test]
    fn a_marker_removes_the_producers_verification_guard() {
        let mut t = PartitionTxns::default();
        let g = t.guard(7);
        assert!(t.guarded(7, g));
        let newer = t.guard(7);
        assert!(!t.guarded(7, g) && t.guarded(7, newer));
        feed(&mut t, 7, 0, Some(Marker::Abort));
        assert!(!t.guarded(7, newer));
        feed(&mut t, 7, 1, None);
        assert_eq!(t.open_epoch(7), Some(0));
    }

    #[test]
    fn a_marker_without_an_open_transaction_records_no_abort() {
        let mut t = PartitionTxns::default();
        feed(&mut t, 4, 0, Some(Marker::Abort));
        assert!(t.aborted_between(0, 10).is_empty());
        assert_eq!(t.coordinator_epoch(4), Some(3));
    }
}
