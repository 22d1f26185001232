//! Transactions on a partition: the markers the coordinator writes, and
//! reads for read_committed consumers (below the last stable offset, with
//! the aborted transactions they must skip).

use bytes::Bytes;
use sluice_storage::AppendOptions;
use sluice_storage::batch::{BuildOptions, RecordSpec, build};

use super::{AppendResult, Backing, FetchResult, Partition, cut_at_offset};
use crate::error::BrokerError;
use crate::txn::partition::{AbortedTxn, Marker, marker_record};

/// What a read_committed fetch of one partition returns.
#[derive(Debug, Clone)]
pub struct ReadCommitted {
    pub fetch: FetchResult,
    pub last_stable_offset: i64,
    /// The aborted transactions whose records the read may hold.
    pub aborted: Vec<AbortedTxn>,
}

/// Where a producer stands on this partition before a transactional append
/// is verified with a remote coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnGuard {
    /// Its transaction at this epoch is open here already: the partition
    /// was verified before (a marker would have ended it).
    Open,
    /// A fresh guard token (see `PartitionTxns::guard`).
    Token(u64),
}

impl Partition {
    /// Takes a KIP-890 verification guard for the producer, unless its
    /// transaction at `epoch` is open here already.
    pub fn txn_guard(&self, producer_id: i64, epoch: i16) -> Result<TxnGuard, BrokerError> {
        self.check_serving()?;
        let mut guard = self.lock();
        let state = &mut *guard;
        if let Backing::Raft(r) = &self.backing {
            self.refresh_producer_state(r, state)?;
        }
        if state.txns.open_epoch(producer_id) == Some(epoch) {
            return Ok(TxnGuard::Open);
        }
        Ok(TxnGuard::Token(state.txns.guard(producer_id)))
    }

    /// Appends a COMMIT or ABORT marker for `producer_id`'s transaction on
    /// this partition (WriteTxnMarkers). A producer whose current epoch here
    /// is newer than the marker's gets INVALID_PRODUCER_EPOCH, a coordinator
    /// epoch older than the producer's last marker
    /// TRANSACTION_COORDINATOR_FENCED. A producer with no transaction open
    /// here needs no marker: nothing is written (a coordinator retrying
    /// after a crash sends its markers again) and None is returned.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: Marker,
        coordinator_epoch: i32,
    ) -> Result<Option<AppendResult>, BrokerError> {
        self.check_serving()?;
        let mut guard = self.lock();
        let state = &mut *guard;
        if let Backing::Raft(r) = &self.backing {
            self.refresh_producer_state(r, state)?;
        }
        if let Some(current) = state.producers.epoch_of(producer_id)
            && current > producer_epoch
        {
            return Err(BrokerError::InvalidProducerEpoch {
                current,
                got: producer_epoch,
            });
        }
        if state
            .txns
            .coordinator_epoch(producer_id)
            .is_some_and(|e| e > coordinator_epoch)
        {
            return Err(BrokerError::TransactionCoordinatorFenced);
        }
        if !state.txns.is_open(producer_id) {
            tracing::debug!(partition = ?self, producer_id, ?marker, "no transaction open here: no marker needed");
            return Ok(None);
        }
        let (key, value) = marker_record(marker, coordinator_epoch);
        let batch = Bytes::from(build(
            &[RecordSpec {
                key: Some(&key),
                value: Some(&value),
                timestamp: self.clock.now_ms(),
            }],
            BuildOptions {
                producer_id,
                producer_epoch,
                base_sequence: -1,
                control: true,
                transactional: true,
            },
        ));
        let h = sluice_storage::BatchHeader::parse(&batch)
            .map_err(|e| BrokerError::CorruptMessage(e.to_string()))?;
        if let Backing::Raft(r) = &self.backing {
            return self
                .append_replicated(r, state, &[(h, batch)], None)
                .map(Some);
        }
        let mut log = self.log()?;
        let info = log.append(
            &batch,
            &AppendOptions {
                leader_epoch: 0,
                log_append_time: None,
            },
        )?;
        state.producers.observe_marker(producer_id, producer_epoch);
        state.txns.observe(
            &h,
            info.first_offset,
            info.last_offset,
            Some((marker, coordinator_epoch)),
        );
        let log_start_offset = log.log_start_offset();
        self.after_local_write(&state.config, &log);
        drop(log);
        Ok(Some(AppendResult {
            base_offset: info.first_offset,
            last_offset: info.last_offset,
            log_append_time: -1,
            log_start_offset,
            ..AppendResult::default()
        }))
    }

    /// The last stable offset: the high watermark, or the first offset of
    /// the oldest transaction still open if that is lower.
    pub fn last_stable_offset(&self) -> Result<i64, BrokerError> {
        self.check_serving()?;
        let mut state = self.lock();
        if let Backing::Raft(r) = &self.backing {
            self.refresh_producer_state(r, &mut state)?;
        }
        let hw = self.high_watermark();
        state.txns.passed(hw);
        Ok(state.txns.last_stable_offset(hw))
    }

    /// A read for a read_committed consumer: whole batches from `offset`,
    /// none at or above the last stable offset, and the aborted
    /// transactions they overlap (the consumer drops those records).
    pub fn read_committed(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadCommitted, BrokerError> {
        // The LSO first: it only moves forward, and a transaction that
        // opens meanwhile starts above it.
        let lso = self.last_stable_offset()?;
        let mut fetch = self.read(offset, max_bytes)?;
        fetch.records = cut_at_offset(fetch.records, lso);
        let upto = next_offset_after(&fetch.records);
        let aborted = match upto {
            Some(upto) => self.lock().txns.aborted_between(offset, upto),
            None => Vec::new(),
        };
        Ok(ReadCommitted {
            fetch,
            last_stable_offset: lso,
            aborted,
        })
    }

    /// Where the transaction `producer_id` has open here began, and the
    /// coordinator epoch of its last marker (DescribeProducers).
    pub fn transaction_of(&self, producer_id: i64) -> (Option<i64>, Option<i32>) {
        let state = self.lock();
        (
            state.txns.open_since(producer_id),
            state.txns.coordinator_epoch(producer_id),
        )
    }
}

/// The offset after the last whole batch of `records`; None when empty.
fn next_offset_after(records: &Bytes) -> Option<i64> {
    let mut pos = 0usize;
    let mut next = None;
    while pos + 12 <= records.len() {
        let Ok(h) = sluice_storage::BatchHeader::parse(&records[pos..]) else {
            break;
        };
        next = Some(h.next_offset());
        pos += h.total_size();
    }
    next
}
