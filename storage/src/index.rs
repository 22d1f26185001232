//! Memory-mapped sparse indexes of one segment.
//!
//! - Offset index: entries `(relative offset u32, position u32)`, one every
//!   `index.interval.bytes` of log; lookup = greatest entry with offset ≤ target.
//! - Time index: entries `(max timestamp so far i64, relative offset u32)`; lookup =
//!   greatest entry with timestamp < target, i.e. a point before which no batch can
//!   match.
//!
//! Both are preallocated to `segment.index.bytes` (sparse on disk) and mapped.
//! They are rebuilt from the log whenever the log is opened, so a damaged index
//! can never outvote the log.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use crate::error::{Result, StorageError};

struct Mapped {
    path: PathBuf,
    file: File,
    map: MmapMut,
    entry_size: usize,
    entries: usize,
    capacity: usize,
}

impl Mapped {
    fn create(path: &Path, max_bytes: usize, entry_size: usize) -> Result<Self> {
        let io = |e| StorageError::io(path, e);
        let capacity = (max_bytes / entry_size).max(1);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io)?;
        file.set_len((capacity * entry_size) as u64).map_err(io)?;
        // SAFETY: the file was just created and sized by this process and is only
        // ever resized by `trim`, which drops the map first; no other process
        // writes Sluice's index files.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(io)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            map,
            entry_size,
            entries: 0,
            capacity,
        })
    }

    fn entry(&self, i: usize) -> &[u8] {
        &self.map[i * self.entry_size..(i + 1) * self.entry_size]
    }

    fn push(&mut self, bytes: &[u8]) -> bool {
        if self.entries == self.capacity {
            return false;
        }
        let at = self.entries * self.entry_size;
        self.map[at..at + self.entry_size].copy_from_slice(bytes);
        self.entries += 1;
        true
    }

    /// Index of the last entry for which `le` holds (entries are sorted).
    fn greatest_lower_bound(&self, le: impl Fn(&[u8]) -> bool) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if le(self.entry(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    fn trim(self) -> Result<()> {
        let Mapped {
            path,
            file,
            map,
            entries,
            entry_size,
            ..
        } = self;
        map.flush().map_err(|e| StorageError::io(&path, e))?;
        drop(map);
        file.set_len((entries * entry_size) as u64)
            .map_err(|e| StorageError::io(&path, e))
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub struct OffsetIndex {
    base_offset: i64,
    inner: Mapped,
}

impl OffsetIndex {
    pub fn create(path: &Path, base_offset: i64, max_bytes: usize) -> Result<Self> {
        Ok(Self {
            base_offset,
            inner: Mapped::create(path, max_bytes, 8)?,
        })
    }

    pub fn is_full(&self) -> bool {
        self.inner.entries == self.inner.capacity
    }

    pub fn len(&self) -> usize {
        self.inner.entries
    }

    pub fn is_empty(&self) -> bool {
        self.inner.entries == 0
    }

    /// Adds an entry; false when the index is full (the caller rolls).
    pub fn append(&mut self, offset: i64, position: u32) -> bool {
        let mut e = [0u8; 8];
        e[..4].copy_from_slice(&((offset - self.base_offset) as u32).to_be_bytes());
        e[4..].copy_from_slice(&position.to_be_bytes());
        self.inner.push(&e)
    }

    /// (offset, position) of the greatest entry at or below `offset`, or the
    /// segment start.
    pub fn lookup(&self, offset: i64) -> (i64, u32) {
        let rel = (offset - self.base_offset).clamp(0, u32::MAX as i64) as u32;
        match self.inner.greatest_lower_bound(|e| u32_at(e, 0) <= rel) {
            Some(i) => {
                let e = self.inner.entry(i);
                (self.base_offset + u32_at(e, 0) as i64, u32_at(e, 4))
            }
            None => (self.base_offset, 0),
        }
    }

    /// Drops entries at or above `offset`.
    pub fn truncate_to(&mut self, offset: i64) {
        let rel = (offset - self.base_offset).max(0) as u32;
        self.inner.entries = self
            .inner
            .greatest_lower_bound(|e| u32_at(e, 0) < rel)
            .map_or(0, |i| i + 1);
    }

    pub fn trim(self) -> Result<()> {
        self.inner.trim()
    }
}

pub struct TimeIndex {
    base_offset: i64,
    inner: Mapped,
    last_timestamp: i64,
}

impl TimeIndex {
    pub fn create(path: &Path, base_offset: i64, max_bytes: usize) -> Result<Self> {
        Ok(Self {
            base_offset,
            inner: Mapped::create(path, max_bytes, 12)?,
            last_timestamp: i64::MIN,
        })
    }

    pub fn is_full(&self) -> bool {
        self.inner.entries == self.inner.capacity
    }

    /// Adds `(timestamp, offset)` if the timestamp grew; false when full.
    pub fn maybe_append(&mut self, max_timestamp: i64, offset: i64) -> bool {
        if max_timestamp <= self.last_timestamp {
            return true;
        }
        let mut e = [0u8; 12];
        e[..8].copy_from_slice(&max_timestamp.to_be_bytes());
        e[8..].copy_from_slice(&((offset - self.base_offset) as u32).to_be_bytes());
        if self.inner.push(&e) {
            self.last_timestamp = max_timestamp;
            true
        } else {
            false
        }
    }

    /// The offset of the greatest entry whose timestamp is below `timestamp`: every
    /// batch up to and including that offset is older than `timestamp`.
    pub fn lookup_before(&self, timestamp: i64) -> Option<i64> {
        self.inner
            .greatest_lower_bound(|e| i64::from_be_bytes(e[..8].try_into().expect("8")) < timestamp)
            .map(|i| self.base_offset + u32_at(self.inner.entry(i), 8) as i64)
    }

    /// Drops entries for offsets at or above `offset`.
    pub fn truncate_to(&mut self, offset: i64) {
        let rel = (offset - self.base_offset).max(0) as u32;
        let keep = (0..self.inner.entries)
            .take_while(|&i| u32_at(self.inner.entry(i), 8) < rel)
            .count();
        self.inner.entries = keep;
        self.last_timestamp = keep.checked_sub(1).map_or(i64::MIN, |i| {
            i64::from_be_bytes(self.inner.entry(i)[..8].try_into().expect("8"))
        });
    }

    pub fn trim(self) -> Result<()> {
        self.inner.trim()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_is_greatest_lower_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = OffsetIndex::create(&dir.path().join("x.index"), 100, 80).unwrap();
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
        let dir = tempfile::tempdir().unwrap();
        let mut idx = OffsetIndex::create(&dir.path().join("x.index"), 0, 16).unwrap();
        assert!(idx.append(1, 1));
        assert!(idx.append(2, 2));
        assert!(idx.is_full());
        assert!(!idx.append(3, 3));
    }

    #[test]
    fn time_lookup_finds_the_last_older_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TimeIndex::create(&dir.path().join("x.timeindex"), 0, 120).unwrap();
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
    }

    #[test]
    fn trim_leaves_only_used_entries_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let mut idx = OffsetIndex::create(&path, 0, 4096).unwrap();
        idx.append(3, 30);
        idx.trim().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
    }
}
