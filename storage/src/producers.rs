//! Idempotent producers as the log records them (Kafka's producer state),
//! kept by every replica alike, and its snapshot files.
//!
//! For each producer id the log remembers the epoch and the last five
//! batches it wrote (their sequence and offset ranges): what a producer with
//! up to five requests in flight can retry. [`ProducerState`] is a pure
//! function of the log: [`ProducerState::observe_header`] sees every batch
//! appended. Rebuilding it by reading every batch header from the log start
//! costs a restart one read per batch (a million for 10 GB of small
//! batches), so, as Kafka does, the state is written to a snapshot file
//! (`{offset:020}.snapshot`: the state after every batch below `offset`)
//! when a segment is rolled and when the log is closed. Opening a log loads
//! the newest whole snapshot at or below its end and reads only the headers
//! after it.
//!
//! A snapshot needs no fsync: one lost or torn by a crash fails its checksum
//! and an older one (or the log start) is used. Every snapshot above a
//! truncation point is removed before the log is truncated, so a snapshot
//! that survives always describes the log below its offset.
//!
//! Layout, little-endian: magic `SLPS`, version u32, offset i64, producer
//! count u64, then per producer: id i64, epoch i16, last timestamp i64,
//! batch count u8, batches × (first sequence i32, last sequence i32, first
//! offset i64, last offset i64); and the CRC-32C of everything before (u32).

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use crate::batch::BatchHeader;
use crate::error::{Result, StorageError};
use crate::sealed::Reader;

/// Batches remembered per producer, as Kafka does (max.in.flight ≤ 5).
pub const CACHED_BATCHES: usize = 5;

const MAGIC: &[u8; 4] = b"SLPS";
const VERSION: u32 = 1;

/// One batch of a producer: its sequence and offset ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// What the log remembers of one producer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Its last batches in this epoch, oldest first.
    pub batches: VecDeque<BatchMeta>,
    /// The max timestamp of its last batch, as stored (the append time on a
    /// LogAppendTime topic); producer.id.expiration.ms counts from it.
    pub last_timestamp: i64,
}

/// The header fields producer state needs.
#[derive(Debug, Clone, Copy)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// The header's last offset delta, not its record count: the log cleaner
    /// removes records from a batch but keeps its offset range, and the
    /// sequences follow the offsets (as in Kafka, last sequence = base
    /// sequence + last offset delta). A state rebuilt from a compacted log
    /// must expect the same next sequence as the one written.
    pub last_offset_delta: i32,
    /// The batch's max timestamp as stored.
    pub max_timestamp: i64,
}

impl ProducerBatch {
    pub fn of(h: &BatchHeader) -> Self {
        Self {
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
            last_offset_delta: h.last_offset_delta,
            max_timestamp: h.max_timestamp,
        }
    }

    pub fn last_sequence(&self) -> i32 {
        // Sequences wrap at i32::MAX back to 0, as in Kafka.
        ((self.base_sequence as i64 + self.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
    }

    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0 && self.base_sequence >= 0
    }
}

/// Every producer of a log, by producer id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerState {
    entries: HashMap<i64, ProducerEntry>,
}

impl ProducerState {
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.entries.get(&producer_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.entries.iter().map(|(&id, e)| (id, e))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Records a data batch now in the log at `first..=last`.
    pub fn observe(&mut self, batch: &ProducerBatch, first_offset: i64, last_offset: i64) {
        if !batch.is_idempotent() {
            return;
        }
        let entry = self.entries.entry(batch.producer_id).or_default();
        if batch.producer_epoch != entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == CACHED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMeta {
            first_seq: batch.base_sequence,
            last_seq: batch.last_sequence(),
            first_offset,
            last_offset,
        });
        entry.last_timestamp = batch.max_timestamp;
    }

    /// A transaction marker written with the producer's epoch: a newer
    /// epoch (the coordinator bumped it, fencing the old incarnation)
    /// becomes the producer's, whose sequences then start again at 0.
    pub fn observe_marker(&mut self, producer_id: i64, epoch: i16) {
        if let Some(entry) = self.entries.get_mut(&producer_id)
            && epoch > entry.epoch
        {
            entry.epoch = epoch;
            entry.batches.clear();
        }
    }

    /// Records any batch as stored in the log: data batches and the
    /// transaction markers (Raft's own control entries are not
    /// transactional and change nothing).
    pub fn observe_header(&mut self, h: &BatchHeader, first_offset: i64) {
        if !h.is_control() {
            let last = first_offset + h.last_offset_delta as i64;
            self.observe(&ProducerBatch::of(h), first_offset, last);
        } else if h.is_transactional() && h.producer_id >= 0 {
            self.observe_marker(h.producer_id, h.producer_epoch);
        }
    }

    /// Forgets the producers whose last batch is older than
    /// `expiration_ms` at `now_ms` (Kafka's producer.id.expiration.ms),
    /// except those `keep` names (a transaction still open). Returns how
    /// many it forgot.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64, keep: impl Fn(i64) -> bool) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|&id, e| now_ms.saturating_sub(e.last_timestamp) < expiration_ms || keep(id));
        before - self.entries.len()
    }

    /// The snapshot file's bytes for the state at `offset`.
    pub fn encode(&self, offset: i64) -> Vec<u8> {
        let mut b = Vec::with_capacity(28 + self.entries.len() * (19 + 5 * 24));
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&offset.to_le_bytes());
        b.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        // By producer id, so equal states make equal files.
        let mut ids: Vec<i64> = self.entries.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let e = &self.entries[&id];
            b.extend_from_slice(&id.to_le_bytes());
            b.extend_from_slice(&e.epoch.to_le_bytes());
            b.extend_from_slice(&e.last_timestamp.to_le_bytes());
            b.push(e.batches.len() as u8);
            for m in &e.batches {
                b.extend_from_slice(&m.first_seq.to_le_bytes());
                b.extend_from_slice(&m.last_seq.to_le_bytes());
                b.extend_from_slice(&m.first_offset.to_le_bytes());
                b.extend_from_slice(&m.last_offset.to_le_bytes());
            }
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// The offset and state in a snapshot file's bytes, or why they are not
    /// one.
    pub fn decode(bytes: &[u8]) -> std::result::Result<(i64, Self), &'static str> {
        let Some((body, crc)) = bytes.split_last_chunk::<4>() else {
            return Err("too short");
        };
        if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
            return Err("checksum mismatch");
        }
        let mut r = Reader(body);
        if r.take(4)? != MAGIC || r.u32()? != VERSION {
            return Err("unknown format");
        }
        let offset = r.i64()?;
        // The smallest producer takes 19 bytes.
        let n = r.count(19)?;
        let mut entries = HashMap::with_capacity(n);
        for _ in 0..n {
            let id = r.i64()?;
            let epoch = i16::from_le_bytes(r.take(2)?.try_into().expect("2"));
            let last_timestamp = r.i64()?;
            let count = r.take(1)?[0] as usize;
            if count > CACHED_BATCHES {
                return Err("too many batches");
            }
            let mut batches = VecDeque::with_capacity(CACHED_BATCHES);
            for _ in 0..count {
                batches.push_back(BatchMeta {
                    first_seq: r.u32()? as i32,
                    last_seq: r.u32()? as i32,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            let entry = ProducerEntry {
                epoch,
                batches,
                last_timestamp,
            };
            if entries.insert(id, entry).is_some() {
                return Err("a producer twice");
            }
        }
        if !r.0.is_empty() {
            return Err("trailing bytes");
        }
        Ok((offset, Self { entries }))
    }
}

/// Writes a snapshot to `path` through a temporary file, so that a reader
/// never sees a half-written one under the final name. No fsync (see the
/// module comment).
pub fn write_snapshot(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("snapshot.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| StorageError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| StorageError::io(path, e))
}

/// The snapshot at `path` if it is whole and is the state at `offset`
/// (a damaged one is logged and ignored).
pub fn read_snapshot(path: &Path, offset: i64) -> Option<ProducerState> {
    let bytes = std::fs::read(path).ok()?;
    match ProducerState::decode(&bytes) {
        Ok((at, state)) if at == offset => Some(state),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "ignoring a producer snapshot whose offset is not its name's");
            None
        }
        Err(why) => {
            tracing::warn!(path = %path.display(), why, "ignoring a damaged producer snapshot");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(pid: i64, epoch: i16, seq: i32, n: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            last_offset_delta: n - 1,
            max_timestamp: 1000 + seq as i64,
        }
    }

    #[test]
    fn a_snapshot_decodes_to_the_state_it_was_made_from() {
        let mut s = ProducerState::default();
        for i in 0..7 {
            s.observe(&b(1, 0, i * 2, 2), i as i64 * 2, i as i64 * 2 + 1);
        }
        s.observe(&b(9, 3, 0, 1), 20, 20);
        s.observe(&b(i64::MAX, i16::MAX, i32::MAX - 1, 2), 21, 22);
        let bytes = s.encode(23);
        let (offset, back) = ProducerState::decode(&bytes).unwrap();
        assert_eq!((offset, &back), (23, &s));
        assert_eq!(back.get(1).unwrap().batches.len(), CACHED_BATCHES);
        // Equal states, equal bytes.
        assert_eq!(back.encode(23), bytes);
    }

    #[test]
    fn a_damaged_snapshot_is_refused() {
        let mut s = ProducerState::default();
        s.observe(&b(4, 1, 0, 3), 0, 2);
        let bytes = s.encode(3);
        for cut in [0, 3, 10, bytes.len() - 1] {
            assert!(
                ProducerState::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(ProducerState::decode(&bad).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn expiry_forgets_idle_producers_but_keeps_the_ones_named() {
        let mut s = ProducerState::default();
        s.observe(&b(1, 0, 0, 1), 0, 0); // timestamp 1000
        s.observe(&b(2, 0, 0, 1), 1, 1); // timestamp 1000
        s.observe(&b(3, 0, 50, 1), 2, 2); // timestamp 1050
        assert_eq!(s.expire(1049, 50, |_| false), 0);
        assert_eq!(s.expire(1050, 50, |id| id == 2), 1);
        assert!(s.get(1).is_none());
        assert!(s.get(2).is_some() && s.get(3).is_some());
    }
}
