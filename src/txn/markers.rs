//! Ending a transaction: the COMMIT or ABORT marker on every partition of
//! it — appended here for the partitions this broker leads, sent as
//! WriteTxnMarkers to the leaders of the others — and then the transaction
//! stored complete.

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

use super::partition::Marker;
use super::{Code, PERSIST_WAIT, TxnCoordinator, TxnMeta, TxnState, code};
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::partition::AppendResult;

/// The marker ending a transaction in `state`.
fn marker_for(state: TxnState) -> Marker {
    if state == TxnState::PrepareCommit {
        Marker::Commit
    } else {
        Marker::Abort
    }
}

impl TxnCoordinator {
    /// Writes the markers of a transaction in PrepareCommit / PrepareAbort
    /// and then stores it complete.
    pub(super) async fn complete(
        &self,
        broker: &Broker,
        transactional_id: &str,
    ) -> Result<(), Code> {
        let p = self.txn_partition(broker, transactional_id).await?;
        let Some(m) = self.lock().txns.get(transactional_id).cloned() else {
            return Ok(());
        };
        if !m.state.preparing() {
            return Ok(());
        }
        let marker = marker_for(m.state);
        let coordinator_epoch = Self::coordinator_epoch(&p);
        // Leaders move (a failover, a restart): the partitions whose marker
        // failed are tried again, each time at their leader then.
        let mut todo: Vec<(String, i32)> = m.partitions.iter().cloned().collect();
        for backoff in [0u64, 100, 300, 1000, 2000] {
            if todo.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(backoff)).await;
            todo = self
                .write_markers(broker, &m, marker, coordinator_epoch, todo)
                .await;
        }
        if !todo.is_empty() {
            tracing::warn!(transactional_id, partitions = ?todo, "transaction markers not all written; will retry");
            return Err(code(ResponseError::CoordinatorNotAvailable));
        }
        let now = broker.now_ms();
        let mut inner = self.lock();
        let Some(current) = inner.txns.get(transactional_id).cloned() else {
            return Ok(());
        };
        if current.state != m.state || current.epoch != m.epoch {
            return Ok(());
        }
        let mut next = current;
        next.state = if marker == Marker::Commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        next.partitions.clear();
        next.start_ms = -1;
        if next.epoch == i16::MAX {
            // Transaction version 2 used the epochs up: the next transaction
            // runs under a new producer id (the markers carried the old one).
            next.prev_producer_id = next.producer_id;
            next.producer_id = broker.allocate_producer_id().map_err(|e| {
                tracing::error!(error = %e, "could not allocate a producer id");
                code(ResponseError::CoordinatorNotAvailable)
            })?;
            next.epoch = 0;
        }
        // Not waited for: a later request's own record comes after it, and
        // a crash before it is durable only writes the markers again.
        self.store(&mut inner, &p, transactional_id, next, now)?;
        tracing::debug!(transactional_id, ?marker, "transaction complete");
        Ok(())
    }

    /// Writes the transaction's marker on `partitions`: here for those this
    /// broker leads, with WriteTxnMarkers to the leader for the others.
    /// Returns the partitions whose marker is not durable yet.
    pub(super) async fn write_markers(
        &self,
        broker: &Broker,
        m: &TxnMeta,
        marker: Marker,
        coordinator_epoch: i32,
        partitions: Vec<(String, i32)>,
    ) -> Vec<(String, i32)> {
        let me = broker.node_id();
        let mut failed = Vec::new();
        let mut local = Vec::new();
        let mut remote: HashMap<i32, Vec<(String, i32)>> = HashMap::new();
        for (topic, index) in partitions {
            let Some(p) = broker.partition(&topic, index) else {
                // Deleted since: nothing left to mark.
                continue;
            };
            if p.check_serving().is_ok() {
                local.push(p);
                continue;
            }
            match p.leader(me).0 {
                Some(leader) if leader != me => {
                    remote.entry(leader).or_default().push((topic, index))
                }
                _ => failed.push((topic, index)),
            }
        }
        let local_part = async {
            let mut failed = Vec::new();
            let mut written = Vec::new();
            for p in local {
                match p.append_marker(m.producer_id, m.epoch, marker, coordinator_epoch) {
                    Ok(Some(r)) => written.push((p, r)),
                    Ok(None) => {
                        // Nothing open: no marker needed, or another
                        // completer (the timer, a retried EndTxn) wrote it
                        // just now. Its marker must be durable before this
                        // one answers too.
                        let end = p.log_end_offset();
                        let r = AppendResult {
                            base_offset: end - 1,
                            last_offset: end - 1,
                            ..AppendResult::default()
                        };
                        written.push((p, r));
                    }
                    Err(
                        e @ (BrokerError::TransactionCoordinatorFenced
                        | BrokerError::InvalidProducerEpoch { .. }),
                    ) => {
                        // A newer coordinator or producer epoch owns the
                        // partition's producer state: retrying cannot help.
                        tracing::warn!(producer_id = m.producer_id, partition = ?p, error = %e, "a transaction marker was refused for good");
                    }
                    Err(e) => {
                        tracing::info!(producer_id = m.producer_id, partition = ?p, error = %e, "could not write a transaction marker");
                        failed.push((p.topic.to_string(), p.index));
                    }
                }
            }
            for (p, r) in &written {
                match p.wait_acked(r, PERSIST_WAIT).await {
                    Ok(()) => {
                        if &*p.topic == crate::group::OFFSETS_TOPIC {
                            broker.groups.complete_txn(
                                p.index,
                                m.producer_id,
                                marker == Marker::Commit,
                            );
                        }
                    }
                    Err(e) => {
                        tracing::info!(producer_id = m.producer_id, partition = ?p, error = %e, "a transaction marker did not become durable");
                        failed.push((p.topic.to_string(), p.index));
                    }
                }
            }
            failed
        };
        let remote_part = async {
            let mut failed = Vec::new();
            for (leader, parts) in remote {
                failed.extend(
                    self.send_markers(broker, leader, m, marker, coordinator_epoch, parts)
                        .await,
                );
            }
            failed
        };
        let (a, b) = tokio::join!(local_part, remote_part);
        failed.extend(a);
        failed.extend(b);
        failed
    }

    /// WriteTxnMarkers to the leader of `partitions`; returns those that
    /// failed.
    pub(super) async fn send_markers(
        &self,
        broker: &Broker,
        leader: i32,
        m: &TxnMeta,
        marker: Marker,
        coordinator_epoch: i32,
        partitions: Vec<(String, i32)>,
    ) -> Vec<(String, i32)> {
        use kafka_protocol::messages::write_txn_markers_request::{
            WritableTxnMarker, WritableTxnMarkerTopic,
        };
        use kafka_protocol::messages::{
            ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
        };
        let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
        for (t, p) in &partitions {
            match topics.last_mut() {
                Some(last) if last.name.0.as_str() == t => last.partition_indexes.push(*p),
                _ => topics.push(
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(crate::handlers::str_bytes(t.clone())))
                        .with_partition_indexes(vec![*p]),
                ),
            }
        }
        let req = WriteTxnMarkersRequest::default().with_markers(vec![
            WritableTxnMarker::default()
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.epoch)
                .with_transaction_result(marker == Marker::Commit)
                .with_coordinator_epoch(coordinator_epoch)
                .with_topics(topics),
        ]);
        let resp: WriteTxnMarkersResponse = match self
            .peers
            .call(broker, leader, ApiKey::WriteTxnMarkers, 1, &req)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(producer_id = m.producer_id, leader, error = %e, "transaction markers not sent");
                return partitions;
            }
        };
        let mut failed = Vec::new();
        for t in resp.markers.iter().flat_map(|m| &m.topics) {
            for p in &t.partitions {
                let c = p.error_code;
                if c == 0 || c == code(ResponseError::UnknownTopicOrPartition) {
                    continue;
                }
                if c == code(ResponseError::TransactionCoordinatorFenced)
                    || c == code(ResponseError::InvalidProducerEpoch)
                {
                    // A newer coordinator or producer epoch owns the
                    // partition's producer state: retrying cannot help.
                    tracing::warn!(producer_id = m.producer_id, topic = %t.name.0, partition = p.partition_index, code = c, "a transaction marker was refused for good");
                    continue;
                }
                tracing::info!(producer_id = m.producer_id, topic = %t.name.0, partition = p.partition_index, leader, code = c, "a transaction marker was refused");
                failed.push((t.name.0.to_string(), p.partition_index));
            }
        }
        failed
    }
}
