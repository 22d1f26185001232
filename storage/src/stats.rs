//! Process-wide counts of the storage layer's work that an operator charts:
//! how long each fsync took (a fixed-bucket histogram, lock-free, read by
//! the broker's metrics at scrape time).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the fsync histogram's buckets, in seconds.
pub const FSYNC_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// A histogram of durations with [`FSYNC_BUCKETS`] (and +Inf).
#[derive(Debug)]
pub struct DurationHistogram {
    buckets: [AtomicU64; FSYNC_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; FSYNC_BUCKETS.len() + 1],
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = FSYNC_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(FSYNC_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// (sum in seconds, count, cumulative (upper bound, count) pairs with
    /// +Inf last): the shape Prometheus histograms are written in.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut cumulative = 0;
        let mut out = Vec::with_capacity(FSYNC_BUCKETS.len() + 1);
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let bound = FSYNC_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            out.push((bound, cumulative));
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, cumulative, out)
    }
}

/// Every fsync (fdatasync) the log, its indexes and the Raft store made.
pub static FSYNC: DurationHistogram = DurationHistogram::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let h = DurationHistogram::new();
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(2));
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 2.00303).abs() < 1e-9);
        assert_eq!(buckets[0], (0.000_05, 1));
        assert_eq!(buckets[6], (0.005, 2));
        assert_eq!(buckets[13], (1.0, 2));
        assert_eq!(buckets[14].1, 3);
        assert!(buckets[14].0.is_infinite());
    }
}
