//! The log's transactions (see [`crate::txn`]): the state at the log end,
//! the active segment's part of the aborted-transaction index, and the
//! `.txnindex` files of the sealed segments.

use std::path::PathBuf;

use super::Log;
use crate::error::Result;
use crate::segment::{self, Segment};
use crate::txn::{AbortedTxn, SegmentTxns, TxnState, marker_of};

impl Log {
    fn txn_path(&self, base: i64) -> PathBuf {
        segment::file_name(&self.dir, base, "txnindex")
    }

    /// The transactions at the log end: which are open, and the coordinator
    /// epoch of each producer's last marker.
    pub fn txn_state(&self) -> &TxnState {
        &self.txns
    }

    /// Every aborted transaction whose marker is in the log, by marker
    /// offset (read from the sealed segments' index files).
    pub fn aborted_txns(&self) -> Result<Vec<AbortedTxn>> {
        let mut out = Vec::new();
        for i in 0..self.segments.len() - 1 {
            out.extend(self.sealed_txns(i)?.aborted);
        }
        out.extend_from_slice(&self.active_txns.aborted);
        Ok(out)
    }

    /// Feeds an appended batch to the transaction state.
    pub(super) fn observe_txn(&mut self, h: &crate::BatchHeader, batch: &[u8], first: i64) {
        if !h.is_transactional() {
            return;
        }
        let marker = if h.is_control() {
            marker_of(h, batch)
        } else {
            None
        };
        if let Some(a) = self
            .txns
            .observe(h, first, first + h.last_offset_delta as i64, marker)
        {
            self.active_txns.aborted.push(a);
        }
    }

    /// Writes the index of the active segment, now sealed at `end`, and
    /// starts the new active segment's at `base`.
    pub(super) fn roll_txns(&mut self, end: i64, base: i64) -> Result<()> {
        let sealed = SegmentTxns {
            end_offset: Some(end),
            ..std::mem::take(&mut self.active_txns)
        };
        sealed.write(&self.txn_path(sealed.base_offset))?;
        self.start_active_txns(base)
    }

    /// The active segment at `base` starts from the current state.
    pub(super) fn start_active_txns(&mut self, base: i64) -> Result<()> {
        self.active_txns = SegmentTxns {
            base_offset: base,
            end_offset: None,
            at_base: self.txns.clone(),
            aborted: Vec::new(),
        };
        self.active_txns.write(&self.txn_path(base))
    }

    /// Whether segment `i`'s file is whole and covers its segment.
    fn trusted_file(&self, i: usize) -> Option<SegmentTxns> {
        let seg = &self.segments[i];
        SegmentTxns::read(&self.txn_path(seg.base_offset))
            .filter(|f| f.base_offset == seg.base_offset && f.end_offset == Some(seg.next_offset()))
    }

    /// Sealed segment `i`'s transactions: its file, or (if a crash lost or
    /// damaged it since the log was opened) the segment replayed.
    fn sealed_txns(&self, i: usize) -> Result<SegmentTxns> {
        if let Some(f) = self.trusted_file(i) {
            return Ok(f);
        }
        tracing::warn!(dir = %self.dir.display(), segment = self.segments[i].base_offset,
            "transaction index unreadable: replaying its segment");
        let (mut rebuilt, _) = self.replay(i, i + 1)?;
        Ok(rebuilt.pop().expect("one segment replayed"))
    }

    /// Replays segments `i..end` from the last state on record at or
    /// before segment `i`. Returns each replayed segment's transactions
    /// (from `i`) and the state after them.
    fn replay(&self, i: usize, end: usize) -> Result<(Vec<SegmentTxns>, TxnState)> {
        // The state at some segment's base: its file's, walking back to
        // one that has a readable file (or the log's beginning).
        let mut from = i;
        let mut state = loop {
            let base = self.segments[from].base_offset;
            match SegmentTxns::read(&self.txn_path(base)) {
                Some(f) if f.base_offset == base => break f.at_base,
                _ if from == 0 => break TxnState::default(),
                _ => from -= 1,
            }
        };
        let mut out = Vec::with_capacity(end - i);
        for (k, seg) in self.segments[from..end].iter().enumerate() {
            let mut txns = SegmentTxns {
                base_offset: seg.base_offset,
                end_offset: Some(seg.next_offset()),
                at_base: state.clone(),
                aborted: Vec::new(),
            };
            replay_segment(seg, &mut state, &mut txns.aborted)?;
            if from + k >= i {
                out.push(txns);
            }
        }
        Ok((out, state))
    }

    /// Makes the state that of the log at open, trusting the index files
    /// of the sealed segments below `untrusted` (the first segment recovery
    /// checked) that are whole and cover their segment: replays from the
    /// first one that is not, or else the active segment alone.
    pub(super) fn recover_txns(&mut self, untrusted: usize) -> Result<()> {
        let last = self.segments.len() - 1;
        let upto = untrusted.min(last);
        let first_bad = (0..upto)
            .find(|&i| self.trusted_file(i).is_none())
            .unwrap_or(upto);
        if first_bad < last {
            tracing::info!(dir = %self.dir.display(), segments = last - first_bad,
                "rebuilding transaction indexes");
        }
        self.replay_from(first_bad)
    }

    /// After a truncation: the active segment replayed from its base.
    pub(super) fn replay_active_txns(&mut self) -> Result<()> {
        self.replay_from(self.segments.len() - 1)
    }

    /// Replays segments `i..`, rewriting the files of the sealed ones.
    fn replay_from(&mut self, i: usize) -> Result<()> {
        let (mut replayed, state) = self.replay(i, self.segments.len())?;
        let mut active = replayed.pop().expect("the active segment is replayed");
        for sealed in &replayed {
            sealed.write(&self.txn_path(sealed.base_offset))?;
        }
        active.end_offset = None;
        // The active segment's file holds the state at its base. None is
        // needed for a log that never saw a transaction.
        let header = SegmentTxns {
            aborted: Vec::new(),
            ..active.clone()
        };
        let path = self.txn_path(active.base_offset);
        let on_file = SegmentTxns::read(&path);
        if on_file.as_ref() != Some(&header)
            && (on_file.is_some() || header.at_base != TxnState::default())
        {
            header.write(&path)?;
        }
        self.txns = state;
        self.active_txns = active;
        Ok(())
    }

    /// The merged transactions of consecutive sealed segments `start..end`
    /// (what a cleaned segment replacing them keeps).
    pub(super) fn merged_txns(&self, start: usize, end: usize) -> Result<SegmentTxns> {
        let mut merged = self.sealed_txns(start)?;
        for i in start + 1..end {
            let next = self.sealed_txns(i)?;
            merged.aborted.extend(next.aborted);
            merged.end_offset = next.end_offset;
        }
        Ok(merged)
    }
}

/// Feeds every batch of `seg` to `state`, collecting what it aborted.
fn replay_segment(
    seg: &Segment,
    state: &mut TxnState,
    aborted: &mut Vec<AbortedTxn>,
) -> Result<()> {
    for e in 0..seg.entries() as usize {
        let h = seg.read_header(e)?;
        if !h.is_transactional() {
            continue;
        }
        let marker = if h.is_control() {
            let (_, batch) = seg.entry(e)?;
            marker_of(&h, &batch)
        } else {
            None
        };
        if let Some(a) = state.observe(&h, h.base_offset, h.last_offset(), marker) {
            aborted.push(a);
        }
    }
    Ok(())
}
