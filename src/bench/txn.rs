//! Transactional producers for `sluice bench --transactional-id` (KIP-98),
//! and the producer id of `--idempotent` ones.
//!
//! Producer n (0, 1, …) uses the transactional id `ID-n`. It finds its
//! transaction coordinator (FindCoordinator, key type 1) and takes a producer
//! id and epoch there (InitProducerId); then each transaction of
//! `--records-per-txn` records adds the partitions it will write
//! (AddPartitionsToTxn), produces the records to the partitions' leader as
//! transactional batches (sequences continuing per partition, as an
//! idempotent producer's; each request carries a batch of at most
//! `--batch-size` bytes for every partition with records left, up to
//! `--in-flight` requests outstanding) and commits (EndTxn) once every
//! produce is answered. A transaction's records are spread evenly over the
//! producer's partitions; one with fewer records than partitions writes one
//! record to each of the next partitions in turn.
//!
//! Commit latency is EndTxn's round trip (the coordinator answers once its
//! PrepareCommit record and the partitions' COMMIT markers are durable);
//! transaction latency runs from sending AddPartitionsToTxn to EndTxn's
//! answer. Records count as produced when their transaction is committed.
//!
//! Errors: CONCURRENT_TRANSACTIONS and a coordinator loading or not
//! available are retried after a short pause for at most
//! [`client::RETRY_FOR`];
//! anything else (PRODUCER_FENCED above all) ends the run with the error's
//! name. No answer is awaited longer than [`client::ANSWER_WAIT`]. A
//! transaction cut short by an error is aborted if the coordinator still
//! answers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use super::client::{
    self, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, OPERATION_NOT_ATTEMPTED,
    RETRIABLE, Result, Retry, answer, call, failure,
};
use super::{BenchArgs, Sequences, Stamp, Stats};

/// The address of the transaction coordinator of `id`.
async fn find_coordinator(bootstrap: &str, tls: &client::Tls, id: &str) -> Result<String> {
    let (mut tx, mut rx) = client::connect(bootstrap, tls).await?;
    let v = tx.version(ApiKey::FindCoordinator, 1..=4)?;
    let key = StrBytes::from_string(id.to_owned());
    let req = if v >= 4 {
        FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![key])
    } else {
        FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_key(key)
    };
    let retry = Retry::new(
        format!("FindCoordinator of transactional id {id}"),
        Duration::from_millis(100),
    );
    loop {
        let r: FindCoordinatorResponse =
            call(&mut tx, &mut rx, ApiKey::FindCoordinator, v, &req).await?;
        let (code, host, port) = if v >= 4 {
            let c = r
                .coordinators
                .first()
                .ok_or("FindCoordinator answered without a coordinator")?;
            (c.error_code, c.host.to_string(), c.port)
        } else {
            (r.error_code, r.host.to_string(), r.port)
        };
        if code == 0 {
            return Ok(format!("{host}:{port}"));
        }
        retry
            .after(
                code,
                &[COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE],
            )
            .await?;
    }
}

/// (partition, records) of one transaction of `n` records: spread evenly
/// over `partitions` from `*next` on; with fewer records than partitions,
/// one record each to the next `n` partitions.
fn spread(n: u64, partitions: &[i32], next: &mut usize) -> Vec<(i32, u64)> {
    let k = (n as usize).clamp(1, partitions.len());
    let shares = (0..k)
        .map(|j| {
            let extra = u64::from((j as u64) < n % k as u64);
            (
                partitions[(*next + j) % partitions.len()],
                n / k as u64 + extra,
            )
        })
        .collect();
    *next = (*next + k) % partitions.len();
    shares
}

/// One transactional producer: its coordinator and leader connections.
struct Producer {
    id: TransactionalId,
    producer_id: i64,
    epoch: i16,
    coordinator: (client::Sender, client::Receiver),
    leader: (client::Sender, client::Receiver),
    add_v: i16,
    end_v: i16,
    produce_v: i16,
    topic: TopicName,
    sequences: Sequences,
}

/// The pause before a retry (as Kafka's producer retries
/// AddPartitionsToTxn).
const RETRY_PAUSE: Duration = Duration::from_millis(20);

impl Producer {
    async fn start(args: &BenchArgs, id: &str) -> Result<Self> {
        let tls = args.tls()?;
        let address = find_coordinator(&args.bootstrap, &tls, id).await?;
        let (mut tx, mut rx) = client::connect(&address, &tls).await?;
        let add_v = tx.version(ApiKey::AddPartitionsToTxn, 0..=3)?;
        let end_v = tx.version(ApiKey::EndTxn, 0..=4)?;
        let (producer_id, epoch) = client::init_producer_id(&mut tx, &mut rx, Some(id)).await?;
        let leader = client::connect(&args.bootstrap, &tls).await?;
        let produce_v = leader.0.version(ApiKey::Produce, 3..=9)?;
        Ok(Self {
            id: TransactionalId(StrBytes::from_string(id.to_owned())),
            producer_id,
            epoch,
            coordinator: (tx, rx),
            leader,
            add_v,
            end_v,
            produce_v,
            topic: TopicName(StrBytes::from_string(args.topic.clone())),
            sequences: Sequences::default(),
        })
    }

    async fn add_partitions(&mut self, partitions: Vec<i32>) -> Result<()> {
        let req = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(self.id.clone())
            .with_v3_and_below_producer_id(ProducerId(self.producer_id))
            .with_v3_and_below_producer_epoch(self.epoch)
            .with_v3_and_below_topics(vec![
                AddPartitionsToTxnTopic::default()
                    .with_name(self.topic.clone())
                    .with_partitions(partitions),
            ]);
        let retry = Retry::new(
            format!("AddPartitionsToTxn of {}", self.id.0.as_str()),
            RETRY_PAUSE,
        );
        let (tx, rx) = &mut self.coordinator;
        loop {
            let r: AddPartitionsToTxnResponse =
                call(tx, rx, ApiKey::AddPartitionsToTxn, self.add_v, &req).await?;
            let codes: Vec<i16> = r
                .results_by_topic_v3_and_below
                .iter()
                .flat_map(|t| t.results_by_partition.iter())
                .map(|p| p.partition_error_code)
                .filter(|&c| c != 0)
                .collect();
            // OPERATION_NOT_ATTEMPTED only stands beside the real error.
            let Some(&code) = codes
                .iter()
                .find(|&&c| c != OPERATION_NOT_ATTEMPTED)
                .or(codes.first())
            else {
                return Ok(());
            };
            retry.after(code, RETRIABLE).await?;
        }
    }

    /// Produces one transaction's records and waits for every answer. As a
    /// Kafka producer drains all its batches for one broker into one
    /// request, each request carries a batch of at most `--batch-size`
    /// bytes for each partition with records left; at most `--in-flight`
    /// requests are outstanding.
    async fn produce(
        &mut self,
        args: &BenchArgs,
        shares: &[(i32, u64)],
        compression: Compression,
        stats: &Stats,
    ) -> Result<()> {
        let per_batch = (args.batch_size / args.message_size.max(1)).max(1) as u64;
        let mut left: Vec<(i32, u64)> = shares.to_vec();
        let mut pending: VecDeque<(i32, Instant, u64)> = VecDeque::new();
        while left.iter().any(|(_, n)| *n > 0) {
            let mut data = Vec::new();
            let mut in_request = 0;
            for (partition, records) in left.iter_mut().filter(|(_, n)| *n > 0) {
                let n = (*records).min(per_batch);
                *records -= n;
                in_request += n;
                let stamp = Stamp {
                    producer_id: self.producer_id,
                    epoch: self.epoch,
                    sequence: self.sequences.take(*partition, n),
                    transactional: true,
                };
                let batch = super::batch(n as usize, args.message_size, compression, Some(stamp))?;
                data.push(
                    PartitionProduceData::default()
                        .with_index(*partition)
                        .with_records(Some(batch)),
                );
            }
            let req = ProduceRequest::default()
                .with_transactional_id(Some(self.id.clone()))
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(self.topic.clone())
                        .with_partition_data(data),
                ]);
            if pending.len() >= args.in_flight.max(1) {
                let oldest = pending.pop_front().expect("one is pending");
                self.acked(oldest, stats).await?;
            }
            let sent = Instant::now();
            let correlation = self
                .leader
                .0
                .send(ApiKey::Produce, self.produce_v, &req)
                .await?;
            pending.push_back((correlation, sent, in_request));
        }
        while let Some(oldest) = pending.pop_front() {
            self.acked(oldest, stats).await?;
        }
        Ok(())
    }

    async fn acked(
        &mut self,
        (correlation, sent, n): (i32, Instant, u64),
        stats: &Stats,
    ) -> Result<()> {
        let resp: ProduceResponse = answer(
            &mut self.leader.1,
            ApiKey::Produce,
            correlation,
            self.produce_v,
        )
        .await?;
        for t in &resp.responses {
            for p in &t.partition_responses {
                if p.error_code != 0 {
                    return Err(failure(
                        &format!("produce to partition {} in a transaction", p.index),
                        p.error_code,
                        false,
                    ));
                }
            }
        }
        let us = sent.elapsed().as_micros() as u64;
        stats
            .produce_latency
            .lock()
            .await
            .saturating_record_n(us.max(1), n);
        Ok(())
    }

    /// EndTxn; Ok once the coordinator has answered without an error.
    async fn end(&mut self, commit: bool) -> Result<()> {
        let req = EndTxnRequest::default()
            .with_transactional_id(self.id.clone())
            .with_producer_id(ProducerId(self.producer_id))
            .with_producer_epoch(self.epoch)
            .with_committed(commit);
        let what = if commit { "commit" } else { "abort" };
        let retry = Retry::new(
            format!("EndTxn ({what}) of {}", self.id.0.as_str()),
            RETRY_PAUSE,
        );
        let (tx, rx) = &mut self.coordinator;
        loop {
            let r: EndTxnResponse = call(tx, rx, ApiKey::EndTxn, self.end_v, &req).await?;
            if r.error_code == 0 {
                return Ok(());
            }
            retry.after(r.error_code, RETRIABLE).await?;
        }
    }

    /// One committed transaction; returns EndTxn's round trip.
    async fn transaction(
        &mut self,
        args: &BenchArgs,
        shares: &[(i32, u64)],
        compression: Compression,
        stats: &Stats,
    ) -> Result<Duration> {
        self.add_partitions(shares.iter().map(|(p, _)| *p).collect())
            .await?;
        self.produce(args, shares, compression, stats).await?;
        let committing = Instant::now();
        self.end(true).await?;
        Ok(committing.elapsed())
    }
}

/// Runs transactions as transactional id `id` until the quota or the
/// deadline (see the module's documentation).
#[allow(clippy::too_many_arguments)]
pub async fn produce(
    args: BenchArgs,
    id: String,
    partitions: Vec<i32>,
    quota: u64,
    deadline: Option<Instant>,
    rate: u64,
    compression: Compression,
    stats: Arc<Stats>,
) -> Result<()> {
    if partitions.is_empty() {
        return Ok(());
    }
    let mut producer = Producer::start(&args, &id).await?;
    let per_txn = args.records_per_txn.max(1);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut next = 0usize;
    loop {
        let n = match deadline {
            Some(d) if Instant::now() >= d => break,
            Some(_) => per_txn,
            None if sent >= quota => break,
            None => per_txn.min(quota - sent),
        };
        if rate > 0 {
            // A transaction starts when its first record is due.
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let shares = spread(n, &partitions, &mut next);
        let begun = Instant::now();
        match producer
            .transaction(&args, &shares, compression, &stats)
            .await
        {
            Ok(commit) => {
                let us = |d: Duration| (d.as_micros() as u64).max(1);
                stats
                    .commit_latency
                    .lock()
                    .await
                    .saturating_record(us(commit));
                stats
                    .transaction_latency
                    .lock()
                    .await
                    .saturating_record(us(begun.elapsed()));
                stats.transactions.fetch_add(1, Ordering::Relaxed);
                stats.produced.fetch_add(n, Ordering::Relaxed);
                sent += n;
            }
            Err(e) => {
                // Leave no transaction open for read_committed consumers
                // to wait on (the coordinator would abort it at its
                // timeout otherwise).
                let _ = tokio::time::timeout(Duration::from_secs(5), producer.end(false)).await;
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn a_transaction_spreads_evenly_and_small_ones_take_turns() {
        let mut next = 0;
        assert_eq!(spread(10, &[0, 2], &mut next), vec![(0, 5), (2, 5)]);
        assert_eq!(
            spread(7, &[0, 1, 2], &mut next),
            vec![(0, 3), (1, 2), (2, 2)]
        );
        let mut next = 0;
        let taken: Vec<_> = (0..4).map(|_| spread(1, &[4, 5, 6], &mut next)).collect();
        assert_eq!(
            taken,
            vec![vec![(4, 1)], vec![(5, 1)], vec![(6, 1)], vec![(4, 1)]]
        );
        assert_eq!(spread(2, &[4, 5, 6], &mut next), vec![(5, 1), (6, 1)]);
    }
}
