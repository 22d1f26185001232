//! A partition's log: ordered segments, the active one last.
//!
//! Offsets are assigned here (`append` gives a batch the log end offset as its
//! base offset). Every batch is also one Raft entry; entry indexes are dense,
//! start at 1 for a new log, and continue across segments, truncation and the
//! deletion of old segments (the first segment's first index is kept in the
//! `log-start` checkpoint).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{self, BatchHeader};
use crate::checkpoint::{self, CLEAN_SHUTDOWN, LOG_START, RECOVERY_POINT};
use crate::clock::Clock;
use crate::error::{Result, StorageError};
use crate::fs::{FileSystem, RealFs};
use crate::producers::ProducerState;
use crate::segment::{self, SEGMENT_FILES, Segment, SegmentOptions};
use crate::txn::{SegmentTxns, TxnState};

mod clean;
mod producers;
mod txns;
pub use clean::{CLEANER_CHECKPOINT, CleanedSegment, SWAP_MARKER, SealedSegment};

/// Per-log settings (Kafka topic configs in brackets).
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Roll when the active segment would exceed this [segment.bytes].
    pub segment_bytes: u64,
    /// Roll when the active segment is older than this [segment.ms].
    pub segment_ms: i64,
    /// Bytes of log between sparse index entries [index.interval.bytes].
    pub index_interval_bytes: usize,
    /// Size of each segment's index files [segment.index.bytes].
    pub max_index_bytes: usize,
    /// Flush once this many records are unflushed [flush.messages].
    pub flush_interval_messages: Option<u64>,
    /// Flush when the oldest unflushed append is this old [flush.ms].
    pub flush_interval_ms: Option<i64>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            max_index_bytes: 10 * 1024 * 1024,
            flush_interval_messages: None,
            flush_interval_ms: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct AppendOptions {
    /// Written into the batch's partition leader epoch (the Raft term).
    pub leader_epoch: i32,
    /// Stamp the batch with this LogAppendTime.
    pub log_append_time: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub log_append_time: Option<i64>,
    /// Raft index of the batch.
    pub entry_index: u64,
    /// Byte position of the batch in its segment.
    pub position: u64,
}

#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole batches, contiguous, from one segment.
    pub records: Bytes,
    /// The segment file `records` was read from.
    pub file: Option<crate::open_files::OpenFile>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: i64,
    /// Index of its first entry (see "Raft entries").
    pub first_entry: u64,
    pub next_offset: i64,
    pub size_bytes: u64,
    pub max_timestamp: i64,
    pub created_ms: i64,
}

/// What an fsync must cover: clones of the file handles with unsynced data and
/// the offset they reach. Syncing needs no access to the log, so appends go on
/// meanwhile; they are covered by the next sync point (group commit).
#[derive(Debug)]
pub struct SyncPoint {
    pub(crate) files: Vec<Arc<File>>,
    offset: i64,
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) dir: PathBuf,
}

impl SyncPoint {
    /// fsyncs and returns the offset that is now durable (exclusive).
    pub fn sync(self) -> Result<i64> {
        self.sync_files()
    }

    pub(crate) fn sync_files(&self) -> Result<i64> {
        for f in &self.files {
            self.fs.sync(f)?;
        }
        Ok(self.offset)
    }

    /// The offset everything below which is durable once this point is synced.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Whether there is anything to sync.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    clock: Arc<dyn Clock>,
    fs: Arc<dyn FileSystem>,
    segments: Vec<Segment>,
    log_start_offset: i64,
    durable_offset: i64,
    recovery_point: i64,
    records_since_flush: u64,
    oldest_unflushed_ms: Option<i64>,
    /// The clean-shutdown marker is on disk.
    closed: bool,
    /// Transactions at the log end (see [`crate::txn`]).
    txns: TxnState,
    /// The active segment's transactions: the state at its base and what
    /// its markers aborted (written to its `.txnindex` when it is sealed).
    active_txns: SegmentTxns,
    /// Idempotent producers at the log end (see [`crate::producers`]).
    producers: ProducerState,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("log_start_offset", &self.log_start_offset)
            .field("log_end_offset", &self.log_end_offset())
            .finish()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |e| StorageError::io(path, e)
}

impl Log {
    pub fn open(dir: &Path, config: LogConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::open_with_fs(dir, config, clock, Arc::new(RealFs))
    }

    /// Opens the log in `dir`, recovering it if it was not closed cleanly.
    pub fn open_with_fs(
        dir: &Path,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        fs: Arc<dyn FileSystem>,
    ) -> Result<Self> {
        // A new log needs no checkpoints (absent ones mean an empty log
        // starting at offset 0, entry 1) and nothing fsynced: if a crash
        // loses the folder, opening it again makes the same empty log.
        let fresh = !dir.exists();
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let clean = dir.join(CLEAN_SHUTDOWN).exists();
        let recovery_point = checkpoint::read(dir, RECOVERY_POINT)
            .and_then(|t| checkpoint::numbers(&t))
            .and_then(|n| n.first().copied())
            .unwrap_or(0);
        let start = checkpoint::read(dir, LOG_START).and_then(|t| checkpoint::numbers(&t));
        let (cp_start, cp_first_base, cp_first_entry) = match start.as_deref() {
            Some([a, b, c]) => (*a, *b, (*c).max(1) as u64),
            _ => (0, 0, 1),
        };

        clean::recover(dir)?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(base) = segment::parse_log_name(&name) {
                bases.push(base);
            } else if name.ends_with(".swap") || name.ends_with(".tmp") {
                // Left by an interrupted truncation or checkpoint: never valid.
                let _ = std::fs::remove_file(entry.path());
            }
        }
        bases.sort_unstable();
        // Finish a deletion of old segments that a crash interrupted.
        let (doomed, kept): (Vec<i64>, Vec<i64>) =
            bases.into_iter().partition(|&b| b < cp_first_base);
        for base in doomed {
            for ext in SEGMENT_FILES {
                let _ = std::fs::remove_file(segment::file_name(dir, base, ext));
            }
        }

        let now = clock.now_ms();
        let opts = SegmentOptions {
            index_interval: config.index_interval_bytes,
            max_index_bytes: config.max_index_bytes,
            map_hint: config.segment_bytes.min(1 << 30) as usize,
        };
        let mut segments: Vec<Segment> = Vec::with_capacity(kept.len());
        let mut next_entry = cp_first_entry;
        // The first segment recovery checks: its transaction index and
        // those after it are rebuilt.
        let mut checked = None;
        for (i, &base) in kept.iter().enumerate() {
            let may_hold_unflushed = kept.get(i + 1).is_none_or(|&next| next > recovery_point);
            let validate = !clean && may_hold_unflushed;
            if validate && checked.is_none() {
                checked = Some(segments.len());
            }
            let (seg, outcome) =
                Segment::open(dir, fs.as_ref(), base, next_entry, &opts, validate, now)?;
            next_entry += seg.entries();
            let cut = outcome.truncated_bytes > 0;
            if cut {
                tracing::warn!(dir = %dir.display(), segment = base, bytes = outcome.truncated_bytes,
                    "log recovery cut a torn or corrupt tail");
            }
            if !cut && seg.entries() == 0 && i > 0 && i + 1 < kept.len() {
                // An empty segment in the middle holds nothing; drop it.
                seg.delete(dir)?;
                continue;
            }
            segments.push(seg);
            if cut {
                // Everything after the damage is unreachable: offsets must be dense.
                for &later in &kept[i + 1..] {
                    for ext in SEGMENT_FILES {
                        let _ = std::fs::remove_file(segment::file_name(dir, later, ext));
                    }
                }
                break;
            }
        }
        if segments.is_empty() {
            segments.push(Segment::create(
                dir,
                fs.as_ref(),
                cp_start.max(cp_first_base).max(0),
                cp_first_entry,
                &opts,
                now,
            )?);
        }
        // All but the last take no more appends: mapped over their length
        // when next opened, index files written if a crash lost them.
        let sealed = segments.len() - 1;
        for seg in &mut segments[..sealed] {
            seg.seal()?;
        }
        let first_base = segments[0].base_offset;
        let mut log = Self {
            dir: dir.to_owned(),
            config,
            clock,
            fs,
            segments,
            log_start_offset: cp_start.max(first_base),
            durable_offset: 0,
            recovery_point,
            records_since_flush: 0,
            oldest_unflushed_ms: None,
            closed: false,
            txns: TxnState::default(),
            active_txns: SegmentTxns::default(),
            producers: ProducerState::default(),
        };
        if log.log_start_offset > log.log_end_offset() {
            log.log_start_offset = log.log_end_offset();
        }
        if fresh {
            log.active_txns.base_offset = log.active().base_offset;
            return Ok(log);
        }
        log.recover_txns(checked.unwrap_or(usize::MAX))?;
        log.recover_producers()?;
        if !clean && log.is_pristine() && start.is_none() && recovery_point == 0 {
            // An empty log closed (or cut short) before its first write.
            return Ok(log);
        }
        if clean {
            // Everything was fsynced at close and nothing changed since: the
            // marker stays until the first append (which removes it first),
            // so an idle partition costs no fsync to open.
            log.durable_offset = log.log_end_offset();
            log.closed = true;
        } else {
            // What survived recovery is on disk from now on.
            log.flush()?;
        }
        let first = &log.segments[0];
        let wanted = [
            log.log_start_offset,
            first.base_offset,
            first.first_entry as i64,
        ];
        // An absent checkpoint means a log starting at offset 0, entry 1.
        if start.as_deref().unwrap_or(&[0, 0, 1]) != wanted {
            log.write_log_start()?;
        }
        if !clean {
            checkpoint::remove(dir, CLEAN_SHUTDOWN)?;
        }
        Ok(log)
    }

    fn opts(&self) -> SegmentOptions {
        SegmentOptions {
            index_interval: self.config.index_interval_bytes,
            max_index_bytes: self.config.max_index_bytes,
            map_hint: self.config.segment_bytes.min(1 << 30) as usize,
        }
    }

    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Applies a changed configuration (a topic config altered live). Roll
    /// and flush settings take effect at the next append; existing segments
    /// and their indexes keep the sizes they were created with.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    pub fn durable_offset(&self) -> i64 {
        self.durable_offset
    }

    /// Appends one v2 batch; see [`AppendOptions`].
    pub fn append(&mut self, batch: &[u8], opts: &AppendOptions) -> Result<AppendInfo> {
        let stamped;
        let batch = match opts.log_append_time {
            Some(t) => {
                batch::validate(batch)?;
                stamped = batch::with_log_append_time(batch, t);
                &stamped[..]
            }
            None => batch,
        };
        let header = segment::check_batch(batch)?;
        if self.closed {
            checkpoint::remove(&self.dir, CLEAN_SHUTDOWN)?;
            self.closed = false;
        }
        self.maybe_roll(batch.len() as u64)?;
        let base = self.log_end_offset();
        let prefix = batch::patched_prefix(batch, base, opts.leader_epoch);
        let fs = self.fs.clone();
        let seg = self.segments.last_mut().expect("active segment");
        let position = seg.append(fs.as_ref(), batch, &header, prefix)?;
        let entry_index = seg.first_entry + seg.entries() - 1;
        self.observe_txn(&header, batch, base);
        self.producers.observe_header(&header, base);
        self.records_since_flush += header.last_offset_delta as u64 + 1;
        self.oldest_unflushed_ms
            .get_or_insert_with(|| self.clock.now_ms());
        Ok(AppendInfo {
            first_offset: base,
            last_offset: base + header.last_offset_delta as i64,
            max_timestamp: header.max_timestamp,
            log_append_time: opts.log_append_time,
            entry_index,
            position,
        })
    }

    fn maybe_roll(&mut self, incoming: u64) -> Result<()> {
        let now = self.clock.now_ms();
        let a = self.active();
        let full = a.size() > 0 && a.size() + incoming > self.config.segment_bytes;
        let old = a.size() > 0 && now - a.created_ms >= self.config.segment_ms;
        if full || old || a.indexes_full() {
            self.roll()?;
        }
        Ok(())
    }

    /// Starts a new active segment at the log end offset.
    pub fn roll(&mut self) -> Result<()> {
        let base = self.log_end_offset();
        let a = self.active();
        // An active segment with no offset yet (empty, or holding only
        // hidden batches) stays: the new one would have its base offset,
        // and its file name.
        if a.base_offset == base {
            return Ok(());
        }
        let first_entry = a.first_entry + a.entries();
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
            .seal()?;
        let seg = Segment::create(
            &self.dir,
            self.fs.as_ref(),
            base,
            first_entry,
            &self.opts(),
            self.clock.now_ms(),
        )?;
        self.segments.push(seg);
        self.roll_txns(base, base)?;
        self.snapshot_producers();
        self.prune_snapshots()?;
        tracing::debug!(dir = %self.dir.display(), base, "rolled segment");
        Ok(())
    }

    fn segment_for(&self, offset: i64) -> usize {
        match self
            .segments
            .binary_search_by_key(&offset, |s| s.base_offset)
        {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }

    fn check_range(&self, offset: i64) -> Result<()> {
        if offset < self.log_start_offset || offset > self.log_end_offset() {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: self.log_end_offset(),
            });
        }
        Ok(())
    }

    /// Whole batches from the one holding `from_offset`, up to `max_bytes` but at
    /// least one batch when one exists.
    pub fn read(&self, from_offset: i64, max_bytes: usize) -> Result<ReadResult> {
        self.check_range(from_offset)?;
        let (mut records, mut file) = (Bytes::new(), None);
        let mut i = self.segment_for(from_offset);
        while i < self.segments.len() {
            // A segment may end before `from_offset` (gaps left by compaction);
            // then the next segment's first batch is the answer.
            let seg = &self.segments[i];
            let from = from_offset.max(seg.base_offset);
            (records, file) = seg.read(from, max_bytes)?;
            if !records.is_empty() {
                break;
            }
            i += 1;
        }
        Ok(ReadResult {
            records,
            file,
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset(),
        })
    }

    /// The first batch whose max timestamp is at least `timestamp`.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, Bytes)>> {
        for seg in &self.segments {
            if let Some((base, batch)) = seg.find_by_timestamp(timestamp)? {
                let h = BatchHeader::parse(&batch)?;
                if h.last_offset() >= self.log_start_offset {
                    return Ok(Some((base, batch)));
                }
            }
        }
        Ok(None)
    }

    /// (largest timestamp, last offset of the batch holding it).
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.segments
            .iter()
            .filter(|s| s.entries() > 0 && s.next_offset() > self.log_start_offset)
            .map(|s| (s.max_timestamp(), s.offset_of_max_timestamp()))
            .fold(None, |best: Option<(i64, i64)>, cur| match best {
                Some(b) if b.0 >= cur.0 => Some(b),
                _ => Some(cur),
            })
    }

    /// Removes every batch whose base offset is `offset` or above. `offset` must be
    /// the log end offset or the base offset of a batch.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        if offset == self.log_end_offset() && !self.ends_hidden_at(offset)? {
            return Ok(());
        }
        if offset < self.log_start_offset || offset > self.log_end_offset() {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: self.log_end_offset(),
            });
        }
        let (i, entry) = self
            .first_entry_at(offset)?
            .ok_or(StorageError::NotABatchBoundary(offset))?;
        self.truncate_at(i, entry, offset)
    }

    /// Whether the log's last batch is a hidden one at `offset`.
    fn ends_hidden_at(&self, offset: i64) -> Result<bool> {
        if self.last_entry_index() < self.first_entry_index() {
            return Ok(false);
        }
        let (s, e) = self.locate_entry(self.last_entry_index())?;
        let h = self.segments[s].entry(e)?.0;
        Ok(h.is_hidden() && h.base_offset == offset)
    }

    /// (segment, entry in it) of the first batch whose base offset is
    /// `offset` (a hidden batch before a data batch at the same offset),
    /// looking back into the segment before when `offset` is where the
    /// next one starts (a hidden batch may close a segment).
    fn first_entry_at(&self, offset: i64) -> Result<Option<(usize, usize)>> {
        let i = self.segment_for(offset);
        if i > 0
            && self.segments[i - 1].next_offset() == offset
            && let Some(e) = self.segments[i - 1].entry_of(offset)?
        {
            return Ok(Some((i - 1, e)));
        }
        Ok(self.segments[i].entry_of(offset)?.map(|e| (i, e)))
    }

    /// Removes entry `entry` of segment `i` (whose base offset is
    /// `offset`) and everything after it.
    fn truncate_at(&mut self, i: usize, entry: usize, offset: i64) -> Result<()> {
        // Snapshots above the cut go first: one that outlived its data
        // would describe batches a later append replaces.
        self.remove_snapshots(offset, false)?;
        while self.segments.len() > i + 1 {
            let s = self.segments.pop().expect("checked length");
            s.delete(&self.dir)?;
        }
        if entry == 0 && i > 0 {
            let s = self.segments.pop().expect("segment i exists");
            s.delete(&self.dir)?;
        } else {
            self.segments[i].truncate_entries(entry)?;
        }
        self.durable_offset = self.durable_offset.min(offset);
        if self.recovery_point > offset {
            self.recovery_point = offset;
            self.write_recovery_point()?;
        }
        self.replay_active_txns()?;
        self.recover_producers()
    }

    /// Deletes whole segments that end at or below `offset`, never the active one,
    /// and moves the log start offset up to the first kept segment.
    pub fn delete_segments_below(&mut self, offset: i64) -> Result<usize> {
        let doomed = self.segments[..self.segments.len() - 1]
            .iter()
            .take_while(|s| s.next_offset() <= offset)
            .count();
        if doomed == 0 {
            return Ok(0);
        }
        let new_first = &self.segments[doomed];
        self.log_start_offset = self.log_start_offset.max(new_first.base_offset);
        // Checkpoint first: a crash after it finishes the deletion at open.
        checkpoint::write_atomic(
            &self.dir,
            LOG_START,
            &format!(
                "{} {} {}\n",
                self.log_start_offset, new_first.base_offset, new_first.first_entry
            ),
        )?;
        for s in self.segments.drain(..doomed) {
            s.delete(&self.dir)?;
        }
        // The state stays (Kafka keeps producers past retention); only the
        // snapshots of deleted data go.
        self.remove_snapshots(self.segments[0].base_offset, true)?;
        Ok(doomed)
    }

    /// Replaces the whole log with an empty one that starts at offset
    /// `base_offset` with entry index `first_entry`: a replica installing its
    /// leader's snapshot drops everything it had and continues where the
    /// leader's log begins.
    pub fn reset(&mut self, base_offset: i64, first_entry: u64) -> Result<()> {
        let first_entry = first_entry.max(1);
        self.remove_snapshots(i64::MIN, false)?;
        // Segments at or above the new base go first (newest first), then
        // the checkpoint, then the rest: a crash anywhere leaves either a
        // prefix of the old log or a checkpoint that makes open delete what
        // is left of it.
        while self
            .segments
            .last()
            .is_some_and(|s| s.base_offset >= base_offset)
        {
            let s = self.segments.pop().expect("checked");
            s.delete(&self.dir)?;
        }
        checkpoint::write_atomic(
            &self.dir,
            LOG_START,
            &format!("{base_offset} {base_offset} {first_entry}\n"),
        )?;
        for s in self.segments.drain(..) {
            s.delete(&self.dir)?;
        }
        let seg = Segment::create(
            &self.dir,
            self.fs.as_ref(),
            base_offset,
            first_entry,
            &self.opts(),
            self.clock.now_ms(),
        )?;
        self.segments.push(seg);
        self.txns = TxnState::default();
        self.active_txns = SegmentTxns {
            base_offset,
            ..SegmentTxns::default()
        };
        self.producers = ProducerState::default();
        self.log_start_offset = base_offset;
        self.durable_offset = base_offset;
        self.recovery_point = base_offset;
        self.write_recovery_point()?;
        checkpoint::sync_dir(&self.dir)
    }

    /// Moves the log start offset (DeleteRecords); may point inside a segment.
    pub fn set_log_start_offset(&mut self, offset: i64) -> Result<()> {
        if self.raise_log_start_offset(offset)? {
            self.delete_segments_below(offset)?;
        }
        Ok(())
    }

    /// Moves the log start offset up and checkpoints it, deleting nothing
    /// (a replicated log deletes whole segments with its snapshot point).
    /// Returns whether it moved.
    pub fn raise_log_start_offset(&mut self, offset: i64) -> Result<bool> {
        if offset > self.log_end_offset() {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: self.log_end_offset(),
            });
        }
        if offset <= self.log_start_offset {
            return Ok(false);
        }
        self.log_start_offset = offset;
        self.write_log_start()?;
        Ok(true)
    }

    fn write_log_start(&self) -> Result<()> {
        let first = &self.segments[0];
        checkpoint::write_atomic(
            &self.dir,
            LOG_START,
            &format!(
                "{} {} {}\n",
                self.log_start_offset, first.base_offset, first.first_entry
            ),
        )
    }

    fn write_recovery_point(&self) -> Result<()> {
        checkpoint::write_atomic(
            &self.dir,
            RECOVERY_POINT,
            &format!("{}\n", self.recovery_point),
        )
    }

    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments
            .iter()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset,
                first_entry: s.first_entry,
                next_offset: s.next_offset(),
                size_bytes: s.size(),
                max_timestamp: s.max_timestamp(),
                created_ms: s.created_ms,
            })
            .collect()
    }

    /// What the next fsync must cover.
    pub fn sync_point(&self) -> Result<SyncPoint> {
        let files = self
            .segments
            .iter()
            .filter(|s| s.next_offset() > self.durable_offset || s.size() == 0)
            .map(|s| s.sync_handle())
            .collect::<Result<Vec<_>>>()?;
        Ok(SyncPoint {
            files,
            offset: self.log_end_offset(),
            fs: self.fs.clone(),
            dir: self.dir.clone(),
        })
    }

    /// Records that everything below `offset` is on disk.
    pub fn mark_durable(&mut self, offset: i64) {
        let offset = offset.min(self.log_end_offset());
        if offset > self.durable_offset {
            self.durable_offset = offset;
            if offset >= self.log_end_offset() {
                self.records_since_flush = 0;
                self.oldest_unflushed_ms = None;
            }
            // A recovery point at a segment boundary saves rescanning whole
            // segments after a crash; inside the active segment it buys little.
            let boundary = self
                .segments
                .iter()
                .rev()
                .map(|s| s.base_offset)
                .find(|&b| b <= offset)
                .unwrap_or(0);
            if boundary > self.recovery_point {
                self.recovery_point = boundary;
                if let Err(e) = self.write_recovery_point() {
                    tracing::warn!(error = %e, "could not write the recovery point");
                }
            }
        }
    }

    /// fsyncs everything appended so far.
    pub fn flush(&mut self) -> Result<()> {
        let point = self.sync_point()?;
        let offset = point.sync()?;
        self.mark_durable(offset);
        Ok(())
    }

    /// Whether flush.messages or flush.ms asks for a flush now.
    pub fn flush_due(&self) -> bool {
        let by_count = self
            .config
            .flush_interval_messages
            .is_some_and(|n| self.records_since_flush >= n);
        by_count
            || self
                .flush_deadline_ms()
                .is_some_and(|due| self.clock.now_ms() >= due)
    }

    /// When flush.ms will ask for a flush of what is unflushed now (None:
    /// nothing unflushed, or no flush.ms).
    pub fn flush_deadline_ms(&self) -> Option<i64> {
        match (self.config.flush_interval_ms, self.oldest_unflushed_ms) {
            (Some(ms), Some(t)) => Some(t.saturating_add(ms)),
            _ => None,
        }
    }

    /// Flushes if flush.messages or flush.ms says so; true if it did.
    pub fn maybe_flush(&mut self) -> Result<bool> {
        if self.flush_due() {
            self.flush()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Flushes and leaves the clean-shutdown marker. The log stays usable: an
    /// append after `close` removes the marker again before writing.
    pub fn close(&mut self) -> Result<()> {
        for s in &mut self.segments {
            s.write_indexes()?;
        }
        // Unchanged since it was opened or closed, or never written to:
        // nothing to make durable (an empty log needs no recovery).
        if self.closed || self.is_pristine() {
            return Ok(());
        }
        self.flush()?;
        // The next open then reads no batch header for producer state.
        self.snapshot_producers();
        // The data is durable; the empty marker needs only its directory
        // entry synced. The recovery point is left as it is: the marker
        // makes the next open skip recovery, and after that a lower
        // recovery point only means rescanning more after a crash.
        std::fs::File::create(self.dir.join(CLEAN_SHUTDOWN))
            .map_err(io(&self.dir.join(CLEAN_SHUTDOWN)))?;
        checkpoint::sync_dir(&self.dir)?;
        self.closed = true;
        Ok(())
    }

    /// Never written to: one empty segment at offset 0 (what a new log is).
    fn is_pristine(&self) -> bool {
        self.segments.len() == 1
            && self.segments[0].base_offset == 0
            && self.segments[0].size() == 0
            && self.log_start_offset == 0
    }

    /// Calls `f` with the header of every batch that ends at or after
    /// `from_offset`, in order, reading headers with positional reads rather
    /// than through the segment maps (startup state rebuilds use it, so a
    /// restart leaves the log's pages evictable).
    pub fn for_each_header(&self, from_offset: i64, mut f: impl FnMut(&BatchHeader)) -> Result<()> {
        for seg in &self.segments {
            if seg.next_offset() <= from_offset {
                continue;
            }
            for i in 0..seg.entries() as usize {
                let h = seg.read_header(i)?;
                if h.next_offset() > from_offset {
                    f(&h);
                }
            }
        }
        Ok(())
    }

    // ---- Raft entries: one batch each, dense indexes ----

    pub fn first_entry_index(&self) -> u64 {
        self.segments[0].first_entry
    }

    /// Index of the last entry (first - 1 when the log is empty).
    pub fn last_entry_index(&self) -> u64 {
        let a = self.active();
        a.first_entry + a.entries() - 1
    }

    fn locate_entry(&self, index: u64) -> Result<(usize, usize)> {
        let (first, last) = (self.first_entry_index(), self.last_entry_index());
        if index < first || index > last {
            return Err(StorageError::EntryOutOfRange { index, first, last });
        }
        let i = match self
            .segments
            .binary_search_by_key(&index, |s| s.first_entry)
        {
            Ok(i) => {
                // Empty segments share a first index with their successor.
                let mut i = i;
                while self.segments[i].entries() == 0 {
                    i += 1;
                }
                i
            }
            Err(i) => i - 1,
        };
        Ok((i, (index - self.segments[i].first_entry) as usize))
    }

    pub fn entry(&self, index: u64) -> Result<Bytes> {
        let (s, e) = self.locate_entry(index)?;
        Ok(self.segments[s].entry(e)?.1)
    }

    /// The term (partition leader epoch) the entry was written in.
    pub fn entry_term(&self, index: u64) -> Result<i32> {
        let (s, e) = self.locate_entry(index)?;
        Ok(self.segments[s].entry(e)?.0.partition_leader_epoch)
    }

    /// Kafka's end offset for leader epoch `epoch` (OffsetForLeaderEpoch):
    /// `Some((the largest epoch ≤ epoch written, or -1 if none, the first
    /// offset written in a larger epoch))`, or `None` when no batch has a
    /// larger epoch. Epochs never decrease along the log, so this is a
    /// binary search over the batches' headers.
    pub fn epoch_end(&self, epoch: i32) -> Result<Option<(i32, i64)>> {
        let (first, end) = (self.first_entry_index(), self.last_entry_index() + 1);
        let (mut lo, mut hi) = (first, end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry_term(mid)? > epoch {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        if lo == end {
            return Ok(None);
        }
        let (s, e) = self.locate_entry(lo)?;
        let start = self.segments[s].entry(e)?.0.base_offset;
        let floor = if lo > first {
            self.entry_term(lo - 1)?
        } else {
            -1
        };
        Ok(Some((floor, start)))
    }

    /// The epoch of the last batch written, -1 for an empty log.
    pub fn latest_epoch(&self) -> Result<i32> {
        if self.last_entry_index() + 1 == self.first_entry_index() {
            return Ok(-1);
        }
        self.entry_term(self.last_entry_index())
    }

    /// Raft index of the first batch whose base offset is `offset` (a
    /// hidden batch, if one starts there).
    pub fn entry_for_offset(&self, offset: i64) -> Result<Option<u64>> {
        Ok(self
            .first_entry_at(offset)?
            .map(|(i, e)| self.segments[i].first_entry + e as u64))
    }

    /// Removes entry `index` and everything after it.
    pub fn truncate_to_entry(&mut self, index: u64) -> Result<()> {
        if index > self.last_entry_index() {
            return Ok(());
        }
        let (s, e) = self.locate_entry(index)?;
        let offset = self.segments[s].entry(e)?.0.base_offset;
        // By entry, not by offset: a data batch shares its base offset with
        // a hidden batch just before it, which stays.
        self.truncate_at(s, e, offset)
    }
}
