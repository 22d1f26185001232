//! The storage side of compaction: handing sealed segments to a cleaner and
//! swapping its output in, crash-safely.
//!
//! The cleaner (in the broker, which understands records) rewrites batches:
//! it keeps every batch with its base offset, last offset delta, leader epoch
//! and producer fields, and only drops records from inside it. A batch left
//! with no records stays as an empty batch. So a cleaned segment holds exactly
//! as many batches as the segments it replaces, with the same offsets: the
//! dense Raft entry numbering (entry i = i-th batch) and every offset a
//! consumer holds stay valid, and the swap never renumbers anything.
//!
//! Swap protocol (each step durable before the next):
//! 1. every replacement is written to `{base:020}.cleaned` and fsynced, with
//!    its transaction index in `{base:020}.txnindex.cleaned`;
//! 2. the `cleaner-swap` marker names each replacement and the segments it
//!    replaces, and the new first dirty offset;
//! 3. each `.cleaned` file is renamed over the `.log` (and `.txnindex`) of its first original
//!    (an atomic replace), the other originals' files are deleted, the
//!    `cleaner-checkpoint` (first dirty offset) is written;
//! 4. the marker is removed.
//!
//! At open, a marker means step 3 may be half done: it is replayed (it is
//! idempotent). `.cleaned` files without a marker are from a pass that never
//! reached step 2 and are deleted. Either way every key keeps exactly one
//! latest value: the old segments or the new ones are in place, never both
//! and never neither.

use std::path::Path;

use bytes::Bytes;

use super::{Log, SegmentInfo};
use crate::batch::BatchHeader;
use crate::checkpoint;
use crate::error::{Result, StorageError};
use crate::segment::{self, Segment};

pub const SWAP_MARKER: &str = "cleaner-swap";
pub const CLEANER_CHECKPOINT: &str = "cleaner-checkpoint";
/// The transaction index of a cleaned segment, until the swap: the state at
/// its first original's base and the aborted transactions of all of them
/// (their entries stay true when the cleaner drops the aborted records).
const TXN_CLEANED: &str = "txnindex.cleaned";

/// A sealed segment's bytes, read without holding the log.
#[derive(Clone)]
pub struct SealedSegment {
    pub info: SegmentInfo,
    pub bytes: Bytes,
}

/// The cleaned form of consecutive sealed segments: their batches, rewritten,
/// in order, as chunks of whole batches (so batches a cleaner kept unchanged
/// can stay slices of the old segments' maps instead of copies).
#[derive(Debug, Clone)]
pub struct CleanedSegment {
    /// Base offsets of the segments replaced (consecutive, ascending).
    pub replaces: Vec<i64>,
    pub chunks: Vec<Bytes>,
}

impl CleanedSegment {
    /// Bytes of the cleaned segment.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cleaned segment as one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        self.chunks.concat()
    }
}

fn cleaned_name(dir: &Path, base: i64) -> std::path::PathBuf {
    segment::file_name(dir, base, "cleaned")
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

/// Parses the marker: one line per replacement (`base other other…`, base
/// first) and a last line `dirty N`.
fn parse_marker(text: &str) -> Option<(Vec<Vec<i64>>, i64)> {
    let mut groups = Vec::new();
    let mut dirty = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("dirty ") {
            dirty = Some(n.trim().parse().ok()?);
        } else if !line.trim().is_empty() {
            groups.push(checkpoint::numbers(line)?);
        }
    }
    Some((groups, dirty?))
}

/// Step 3 of the protocol, safe to run again after a crash.
fn apply_swap(dir: &Path, groups: &[Vec<i64>], first_dirty: i64) -> Result<()> {
    for group in groups {
        let Some(&base) = group.first() else { continue };
        let cleaned = cleaned_name(dir, base);
        if cleaned.exists() {
            // The summary describes the file being replaced.
            crate::sealed::remove(&segment::file_name(dir, base, "sealed"))?;
            let log = segment::file_name(dir, base, "log");
            std::fs::rename(&cleaned, &log).map_err(|e| StorageError::io(&log, e))?;
        }
        let txns = segment::file_name(dir, base, TXN_CLEANED);
        if txns.exists() {
            let index = segment::file_name(dir, base, "txnindex");
            std::fs::rename(&txns, &index).map_err(|e| StorageError::io(&index, e))?;
        }
        for &other in &group[1..] {
            for ext in segment::SEGMENT_FILES {
                remove_if_present(&segment::file_name(dir, other, ext))?;
            }
        }
    }
    checkpoint::sync_dir(dir)?;
    checkpoint::write_atomic(dir, CLEANER_CHECKPOINT, &format!("{first_dirty}\n"))
}

/// Finishes or discards an interrupted swap; called by `Log::open` before it
/// lists the segments.
pub(super) fn recover(dir: &Path) -> Result<()> {
    if let Some(text) = checkpoint::read(dir, SWAP_MARKER) {
        match parse_marker(&text) {
            Some((groups, dirty)) => {
                tracing::warn!(dir = %dir.display(), "finishing an interrupted cleaner swap");
                apply_swap(dir, &groups, dirty)?;
            }
            // A marker is written atomically, so a damaged one was never
            // complete: the originals are all still in place.
            None => tracing::warn!(dir = %dir.display(), "ignoring a damaged cleaner-swap marker"),
        }
        checkpoint::remove(dir, SWAP_MARKER)?;
    }
    for entry in std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
        let entry = entry.map_err(|e| StorageError::io(dir, e))?;
        if entry.file_name().to_string_lossy().ends_with(".cleaned") {
            remove_if_present(&entry.path())?;
        }
    }
    Ok(())
}

/// Checks that `chunks` are a faithful rewrite of `originals`: the same
/// number of batches with the same base offsets and offset ranges, each whole
/// and with a good CRC.
fn check_rewrite(originals: &[&Segment], chunks: &[Bytes]) -> Result<()> {
    let mut want = Vec::new();
    for seg in originals {
        for i in 0..seg.entries() as usize {
            let (h, _) = seg.entry(i)?;
            want.push((h.base_offset, h.last_offset_delta));
        }
    }
    let mut want = want.into_iter();
    for chunk in chunks {
        let mut pos = 0usize;
        while pos < chunk.len() {
            let rest = &chunk[pos..];
            let got = BatchHeader::parse(rest)?;
            if got.total_size() > rest.len() {
                return Err(StorageError::InvalidBatch(
                    "a cleaned batch runs past the end of its chunk".into(),
                ));
            }
            got.validate_crc(&rest[..got.total_size()])?;
            match want.next() {
                Some(w) if w == (got.base_offset, got.last_offset_delta) => {}
                Some((base, _)) => {
                    return Err(StorageError::InvalidBatch(format!(
                        "cleaned batch at {} does not match the original at {base}",
                        got.base_offset
                    )));
                }
                None => {
                    return Err(StorageError::InvalidBatch(format!(
                        "cleaned batch at {} has no original",
                        got.base_offset
                    )));
                }
            }
            pos += got.total_size();
        }
    }
    if let Some((base, _)) = want.next() {
        return Err(StorageError::InvalidBatch(format!(
            "the batch at {base} is missing from the cleaned segment"
        )));
    }
    Ok(())
}

impl Log {
    /// Every segment but the active one, as shared slices of their memory maps:
    /// a cleaner reads them without holding the log.
    pub fn sealed_segments(&self) -> Result<Vec<SealedSegment>> {
        let n = self.segments.len() - 1;
        self.segments[..n]
            .iter()
            .map(|s| {
                Ok(SealedSegment {
                    info: SegmentInfo {
                        base_offset: s.base_offset,
                        first_entry: s.first_entry,
                        next_offset: s.next_offset(),
                        size_bytes: s.size(),
                        max_timestamp: s.max_timestamp(),
                        created_ms: s.created_ms,
                    },
                    bytes: s.all_bytes()?,
                })
            })
            .collect()
    }

    /// The offset below which the cleaner has already compacted the log (0
    /// when it never has).
    pub fn first_dirty_offset(&self) -> i64 {
        checkpoint::read(&self.dir, CLEANER_CHECKPOINT)
            .and_then(|t| checkpoint::numbers(&t))
            .and_then(|n| n.first().copied())
            .unwrap_or(0)
            .max(self.log_start_offset)
    }

    /// Replaces sealed segments with their cleaned forms and records
    /// `first_dirty` (see the module comment for the crash-safe protocol).
    ///
    /// Fails without changing anything if a replaced segment is gone or has
    /// changed since it was read (retention or truncation ran meanwhile), or
    /// if a replacement does not hold the same batches at the same offsets.
    pub fn replace_segments(&mut self, cleaned: &[CleanedSegment], first_dirty: i64) -> Result<()> {
        let sealed = self.segments.len() - 1;
        let mut spans = Vec::with_capacity(cleaned.len());
        let mut txns = Vec::with_capacity(cleaned.len());
        for c in cleaned {
            let first = *c.replaces.first().ok_or_else(|| {
                StorageError::InvalidBatch("a cleaned segment replaces nothing".into())
            })?;
            let start = self.segments[..sealed]
                .iter()
                .position(|s| s.base_offset == first)
                .ok_or(StorageError::SegmentGone(first))?;
            let end = start + c.replaces.len();
            if end > sealed
                || self.segments[start..end]
                    .iter()
                    .map(|s| s.base_offset)
                    .ne(c.replaces.iter().copied())
            {
                return Err(StorageError::SegmentGone(first));
            }
            let originals: Vec<&Segment> = self.segments[start..end].iter().collect();
            check_rewrite(&originals, &c.chunks)?;
            spans.push((start, end));
            txns.push(self.merged_txns(start, end)?);
        }
        for w in spans.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(StorageError::InvalidBatch(
                    "cleaned segments overlap".into(),
                ));
            }
        }

        // 1. The replacements, durable.
        for c in cleaned {
            let path = cleaned_name(&self.dir, c.replaces[0]);
            let file = self
                .fs
                .open(&path, true)
                .map_err(|e| StorageError::io(&path, e))?;
            file.set_len(0).map_err(|e| StorageError::io(&path, e))?;
            let mut at = 0u64;
            for chunk in &c.chunks {
                self.fs
                    .write_at(&file, chunk, at)
                    .map_err(|e| StorageError::io(&path, e))?;
                at += chunk.len() as u64;
            }
            self.fs
                .sync(&file)
                .map_err(|e| StorageError::io(&path, e))?;
        }
        for t in &txns {
            t.write(&segment::file_name(&self.dir, t.base_offset, TXN_CLEANED))?;
        }
        // 2. The marker: from here on the swap is finished at open if cut short.
        let mut marker = String::new();
        for c in cleaned {
            let line: Vec<String> = c.replaces.iter().map(|b| b.to_string()).collect();
            marker.push_str(&line.join(" "));
            marker.push('\n');
        }
        marker.push_str(&format!("dirty {first_dirty}\n"));
        checkpoint::write_atomic(&self.dir, SWAP_MARKER, &marker)?;
        // 3. The swap itself.
        let groups: Vec<Vec<i64>> = cleaned.iter().map(|c| c.replaces.clone()).collect();
        apply_swap(&self.dir, &groups, first_dirty)?;
        // 4. Done.
        checkpoint::remove(&self.dir, SWAP_MARKER)?;

        // The in-memory segments follow the files. Spans are replaced from the
        // last so earlier indexes stay valid.
        let opts = self.opts();
        let now = self.clock.now_ms();
        for (&(start, end), c) in spans.iter().zip(cleaned).rev() {
            let first_entry = self.segments[start].first_entry;
            let created = self.segments[start].created_ms;
            // The old segments' files are already renamed or deleted; dropping
            // them first releases their index maps before the new segment
            // recreates `{base}.index` (slices in flight keep the old inodes).
            drop(self.segments.drain(start..end).collect::<Vec<_>>());
            let (mut seg, outcome) = Segment::open(
                &self.dir,
                self.fs.as_ref(),
                c.replaces[0],
                first_entry,
                &opts,
                true,
                now,
            )?;
            if outcome.truncated_bytes > 0 {
                // check_rewrite validated every batch; a short file here means
                // the disk lost what it acknowledged.
                return Err(StorageError::InvalidBatch(format!(
                    "cleaned segment {} lost {} bytes",
                    c.replaces[0], outcome.truncated_bytes
                )));
            }
            seg.created_ms = created;
            seg.seal()?;
            self.segments.insert(start, seg);
        }
        // The merged segments' producer snapshots go with them.
        self.prune_snapshots()?;
        // What was already durable stays so: the new files were fsynced.
        Ok(())
    }
}
