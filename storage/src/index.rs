//! Sparse indexes of one segment, kept in memory.
//!
//! - Offset index: entries `(relative offset u32, position u32)`, one every
//!   `index.interval.bytes` of log; lookup = greatest entry with offset ≤ target.
//! - Time index: entries `(max timestamp so far i64, relative offset u32)`; lookup =
//!   greatest entry with timestamp < target, i.e. a point before which no batch can
//!   match.
//!
//! Both hold at most `segment.index.bytes` worth of entries (a full index rolls
//! the segment, as in Kafka). They are rebuilt from the log when a segment is
//! opened, or for a sealed segment loaded from its checked summary
//! ([`crate::sealed`]), never from these files, so a damaged index file can
//! never outvote the log; and they live in
//! memory: an idle segment then holds no open file and no memory map for them.
//! `write_to` stores them in Kafka's `.index` / `.timeindex` layout (big-endian
//! entries) when a segment is sealed and at shutdown, for tools that read them.

use std::io::Write;
use std::path::Path;

use crate::error::{Result, StorageError};

/// Writes `entries` of `entry_size` bytes each, produced by `encode`, to `path`.
fn write_entries<T>(
    path: &Path,
    entries: &[T],
    entry_size: usize,
    encode: impl Fn(&T, &mut Vec<u8>),
) -> Result<()> {
    let mut buf = Vec::with_capacity(entries.len() * entry_size);
    for e in entries {
        encode(e, &mut buf);
    }
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&buf))
        .map_err(|e| StorageError::io(path, e))
}

/// Index of the last element for which `le` holds (elements are sorted).
fn greatest_lower_bound<T>(v: &[T], le: impl Fn(&T) -> bool) -> Option<usize> {
    v.partition_point(le).checked_sub(1)
}

pub struct OffsetIndex {
    base_offset: i64,
    /// (offset relative to the base, byte position in the segment).
    entries: Vec<(u32, u32)>,
    capacity: usize,
}

impl OffsetIndex {
    pub const ENTRY_SIZE: usize = 8;

    /// An empty index of at most `max_bytes` worth of entries.
    pub fn new(base_offset: i64, max_bytes: usize) -> Self {
        Self {
            base_offset,
            entries: Vec::new(),
            capacity: (max_bytes / Self::ENTRY_SIZE).max(1),
        }
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.capacity
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an entry; false when the index is full (the caller rolls).
    pub fn append(&mut self, offset: i64, position: u32) -> bool {
        if self.is_full() {
            return false;
        }
        self.entries
            .push(((offset - self.base_offset) as u32, position));
        true
    }

    /// (offset, position) of the greatest entry at or below `offset`, or the
    /// segment start.
    pub fn lookup(&self, offset: i64) -> (i64, u32) {
        let rel = (offset - self.base_offset).clamp(0, u32::MAX as i64) as u32;
        match greatest_lower_bound(&self.entries, |e| e.0 <= rel) {
            Some(i) => {
                let (o, p) = self.entries[i];
                (self.base_offset + o as i64, p)
            }
            None => (self.base_offset, 0),
        }
    }

    /// Drops entries at or above `offset`.
    pub fn truncate_to(&mut self, offset: i64) {
        let rel = (offset - self.base_offset).max(0) as u32;
        let keep = self.entries.partition_point(|e| e.0 < rel);
        self.entries.truncate(keep);
    }

    /// The entries: (offset relative to the base, position).
    pub fn entries(&self) -> &[(u32, u32)] {
        &self.entries
    }

    /// An index holding `entries` (from [`Self::entries`]).
    pub fn with_entries(base_offset: i64, max_bytes: usize, entries: Vec<(u32, u32)>) -> Self {
        Self {
            entries,
            ..Self::new(base_offset, max_bytes)
        }
    }

    /// Stores the index at `path` in Kafka's layout.
    pub fn write_to(&self, path: &Path) -> Result<()> {
        write_entries(path, &self.entries, Self::ENTRY_SIZE, |(o, p), buf| {
            buf.extend_from_slice(&o.to_be_bytes());
            buf.extend_from_slice(&p.to_be_bytes());
        })
    }
}

pub struct TimeIndex {
    base_offset: i64,
    /// (largest timestamp so far, offset relative to the base).
    entries: Vec<(i64, u32)>,
    capacity: usize,
}

impl TimeIndex {
    pub const ENTRY_SIZE: usize = 12;

    /// An empty index of at most `max_bytes` worth of entries.
    pub fn new(base_offset: i64, max_bytes: usize) -> Self {
        Self {
            base_offset,
            entries: Vec::new(),
            capacity: (max_bytes / Self::ENTRY_SIZE).max(1),
        }
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.capacity
    }

    /// Adds `(timestamp, offset)` if the timestamp grew; false when full.
    pub fn maybe_append(&mut self, max_timestamp: i64, offset: i64) -> bool {
        if self.entries.last().is_some_and(|e| max_timestamp <= e.0) {
            return true;
        }
        if self.is_full() {
            return false;
        }
        self.entries
            .push((max_timestamp, (offset - self.base_offset) as u32));
        true
    }

    /// The offset of the greatest entry whose timestamp is below `timestamp`: every
    /// batch up to and including that offset is older than `timestamp`.
    pub fn lookup_before(&self, timestamp: i64) -> Option<i64> {
        greatest_lower_bound(&self.entries, |e| e.0 < timestamp)
            .map(|i| self.base_offset + self.entries[i].1 as i64)
    }

    /// Drops entries for offsets at or above `offset`.
    pub fn truncate_to(&mut self, offset: i64) {
        let rel = (offset - self.base_offset).max(0) as u32;
        let keep = self.entries.iter().take_while(|e| e.1 < rel).count();
        self.entries.truncate(keep);
    }

    /// The entries: (largest timestamp so far, offset relative to the base).
    pub fn entries(&self) -> &[(i64, u32)] {
        &self.entries
    }

    /// An index holding `entries` (from [`Self::entries`]).
    pub fn with_entries(base_offset: i64, max_bytes: usize, entries: Vec<(i64, u32)>) -> Self {
        Self {
            entries,
            ..Self::new(base_offset, max_bytes)
        }
    }

    /// Stores the index at `path` in Kafka's layout.
    pub fn write_to(&self, path: &Path) -> Result<()> {
        write_entries(path, &self.entries, Self::ENTRY_SIZE, |(t, o), buf| {
            buf.extend_from_slice(&t.to_be_bytes());
            buf.extend_from_slice(&o.to_be_bytes());
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_is_greatest_lower_bound() {
        let mut idx = OffsetIndex::new(100, 80);
        assert_eq!(idx.lookup(150), (100, 0));
        for (o, p) in [(110, 1000), (120, 2000), (130, 3000)] {
            assert!(idx.append(o, p));
        }
        assert_eq!(idx.lookup(105), (100, 0));
        assert_eq!(idx.lookup(110), (110, 1000));
        assert_eq!(idx.lookup(129), (120, 2000));
        assert_eq!(idx.lookup(10_000), (130, 3000));
        idx.truncate_to(120);
        assert_eq!(idx.lookup(10_000), (110, 1000));
    }

    #[test]
    fn offset_index_reports_full() {
        let mut idx = OffsetIndex::new(0, 16);
        assert!(idx.append(1, 1));
        assert!(idx.append(2, 2));
        assert!(idx.is_full());
        assert!(!idx.append(3, 3));
    }

    #[test]
    fn time_lookup_finds_the_last_older_entry() {
        let mut t = TimeIndex::new(0, 120);
        t.maybe_append(10, 0);
        t.maybe_append(10, 5); // not larger: skipped
        t.maybe_append(20, 10);
        t.maybe_append(30, 20);
        assert_eq!(t.lookup_before(5), None);
        assert_eq!(t.lookup_before(11), Some(0));
        assert_eq!(t.lookup_before(30), Some(10));
        assert_eq!(t.lookup_before(31), Some(20));
        t.truncate_to(20);
        assert_eq!(t.lookup_before(100), Some(10));
        // After truncation a timestamp equal to a dropped entry's is new again.
        assert!(t.maybe_append(30, 20));
        assert_eq!(t.lookup_before(31), Some(20));
    }

    #[test]
    fn written_files_hold_kafkas_big_endian_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = OffsetIndex::new(1000, 4096);
        idx.append(1003, 30);
        let path = dir.path().join("x.index");
        idx.write_to(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), [0, 0, 0, 3, 0, 0, 0, 30]);
        let mut t = TimeIndex::new(1000, 4096);
        t.maybe_append(7, 1001);
        let path = dir.path().join("x.timeindex");
        t.write_to(&path).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            [0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1]
        );
    }
}
