//! What opening a sealed segment needs, saved beside it (`{base:020}.sealed`)
//! so that a restart does not walk every batch header of the log.
//!
//! A segment's dense entry map (the position of every batch), its sparse
//! indexes and its offset and timestamp bounds are derived from the `.log`
//! file by reading each batch header: a million small batches are a million
//! reads, all over the file, which on a cold page cache means reading nearly
//! every page. A sealed segment no longer changes, so that walk is done once
//! and its result written here when the segment is sealed.
//!
//! The log stays the truth. A summary is used only for a segment that
//! recovery does not have to check (below the recovery point, or after a clean
//! shutdown), and only when it is whole (CRC-32C over its content), describes
//! a `.log` of the size and modification time found (any write to the file
//! after the summary, by any program, changes the latter), and the last batch
//! it names is there: a header that parses, ends at the end of the file and
//! has the summary's next offset.
//! Anything else falls back to the walk, which writes the summary again.
//! Every change to a sealed segment's file (truncation, a cleaner's swap)
//! removes the summary first.
//!
//! Layout, little-endian: magic `SLSS`, version u32, then the log size u64,
//! the log's modification time (nanoseconds since the epoch, u64), base offset, next offset, max timestamp and its offset (i64 each), the
//! positions (count u64, u32 each), the offset index (count u64, relative
//! offset u32 + position u32 each), the time index (count u64, timestamp i64
//! + relative offset u32 each), and the CRC-32C of everything before it (u32).

use std::path::Path;

use crate::error::{Result, StorageError};

const MAGIC: &[u8; 4] = b"SLSS";
const VERSION: u32 = 1;
/// The fixed part: magic, version, size, modification time, four i64 fields.
const FIXED: usize = 4 + 4 + 8 + 8 + 4 * 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub log_size: u64,
    /// The `.log` file's modification time, in nanoseconds since the epoch.
    pub log_mtime_ns: u64,
    pub base_offset: i64,
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: i64,
    pub positions: Vec<u32>,
    pub offset_index: Vec<(u32, u32)>,
    pub time_index: Vec<(i64, u32)>,
}

impl Summary {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(
            FIXED
                + 24
                + self.positions.len() * 4
                + self.offset_index.len() * 8
                + self.time_index.len() * 12
                + 4,
        );
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&self.log_size.to_le_bytes());
        b.extend_from_slice(&self.log_mtime_ns.to_le_bytes());
        for v in [
            self.base_offset,
            self.next_offset,
            self.max_timestamp,
            self.offset_of_max_timestamp,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&(self.positions.len() as u64).to_le_bytes());
        for p in &self.positions {
            b.extend_from_slice(&p.to_le_bytes());
        }
        b.extend_from_slice(&(self.offset_index.len() as u64).to_le_bytes());
        for (o, p) in &self.offset_index {
            b.extend_from_slice(&o.to_le_bytes());
            b.extend_from_slice(&p.to_le_bytes());
        }
        b.extend_from_slice(&(self.time_index.len() as u64).to_le_bytes());
        for (t, o) in &self.time_index {
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(&o.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// The summary in `bytes`, or why it is not one.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, &'static str> {
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
        let (log_size, log_mtime_ns) = (r.u64()?, r.u64()?);
        let (base_offset, next_offset) = (r.i64()?, r.i64()?);
        let (max_timestamp, offset_of_max_timestamp) = (r.i64()?, r.i64()?);
        let n = r.count(4)?;
        let positions = (0..n)
            .map(|_| r.u32())
            .collect::<std::result::Result<_, _>>()?;
        let n = r.count(8)?;
        let offset_index = (0..n)
            .map(|_| Ok((r.u32()?, r.u32()?)))
            .collect::<std::result::Result<_, _>>()?;
        let n = r.count(12)?;
        let time_index = (0..n)
            .map(|_| Ok((r.i64()?, r.u32()?)))
            .collect::<std::result::Result<_, _>>()?;
        if !r.0.is_empty() {
            return Err("trailing bytes");
        }
        Ok(Self {
            log_size,
            log_mtime_ns,
            base_offset,
            next_offset,
            max_timestamp,
            offset_of_max_timestamp,
            positions,
            offset_index,
            time_index,
        })
    }
}

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("truncated");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    pub(crate) fn u32(&mut self) -> std::result::Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    pub(crate) fn u64(&mut self) -> std::result::Result<u64, &'static str> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    pub(crate) fn i64(&mut self) -> std::result::Result<i64, &'static str> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    /// A count of entries of `size` bytes each, no more than the bytes left.
    pub(crate) fn count(&mut self, size: usize) -> std::result::Result<usize, &'static str> {
        let n = self.u64()?;
        if n > (self.0.len() / size) as u64 {
            return Err("count past the end");
        }
        Ok(n as usize)
    }
}

/// Writes the summary to `path`. It needs no fsync: a summary lost or torn
/// by a crash is refused when read, and the segment is walked instead.
pub fn write(path: &Path, summary: &Summary) -> Result<()> {
    std::fs::write(path, summary.encode()).map_err(|e| StorageError::io(path, e))
}

/// The summary at `path`, if there is a whole one (a damaged one is logged
/// and ignored).
pub fn read(path: &Path) -> Option<Summary> {
    let bytes = std::fs::read(path).ok()?;
    match Summary::decode(&bytes) {
        Ok(s) => Some(s),
        Err(why) => {
            tracing::warn!(path = %path.display(), why, "ignoring a damaged segment summary; walking the segment");
            None
        }
    }
}

/// A file's modification time in nanoseconds since the epoch (0 where the
/// file system keeps none: such a summary still matches only itself).
pub fn mtime_ns(file: &std::fs::File) -> std::io::Result<u64> {
    let modified = file.metadata()?.modified()?;
    Ok(modified
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64))
}

/// Removes the summary at `path`, if any: its segment is about to change.
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Summary {
        Summary {
            log_size: 12_345,
            log_mtime_ns: 1_764_000_000_123_456_789,
            base_offset: 100,
            next_offset: 180,
            max_timestamp: 1_700_000_000_000,
            offset_of_max_timestamp: 179,
            positions: vec![0, 70, 4000, 9000],
            offset_index: vec![(40, 4000)],
            time_index: vec![(1_700_000_000_000, 40)],
        }
    }

    #[test]
    fn a_summary_reads_back_as_written() {
        let s = sample();
        assert_eq!(Summary::decode(&s.encode()), Ok(s));
    }

    #[test]
    fn any_damage_or_truncation_is_refused() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(Summary::decode(&bytes[..len]).is_err(), "cut at {len}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(Summary::decode(&b).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn a_huge_count_is_refused_without_allocating_it() {
        let mut s = sample().encode();
        // The positions' count, right after the fixed part.
        s[FIXED..FIXED + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let n = s.len() - 4;
        let crc = crc32c::crc32c(&s[..n]);
        s[n..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Summary::decode(&s), Err("count past the end"));
    }
}
