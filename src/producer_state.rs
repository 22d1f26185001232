//! Idempotent-producer state of one partition (Kafka's ProducerStateManager).
//!
//! For each producer id the partition remembers the epoch and the last five
//! batches it wrote (their sequence and offset ranges), which is what a producer
//! with up to five requests in flight can retry. A retried batch is recognised by
//! its sequence range and answered with the offsets it got the first time; a batch
//! that skips sequences is refused with OUT_OF_ORDER_SEQUENCE_NUMBER. A producer
//! the partition has no state for (new here, or expired) may start at any
//! sequence, as in Kafka.
//!
//! The state is a pure function of the log, which keeps its own copy
//! ([`sluice_storage::producers`], snapshotted as Kafka does): a leader takes
//! it from there at startup and when it is elected, then keeps this one ahead
//! of the log with every batch it accepts.

use sluice_storage::producers::ProducerState;
pub use sluice_storage::producers::{BatchMeta, CACHED_BATCHES, ProducerBatch};

use crate::error::BrokerError;

/// One producer as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The last sequence of its last batch.
    pub last_sequence: i32,
    /// The max timestamp of its last batch, as stored (LogAppendTime
    /// included).
    pub last_timestamp: i64,
}

/// What to do with an incoming idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New data: append it.
    Append,
    /// Already written: answer with the original offsets, write nothing.
    Duplicate(BatchMeta),
}

#[derive(Debug, Default)]
pub struct ProducerStateManager {
    producers: ProducerState,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

impl ProducerStateManager {
    /// Decides whether `batch` may be appended.
    pub fn check(&self, batch: &ProducerBatch) -> Result<SequenceCheck, BrokerError> {
        if !batch.is_idempotent() {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(batch.producer_id) else {
            // No state for the producer (it never wrote here, or it was
            // idle past producer.id.expiration.ms): any sequence is taken,
            // as Kafka does — refusing it would make the client start its
            // sequences again and re-send batches already stored.
            return Ok(SequenceCheck::Append);
        };
        if batch.producer_epoch < entry.epoch {
            return Err(BrokerError::InvalidProducerEpoch {
                current: entry.epoch,
                got: batch.producer_epoch,
            });
        }
        if batch.producer_epoch > entry.epoch {
            // A new epoch starts its sequences again at 0.
            return if batch.base_sequence == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(BrokerError::OutOfOrderSequence {
                    expected: 0,
                    got: batch.base_sequence,
                })
            };
        }
        let last_seq = batch.last_sequence();
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == batch.base_sequence && b.last_seq == last_seq)
        {
            return Ok(SequenceCheck::Duplicate(*dup));
        }
        let expected = entry.batches.back().map_or(0, |b| next_seq(b.last_seq));
        if batch.base_sequence != expected {
            return Err(BrokerError::OutOfOrderSequence {
                expected,
                got: batch.base_sequence,
            });
        }
        Ok(SequenceCheck::Append)
    }

    /// The state the log holds (at startup, or when a replica becomes
    /// leader).
    pub fn from_log(producers: &ProducerState) -> Self {
        Self {
            producers: producers.clone(),
        }
    }

    /// Records a batch that is now in the log.
    pub fn observe(&mut self, batch: &ProducerBatch, first_offset: i64, last_offset: i64) {
        self.producers.observe(batch, first_offset, last_offset);
    }

    /// A transaction marker written with the producer's epoch (see
    /// [`ProducerState::observe_marker`]).
    pub fn observe_marker(&mut self, producer_id: i64, epoch: i16) {
        self.producers.observe_marker(producer_id, epoch);
    }

    /// Forgets producers idle for `expiration_ms` except those `keep`
    /// names (see [`ProducerState::expire`]).
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64, keep: impl Fn(i64) -> bool) -> usize {
        self.producers.expire(now_ms, expiration_ms, keep)
    }

    /// The producer's current epoch here, if it wrote here.
    pub fn epoch_of(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(producer_id).map(|e| e.epoch)
    }

    /// Every producer this partition remembers, by producer id.
    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(producer_id, e)| ActiveProducer {
                producer_id,
                producer_epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.last_timestamp,
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    pub fn clear(&mut self) {
        self.producers.clear();
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(pid: i64, epoch: i16, seq: i32, n: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            last_offset_delta: n - 1,
            max_timestamp: 1000 + seq as i64,
        }
    }

    #[test]
    fn in_order_batches_append_and_a_retry_is_a_duplicate() {
        let mut m = ProducerStateManager::default();
        assert_eq!(m.check(&b(7, 0, 0, 10)).unwrap(), SequenceCheck::Append);
        m.observe(&b(7, 0, 0, 10), 100, 109);
        assert_eq!(m.check(&b(7, 0, 10, 5)).unwrap(), SequenceCheck::Append);
        m.observe(&b(7, 0, 10, 5), 110, 114);
        match m.check(&b(7, 0, 0, 10)).unwrap() {
            SequenceCheck::Duplicate(meta) => assert_eq!(meta.first_offset, 100),
            other => panic!("expected duplicate, got {other:?}"),
        }
    }

    #[test]
    fn a_gap_is_out_of_order() {
        let mut m = ProducerStateManager::default();
        m.observe(&b(7, 0, 0, 10), 0, 9);
        let err = m.check(&b(7, 0, 11, 1)).unwrap_err();
        assert!(matches!(
            err,
            BrokerError::OutOfOrderSequence {
                expected: 10,
                got: 11
            }
        ));
        assert_eq!(
            m.check(&b(8, 0, 3, 1)).unwrap(),
            SequenceCheck::Append,
            "a producer with no state here starts at any sequence (Kafka's rule)"
        );
    }

    #[test]
    fn older_epochs_are_fenced_and_new_epochs_restart_at_zero() {
        let mut m = ProducerStateManager::default();
        m.observe(&b(7, 2, 0, 1), 0, 0);
        assert!(matches!(
            m.check(&b(7, 1, 1, 1)),
            Err(BrokerError::InvalidProducerEpoch { .. })
        ));
        assert_eq!(m.check(&b(7, 3, 0, 1)).unwrap(), SequenceCheck::Append);
        assert!(m.check(&b(7, 3, 5, 1)).is_err());
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut m = ProducerStateManager::default();
        for i in 0..6 {
            m.observe(&b(1, 0, i, 1), i as i64, i as i64);
        }
        assert!(
            m.check(&b(1, 0, 0, 1)).is_err(),
            "evicted batch is no longer a duplicate"
        );
        assert!(matches!(
            m.check(&b(1, 0, 1, 1)).unwrap(),
            SequenceCheck::Duplicate(_)
        ));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut m = ProducerStateManager::default();
        m.observe(&b(1, 0, 0, 1), 0, 0);
        // Pretend a long history: a batch ending exactly at i32::MAX.
        let mut s = ProducerStateManager::default();
        s.observe(&b(1, 0, i32::MAX - 1, 2), 0, 1);
        assert_eq!(s.check(&b(1, 0, 0, 1)).unwrap(), SequenceCheck::Append);
        assert_eq!(b(1, 0, i32::MAX, 2).last_sequence(), 0);
    }

    #[test]
    fn active_producers_report_their_last_batch() {
        let mut m = ProducerStateManager::default();
        m.observe(&b(9, 0, 0, 3), 0, 2);
        m.observe(&b(7, 1, 0, 2), 3, 4);
        m.observe(&b(9, 0, 3, 4), 5, 8);
        assert_eq!(
            m.active_producers(),
            vec![
                ActiveProducer {
                    producer_id: 7,
                    producer_epoch: 1,
                    last_sequence: 1,
                    last_timestamp: 1000,
                },
                ActiveProducer {
                    producer_id: 9,
                    producer_epoch: 0,
                    last_sequence: 6,
                    last_timestamp: 1003,
                },
            ]
        );
        // A new epoch replaces what the old one wrote.
        m.observe(&b(9, 1, 0, 1), 9, 9);
        let p9 = m.active_producers()[1];
        assert_eq!(
            (p9.producer_epoch, p9.last_sequence, p9.last_timestamp),
            (1, 0, 1000)
        );
    }

    #[test]
    fn non_idempotent_batches_are_not_tracked() {
        let mut m = ProducerStateManager::default();
        m.observe(&b(-1, -1, -1, 3), 0, 2);
        assert!(m.is_empty());
        assert_eq!(m.check(&b(-1, -1, -1, 3)).unwrap(), SequenceCheck::Append);
    }
}
