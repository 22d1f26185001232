//! One segment: `{base_offset:020}.log` plus its `.index` and `.timeindex` (and
//! `.txnindex`, kept by the log: see [`crate::txn`]), and an
//! in-memory dense map of batch positions (one entry per batch, i.e. per Raft
//! entry).
//!
//! Reads hand out `Bytes` slices of a read-only memory map of the `.log` file, so
//! record data is never copied on its way to a fetch response. The map may be
//! longer than the file (pages past the end are never touched) and is replaced by
//! a longer one when the file outgrows it; old slices keep the old map alive.
//! The file is open, and mapped, only while the segment is in use: the process
//! keeps a bounded number open ([`crate::open_files`]) and reopens on demand.
//! The sparse indexes live in memory ([`crate::index`]).
//!
//! Truncation and memory maps: shrinking a file under a live map makes any access
//! to the cut pages raise SIGBUS. So a segment is cut in place only when no slice
//! of its map is alive (the map's `Arc` is not shared); otherwise the kept prefix
//! is copied to a new file that is renamed over the old one — slices still in
//! flight keep reading the old inode, which the kernel frees when they are gone.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::Mmap;

use crate::batch::{self, BATCH_HEADER_LEN, BatchHeader};
use crate::error::{Result, StorageError};
use crate::fs::FileSystem;
use crate::index::{OffsetIndex, TimeIndex};
use crate::open_files::{FileSlot, OpenFile};
use crate::sealed::{self, Summary};

/// The files of a segment, by extension (see also [`crate::txn`]).
pub const SEGMENT_FILES: [&str; 5] = ["log", "index", "timeindex", "txnindex", "sealed"];

pub fn file_name(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// Parses `{base_offset:020}.log`.
pub fn parse_log_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Small batches are copied next to their patched header and written with one
/// call; larger ones are written in two calls without copying record data.
const COALESCE_BELOW: usize = 64 * 1024;

pub struct Segment {
    pub base_offset: i64,
    /// Raft index of this segment's first batch.
    pub first_entry: u64,
    /// The `.log` file, open only while in use (see [`crate::open_files`]).
    slot: FileSlot,
    size: u64,
    /// Virtual length to map when the file is (re)opened: the roll size while
    /// the segment is active, so most active segments are mapped once; just
    /// the file once it is sealed.
    map_hint: usize,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    /// The index files on disk match the indexes in memory.
    indexes_written: bool,
    /// The summary file (see [`crate::sealed`]) describes this segment as
    /// it is: removed before the file changes.
    summary_written: bool,
    /// Position of every batch, in order: the dense Raft entry map.
    positions: Vec<u32>,
    next_offset: i64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    bytes_since_index: usize,
    index_interval: usize,
    pub created_ms: i64,
    scratch: Vec<u8>,
}

/// How a segment was found when scanned at open.
pub struct ScanOutcome {
    /// Bytes cut off the end because they did not form valid batches.
    pub truncated_bytes: u64,
}

pub struct SegmentOptions {
    pub index_interval: usize,
    pub max_index_bytes: usize,
    /// Virtual length to map up front (the roll size), so most segments are
    /// mapped once.
    pub map_hint: usize,
}

impl Segment {
    /// Creates an empty segment (any old files of that name are replaced).
    pub fn create(
        dir: &Path,
        fs: &dyn FileSystem,
        base_offset: i64,
        first_entry: u64,
        opts: &SegmentOptions,
        now_ms: i64,
    ) -> Result<Self> {
        let path = file_name(dir, base_offset, "log");
        let file = fs
            .open(&path, true)
            .map_err(|e| StorageError::io(&path, e))?;
        file.set_len(0).map_err(|e| StorageError::io(&path, e))?;
        let mut seg = Self::from_file(dir, path, file, base_offset, first_entry, opts, now_ms)?;
        // Index files of an earlier segment of this name are stale: replaced
        // when this one is sealed or closed.
        seg.indexes_written = false;
        Ok(seg)
    }

    fn from_file(
        dir: &Path,
        path: PathBuf,
        file: File,
        base_offset: i64,
        first_entry: u64,
        opts: &SegmentOptions,
        now_ms: i64,
    ) -> Result<Self> {
        let size = file
            .metadata()
            .map_err(|e| StorageError::io(&path, e))?
            .len();
        let map_len = opts.map_hint.max(size as usize).max(4096);
        let indexes_written = file_name(dir, base_offset, "index").exists()
            && file_name(dir, base_offset, "timeindex").exists();
        Ok(Self {
            base_offset,
            first_entry,
            slot: FileSlot::with_file(path, file, map_len)?,
            size,
            map_hint: opts.map_hint,
            offset_index: OffsetIndex::new(base_offset, opts.max_index_bytes),
            time_index: TimeIndex::new(base_offset, opts.max_index_bytes),
            indexes_written,
            summary_written: false,
            positions: Vec::new(),
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            bytes_since_index: 0,
            index_interval: opts.index_interval,
            created_ms: now_ms,
            scratch: Vec::new(),
        })
    }

    /// Opens an existing segment and walks its batches, rebuilding the indexes
    /// and the dense map. With `validate`, every batch's CRC is checked too. The
    /// file is cut at the first batch that is torn, corrupt or out of order.
    /// Without `validate`, a sealed segment's summary saves the walk when it
    /// checks out (see [`crate::sealed`]).
    pub fn open(
        dir: &Path,
        fs: &dyn FileSystem,
        base_offset: i64,
        first_entry: u64,
        opts: &SegmentOptions,
        validate: bool,
        now_ms: i64,
    ) -> Result<(Self, ScanOutcome)> {
        let path = file_name(dir, base_offset, "log");
        let file = fs
            .open(&path, false)
            .map_err(|e| StorageError::io(&path, e))?;
        let mut seg = Self::from_file(dir, path, file, base_offset, first_entry, opts, now_ms)?;
        if !validate && seg.load_summary(dir, opts)? {
            return Ok((seg, ScanOutcome { truncated_bytes: 0 }));
        }
        let size = seg.size;
        let mut pos = 0u64;
        let mut expected = base_offset;
        // The walk reads headers (and, to validate, whole batches) with
        // positional reads, not through the map: pages it pulls in then stay
        // unmapped, so the kernel may drop them like any cached file data
        // (a memory-mapped page is pinned while the process maps it).
        let file = seg.open_file()?.file;
        let mut buf = Vec::new();
        while pos < size {
            let want = BATCH_HEADER_LEN.min((size - pos) as usize);
            let mut head = [0u8; BATCH_HEADER_LEN];
            // A failed read is the disk's error, not a torn batch: the open
            // fails rather than cut good data.
            read_at(&file, &mut head[..want], pos).map_err(|e| StorageError::io(seg.path(), e))?;
            let header = match BatchHeader::parse(&head[..want]) {
                Ok(h) if h.total_size() as u64 <= size - pos && h.base_offset >= expected => h,
                _ => break,
            };
            if validate {
                buf.resize(header.total_size(), 0);
                read_at(&file, &mut buf, pos).map_err(|e| StorageError::io(seg.path(), e))?;
                if header.validate_crc(&buf).is_err() {
                    break;
                }
            }
            seg.index_batch(&header, pos as u32);
            expected = header.next_offset();
            pos += header.total_size() as u64;
        }
        drop(file);
        let truncated_bytes = size - pos;
        if truncated_bytes > 0 {
            seg.cut_file(pos)?;
            seg.indexes_written = false;
        }
        Ok((seg, ScanOutcome { truncated_bytes }))
    }

    /// Takes the positions, indexes and bounds from the segment's summary if
    /// it is whole and matches the file: its size and modification time, and
    /// its last batch (a
    /// header there that ends at the end of the file with the summary's next
    /// offset). False (nothing changed) otherwise.
    fn load_summary(&mut self, dir: &Path, opts: &SegmentOptions) -> Result<bool> {
        let path = file_name(dir, self.base_offset, "sealed");
        let Some(s) = sealed::read(&path) else {
            return Ok(false);
        };
        let file = self.open_file()?.file;
        let mtime = sealed::mtime_ns(&file).map_err(|e| StorageError::io(self.path(), e))?;
        let last_ok = match s.positions.last() {
            None => self.size == 0 && s.next_offset == self.base_offset,
            Some(&last) => {
                let mut head = [0u8; BATCH_HEADER_LEN];
                let end = (self.size as usize).min(last as usize + BATCH_HEADER_LEN);
                let want = end.saturating_sub(last as usize);
                want > 0
                    && read_at(&file, &mut head[..want], last as u64).is_ok()
                    && BatchHeader::parse(&head[..want]).is_ok_and(|h| {
                        last as u64 + h.total_size() as u64 == self.size
                            && (h.is_hidden() || h.next_offset() == s.next_offset)
                    })
            }
        };
        drop(file);
        if s.log_size != self.size
            || s.log_mtime_ns != mtime
            || s.base_offset != self.base_offset
            || !last_ok
        {
            tracing::warn!(path = %path.display(), "a segment summary does not match its log; walking the segment");
            return Ok(false);
        }
        self.offset_index =
            OffsetIndex::with_entries(self.base_offset, opts.max_index_bytes, s.offset_index);
        self.time_index =
            TimeIndex::with_entries(self.base_offset, opts.max_index_bytes, s.time_index);
        self.positions = s.positions;
        self.next_offset = s.next_offset;
        self.max_timestamp = s.max_timestamp;
        self.offset_of_max_timestamp = s.offset_of_max_timestamp;
        self.summary_written = true;
        Ok(true)
    }

    /// Removes the summary before the segment's file changes.
    fn forget_summary(&mut self) -> Result<()> {
        if self.summary_written {
            sealed::remove(&self.slot.path().with_extension("sealed"))?;
            self.summary_written = false;
        }
        Ok(())
    }

    /// The file, opened (and mapped over the segment) if it was closed.
    fn open_file(&self) -> Result<OpenFile> {
        self.slot
            .get(self.map_hint.max(self.size as usize).max(4096))
    }

    /// Header of entry `i`, read with a positional read (see `open`): for
    /// rebuilding state at startup without mapping the log.
    pub fn read_header(&self, i: usize) -> Result<BatchHeader> {
        let mut head = [0u8; BATCH_HEADER_LEN];
        read_at(&self.open_file()?.file, &mut head, self.positions[i] as u64)
            .map_err(|e| StorageError::io(self.path(), e))?;
        BatchHeader::parse(&head)
    }

    /// Records a batch at `pos` in the dense map and the sparse indexes.
    fn index_batch(&mut self, h: &BatchHeader, pos: u32) {
        if h.is_hidden() {
            // No offset of its own: the indexes never point at it (the
            // batch after it starts at the same offset), so a lookup lands
            // on data; `entry_of` finds it by scanning.
            self.positions.push(pos);
            self.size = self.size.max(pos as u64 + h.total_size() as u64);
            self.bytes_since_index += h.total_size();
            return;
        }
        if self.bytes_since_index > self.index_interval {
            // Full indexes are caught by `is_full` before the next append.
            self.offset_index.append(h.base_offset, pos);
            self.time_index
                .maybe_append(self.max_timestamp.max(h.max_timestamp), h.base_offset);
            self.bytes_since_index = 0;
            self.indexes_written = false;
        }
        self.bytes_since_index += h.total_size();
        self.positions.push(pos);
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.last_offset();
        }
        self.next_offset = h.next_offset();
        self.size = self.size.max(pos as u64 + h.total_size() as u64);
    }

    /// Every batch of the segment, as one slice of its map.
    pub fn all_bytes(&self) -> Result<Bytes> {
        let o = self.open_file()?;
        Ok(slice(&o.map, 0, self.size as usize))
    }

    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn entries(&self) -> u64 {
        self.positions.len() as u64
    }
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    pub fn offset_of_max_timestamp(&self) -> i64 {
        self.offset_of_max_timestamp
    }
    pub fn indexes_full(&self) -> bool {
        self.offset_index.is_full() || self.time_index.is_full()
    }
    pub fn path(&self) -> &Path {
        self.slot.path()
    }

    /// A handle to fsync the file with (it stays open while held).
    pub fn sync_handle(&self) -> Result<Arc<File>> {
        Ok(self.open_file()?.file)
    }

    /// Appends one validated batch, writing the broker-owned prefix in place of
    /// the sent one.
    pub fn append(
        &mut self,
        fs: &dyn FileSystem,
        batch: &[u8],
        header: &BatchHeader,
        prefix: [u8; 16],
    ) -> Result<u64> {
        self.forget_summary()?;
        let pos = self.size;
        if pos + batch.len() as u64 > u32::MAX as u64 {
            return Err(StorageError::InvalidBatch(
                "segment would exceed 4 GiB".into(),
            ));
        }
        let o = self.open_file()?;
        let io = |e| StorageError::io(self.slot.path(), e);
        if batch.len() < COALESCE_BELOW {
            self.scratch.clear();
            self.scratch.extend_from_slice(&prefix);
            self.scratch.extend_from_slice(&batch[16..]);
            fs.write_at(&o.file, &self.scratch, pos).map_err(io)?;
        } else {
            fs.write_at(&o.file, &prefix, pos).map_err(io)?;
            fs.write_at(&o.file, &batch[16..], pos + 16).map_err(io)?;
        }
        let mut h = *header;
        h.base_offset = i64::from_be_bytes(prefix[..8].try_into().expect("8"));
        self.index_batch(&h, pos as u32);
        if self.size as usize > o.map.len() {
            let len = (self.size as usize).max(o.map.len() * 2);
            self.map_hint = self.map_hint.max(len);
            self.slot.remap(len)?;
        }
        Ok(pos)
    }

    /// Position of the batch holding `offset`, if this segment has one.
    fn find_in(&self, map: &Mmap, offset: i64) -> Result<Option<usize>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let (_, start) = self.offset_index.lookup(offset);
        let mut pos = start as usize;
        while pos < self.size as usize {
            let h = self.header_at(map, pos)?;
            if h.last_offset() >= offset {
                return Ok(Some(pos));
            }
            pos += h.total_size();
        }
        Ok(None)
    }

    /// Header of the batch at `pos`.
    fn header_at(&self, map: &Mmap, pos: usize) -> Result<BatchHeader> {
        BatchHeader::parse(&map[pos..self.size as usize])
    }

    /// Position of the batch holding `offset`, if this segment has one.
    pub fn find(&self, offset: i64) -> Result<Option<usize>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        self.find_in(&self.open_file()?.map, offset)
    }

    /// Whole batches from `offset`: at least one, then more while under
    /// `max_bytes`; with the file they were read from (for sending them
    /// from the file).
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<(Bytes, Option<OpenFile>)> {
        if offset >= self.next_offset {
            return Ok((Bytes::new(), None));
        }
        let o = self.open_file()?;
        let Some(start) = self.find_in(&o.map, offset)? else {
            return Ok((Bytes::new(), None));
        };
        let mut end = start;
        while end < self.size as usize {
            let h = self.header_at(&o.map, end)?;
            // A hidden batch (never the first: it holds no offset `find_in`
            // could land on) ends the run; the next read starts after it.
            if end > start && (h.is_hidden() || end - start + h.total_size() > max_bytes) {
                break;
            }
            end += h.total_size();
        }
        Ok((slice(&o.map, start, end), Some(o)))
    }

    /// The first batch whose max timestamp is at least `timestamp`.
    pub fn find_by_timestamp(&self, timestamp: i64) -> Result<Option<(i64, Bytes)>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let from = self
            .time_index
            .lookup_before(timestamp)
            .unwrap_or(self.base_offset);
        let o = self.open_file()?;
        let Some(mut pos) = self.find_in(&o.map, from)? else {
            return Ok(None);
        };
        while pos < self.size as usize {
            let h = self.header_at(&o.map, pos)?;
            if h.max_timestamp >= timestamp {
                return Ok(Some((
                    h.base_offset,
                    slice(&o.map, pos, pos + h.total_size()),
                )));
            }
            pos += h.total_size();
        }
        Ok(None)
    }

    /// The batch that is this segment's `i`-th entry.
    pub fn entry(&self, i: usize) -> Result<(BatchHeader, Bytes)> {
        let pos = self.positions[i] as usize;
        let o = self.open_file()?;
        let h = self.header_at(&o.map, pos)?;
        Ok((h, slice(&o.map, pos, pos + h.total_size())))
    }

    /// Index in the dense map of the batch starting at `offset`.
    pub fn entry_of(&self, offset: i64) -> Result<Option<usize>> {
        // At the segment's next offset only hidden batches can start.
        if offset > self.next_offset || offset < self.base_offset {
            return Ok(None);
        }
        let o = self.open_file()?;
        // The first batch starting at `offset`: a hidden batch there comes
        // before the data batch that starts at the same offset. The index
        // never points at a hidden batch, so the scan starts below `offset`.
        let mut pos = if offset > self.base_offset {
            self.offset_index.lookup(offset - 1).1
        } else {
            0
        };
        while (pos as u64) < self.size {
            let h = self.header_at(&o.map, pos as usize)?;
            if h.base_offset >= offset {
                if h.base_offset > offset {
                    return Ok(None);
                }
                return Ok(self.positions.binary_search(&pos).ok());
            }
            pos += h.total_size() as u32;
        }
        Ok(None)
    }

    /// Removes the batches from the `entry`-th on.
    pub fn truncate_entries(&mut self, entry: usize) -> Result<()> {
        if entry >= self.positions.len() {
            return Ok(());
        }
        let pos = self.positions[entry] as u64;
        let o = self.open_file()?;
        let offset = self.header_at(&o.map, pos as usize)?.base_offset;
        self.positions.truncate(entry);
        self.offset_index.truncate_to(offset);
        self.time_index.truncate_to(offset);
        self.indexes_written = false;
        // Recompute what depended on the removed batches.
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        self.bytes_since_index = 0;
        for &p in &self.positions {
            let h = BatchHeader::parse(&o.map[p as usize..pos as usize])?;
            if h.max_timestamp > self.max_timestamp {
                self.max_timestamp = h.max_timestamp;
                self.offset_of_max_timestamp = h.last_offset();
            }
            self.next_offset = h.next_offset();
        }
        // The cut must not see this map as a reader's.
        drop(o);
        self.cut_file(pos)
    }

    /// Shrinks the file to `len` without ever cutting pages under a live slice.
    fn cut_file(&mut self, len: u64) -> Result<()> {
        self.forget_summary()?;
        self.slot.cut(len)?;
        self.size = len;
        Ok(())
    }

    /// Writes the index files (see [`crate::index`]) if they are behind.
    pub fn write_indexes(&mut self) -> Result<()> {
        if !self.indexes_written {
            let log = self.slot.path();
            self.offset_index.write_to(&log.with_extension("index"))?;
            self.time_index.write_to(&log.with_extension("timeindex"))?;
            self.indexes_written = true;
        }
        Ok(())
    }

    /// No more appends: the index files and the summary are written, and
    /// the file is mapped over its length only when next opened.
    pub fn seal(&mut self) -> Result<()> {
        self.map_hint = 0;
        self.write_indexes()?;
        if !self.summary_written {
            let file = self.open_file()?.file;
            let log_mtime_ns =
                sealed::mtime_ns(&file).map_err(|e| StorageError::io(self.slot.path(), e))?;
            let summary = Summary {
                log_size: self.size,
                log_mtime_ns,
                base_offset: self.base_offset,
                next_offset: self.next_offset,
                max_timestamp: self.max_timestamp,
                offset_of_max_timestamp: self.offset_of_max_timestamp,
                positions: self.positions.clone(),
                offset_index: self.offset_index.entries().to_vec(),
                time_index: self.time_index.entries().to_vec(),
            };
            sealed::write(&self.slot.path().with_extension("sealed"), &summary)?;
            self.summary_written = true;
        }
        Ok(())
    }

    /// Deletes the segment's files. Slices still in flight keep the data alive.
    pub fn delete(self, dir: &Path) -> Result<()> {
        let base = self.base_offset;
        drop(self);
        for ext in SEGMENT_FILES {
            let p = file_name(dir, base, ext);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(p, e)),
            }
        }
        Ok(())
    }
}

fn slice(map: &Arc<Mmap>, from: usize, to: usize) -> Bytes {
    Bytes::from_owner(MapSlice {
        map: map.clone(),
        from,
        to,
    })
}

fn read_at(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, pos)
}

/// Owner of a byte range of a segment map, for `Bytes::from_owner`.
struct MapSlice {
    map: Arc<Mmap>,
    from: usize,
    to: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.from..self.to]
    }
}

/// Validates a batch for append: one whole v2 batch with a good CRC.
pub fn check_batch(bytes: &[u8]) -> Result<BatchHeader> {
    if bytes.len() < BATCH_HEADER_LEN {
        return Err(StorageError::InvalidBatch(format!(
            "{} bytes is not a batch",
            bytes.len()
        )));
    }
    batch::validate(bytes)
}
