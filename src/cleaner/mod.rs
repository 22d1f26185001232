//! The log cleaner: compaction of topics whose cleanup.policy includes
//! `compact`.
//!
//! A pass over one partition, as Kafka does it:
//! 1. [`plan`] decides whether to clean and up to where: only sealed segments
//!    below the high watermark whose newest record is older than
//!    min.compaction.lag.ms; and only when the dirty part (written since the
//!    last pass) is at least min.cleanable.dirty.ratio of that, or its oldest
//!    record is older than max.compaction.lag.ms.
//! 2. The dirty part is read into an [`OffsetMap`] (key → latest offset) of
//!    bounded memory; when the map fills, the pass stops reading there.
//! 3. Every sealed segment up to where the map reaches is rewritten
//!    ([`records`]): a record stays if no later record has its key; a
//!    tombstone (null value) stays until its segment's newest record is older
//!    than delete.retention.ms and, on a replicated partition, until every
//!    replica holds it (see [`clean`]); records without a key are dropped. Control
//!    batches stay whole. Each batch keeps its header, so offsets never move and
//!    gaps appear instead; a batch with no record left stays as an empty batch
//!    (storage's `log::clean` explains why: the Raft entry numbering).
//! 4. Small neighbours are merged up to segment.bytes, and each group is
//!    swapped in by the storage, crash-safely. The first dirty offset moves up
//!    last, so a crash part-way makes the next pass redo, never skip, work.
//!
//! The reading and rewriting run without the partition lock, on the shared
//! slices of sealed segments; only each swap takes it.

pub mod offset_map;
pub mod records;

use std::ops::DerefMut;

use bytes::Bytes;
use sluice_storage::{BatchHeader, CleanedSegment, Log, SealedSegment, StorageError};

use crate::error::BrokerError;

pub use offset_map::OffsetMap;
use records::RecordRef;

/// The topic configs a pass obeys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionPolicy {
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub delete_retention_ms: i64,
    pub segment_bytes: u64,
}

/// What the plan needs to know of a sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentStat {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size_bytes: u64,
    /// Timestamp of its first batch.
    pub first_timestamp: i64,
    pub max_timestamp: i64,
}

/// Where a pass should stop (exclusive), or None when it should not run.
pub fn plan(
    sealed: &[SegmentStat],
    first_dirty: i64,
    high_watermark: i64,
    p: &CompactionPolicy,
    now: i64,
) -> Option<i64> {
    let lag_horizon = now.saturating_sub(p.min_compaction_lag_ms);
    let cleanable: Vec<&SegmentStat> = sealed
        .iter()
        .take_while(|s| s.next_offset <= high_watermark && s.max_timestamp <= lag_horizon)
        .collect();
    let end = cleanable.last()?.next_offset;
    if first_dirty >= end {
        return None;
    }
    let dirty: Vec<&&SegmentStat> = cleanable
        .iter()
        .filter(|s| s.next_offset > first_dirty)
        .collect();
    let dirty_bytes: u64 = dirty.iter().map(|s| s.size_bytes).sum();
    let total_bytes: u64 = cleanable.iter().map(|s| s.size_bytes).sum();
    let ratio = dirty_bytes as f64 / total_bytes.max(1) as f64;
    let overdue = dirty
        .first()
        .is_some_and(|s| s.first_timestamp < now.saturating_sub(p.max_compaction_lag_ms));
    (dirty_bytes > 0 && (ratio >= p.min_cleanable_dirty_ratio || overdue)).then_some(end)
}

/// The batches of a segment (or any run of whole batches).
pub fn batches(bytes: &Bytes) -> impl Iterator<Item = Result<(BatchHeader, Bytes), String>> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        if pos >= bytes.len() {
            return None;
        }
        let r = BatchHeader::parse(&bytes[pos..])
            .map_err(|e| e.to_string())
            .and_then(|h| {
                let end = pos + h.total_size();
                if end > bytes.len() {
                    return Err(format!(
                        "a batch at {} runs past its segment",
                        h.base_offset
                    ));
                }
                let b = bytes.slice(pos..end);
                pos = end;
                Ok((h, b))
            });
        if r.is_err() {
            pos = bytes.len();
        }
        Some(r)
    })
}

pub fn segment_stat(s: &SealedSegment) -> SegmentStat {
    let first_timestamp = BatchHeader::parse(&s.bytes)
        .map(|h| h.base_timestamp)
        .unwrap_or(s.info.max_timestamp);
    SegmentStat {
        base_offset: s.info.base_offset,
        next_offset: s.info.next_offset,
        size_bytes: s.info.size_bytes,
        first_timestamp,
        max_timestamp: s.info.max_timestamp,
    }
}

/// Counters of one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Bytes of log read (the dirty part twice: once for the map).
    pub bytes_read: u64,
    /// Bytes of the segments rewritten, before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_read: u64,
    pub records_removed: u64,
    pub map_keys: usize,
    pub map_bytes: usize,
    pub segments_before: usize,
    pub segments_after: usize,
}

/// What a pass produces: the groups to swap in, in order, and the new first
/// dirty offset.
pub struct CleanOutput {
    pub groups: Vec<CleanedSegment>,
    pub first_dirty: i64,
    pub stats: CleanStats,
}

/// The aborted transactions of a log: producer id → (first offset, marker
/// offset) ranges. A transactional data batch inside one of its producer's
/// ranges was aborted: its records never count (as Kafka's cleaner reads
/// the aborted-transaction index).
#[derive(Debug, Clone, Default)]
pub struct Aborted(std::sync::Arc<std::collections::HashMap<i64, Vec<(i64, i64)>>>);

impl Aborted {
    pub fn new(txns: &[crate::txn::partition::AbortedTxn]) -> Self {
        let mut map: std::collections::HashMap<i64, Vec<(i64, i64)>> = Default::default();
        for a in txns {
            map.entry(a.producer_id)
                .or_default()
                .push((a.first_offset, a.last_offset));
        }
        Self(std::sync::Arc::new(map))
    }

    /// Whether the batch is data of an aborted transaction.
    pub fn contains(&self, h: &BatchHeader) -> bool {
        h.is_transactional()
            && !h.is_control()
            && self.0.get(&h.producer_id).is_some_and(|ranges| {
                ranges
                    .iter()
                    .any(|&(first, last)| first <= h.base_offset && h.base_offset <= last)
            })
    }
}

/// Fills the map from the dirty part `[first_dirty, end)`. Returns where the
/// map stops covering the log: every keyed record below it is in the map.
/// Aborted records shadow nothing: they are not in the map.
fn build_map(
    sealed: &[SealedSegment],
    (first_dirty, end): (i64, i64),
    aborted: &Aborted,
    map: &mut OffsetMap,
    stats: &mut CleanStats,
) -> Result<i64, String> {
    let mut map_end = first_dirty;
    for s in sealed {
        if s.info.next_offset <= first_dirty {
            continue;
        }
        if s.info.base_offset >= end {
            break;
        }
        for b in batches(&s.bytes) {
            let (h, bytes) = b?;
            if h.next_offset() <= first_dirty {
                continue;
            }
            if h.base_offset >= end {
                return Ok(map_end);
            }
            stats.bytes_read += bytes.len() as u64;
            if !h.is_control() && !aborted.contains(&h) {
                if !map.has_room_for(h.record_count.max(0) as usize) {
                    return Ok(map_end);
                }
                for r in records::records(&bytes, &h)? {
                    if let Some(k) = &r.key {
                        map.put(k, r.offset);
                    }
                }
            }
            map_end = h.next_offset();
        }
    }
    Ok(map_end)
}

/// One pass over the sealed segments; `end` comes from [`plan`]. CPU only:
/// the caller swaps the groups in.
///
/// A tombstone at or above `tombstone_limit` is kept whatever its age. On a
/// replicated partition the limit is the offset below which every replica
/// holds the log: a replica that lacks a tombstone receives it from a
/// leader's log, and if the leader had dropped it, the older values of its
/// key would live on in the lagging replica's own older segments (nothing
/// there would ever shadow them). Records shadowed by a later record need no
/// such limit: the later record travels with them.
pub fn clean(
    sealed: &[SealedSegment],
    range: (i64, i64),
    p: &CompactionPolicy,
    map_memory: u64,
    now: i64,
    tombstone_limit: i64,
) -> Result<CleanOutput, String> {
    clean_with(
        sealed,
        range,
        p,
        map_memory,
        now,
        tombstone_limit,
        &Aborted::default(),
    )
}

/// [`clean`] of a log with aborted transactions: their records go (each
/// batch stays, emptied, like any batch that loses every record).
pub fn clean_with(
    sealed: &[SealedSegment],
    (first_dirty, end): (i64, i64),
    p: &CompactionPolicy,
    map_memory: u64,
    now: i64,
    tombstone_limit: i64,
    aborted: &Aborted,
) -> Result<CleanOutput, String> {
    let mut stats = CleanStats::default();
    let expected_keys: usize = sealed
        .iter()
        .filter(|s| s.info.next_offset > first_dirty && s.info.base_offset < end)
        .flat_map(|s| batches(&s.bytes))
        .filter_map(|b| b.ok())
        .map(|(h, _)| h.record_count.max(0) as usize)
        .sum();
    let mut map = OffsetMap::new(map_memory, expected_keys);
    let map_end = build_map(sealed, (first_dirty, end), aborted, &mut map, &mut stats)?;
    if map_end <= first_dirty {
        return Err(format!(
            "log.cleaner.dedupe.buffer.size ({map_memory} bytes) cannot hold the keys of one batch"
        ));
    }
    stats.map_keys = map.len();
    stats.map_bytes = map.memory_bytes();

    let tombstone_horizon = now.saturating_sub(p.delete_retention_ms);
    // Whether each producer's transaction seen so far still holds a record
    // after this pass (until its marker).
    let mut txn_kept: std::collections::HashMap<i64, bool> = Default::default();
    let group_limit = p.segment_bytes.min(MAX_GROUP_BYTES) as usize;
    let mut groups: Vec<(CleanedSegment, bool)> = Vec::new();
    for s in sealed.iter().take_while(|s| s.info.base_offset < map_end) {
        stats.bytes_read += s.bytes.len() as u64;
        stats.bytes_before += s.bytes.len() as u64;
        stats.segments_before += 1;
        let drop_tombstones = s.info.max_timestamp < tombstone_horizon;
        // Runs of unchanged batches stay slices of the segment's map; only
        // rewritten batches are new memory.
        let mut out: Vec<Bytes> = Vec::new();
        let mut run = 0..0;
        let mut changed = false;
        let mut pos = 0usize;
        for b in batches(&s.bytes) {
            let (h, bytes) = b?;
            let at = pos..pos + bytes.len();
            pos = at.end;
            let marker = h.is_control() && h.is_transactional() && h.producer_id >= 0;
            let rebuilt = if marker && h.base_offset < map_end {
                // A marker goes like a tombstone (past delete.retention.ms,
                // below what every replica holds) once its transaction has
                // no record left: it guards nothing then.
                let guards = txn_kept.remove(&h.producer_id).unwrap_or(false);
                if !guards && drop_tombstones && h.base_offset < tombstone_limit {
                    stats.records_read += h.record_count.max(0) as u64;
                    stats.records_removed += h.record_count.max(0) as u64;
                    Some(records::rebuild(&bytes, &h, &[])?)
                } else {
                    None
                }
            } else if h.is_control() || h.base_offset >= map_end {
                if h.is_transactional() && !h.is_control() {
                    txn_kept.insert(h.producer_id, true);
                }
                None
            } else {
                let recs = records::records(&bytes, &h)?;
                let aborted = aborted.contains(&h);
                let keep = |r: &&RecordRef| {
                    if aborted {
                        return false;
                    }
                    if r.offset >= map_end {
                        return true;
                    }
                    let Some(key) = &r.key else { return false };
                    let latest = map.get(key).is_none_or(|l| r.offset >= l);
                    let expired_tombstone =
                        r.value.is_none() && drop_tombstones && r.offset < tombstone_limit;
                    latest && !expired_tombstone
                };
                let kept: Vec<&RecordRef> = recs.iter().filter(keep).collect();
                if h.is_transactional() {
                    *txn_kept.entry(h.producer_id).or_default() |= !kept.is_empty();
                }
                stats.records_read += recs.len() as u64;
                stats.records_removed += (recs.len() - kept.len()) as u64;
                (kept.len() < recs.len())
                    .then(|| records::rebuild(&bytes, &h, &kept))
                    .transpose()?
            };
            match rebuilt {
                None if run.end == at.start => run.end = at.end,
                None => {
                    if !run.is_empty() {
                        out.push(s.bytes.slice(run.clone()));
                    }
                    run = at;
                }
                Some(new) => {
                    changed = true;
                    if !run.is_empty() {
                        out.push(s.bytes.slice(run.clone()));
                    }
                    run = at.end..at.end;
                    out.push(Bytes::from(new));
                }
            }
        }
        if !run.is_empty() {
            out.push(s.bytes.slice(run));
        }
        let out_len: usize = out.iter().map(Bytes::len).sum();
        stats.bytes_after += out_len as u64;
        let base = s.info.base_offset;
        match groups.last_mut() {
            Some((g, g_changed))
                if g.len() + out_len <= group_limit
                    && s.info.next_offset - g.replaces[0] < i32::MAX as i64 =>
            {
                g.replaces.push(base);
                g.chunks.extend(out);
                *g_changed = true;
            }
            _ => groups.push((
                CleanedSegment {
                    replaces: vec![base],
                    chunks: out,
                },
                changed,
            )),
        }
    }
    // A lone segment that lost nothing is left as it is.
    let groups: Vec<CleanedSegment> = groups
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(g, _)| g)
        .collect();
    stats.segments_after = stats.segments_before;
    for g in &groups {
        stats.segments_after -= g.replaces.len() - 1;
    }
    Ok(CleanOutput {
        groups,
        first_dirty: map_end,
        stats,
    })
}

/// How far a pass may reach in one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Only what is committed is cleaned: below it, no replica's log can
    /// change any more.
    pub high_watermark: i64,
    /// Tombstones at or above it stay (see [`clean`]).
    pub tombstone_limit: i64,
}

/// The transactions of the sealed segments as the cleaner must know them,
/// read from the segments themselves (so every replica, leader or not,
/// knows them the same way): the aborted ones, whose records go, and the
/// first offset of a transaction no marker in the sealed segments ends
/// (still open, or ended in the active segment), from which nothing is
/// cleaned — its records could yet be aborted.
pub fn sealed_txns(sealed: &[SealedSegment]) -> Result<(Aborted, Option<i64>), String> {
    let mut txns = crate::txn::partition::PartitionTxns::default();
    for s in sealed {
        for b in batches(&s.bytes) {
            let (h, bytes) = b?;
            let marker = crate::txn::partition::marker_of(&h, &bytes);
            txns.observe(&h, h.base_offset, h.last_offset(), marker);
        }
    }
    Ok((
        Aborted::new(&txns.aborted_between(0, i64::MAX)),
        txns.first_unstable_offset(),
    ))
}

/// One pass over a log: plan, clean without holding the log, then swap each
/// cleaned group in under it. `log` locks the log; it is taken three times
/// (read the sealed segments, each swap, the checkpoint). Returns None when
/// the plan says not yet, or when retention or a truncation removed a
/// segment meanwhile (the next pass starts from what is there then).
pub fn run_pass<G: DerefMut<Target = Log>>(
    log: impl Fn() -> Result<G, BrokerError>,
    policy: &CompactionPolicy,
    bounds: Bounds,
    map_memory: u64,
    now: i64,
) -> Result<Option<CleanStats>, BrokerError> {
    let (sealed, first_dirty) = {
        let log = log()?;
        (log.sealed_segments()?, log.first_dirty_offset())
    };
    let stats: Vec<_> = sealed.iter().map(segment_stat).collect();
    let (aborted, first_open) = sealed_txns(&sealed).map_err(BrokerError::CorruptMessage)?;
    let high_watermark = bounds.high_watermark.min(first_open.unwrap_or(i64::MAX));
    let Some(end) = plan(&stats, first_dirty, high_watermark, policy, now) else {
        return Ok(None);
    };
    let limit = bounds.tombstone_limit.min(high_watermark);
    let out = clean_with(
        &sealed,
        (first_dirty, end),
        policy,
        map_memory,
        now,
        limit,
        &aborted,
    )
    .map_err(BrokerError::CorruptMessage)?;
    drop(sealed);
    for group in &out.groups {
        let mut log = log()?;
        match log.replace_segments(std::slice::from_ref(group), first_dirty) {
            Ok(()) => {}
            Err(StorageError::SegmentGone(base)) => {
                tracing::info!(dir = %log.dir().display(), segment = base, "cleaner pass overtaken by a deletion");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    log()?.replace_segments(&[], out.first_dirty)?;
    Ok(Some(out.stats))
}

/// The most a merged group holds in memory while it is rewritten.
const MAX_GROUP_BYTES: u64 = 128 << 20;

#[cfg(test)]
mod tests;
