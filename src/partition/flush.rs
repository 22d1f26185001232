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
