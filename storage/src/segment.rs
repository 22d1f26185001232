//! One segment: `{base_offset:020}.log` plus its `.index` and `.timeindex`, and an
//! in-memory dense map of batch positions (one entry per batch, i.e. per Raft
//! entry).
//!
//! Reads hand out `Bytes` slices of a read-only memory map of the `.log` file, so
//! record data is never copied on its way to a fetch response. The map may be
//! longer than the file (pages past the end are never touched) and is replaced by
//! a longer one when the file outgrows it; old slices keep the old map alive.
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
use memmap2::{Mmap, MmapOptions};

use crate::batch::{self, BATCH_HEADER_LEN, BatchHeader};
use crate::error::{Result, StorageError};
use crate::fs::FileSystem;
use crate::index::{OffsetIndex, TimeIndex};

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
    path: PathBuf,
    file: File,
    size: u64,
    map: Arc<Mmap>,
    map_len: usize,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
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

fn map_file(file: &File, path: &Path, len: usize) -> Result<Arc<Mmap>> {
    // SAFETY: Sluice's own process is the only writer of segment files, and
    // writes only append past what readers can see; truncation never happens
    // under a shared map (see the module comment). Pages past the end of the
    // file are mapped but never read.
    let map = unsafe { MmapOptions::new().len(len.max(1)).map(file) }
        .map_err(|e| StorageError::io(path, e))?;
    Ok(Arc::new(map))
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
        Self::from_file(dir, path, file, base_offset, first_entry, opts, now_ms)
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
        let map = map_file(&file, &path, map_len)?;
        Ok(Self {
            base_offset,
            first_entry,
            offset_index: OffsetIndex::create(
                &file_name(dir, base_offset, "index"),
                base_offset,
                opts.max_index_bytes,
            )?,
            time_index: TimeIndex::create(
                &file_name(dir, base_offset, "timeindex"),
                base_offset,
                opts.max_index_bytes,
            )?,
            path,
            file,
            size,
            map,
            map_len,
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
        let size = seg.size;
        let mut pos = 0u64;
        let mut expected = base_offset;
        // The walk reads headers (and, to validate, whole batches) with
        // positional reads, not through the map: pages it pulls in then stay
        // unmapped, so the kernel may drop them like any cached file data
        // (a memory-mapped page is pinned while the process maps it).
        let mut buf = Vec::new();
        while pos < size {
            let want = BATCH_HEADER_LEN.min((size - pos) as usize);
            let mut head = [0u8; BATCH_HEADER_LEN];
            // A failed read is the disk's error, not a torn batch: the open
            // fails rather than cut good data.
            read_at(&seg.file, &mut head[..want], pos)
                .map_err(|e| StorageError::io(&seg.path, e))?;
            let header = match BatchHeader::parse(&head[..want]) {
                Ok(h) if h.total_size() as u64 <= size - pos && h.base_offset >= expected => h,
                _ => break,
            };
            if validate {
                buf.resize(header.total_size(), 0);
                read_at(&seg.file, &mut buf, pos).map_err(|e| StorageError::io(&seg.path, e))?;
                if header.validate_crc(&buf).is_err() {
                    break;
                }
            }
            seg.index_batch(&header, pos as u32);
            expected = header.next_offset();
            pos += header.total_size() as u64;
        }
        let truncated_bytes = size - pos;
        if truncated_bytes > 0 {
            seg.cut_file(pos)?;
        }
        Ok((seg, ScanOutcome { truncated_bytes }))
    }

    /// Header of entry `i`, read with a positional read (see `open`): for
    /// rebuilding state at startup without mapping the log.
    pub fn read_header(&self, i: usize) -> Result<BatchHeader> {
        let mut head = [0u8; BATCH_HEADER_LEN];
        read_at(&self.file, &mut head, self.positions[i] as u64)
            .map_err(|e| StorageError::io(&self.path, e))?;
        BatchHeader::parse(&head)
    }

    /// Records a batch at `pos` in the dense map and the sparse indexes.
    fn index_batch(&mut self, h: &BatchHeader, pos: u32) {
        if self.bytes_since_index > self.index_interval {
            // Full indexes are caught by `is_full` before the next append.
            self.offset_index.append(h.base_offset, pos);
            self.time_index
                .maybe_append(self.max_timestamp.max(h.max_timestamp), h.base_offset);
            self.bytes_since_index = 0;
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
    pub fn all_bytes(&self) -> Bytes {
        self.slice(0, self.size as usize)
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
        &self.path
    }
    pub fn file(&self) -> &File {
        &self.file
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
        let pos = self.size;
        if pos + batch.len() as u64 > u32::MAX as u64 {
            return Err(StorageError::InvalidBatch(
                "segment would exceed 4 GiB".into(),
            ));
        }
        let io = |e| StorageError::io(&self.path, e);
        if batch.len() < COALESCE_BELOW {
            self.scratch.clear();
            self.scratch.extend_from_slice(&prefix);
            self.scratch.extend_from_slice(&batch[16..]);
            fs.write_at(&self.file, &self.scratch, pos).map_err(io)?;
        } else {
            fs.write_at(&self.file, &prefix, pos).map_err(io)?;
            fs.write_at(&self.file, &batch[16..], pos + 16)
                .map_err(io)?;
        }
        let mut h = *header;
        h.base_offset = i64::from_be_bytes(prefix[..8].try_into().expect("8"));
        self.index_batch(&h, pos as u32);
        if self.size as usize > self.map_len {
            self.map_len = (self.size as usize).max(self.map_len * 2);
            self.map = map_file(&self.file, &self.path, self.map_len)?;
        }
        Ok(pos)
    }

    /// Header of the batch at `pos`.
    fn header_at(&self, pos: usize) -> Result<BatchHeader> {
        BatchHeader::parse(&self.map[pos..self.size as usize])
    }

    fn slice(&self, from: usize, to: usize) -> Bytes {
        Bytes::from_owner(MapSlice {
            map: self.map.clone(),
            from,
            to,
        })
    }

    /// Position of the batch holding `offset`, if this segment has one.
    pub fn find(&self, offset: i64) -> Result<Option<usize>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let (_, start) = self.offset_index.lookup(offset);
        let mut pos = start as usize;
        while pos < self.size as usize {
            let h = self.header_at(pos)?;
            if h.last_offset() >= offset {
                return Ok(Some(pos));
            }
            pos += h.total_size();
        }
        Ok(None)
    }

    /// Whole batches from `offset`: at least one, then more while under `max_bytes`.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        let Some(start) = self.find(offset)? else {
            return Ok(Bytes::new());
        };
        let mut end = start;
        while end < self.size as usize {
            let h = self.header_at(end)?;
            if end > start && end - start + h.total_size() > max_bytes {
                break;
            }
            end += h.total_size();
        }
        Ok(self.slice(start, end))
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
        let Some(mut pos) = self.find(from)? else {
            return Ok(None);
        };
        while pos < self.size as usize {
            let h = self.header_at(pos)?;
            if h.max_timestamp >= timestamp {
                return Ok(Some((h.base_offset, self.slice(pos, pos + h.total_size()))));
            }
            pos += h.total_size();
        }
        Ok(None)
    }

    /// The batch that is this segment's `i`-th entry.
    pub fn entry(&self, i: usize) -> Result<(BatchHeader, Bytes)> {
        let pos = self.positions[i] as usize;
        let h = self.header_at(pos)?;
        Ok((h, self.slice(pos, pos + h.total_size())))
    }

    /// Index in the dense map of the batch starting at `offset`.
    pub fn entry_of(&self, offset: i64) -> Result<Option<usize>> {
        match self.find(offset)? {
            Some(pos) if self.header_at(pos)?.base_offset == offset => {
                Ok(self.positions.binary_search(&(pos as u32)).ok())
            }
            _ => Ok(None),
        }
    }

    /// Removes the batches from the `entry`-th on.
    pub fn truncate_entries(&mut self, entry: usize) -> Result<()> {
        if entry >= self.positions.len() {
            return Ok(());
        }
        let pos = self.positions[entry] as u64;
        let offset = self.header_at(pos as usize)?.base_offset;
        self.positions.truncate(entry);
        self.offset_index.truncate_to(offset);
        self.time_index.truncate_to(offset);
        self.cut_file(pos)?;
        // Recompute what depended on the removed batches.
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        self.bytes_since_index = 0;
        for &p in &self.positions {
            let h = BatchHeader::parse(&self.map[p as usize..pos as usize])?;
            if h.max_timestamp > self.max_timestamp {
                self.max_timestamp = h.max_timestamp;
                self.offset_of_max_timestamp = h.last_offset();
            }
            self.next_offset = h.next_offset();
            self.bytes_since_index = 0;
        }
        Ok(())
    }

    /// Shrinks the file to `len` without ever cutting pages under a live slice.
    fn cut_file(&mut self, len: u64) -> Result<()> {
        let io = |p: &Path| {
            let p = p.to_owned();
            move |e| StorageError::io(p, e)
        };
        if Arc::strong_count(&self.map) == 1 {
            self.file.set_len(len).map_err(io(&self.path))?;
        } else {
            let swap = self.path.with_extension("log.swap");
            let mut out = File::create(&swap).map_err(io(&swap))?;
            std::io::Write::write_all(&mut out, &self.map[..len as usize]).map_err(io(&swap))?;
            out.sync_all().map_err(io(&swap))?;
            std::fs::rename(&swap, &self.path).map_err(io(&self.path))?;
            self.file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.path)
                .map_err(io(&self.path))?;
        }
        self.file.sync_all().map_err(io(&self.path))?;
        self.size = len;
        self.map = map_file(&self.file, &self.path, self.map_len.max(len as usize))?;
        Ok(())
    }

    /// Trims the index files to their used size (on close).
    pub fn close(self) -> Result<()> {
        self.offset_index.trim()?;
        self.time_index.trim()
    }

    /// Deletes the segment's files. Slices still in flight keep the data alive.
    pub fn delete(self, dir: &Path) -> Result<()> {
        let base = self.base_offset;
        drop(self);
        for ext in ["log", "index", "timeindex"] {
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
