//! The series read from the broker's state at scrape time: traffic per
//! topic (from each partition's counts), partitions and their logs,
//! leadership and the controller, consumer groups and their lag, fsync
//! latency.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::{PartitionStats, Totals};
use crate::broker::Broker;

#[derive(Debug)]
pub struct BrokerCollector {
    pub broker: Arc<OnceLock<Weak<Broker>>>,
    pub topic_labels: bool,
}

type Labels<'a, const N: usize> = [(&'static str, Cow<'a, str>); N];

fn topic_labels(topic: &str) -> Labels<'_, 1> {
    [("topic", Cow::Borrowed(topic))]
}

fn partition_labels(topic: &str, partition: i32) -> Labels<'_, 2> {
    [
        ("topic", Cow::Borrowed(topic)),
        ("partition", Cow::Owned(partition.to_string())),
    ]
}

fn group_labels(group: &str) -> Labels<'_, 1> {
    [("consumergroup", Cow::Borrowed(group))]
}

/// Writes one family: its descriptor, then each (labels, value).
fn family<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (L, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in series {
        let e = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(v).encode(e)?,
            _ => ConstGauge::new(v).encode(e)?,
        }
    }
    Ok(())
}

/// One value without labels.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    v: f64,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, kind)?;
    match kind {
        MetricType::Counter => ConstCounter::new(v).encode(m),
        _ => ConstGauge::new(v).encode(m),
    }
}

/// A Kafka per-topic rate series (BrokerTopicMetrics): the broker total
/// without labels, then each topic's count.
struct TopicSeries {
    name: &'static str,
    help: &'static str,
    total: fn(&Totals) -> &AtomicU64,
    topic: fn(&PartitionStats) -> &AtomicU64,
}

const TOPIC_SERIES: &[TopicSeries] = &[
    TopicSeries {
        name: "kafka_server_brokertopicmetrics_messagesinpersec",
        help: "Records appended (a running count; chart it with rate()), per topic and in total",
        total: |t| &t.messages_in,
        topic: |p| &p.messages_in,
    },
    TopicSeries {
        name: "kafka_server_brokertopicmetrics_bytesinpersec",
        help: "Record batch bytes appended from producers (a running count), per topic and in total",
        total: |t| &t.bytes_in,
        topic: |p| &p.bytes_in,
    },
    TopicSeries {
        name: "kafka_server_brokertopicmetrics_bytesoutpersec",
        help: "Record bytes sent to consumers and followers (a running count), per topic and in total",
        total: |t| &t.bytes_out,
        topic: |p| &p.bytes_out,
    },
    TopicSeries {
        name: "kafka_server_brokertopicmetrics_bytesrejectedpersec",
        help: "Record bytes of refused writes (a running count), per topic and in total",
        total: |t| &t.bytes_rejected,
        topic: |p| &p.bytes_rejected,
    },
    TopicSeries {
        name: "kafka_server_brokertopicmetrics_failedproducerequestspersec",
        help: "Partition writes that failed (a running count), per topic and in total",
        total: |t| &t.failed_produce_requests,
        topic: |p| &p.failed_produce_requests,
    },
    TopicSeries {
        name: "kafka_server_brokertopicmetrics_failedfetchrequestspersec",
        help: "Partition reads that failed (a running count), per topic and in total",
        total: |t| &t.failed_fetch_requests,
        topic: |p| &p.failed_fetch_requests,
    },
];

fn load(a: &AtomicU64) -> f64 {
    a.load(Ordering::Relaxed) as f64
}

impl Collector for BrokerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(broker) = self.broker.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        let topics = broker.topics();
        let totals = &broker.metrics.totals;
        for s in TOPIC_SERIES {
            let mut m = encoder.encode_descriptor(s.name, s.help, None, MetricType::Unknown)?;
            m.encode_gauge(&load((s.total)(totals)))?;
            if self.topic_labels {
                for t in &topics {
                    let v: f64 = t.partitions.iter().map(|p| load((s.topic)(&p.stats))).sum();
                    m.encode_family(&topic_labels(&t.name))?.encode_gauge(&v)?;
                }
            }
        }
        single(
            &mut encoder,
            "sluice_messages_rejected",
            "Records of refused writes",
            MetricType::Counter,
            load(&totals.messages_rejected),
        )?;
        self.partitions(&mut encoder, &broker, &topics)?;
        self.groups(&mut encoder, &broker, &topics)?;
        let (sum, count, buckets) = sluice_storage::stats::FSYNC.snapshot();
        let m = encoder.encode_descriptor(
            "sluice_fsync_duration_seconds",
            "Time each fsync of a log, index or Raft store took",
            None,
            MetricType::Histogram,
        )?;
        encode_histogram(m, sum, count, &buckets)?;
        Ok(())
    }
}

fn encode_histogram(
    mut m: prometheus_client::encoding::MetricEncoder<'_>,
    sum: f64,
    count: u64,
    buckets: &[(f64, u64)],
) -> Result<(), std::fmt::Error> {
    // The encoder wants per-bucket counts (it accumulates them itself).
    let mut previous = 0;
    let per_bucket: Vec<(f64, u64)> = buckets
        .iter()
        .map(|&(bound, cumulative)| {
            let n = cumulative - previous;
            previous = cumulative;
            (bound, n)
        })
        .collect();
    m.encode_histogram::<NoLabelSet>(sum, count, &per_bucket, None)
}

impl BrokerCollector {
    fn partitions(
        &self,
        encoder: &mut DescriptorEncoder,
        broker: &Broker,
        topics: &[Arc<crate::broker::Topic>],
    ) -> Result<(), std::fmt::Error> {
        let me = broker.node_id();
        let (mut hosted, mut leading, mut under, mut leaderless, mut offline) = (0, 0, 0, 0, 0);
        let (mut leader_changes, mut elections) = (0u64, 0u64);
        let mut logs: Vec<(&str, i32, [f64; 6])> = Vec::new();
        let mut under_replicated: Vec<(&str, i32, f64)> = Vec::new();
        let mut terms: Vec<(&str, i32, f64)> = Vec::new();
        for t in topics {
            for p in &t.partitions {
                let (leader, _) = p.leader(me);
                if leader.is_none() {
                    offline += 1;
                }
                if !p.is_hosted() {
                    continue;
                }
                hosted += 1;
                leader_changes += p.stats.leader_changes.load(Ordering::Relaxed);
                elections += p.stats.elections.load(Ordering::Relaxed);
                let leads = leader == Some(me);
                let urp = leads && p.is_replicated() && p.reachable_replicas() < p.replicas().len();
                if leads {
                    leading += 1;
                }
                if urp {
                    under += 1;
                }
                if leader.is_none() {
                    leaderless += 1;
                }
                if !self.topic_labels {
                    continue;
                }
                let segments = p.with_log(|l| l.segments().len()).unwrap_or(0) as f64;
                let lso = if leads {
                    p.last_stable_offset().map(|o| o as f64).unwrap_or(f64::NAN)
                } else {
                    f64::NAN
                };
                logs.push((
                    &t.name,
                    p.index,
                    [
                        p.log_start_offset() as f64,
                        p.log_end_offset() as f64,
                        p.high_watermark() as f64,
                        lso,
                        p.size_on_disk().unwrap_or(0) as f64,
                        segments,
                    ],
                ));
                under_replicated.push((&t.name, p.index, if urp { 1.0 } else { 0.0 }));
                if p.is_replicated() {
                    terms.push((&t.name, p.index, p.status().term as f64));
                }
            }
        }
        let active = match broker.cluster() {
            None => true,
            Some(c) => c.is_active_controller(),
        };
        let gauge = MetricType::Gauge;
        single(
            encoder,
            "kafka_controller_kafkacontroller_activecontrollercount",
            "1 on the broker that leads the controller quorum (a single broker is its own controller), else 0",
            gauge,
            if active { 1.0 } else { 0.0 },
        )?;
        single(
            encoder,
            "kafka_controller_kafkacontroller_offlinepartitionscount",
            "Partitions without a leader (reported by the active controller only, as in Kafka)",
            gauge,
            if active { offline as f64 } else { 0.0 },
        )?;
        single(
            encoder,
            "kafka_server_replicamanager_underreplicatedpartitions",
            "Partitions this broker leads that have a replica out of reach",
            gauge,
            under as f64,
        )?;
        single(
            encoder,
            "kafka_server_replicamanager_leadercount",
            "Partitions this broker leads",
            gauge,
            leading as f64,
        )?;
        single(
            encoder,
            "kafka_server_replicamanager_partitioncount",
            "Partitions with a replica on this broker",
            gauge,
            hosted as f64,
        )?;
        single(
            encoder,
            "sluice_raft_leader_changes",
            "New leaders seen by the Raft groups of the partitions this broker holds",
            MetricType::Counter,
            leader_changes as f64,
        )?;
        single(
            encoder,
            "sluice_raft_elections",
            "Elections held by the Raft groups of the partitions this broker holds (term increases seen)",
            MetricType::Counter,
            elections as f64,
        )?;
        single(
            encoder,
            "sluice_leaderless_partitions",
            "Partitions with a replica on this broker and no leader known to it",
            gauge,
            leaderless as f64,
        )?;
        let names: [(&str, &str); 6] = [
            (
                "kafka_log_log_logstartoffset",
                "First offset of the partition's log on this broker",
            ),
            (
                "kafka_log_log_logendoffset",
                "Offset the next record appended to the log would get",
            ),
            (
                "sluice_partition_high_watermark",
                "Offset up to which records are committed and visible to consumers",
            ),
            (
                "sluice_partition_last_stable_offset",
                "Offset below which no transaction is open (read_committed consumers read up to it; on the leader)",
            ),
            (
                "kafka_log_log_size",
                "Bytes of the partition's log segments on disk",
            ),
            (
                "kafka_log_log_numlogsegments",
                "Segments of the partition's log",
            ),
        ];
        for (i, (name, help)) in names.iter().enumerate() {
            family(
                encoder,
                name,
                help,
                gauge,
                logs.iter()
                    .filter(|(_, _, v)| !v[i].is_nan())
                    .map(|(topic, partition, v)| (partition_labels(topic, *partition), v[i])),
            )?;
        }
        family(
            encoder,
            "kafka_cluster_partition_underreplicated",
            "1 when this broker leads the partition and a replica is out of reach",
            gauge,
            under_replicated
                .iter()
                .map(|(topic, partition, v)| (partition_labels(topic, *partition), *v)),
        )?;
        family(
            encoder,
            "sluice_raft_term",
            "The partition's Raft term (its leader epoch) as this broker sees it",
            gauge,
            terms
                .iter()
                .map(|(topic, partition, v)| (partition_labels(topic, *partition), *v)),
        )?;
        Ok(())
    }

    /// Consumer groups this broker coordinates: members, state, rebalances,
    /// committed offsets and lag against the high watermark (of the
    /// partitions this broker holds).
    fn groups(
        &self,
        encoder: &mut DescriptorEncoder,
        broker: &Broker,
        topics: &[Arc<crate::broker::Topic>],
    ) -> Result<(), std::fmt::Error> {
        let by_name: BTreeMap<&str, &crate::broker::Topic> = topics
            .iter()
            .map(|t| (t.name.as_str(), t.as_ref()))
            .collect();
        let groups = broker.groups.stats();
        let gauge = MetricType::Gauge;
        family(
            encoder,
            "kafka_consumergroup_members",
            "Members of the group",
            gauge,
            groups
                .iter()
                .map(|g| (group_labels(&g.id), g.members as f64)),
        )?;
        family(
            encoder,
            "sluice_consumergroup_state",
            "1 for the group's state (Empty, Stable, PreparingRebalance, CompletingRebalance, Assigning, Reconciling)",
            gauge,
            groups.iter().map(|g| {
                (
                    [
                        ("consumergroup", Cow::Borrowed(g.id.as_str())),
                        ("state", Cow::Borrowed(g.state)),
                    ],
                    1.0,
                )
            }),
        )?;
        family(
            encoder,
            "sluice_consumergroup_rebalances",
            "Rebalances since the group was created (its generation, or group epoch for the consumer protocol)",
            MetricType::Counter,
            groups
                .iter()
                .map(|g| (group_labels(&g.id), g.rebalances as f64)),
        )?;
        // (group, topic, partition, committed, lag)
        let mut rows: Vec<(&str, &str, i32, i64, i64)> = Vec::new();
        for g in &groups {
            for (topic, partition, committed) in &g.offsets {
                let Some(p) = by_name
                    .get(topic.as_str())
                    .and_then(|t| t.partition(*partition))
                else {
                    continue;
                };
                if !p.is_hosted() || *committed < 0 {
                    continue;
                }
                let lag = (p.high_watermark() - committed).max(0);
                rows.push((&g.id, topic, *partition, *committed, lag));
            }
        }
        if self.topic_labels {
            family(
                encoder,
                "kafka_consumergroup_current_offset",
                "The group's committed offset of a partition",
                gauge,
                rows.iter().map(|(g, t, p, c, _)| {
                    (
                        [
                            ("consumergroup", Cow::Borrowed(*g)),
                            ("topic", Cow::Borrowed(*t)),
                            ("partition", Cow::Owned(p.to_string())),
                        ],
                        *c as f64,
                    )
                }),
            )?;
            family(
                encoder,
                "kafka_consumergroup_lag",
                "Records between the group's committed offset and the partition's high watermark",
                gauge,
                rows.iter().map(|(g, t, p, _, lag)| {
                    (
                        [
                            ("consumergroup", Cow::Borrowed(*g)),
                            ("topic", Cow::Borrowed(*t)),
                            ("partition", Cow::Owned(p.to_string())),
                        ],
                        *lag as f64,
                    )
                }),
            )?;
            let mut per_topic: BTreeMap<(&str, &str), i64> = BTreeMap::new();
            for (g, t, _, _, lag) in &rows {
                *per_topic.entry((g, t)).or_default() += lag;
            }
            family(
                encoder,
                "kafka_consumergroup_lag_sum",
                "The group's lag summed over a topic's partitions",
                gauge,
                per_topic.iter().map(|((g, t), lag)| {
                    (
                        [
                            ("consumergroup", Cow::Borrowed(*g)),
                            ("topic", Cow::Borrowed(*t)),
                        ],
                        *lag as f64,
                    )
                }),
            )?;
        }
        let mut per_group: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for (g, _, _, _, lag) in &rows {
            let e = per_group.entry(g).or_default();
            e.0 += lag;
            e.1 = e.1.max(*lag);
        }
        family(
            encoder,
            "sluice_consumergroup_lag",
            "The group's lag summed over every partition it committed",
            gauge,
            per_group
                .iter()
                .map(|(g, (sum, _))| (group_labels(g), *sum as f64)),
        )?;
        family(
            encoder,
            "sluice_consumergroup_max_lag",
            "The group's largest lag on one partition",
            gauge,
            per_group
                .iter()
                .map(|(g, (_, max))| (group_labels(g), *max as f64)),
        )?;
        Ok(())
    }
}
