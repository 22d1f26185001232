//! Rate-limited log lines: a client retrying a failing request in a tight
//! loop must not flood the log. Each call site of [`warn_limited!`] or
//! [`info_limited!`] (one cause) writes at most one line per second; the
//! next line it writes carries `suppressed`, the count of lines it held back.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// One call site's budget: one line per second.
pub struct Limiter {
    /// The second (since the process's first limited line) of the last line
    /// written, plus one; 0 before the first.
    second: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new()
    }
}

impl Limiter {
    pub const fn new() -> Self {
        Self {
            second: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether a line may be written now: `Some(count held back since the
    /// last line)`, or `None` (counted as held back).
    pub fn admit(&self) -> Option<u64> {
        static START: OnceLock<Instant> = OnceLock::new();
        let now = START.get_or_init(Instant::now).elapsed().as_secs();
        self.admit_at(now)
    }

    pub fn admit_at(&self, now_secs: u64) -> Option<u64> {
        let stamp = now_secs + 1;
        let last = self.second.load(Ordering::Relaxed);
        if last != stamp
            && self
                .second
                .compare_exchange(last, stamp, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::AcqRel);
        None
    }
}

/// `tracing::warn!`, at most once per second for this call site.
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => {{
        static LIMITER: $crate::log_limit::Limiter = $crate::log_limit::Limiter::new();
        if let Some(suppressed) = LIMITER.admit() {
            if suppressed > 0 {
                tracing::warn!(suppressed, $($arg)+);
            } else {
                tracing::warn!($($arg)+);
            }
        }
    }};
}

/// `tracing::info!`, at most once per second for this call site.
#[macro_export]
macro_rules! info_limited {
    ($($arg:tt)+) => {{
        static LIMITER: $crate::log_limit::Limiter = $crate::log_limit::Limiter::new();
        if let Some(suppressed) = LIMITER.admit() {
            if suppressed > 0 {
                tracing::info!(suppressed, $($arg)+);
            } else {
                tracing::info!($($arg)+);
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_second_then_the_count_held_back() {
        let l = Limiter::new();
        assert_eq!(l.admit_at(0), Some(0));
        for _ in 0..1000 {
            assert_eq!(l.admit_at(0), None);
        }
        assert_eq!(l.admit_at(1), Some(1000));
        assert_eq!(l.admit_at(1), None);
        assert_eq!(l.admit_at(5), Some(1));
        assert_eq!(l.admit_at(6), Some(0));
    }

    #[test]
    fn racing_threads_write_one_line_per_second() {
        let l = std::sync::Arc::new(Limiter::new());
        let admitted: u64 = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    (0..10_000).filter(|_| l.admit_at(7).is_some()).count() as u64
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(admitted, 1);
        assert_eq!(l.admit_at(8), Some(39_999));
    }
}
