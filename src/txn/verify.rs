//! KIP-890 on the partition leader's side: the check of a transactional
//! append against its transaction, done here when this broker coordinates
//! the transactional id, or asked of the coordinator on another broker
//! (AddPartitionsToTxn, verifying or — transaction version 2 — adding the
//! partition) with a guard the producer's next marker removes.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

use super::{Code, TxnCoordinator, TxnState, code};
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::partition::Partition;

/// How a partition checks a transactional batch (see
/// [`TxnCoordinator::prepare_check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnCheck {
    /// Ask this broker's coordinator.
    Local,
    /// The producer's transaction at this epoch is open on the partition.
    Open,
    /// The remote coordinator confirmed; valid while the guard stands.
    Guarded(u64),
}

impl TxnCoordinator {
    /// KIP-890 part 1, asked by a partition under its lock before it appends
    /// a transactional batch: the batch's producer must be the id's current
    /// one, with a transaction under way that holds the partition.
    pub fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), BrokerError> {
        let inner = self.lock();
        let Some(m) = inner.txns.get(transactional_id) else {
            return Err(BrokerError::InvalidTxnState(format!(
                "unknown transactional id {transactional_id}"
            )));
        };
        if m.producer_id != producer_id {
            return Err(BrokerError::InvalidTxnState(format!(
                "producer {producer_id} is not the producer of {transactional_id}"
            )));
        }
        if epoch < m.epoch {
            return Err(BrokerError::InvalidProducerEpoch {
                current: m.epoch,
                got: epoch,
            });
        }
        if m.epoch != epoch
            || m.state != TxnState::Ongoing
            || !m.partitions.contains(&(topic.to_owned(), partition))
        {
            return Err(BrokerError::InvalidTxnState(format!(
                "{topic}-{partition} is not part of a transaction under way of {transactional_id}"
            )));
        }
        Ok(())
    }

    /// Prepares the KIP-890 check of a transactional append by `producer_id`
    /// at `epoch` to partition `p`, for `transactional_id`: done under the
    /// partition's lock by [`Self::check`]. When this broker coordinates the
    /// id, the check asks the coordinator's state there; otherwise the
    /// coordinator is asked now (AddPartitionsToTxn with verify_only) and a
    /// guard left on the partition makes sure no marker came in between.
    ///
    /// With `add` (transaction version 2: Produce v12, TxnOffsetCommit v5)
    /// the partition is added to the transaction instead of only checked
    /// (KIP-890 part 2: the client sends no AddPartitionsToTxn).
    pub async fn prepare_check(
        &self,
        broker: &Broker,
        p: &Partition,
        transactional_id: &str,
        (producer_id, epoch): (i64, i16),
        add: bool,
    ) -> Result<TxnCheck, BrokerError> {
        let local = match broker.cluster() {
            None => true,
            Some(_) => {
                let coordinator = self
                    .txn_partition_anywhere(broker, transactional_id)
                    .await
                    .map_err(|_| BrokerError::NotEnoughReplicas)?;
                coordinator.check_serving().is_ok()
            }
        };
        if local {
            if add {
                let added = self
                    .add_partitions(
                        broker,
                        transactional_id,
                        producer_id,
                        epoch,
                        &[(p.topic.to_string(), p.index)],
                        false,
                    )
                    .await
                    .map(|codes| codes.first().copied().unwrap_or(0));
                let c = added.unwrap_or_else(|c| c);
                verification_error(c, p, transactional_id, producer_id, epoch)?;
            } else {
                self.txn_partition(broker, transactional_id)
                    .await
                    .map_err(|_| BrokerError::NotEnoughReplicas)?;
            }
            return Ok(TxnCheck::Local);
        }
        let token = match p.txn_guard(producer_id, epoch)? {
            crate::partition::TxnGuard::Open => return Ok(TxnCheck::Open),
            crate::partition::TxnGuard::Token(t) => t,
        };
        let me = broker.node_id();
        let coordinator = self
            .txn_partition_anywhere(broker, transactional_id)
            .await
            .map_err(|_| BrokerError::NotEnoughReplicas)?;
        let Some(node) = coordinator.leader(me).0.filter(|&n| n != me) else {
            return Err(BrokerError::NotEnoughReplicas);
        };
        let c = self
            .remote_add(
                broker,
                node,
                transactional_id,
                (producer_id, epoch),
                (&p.topic, p.index),
                !add,
            )
            .await;
        verification_error(c, p, transactional_id, producer_id, epoch)?;
        Ok(TxnCheck::Guarded(token))
    }

    /// The check [`Self::prepare_check`] prepared, run under the partition's
    /// lock for each transactional batch.
    pub fn check(
        &self,
        prepared: TxnCheck,
        transactional_id: &str,
        h: &sluice_storage::BatchHeader,
        txns: &super::partition::PartitionTxns,
        topic: &str,
        index: i32,
    ) -> Result<(), BrokerError> {
        let open_here = txns.open_epoch(h.producer_id) == Some(h.producer_epoch);
        let ok = match prepared {
            TxnCheck::Local => {
                return self.verify(
                    transactional_id,
                    h.producer_id,
                    h.producer_epoch,
                    topic,
                    index,
                );
            }
            TxnCheck::Open => open_here,
            TxnCheck::Guarded(token) => open_here || txns.guarded(h.producer_id, token),
        };
        if ok {
            Ok(())
        } else {
            Err(BrokerError::InvalidTxnState(format!(
                "the transaction of producer {} on {topic}-{index} ended while it was verified",
                h.producer_id
            )))
        }
    }

    /// AddPartitionsToTxn (v4, a broker's form) to the coordinator on
    /// `node`, verifying or adding the partition: its code
    /// (COORDINATOR_NOT_AVAILABLE when unreachable).
    pub(super) async fn remote_add(
        &self,
        broker: &Broker,
        node: i32,
        transactional_id: &str,
        (producer_id, epoch): (i64, i16),
        (topic, index): (&str, i32),
        verify_only: bool,
    ) -> Code {
        use crate::handlers::str_bytes;
        use kafka_protocol::messages::add_partitions_to_txn_request::{
            AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
        };
        use kafka_protocol::messages::{
            AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ProducerId, TopicName,
            TransactionalId,
        };
        let req = AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(str_bytes(transactional_id)))
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch)
                .with_verify_only(verify_only)
                .with_topics(vec![
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(str_bytes(topic)))
                        .with_partitions(vec![index]),
                ]),
        ]);
        let resp: AddPartitionsToTxnResponse = match self
            .peers
            .call(broker, node, ApiKey::AddPartitionsToTxn, 4, &req)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(transactional_id, node, error = %e, "transaction verification failed");
                return code(ResponseError::CoordinatorNotAvailable);
            }
        };
        if resp.error_code != 0 {
            return resp.error_code;
        }
        resp.results_by_transaction
            .first()
            .and_then(|t| t.topic_results.first())
            .and_then(|t| t.results_by_partition.first())
            .map_or(code(ResponseError::CoordinatorNotAvailable), |p| {
                p.partition_error_code
            })
    }
}

/// A coordinator's answer about a partition, as the partition leader's
/// produce error: INVALID_TXN_STATE and INVALID_PRODUCER_EPOCH as they are; a
/// coordinator moving or loading makes the producer retry
/// (NOT_ENOUGH_REPLICAS, as Kafka answers).
fn verification_error(
    c: Code,
    p: &Partition,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
) -> Result<(), BrokerError> {
    match c {
        0 => Ok(()),
        c if c == code(ResponseError::InvalidTxnState) => {
            Err(BrokerError::InvalidTxnState(format!(
                "{}-{} is not part of a transaction under way of {transactional_id}",
                p.topic, p.index
            )))
        }
        c if c == code(ResponseError::ProducerFenced)
            || c == code(ResponseError::InvalidProducerEpoch) =>
        {
            Err(BrokerError::InvalidProducerEpoch {
                current: -1,
                got: epoch,
            })
        }
        c if c == code(ResponseError::InvalidProducerIdMapping) => {
            Err(BrokerError::InvalidTxnState(format!(
                "producer {producer_id} is not the producer of {transactional_id}"
            )))
        }
        _ => Err(BrokerError::NotEnoughReplicas),
    }
}
