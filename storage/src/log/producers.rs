//! The log's producer state (see [`crate::producers`]): kept up to date on
//! append, snapshotted at each roll and at close, and rebuilt at open from
//! the newest snapshot and the batches after it.

use std::path::PathBuf;

use super::Log;
use crate::error::{Result, StorageError};
use crate::producers::{self, ProducerState};
use crate::segment;

const EXT: &str = "snapshot";

impl Log {
    /// Every idempotent producer of the log, as of its end.
    pub fn producer_state(&self) -> &ProducerState {
        &self.producers
    }

    /// Forgets producers idle for `expiration_ms` (producer.id.expiration.ms)
    /// that have no transaction open here. Returns how many it forgot.
    pub fn expire_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let open = &self.txns.open;
        self.producers
            .expire(now_ms, expiration_ms, |id| open.contains_key(&id))
    }

    fn snapshot_path(&self, offset: i64) -> PathBuf {
        segment::file_name(&self.dir, offset, EXT)
    }

    /// The offsets of the snapshot files in the log's folder, ascending.
    pub fn producer_snapshots(&self) -> Result<Vec<i64>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| StorageError::io(&self.dir, e))? {
            let entry = entry.map_err(|e| StorageError::io(&self.dir, e))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".snapshot")) else {
                continue;
            };
            if stem.len() == 20
                && stem.bytes().all(|b| b.is_ascii_digit())
                && let Ok(offset) = stem.parse()
            {
                out.push(offset);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Writes the state at the log end to a snapshot (a failure is logged:
    /// the snapshot only saves work at the next open).
    pub(super) fn snapshot_producers(&self) {
        let offset = self.log_end_offset();
        let path = self.snapshot_path(offset);
        if let Err(e) = producers::write_snapshot(&path, &self.producers.encode(offset)) {
            tracing::warn!(error = %e, "could not write a producer snapshot");
        }
    }

    /// Removes the snapshots above `offset` (before the log is cut there)
    /// or, with `below`, those below it (their data is deleted).
    pub(super) fn remove_snapshots(&self, offset: i64, below: bool) -> Result<()> {
        for at in self.producer_snapshots()? {
            if (below && at < offset) || (!below && at > offset) {
                let path = self.snapshot_path(at);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StorageError::io(&path, e)),
                }
            }
        }
        Ok(())
    }

    /// Removes the snapshots no segment starts at below the active one (the
    /// log end at a close, the bases of segments the cleaner merged): the
    /// newest one and one per segment base are kept.
    pub(super) fn prune_snapshots(&self) -> Result<()> {
        let active = self.active().base_offset;
        for at in self.producer_snapshots()? {
            if at < active
                && self
                    .segments
                    .binary_search_by_key(&at, |s| s.base_offset)
                    .is_err()
            {
                let path = self.snapshot_path(at);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StorageError::io(&path, e)),
                }
            }
        }
        Ok(())
    }

    /// Makes the producer state that of the log: the newest whole snapshot
    /// at or below the log end, then every batch after it. Snapshots above
    /// the log end (a crash cut the log below them) are removed.
    pub(super) fn recover_producers(&mut self) -> Result<()> {
        let end = self.log_end_offset();
        let first_base = self.segments[0].base_offset;
        self.remove_snapshots(end, false)?;
        let mut from = first_base;
        let mut state = ProducerState::default();
        for at in self.producer_snapshots()?.into_iter().rev() {
            if let Some(s) = producers::read_snapshot(&self.snapshot_path(at), at) {
                state = s;
                from = at.max(first_base);
                break;
            }
        }
        self.producers = state;
        self.replay_producers(from)?;
        if from < self.active().base_offset {
            // Sealed segments were read (a log written before snapshots, or
            // whose snapshots were lost): save that work for the next open.
            tracing::info!(dir = %self.dir.display(), from, end, "producer state rebuilt from the log");
            self.snapshot_producers();
        }
        Ok(())
    }

    /// Feeds every batch starting at or after `from` (a batch boundary) to
    /// the producer state, reading headers with positional reads.
    fn replay_producers(&mut self, from: i64) -> Result<()> {
        let i = self.segment_for(from);
        for seg in &self.segments[i..] {
            if seg.next_offset() <= from {
                continue;
            }
            let start = if seg.base_offset >= from {
                0
            } else {
                seg.entry_of(from)?.unwrap_or(0)
            };
            for e in start..seg.entries() as usize {
                let h = seg.read_header(e)?;
                if h.base_offset >= from {
                    self.producers.observe_header(&h, h.base_offset);
                }
            }
        }
        Ok(())
    }
}
