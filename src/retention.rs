//! Retention by time and by size, as Kafka does it: whole segments are deleted
//! from the oldest, never the active one, and the log start offset moves up.
//!
//! [`plan`] is pure: it looks at the segments and `now` and says what to do.
//! The broker's retention task runs it for every partition each
//! `log.retention.check.interval.ms`.

use sluice_storage::SegmentInfo;

/// The effective retention settings of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// retention.ms; -1 keeps segments forever.
    pub retention_ms: i64,
    /// retention.bytes; -1 sets no size limit.
    pub retention_bytes: i64,
    /// cleanup.policy includes `delete`.
    pub delete: bool,
}

/// What retention asks of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionPlan {
    /// Delete whole segments that end at or below this offset.
    pub delete_below: Option<i64>,
    /// The active segment is itself past retention.ms: roll it, so that the
    /// next pass can delete it (Kafka does the same).
    pub roll_active: bool,
}

/// Segments oldest first; the last one is the active segment.
pub fn plan(segments: &[SegmentInfo], policy: RetentionPolicy, now: i64) -> RetentionPlan {
    let mut out = RetentionPlan::default();
    let Some((active, closed)) = segments.split_last() else {
        return out;
    };
    if !policy.delete {
        return out;
    }
    let mut doomed = 0usize;
    if policy.retention_ms >= 0 {
        // A segment expires when its newest record is older than retention.ms.
        let expired = |s: &SegmentInfo| {
            s.next_offset > s.base_offset && now - s.max_timestamp > policy.retention_ms
        };
        doomed = closed.iter().take_while(|s| expired(s)).count();
        out.roll_active = doomed == closed.len() && expired(active);
    }
    if policy.retention_bytes >= 0 {
        let total: u64 = segments.iter().map(|s| s.size_bytes).sum();
        let mut excess = total.saturating_sub(policy.retention_bytes as u64);
        let mut by_size = 0usize;
        for s in closed {
            if excess < s.size_bytes {
                break;
            }
            excess -= s.size_bytes;
            by_size += 1;
        }
        doomed = doomed.max(by_size);
    }
    if doomed > 0 {
        out.delete_below = Some(closed[doomed - 1].next_offset);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, next: i64, size: u64, max_ts: i64) -> SegmentInfo {
        SegmentInfo {
            base_offset: base,
            first_entry: 1,
            next_offset: next,
            size_bytes: size,
            max_timestamp: max_ts,
            created_ms: 0,
        }
    }

    const KEEP: RetentionPolicy = RetentionPolicy {
        retention_ms: -1,
        retention_bytes: -1,
        delete: true,
    };

    #[test]
    fn expired_segments_go_oldest_first_and_stop_at_the_first_young_one() {
        let segs = [
            seg(0, 10, 100, 1_000),
            seg(10, 20, 100, 5_000),
            seg(20, 30, 100, 2_000),
            seg(30, 35, 50, 9_000),
        ];
        let p = RetentionPolicy {
            retention_ms: 3_000,
            ..KEEP
        };
        // At 6 s the first segment (newest record at 1 s) is past 3 s; the
        // second (5 s) is not, so the third stays too although it is older.
        assert_eq!(plan(&segs, p, 6_000).delete_below, Some(10));
        assert_eq!(plan(&segs, p, 8_500).delete_below, Some(30));
        assert!(!plan(&segs, p, 8_500).roll_active);
        let all = plan(&segs, p, 20_000);
        assert_eq!(all.delete_below, Some(30));
        assert!(all.roll_active, "an expired active segment is rolled");
    }

    #[test]
    fn size_retention_deletes_while_the_rest_still_exceeds_the_limit() {
        let segs = [
            seg(0, 10, 100, 0),
            seg(10, 20, 100, 0),
            seg(20, 30, 100, 0),
            seg(30, 31, 10, 0),
        ];
        let p = |bytes| RetentionPolicy {
            retention_bytes: bytes,
            ..KEEP
        };
        assert_eq!(plan(&segs, p(310), 0).delete_below, None);
        assert_eq!(plan(&segs, p(210), 0).delete_below, Some(10));
        // Kafka's rule: a segment goes only if the log stays at or above the
        // limit without it, so up to one segment more than the limit is kept.
        assert_eq!(plan(&segs, p(209), 0).delete_below, Some(10));
        assert_eq!(plan(&segs, p(110), 0).delete_below, Some(20));
        assert_eq!(
            plan(&segs, p(0), 0).delete_below,
            Some(30),
            "never the active segment"
        );
    }

    #[test]
    fn nothing_without_delete_policy_or_limits() {
        let segs = [seg(0, 10, 100, 0), seg(10, 11, 1, 0)];
        assert_eq!(plan(&segs, KEEP, i64::MAX / 2), RetentionPlan::default());
        let compact_only = RetentionPolicy {
            retention_ms: 0,
            retention_bytes: 0,
            delete: false,
        };
        assert_eq!(plan(&segs, compact_only, 1_000), RetentionPlan::default());
    }
}
