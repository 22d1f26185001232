//! The broker's durability work for the partitions it stores alone (a
//! single broker): one flusher thread makes the writes of every partition
//! durable together.
//!
//! A partition with writes to flush queues itself; the thread takes every
//! partition queued, takes their sync points and syncs them in one round
//! ([`GroupSync`]: one syncfs for many files), then advances each one's
//! durable offset and, where acknowledgements wait for the disk, its high
//! watermark. Writes that arrive during a round queue for the next, so a
//! round acknowledges every write that arrived before it on any partition,
//! and a producer whose request spans six partitions waits for one round,
//! not six fsyncs.
//!
//! When a topic asks for Kafka's own flush policy (`flush.messages` above 1)
//! writes are acknowledged from memory and a partition queues itself only
//! once `flush.messages` records are unflushed, or is queued to be flushed
//! `flush.ms` after its oldest unflushed write.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use sluice_storage::{Clock, GroupSync, SyncMethod};

use super::Partition;
use crate::topic_config::TopicConfig;
use sluice_storage::Log;

/// A handle on the broker's flusher thread; clones share it. The thread
/// stops when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct Flusher {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    /// Partitions to flush in the next round.
    now: Vec<Arc<Partition>>,
    /// Partitions to flush at a time (ms since the epoch): flush.ms.
    timed: Vec<(i64, Weak<Partition>)>,
    stop: bool,
}

/// Stops the thread when the last handle goes.
#[derive(Debug)]
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        lock(&self.0.queue).stop = true;
        self.0.wake.notify_one();
    }
}

fn lock(q: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    q.lock().unwrap_or_else(|p| p.into_inner())
}

impl Flusher {
    /// Starts the flusher thread.
    pub fn start(method: SyncMethod, clock: Arc<dyn Clock>) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            wake: Condvar::new(),
        });
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("sluice-flush".into())
            .spawn(move || run(worker, GroupSync::new(method), clock))
            .expect("cannot start the flusher thread");
        Self {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
        }
    }

    /// Queues `p` for the next round (once, however often it is asked).
    pub(super) fn request(&self, p: &Arc<Partition>) {
        if p.flush_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        lock(&self.shared.queue).now.push(p.clone());
        self.shared.wake.notify_one();
    }

    /// Queues `p` for a round at `due_ms` unless one is due before.
    pub(super) fn request_at(&self, p: &Arc<Partition>, due_ms: i64) {
        let before = p.flush_due_ms.fetch_min(due_ms, Ordering::AcqRel);
        if before <= due_ms {
            return;
        }
        lock(&self.shared.queue)
            .timed
            .push((due_ms, Arc::downgrade(p)));
        self.shared.wake.notify_one();
    }
}

fn run(shared: Arc<Shared>, mut group: GroupSync, clock: Arc<dyn Clock>) {
    loop {
        let round = {
            let mut q = lock(&shared.queue);
            loop {
                let now = clock.now_ms();
                let due = q.timed.iter().any(|(at, _)| *at <= now);
                if !q.now.is_empty() || due {
                    break;
                }
                if q.stop {
                    return;
                }
                let wait = q
                    .timed
                    .iter()
                    .map(|(at, _)| at - now)
                    .min()
                    .map_or(Duration::from_secs(3600), |ms| {
                        Duration::from_millis(ms.max(1) as u64)
                    });
                q = shared
                    .wake
                    .wait_timeout(q, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            let now = clock.now_ms();
            let mut round = std::mem::take(&mut q.now);
            q.timed.retain(|(at, p)| {
                if *at > now {
                    return p.strong_count() > 0;
                }
                if let Some(p) = p.upgrade() {
                    round.push(p);
                }
                false
            });
            round
        };
        flush_round(&mut group, round);
    }
}

/// One round: every partition's sync point, one group sync, then each
/// partition learns what is durable.
fn flush_round(group: &mut GroupSync, round: Vec<Arc<Partition>>) {
    let mut points = Vec::with_capacity(round.len());
    let mut partitions = Vec::with_capacity(round.len());
    for p in round {
        // Cleared before its sync point is taken: a write after this
        // queues the partition again, for the next round.
        p.flush_queued.store(false, Ordering::Release);
        p.flush_due_ms.store(i64::MAX, Ordering::Release);
        if p.closed.load(Ordering::SeqCst) {
            continue;
        }
        match p.log().map(|l| l.sync_point()) {
            Ok(Ok(point)) => {
                points.push(point);
                partitions.push(p);
            }
            Ok(Err(e)) => {
                tracing::error!(partition = ?p, error = %e, "cannot open the log for fsync; retrying");
                p.retry_flush();
            }
            Err(_) => {}
        }
    }
    if points.is_empty() {
        return;
    }
    for (p, result) in partitions.iter().zip(group.sync(points)) {
        match result {
            Ok(durable) => p.made_durable(durable),
            Err(e) => {
                tracing::error!(partition = ?p, error = %e, "fsync failed; retrying");
                p.retry_flush();
            }
        }
    }
}

impl Partition {
    /// Queues the durability work a write to the local log calls for. By
    /// default (`flush.messages` 1) every write waits for the next round;
    /// with Kafka's policy the write is acknowledged and visible at once,
    /// and flushed once flush.messages records wait, or flush.ms after the
    /// oldest of them.
    pub(super) fn after_local_write(&self, config: &TopicConfig, log: &Log) {
        let (Some(flusher), Some(me)) = (&self.flusher, self.me.upgrade()) else {
            return;
        };
        if config.flush_every_write() {
            return flusher.request(&me);
        }
        self.advance_high_watermark(log.log_end_offset());
        if log.flush_due() {
            flusher.request(&me);
        } else if let Some(due) = log.flush_deadline_ms() {
            flusher.request_at(&me, due);
        }
    }

    /// A flusher round made everything below `durable` durable.
    pub(super) fn made_durable(&self, durable: i64) {
        if let Ok(mut log) = self.log() {
            log.mark_durable(durable);
        }
        self.advance_high_watermark(durable);
    }

    fn advance_high_watermark(&self, to: i64) {
        let advanced = self.high_watermark.send_if_modified(|hw| {
            if to > *hw {
                *hw = to;
                true
            } else {
                false
            }
        });
        if advanced {
            self.data_available.notify_waiters();
        }
    }

    /// A flush failed: try again in a moment.
    pub(super) fn retry_flush(&self) {
        if let (Some(flusher), Some(me)) = (&self.flusher, self.me.upgrade()) {
            flusher.request_at(&me, self.clock.now_ms() + 100);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use bytes::Bytes;
    use sluice_storage::SystemClock;
    use sluice_storage::batch::{self, BuildOptions, RecordSpec};
    use std::collections::BTreeMap;
    use std::path::Path;
    use tokio::sync::Notify;

    use crate::partition::tests::keyed;

    fn flush_config(messages: &str, ms: &str) -> TopicConfig {
        let overrides = [("flush.messages", messages), ("flush.ms", ms)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TopicConfig::resolve(&Config::default(), &overrides)
    }

    fn open_with(dir: &Path, index: i32, config: TopicConfig, flusher: &Flusher) -> Arc<Partition> {
        let clock = Arc::new(SystemClock);
        Partition::open(
            dir,
            "t",
            index,
            config,
            clock,
            Arc::new(Notify::new()),
            flusher.clone(),
        )
        .unwrap()
    }

    fn durable(p: &Partition) -> i64 {
        p.log().unwrap().durable_offset()
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        for _ in 0..1000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: not within 10 s");
    }

    #[tokio::test]
    async fn by_default_a_write_is_acknowledged_once_a_round_shared_by_every_partition_made_it_durable()
     {
        let dir = tempfile::tempdir().unwrap();
        let flusher = Flusher::start(SyncMethod::Auto, Arc::new(SystemClock));
        let config = TopicConfig::resolve(&Config::default(), &BTreeMap::new());
        assert!(config.flush_every_write(), "flush.messages defaults to 1");
        let parts: Vec<_> = (0..3)
            .map(|i| open_with(dir.path(), i, config.clone(), &flusher))
            .collect();
        for round in 1..=3i64 {
            let appended: Vec<_> = parts
                .iter()
                .map(|p| p.append(&keyed("k", "v")).unwrap())
                .collect();
            for (p, a) in parts.iter().zip(&appended) {
                p.wait_acked(a, Duration::from_secs(10)).await.unwrap();
                // Acknowledged and visible only once on disk.
                assert!(
                    durable(p) >= round,
                    "{p:?}: durable {} after round {round}",
                    durable(p)
                );
                assert!(*p.high_watermark.borrow() <= durable(p));
            }
        }
    }

    #[tokio::test]
    async fn with_kafka_flush_policy_writes_are_acknowledged_from_memory_and_flushed_by_count_and_time()
     {
        let dir = tempfile::tempdir().unwrap();
        let flusher = Flusher::start(SyncMethod::Auto, Arc::new(SystemClock));
        let p = open_with(dir.path(), 0, flush_config("5", "3000"), &flusher);
        let three = Bytes::from(batch::build(
            &["a", "b", "c"].map(|k| RecordSpec {
                key: Some(k.as_bytes()),
                value: Some(b"v"),
                timestamp: 1,
            }),
            BuildOptions::default(),
        ));
        let a = p.append(&three).unwrap();
        // Acknowledged and readable before any fsync (durable still 0 below).
        p.wait_acked(&a, Duration::from_secs(10)).await.unwrap();
        assert_eq!(*p.high_watermark.borrow(), 3);
        assert_eq!(p.read(0, 1 << 20).unwrap().high_watermark, 3);
        assert_eq!(durable(&p), 0, "3 of flush.messages=5 records wait");
        // Two more reach flush.messages: flushed in the next round.
        p.append(&keyed("d", "v")).unwrap();
        p.append(&keyed("e", "v")).unwrap();
        until("flushed at 5 records", || durable(&p) == 5).await;
        // One more waits for flush.ms.
        let started = std::time::Instant::now();
        p.append(&keyed("f", "v")).unwrap();
        assert_eq!(durable(&p), 5);
        until("flushed after flush.ms", || durable(&p) == 6).await;
        assert!(
            started.elapsed() >= Duration::from_millis(2900),
            "not before flush.ms"
        );
    }
}
