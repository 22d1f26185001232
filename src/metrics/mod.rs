//! What an operator sees of a running broker: counters and histograms the
//! request path updates as it goes, and gauges read from the broker's state
//! when `/metrics` is scraped (see [`collect`]). Encoded in the OpenMetrics
//! text format by the `prometheus-client` crate; served by [`http`].
//!
//! Series that Kafka dashboards already chart keep the names Kafka's JMX
//! metrics get from the usual JMX-exporter rules (lower case,
//! `kafka_<domain>_<type>_<name>`), typed `unknown` as the exporter leaves
//! them: `kafka_server_brokertopicmetrics_messagesinpersec` is a running
//! count, charted with `rate()`. Sluice's own series start with `sluice_`;
//! consumer-group lag uses the names of the widely used Kafka lag exporter
//! (`kafka_consumergroup_lag`). Per-topic and per-partition labels can be
//! switched off (`metrics.topic.labels.enable`) for brokers with very many
//! partitions: the totals stay.

pub mod collect;
pub mod errors;
pub mod http;
pub mod process;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::broker::Broker;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub request: &'static str,
    pub version: i16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub request: &'static str,
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub request: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub request: &'static str,
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

/// The stages of a Produce or Fetch: waiting behind earlier requests of
/// the connection, the local append or read, the wait for replication
/// (acks=all) or for data (a fetch's long poll), writing the response.
pub const STAGE_QUEUE: &str = "queue";
pub const STAGE_LOCAL: &str = "local";
pub const STAGE_WAIT: &str = "wait";
pub const STAGE_SEND: &str = "send";

/// Counts a partition keeps of its own traffic (read at scrape time, per
/// topic). Relaxed atomics: a scrape may see one request half counted.
#[derive(Debug, Default)]
pub struct PartitionStats {
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub messages_rejected: AtomicU64,
    pub bytes_rejected: AtomicU64,
    pub failed_produce_requests: AtomicU64,
    pub failed_fetch_requests: AtomicU64,
    /// A new leader seen for the partition's Raft group.
    pub leader_changes: AtomicU64,
    /// Elections held by the partition's Raft group (term increases seen).
    pub elections: AtomicU64,
}

/// Broker-wide totals (they outlive deleted topics).
#[derive(Debug, Default)]
pub struct Totals {
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub messages_rejected: AtomicU64,
    pub bytes_rejected: AtomicU64,
    pub failed_produce_requests: AtomicU64,
    pub failed_fetch_requests: AtomicU64,
}

impl PartitionStats {
    /// Records appended: counted on the partition and in `t`.
    pub fn produced(&self, t: &Totals, messages: u64, bytes: u64) {
        add(&self.messages_in, &t.messages_in, messages);
        add(&self.bytes_in, &t.bytes_in, bytes);
    }

    /// A write refused (one produce request's partition).
    pub fn rejected(&self, t: &Totals, messages: u64, bytes: u64) {
        add(&self.messages_rejected, &t.messages_rejected, messages);
        add(&self.bytes_rejected, &t.bytes_rejected, bytes);
        add(&self.failed_produce_requests, &t.failed_produce_requests, 1);
    }

    /// Record bytes sent to a consumer (or a follower fetching).
    pub fn fetched(&self, t: &Totals, bytes: u64) {
        add(&self.bytes_out, &t.bytes_out, bytes);
    }

    pub fn fetch_failed(&self, t: &Totals) {
        add(&self.failed_fetch_requests, &t.failed_fetch_requests, 1);
    }
}

/// A write refused for a partition that does not exist: in the totals only.
pub fn rejected_unknown(t: &Totals, messages: u64, bytes: u64) {
    t.messages_rejected.fetch_add(messages, Ordering::Relaxed);
    t.bytes_rejected.fetch_add(bytes, Ordering::Relaxed);
    t.failed_produce_requests.fetch_add(1, Ordering::Relaxed);
}

/// A read of a partition that does not exist: in the totals only.
pub fn fetch_failed_unknown(t: &Totals) {
    t.failed_fetch_requests.fetch_add(1, Ordering::Relaxed);
}

fn add(a: &AtomicU64, b: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
    b.fetch_add(n, Ordering::Relaxed);
}

/// One listener's connection and byte counts.
#[derive(Debug)]
pub struct ListenerMetrics {
    connections: Gauge,
    accepted: Counter,
    pub received: Counter,
    pub sent: Counter,
    /// Of `sent`, the record bytes sent straight from segment files.
    pub sent_from_file: Counter,
}

impl ListenerMetrics {
    /// Counts a connection open until the guard drops.
    pub fn opened(&self) -> OpenConnection {
        self.accepted.inc();
        self.connections.inc();
        OpenConnection(self.connections.clone())
    }
}

/// An open connection, counted in its listener's gauge.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Everything the request path updates.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub latency: Family<ApiLabels, Histogram>,
    pub stages: Family<StageLabels, Histogram>,
    pub connections: Family<ListenerLabels, Gauge>,
    pub connections_accepted: Family<ListenerLabels, Counter>,
    pub bytes_received: Family<ListenerLabels, Counter>,
    pub bytes_sent: Family<ListenerLabels, Counter>,
    pub bytes_sent_from_file: Family<ListenerLabels, Counter>,
    pub totals: Totals,
    /// Cleaner and retention work.
    pub cleaner_passes: Counter,
    pub cleaner_bytes_reclaimed: Counter,
    pub retention_passes: Counter,
    pub retention_bytes_reclaimed: Counter,
    pub retention_segments_deleted: Counter,
    /// Time from a replicated append to its commit (acks=all).
    pub raft_commit: Histogram,
    broker: Arc<OnceLock<Weak<Broker>>>,
    /// The last rendering and when it was made: scrapes in quick
    /// succession share it.
    rendered: Mutex<Option<(Instant, Arc<String>)>>,
    pub started: Instant,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Request latencies: 100 µs to ~100 s.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.5, 16))
}

/// A family of latency histograms.
fn histograms<S: Clone + std::hash::Hash + Eq>() -> Family<S, Histogram> {
    Family::new_with_constructor(latency_buckets as fn() -> Histogram)
}

/// Registers `metric` under `name` and hands back a handle to it.
fn reg<M: prometheus_client::registry::Metric + Clone>(
    r: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    r.register(name, help, metric.clone());
    metric
}

/// How long a rendering is reused.
const RENDER_REUSE: Duration = Duration::from_millis(250);

impl Metrics {
    pub fn new(topic_labels: bool) -> Self {
        let mut r = Registry::default();
        let requests = reg(
            &mut r,
            "kafka_network_requestmetrics_requests",
            "Requests received, per API and version",
            Family::<RequestLabels, Counter>::default(),
        );
        let errors = reg(
            &mut r,
            "kafka_network_requestmetrics_errors",
            "Error codes answered, per API and Kafka error name (each partition's error counts once)",
            Family::<ErrorLabels, Counter>::default(),
        );
        let latency = reg(
            &mut r,
            "sluice_request_duration_seconds",
            "Time from a request's frame read to its response written, per API",
            histograms(),
        );
        let stages = reg(
            &mut r,
            "sluice_request_stage_duration_seconds",
            "Produce and Fetch time per stage: queue (behind earlier requests of the connection), local (append or read), wait (replication for acks=all, data for a long poll), send",
            histograms(),
        );
        let per_listener = |r: &mut Registry, name: &str, help: &str| {
            reg(r, name, help, Family::<ListenerLabels, Counter>::default())
        };
        let connections = reg(
            &mut r,
            "sluice_connections",
            "Open client connections, per listener",
            Family::<ListenerLabels, Gauge>::default(),
        );
        let connections_accepted = per_listener(
            &mut r,
            "sluice_connections_accepted",
            "Connections accepted, per listener",
        );
        let bytes_received = per_listener(
            &mut r,
            "sluice_network_received_bytes",
            "Bytes read from client connections, per listener",
        );
        let bytes_sent = per_listener(
            &mut r,
            "sluice_network_sent_bytes",
            "Bytes written to client connections, per listener",
        );
        let bytes_sent_from_file = per_listener(
            &mut r,
            "sluice_network_sent_from_file_bytes",
            "Of the bytes written, fetched records sent straight from segment files (sendfile), per listener",
        );
        let counter =
            |r: &mut Registry, name: &str, help: &str| reg(r, name, help, Counter::default());
        let cleaner_passes = counter(
            &mut r,
            "sluice_cleaner_passes",
            "Log cleaner (compaction) passes that rewrote a partition",
        );
        let cleaner_bytes_reclaimed = counter(
            &mut r,
            "sluice_cleaner_reclaimed_bytes",
            "Bytes the log cleaner removed from disk",
        );
        let retention_passes = counter(
            &mut r,
            "sluice_retention_passes",
            "Retention checks run over all partitions",
        );
        let retention_bytes_reclaimed = counter(
            &mut r,
            "sluice_retention_reclaimed_bytes",
            "Bytes of segments deleted by retention (time, size)",
        );
        let retention_segments_deleted = counter(
            &mut r,
            "sluice_retention_deleted_segments",
            "Segments deleted by retention",
        );
        let raft_commit = reg(
            &mut r,
            "sluice_raft_commit_duration_seconds",
            "Time from a replicated append to its commit by a majority (acks=all produce)",
            latency_buckets(),
        );
        let mut registry = r;
        let broker = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(collect::BrokerCollector {
            broker: broker.clone(),
            topic_labels,
        }));
        registry.register_collector(Box::new(process::ProcessCollector));
        Self {
            registry,
            requests,
            errors,
            latency,
            stages,
            connections,
            connections_accepted,
            bytes_received,
            bytes_sent,
            bytes_sent_from_file,
            totals: Totals::default(),
            cleaner_passes,
            cleaner_bytes_reclaimed,
            retention_passes,
            retention_bytes_reclaimed,
            retention_segments_deleted,
            raft_commit,
            broker,
            rendered: Mutex::new(None),
            started: Instant::now(),
        }
    }

    /// Lets the scrape-time collector read `broker` (called once it is open).
    pub fn attach(&self, broker: &Arc<Broker>) {
        let _ = self.broker.set(Arc::downgrade(broker));
    }

    /// The OpenMetrics text of every series.
    pub fn render(&self) -> Arc<String> {
        let mut cached = self.rendered.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, text)) = cached.as_ref()
            && at.elapsed() < RENDER_REUSE
        {
            return text.clone();
        }
        let mut out = String::with_capacity(64 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        let text = Arc::new(out);
        *cached = Some((Instant::now(), text.clone()));
        text
    }

    /// Counts one served request and its latency.
    pub fn observe_request(&self, request: &'static str, version: i16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { request, version })
            .inc();
        self.latency
            .get_or_create(&ApiLabels { request })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts the error codes of one response (0 is not an error).
    pub fn observe_errors(&self, request: &'static str, codes: &[i16]) {
        for &code in codes {
            if code != 0 {
                self.errors
                    .get_or_create(&ErrorLabels {
                        request,
                        error: error_name(code),
                    })
                    .inc();
            }
        }
    }

    /// The counters of one listener (looked up once per connection).
    pub fn listener(&self, name: &str) -> ListenerMetrics {
        let l = ListenerLabels {
            listener: name.to_owned(),
        };
        ListenerMetrics {
            connections: self.connections.get_or_create(&l).clone(),
            accepted: self.connections_accepted.get_or_create(&l).clone(),
            received: self.bytes_received.get_or_create(&l).clone(),
            sent: self.bytes_sent.get_or_create(&l).clone(),
            sent_from_file: self.bytes_sent_from_file.get_or_create(&l).clone(),
        }
    }

    pub fn observe_stage(&self, request: &'static str, stage: &'static str, elapsed: Duration) {
        self.stages
            .get_or_create(&StageLabels { request, stage })
            .observe(elapsed.as_secs_f64());
    }
}

/// Kafka's name of an error code (UNKNOWN_SERVER_ERROR for codes this
/// build does not know).
pub fn error_name(code: i16) -> &'static str {
    use std::collections::HashMap;
    static NAMES: OnceLock<Mutex<HashMap<i16, &'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    names.entry(code).or_insert_with(|| {
        match kafka_protocol::error::ResponseError::try_from_code(code) {
            // Once per code (a bounded set): leaked for a 'static label.
            Some(e) => Box::leak(upper_snake(&format!("{e:?}")).into_boxed_str()),
            None => "UNKNOWN_SERVER_ERROR",
        }
    })
}

/// `TopicAuthorizationFailed` → `TOPIC_AUTHORIZATION_FAILED`.
fn upper_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(29), "TOPIC_AUTHORIZATION_FAILED");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
    }
}
