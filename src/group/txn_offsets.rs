//! Offsets committed inside a transaction (TxnOffsetCommit, KIP-98 and
//! KIP-447): stored in `__consumer_offsets` as the producer's transactional
//! records, held aside per producer, and made the group's committed offsets
//! only when the transaction's COMMIT marker reaches that partition (an ABORT
//! marker drops them). OffsetFetch with require_stable answers
//! UNSTABLE_OFFSET_COMMIT for a partition whose offset is still pending.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use sluice_storage::batch::{BuildOptions, RecordSpec};

use super::records;
use super::{CommitItem, Committed, GroupCoordinator, Inner, OFFSETS_TOPIC, code, committed};
use crate::broker::Broker;
use crate::error::BrokerError;

/// Offsets a producer's open transaction committed: group → (its
/// `__consumer_offsets` partition, (topic, partition) → offset).
pub(super) type Pending = HashMap<String, (i32, HashMap<(String, i32), Committed>)>;

/// The producer and member fields of a TxnOffsetCommit.
#[derive(Debug, Clone)]
pub struct TxnCommit<'a> {
    pub transactional_id: &'a str,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub generation: i32,
    /// TxnOffsetCommit v5 (transaction version 2): the group's partition
    /// joins the transaction here (the client sends no AddOffsetsToTxn).
    pub add: bool,
}

impl GroupCoordinator {
    /// TxnOffsetCommit: one code per item, in order.
    pub async fn txn_commit(
        &self,
        broker: &Broker,
        group: &str,
        c: &TxnCommit<'_>,
        items: &[CommitItem],
    ) -> Vec<i16> {
        let p = match self.offsets_partition(broker, group).await {
            Ok(p) => p,
            Err(code) => return vec![code; items.len()],
        };
        let prepared = match broker
            .txns
            .prepare_check(
                broker,
                &p,
                c.transactional_id,
                (c.producer_id, c.producer_epoch),
                c.add,
            )
            .await
        {
            Ok(prepared) => prepared,
            Err(e) => return vec![txn_code(&e); items.len()],
        };
        let now = broker.now_ms();
        let mut codes = vec![0i16; items.len()];
        let mut recs = Vec::new();
        let mut written = Vec::new();
        let appended = {
            let mut inner = self.lock();
            if let Err(e) = validate(&mut inner, group, c, items, now) {
                return vec![e; items.len()];
            }
            for (i, key, value) in super::offsets::offset_records(group, items, now, &mut codes) {
                recs.push((key, records::offset_value(&value)));
                written.push((i, value));
            }
            if recs.is_empty() {
                return codes;
            }
            let specs: Vec<RecordSpec<'_>> = recs
                .iter()
                .map(|(k, v)| RecordSpec {
                    key: Some(k),
                    value: Some(v),
                    timestamp: now,
                })
                .collect();
            let batch = Bytes::from(sluice_storage::batch::build(
                &specs,
                BuildOptions {
                    producer_id: c.producer_id,
                    producer_epoch: c.producer_epoch,
                    base_sequence: -1,
                    control: false,
                    transactional: true,
                },
            ));
            // Checked against the transaction under the partition's lock, so
            // no marker can slip in between (KIP-890 part 1).
            let index = p.index;
            let verify = |h: &sluice_storage::BatchHeader,
                          t: &crate::txn::partition::PartitionTxns| {
                broker
                    .txns
                    .check(prepared, c.transactional_id, h, t, OFFSETS_TOPIC, index)
            };
            match p.append_verified(&batch, &verify) {
                Ok(r) => r,
                Err(e) => {
                    warn_limited!(group, error = %e, "transactional offset commit refused");
                    return vec![txn_code(&e); items.len()];
                }
            }
        };
        if let Err(e) = p.wait_acked(&appended, Duration::from_secs(30)).await {
            tracing::error!(group, error = %e, "transactional offset commit did not become durable");
            return vec![code(ResponseError::RequestTimedOut); items.len()];
        }
        let first = appended.last_offset + 1 - written.len() as i64;
        let mut inner = self.lock();
        let pending = &mut inner
            .txn_offsets
            .entry(c.producer_id)
            .or_default()
            .entry(group.to_owned())
            .or_insert_with(|| (p.index, HashMap::new()))
            .1;
        for (n, (i, value)) in written.into_iter().enumerate() {
            let item = &items[i];
            pending.insert(
                (item.topic.clone(), item.partition),
                committed(value, first + n as i64),
            );
        }
        codes
    }

    /// A transaction's marker reached partition `index` of
    /// `__consumer_offsets`: its offsets there become committed (or go).
    pub fn complete_txn(&self, index: i32, producer_id: i64, commit: bool) {
        let mut inner = self.lock();
        let Some(mut pending) = inner.txn_offsets.remove(&producer_id) else {
            return;
        };
        let here: Vec<String> = pending
            .iter()
            .filter(|(_, (i, _))| *i == index)
            .map(|(g, _)| g.clone())
            .collect();
        for group in here {
            let (_, offsets) = pending.remove(&group).unwrap_or_default();
            if commit {
                apply(&mut inner, &group, offsets);
            }
        }
        if !pending.is_empty() {
            inner.txn_offsets.insert(producer_id, pending);
        }
    }

    /// Whether an open transaction holds an offset of this partition for the
    /// group (OffsetFetch with require_stable).
    pub fn has_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        let key = (topic.to_owned(), partition);
        self.lock()
            .txn_offsets
            .values()
            .any(|p| p.get(group).is_some_and(|(_, o)| o.contains_key(&key)))
    }
}

/// The TxnOffsetCommit code of a refused transactional check.
fn txn_code(e: &BrokerError) -> i16 {
    match e {
        BrokerError::InvalidProducerEpoch { .. } => code(ResponseError::ProducerFenced),
        BrokerError::InvalidTxnState(_) => code(ResponseError::InvalidTxnState),
        BrokerError::NotLeaderOrFollower => code(ResponseError::NotCoordinator),
        _ => code(ResponseError::CoordinatorNotAvailable),
    }
}

/// Kafka's checks of a TxnOffsetCommit's member fields (KIP-447): none for
/// a producer that names no member (generation -1, no member id).
fn validate(
    inner: &mut Inner,
    group: &str,
    c: &TxnCommit<'_>,
    items: &[CommitItem],
    now: i64,
) -> Result<(), i16> {
    if c.generation < 0 && c.member_id.is_empty() {
        return Ok(());
    }
    if let Some(g) = inner.consumers.get(group) {
        return g.validate_commit(
            c.member_id,
            c.generation,
            items.iter().map(|i| (i.topic.as_str(), i.partition)),
        );
    }
    match inner.groups.get_mut(group) {
        Some(g) => g.validate_commit(c.member_id, c.instance_id, c.generation, now),
        None => Err(code(ResponseError::UnknownMemberId)),
    }
}

/// Makes offsets committed, a later record always winning.
pub(super) fn apply(inner: &mut Inner, group: &str, offsets: HashMap<(String, i32), Committed>) {
    let map = inner.offsets.entry(group.to_owned()).or_default();
    for (key, c) in offsets {
        if map
            .get(&key)
            .is_none_or(|old| old.record_offset < c.record_offset)
        {
            map.insert(key, c);
        }
    }
}
