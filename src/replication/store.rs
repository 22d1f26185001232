//! The partition log as the Raft log: `raft::Storage` over a
//! `sluice_storage::Log`.
//!
//! Each Raft entry is one batch in the log, at the same index (the storage
//! numbers batches densely from 1). The entry's term is the batch's partition
//! leader epoch. A normal entry carrying a produced record batch is stored as
//! that batch; Raft's own entries (the empty entry a new leader appends,
//! configuration changes, commands) are stored as control batches: one
//! control record whose key is (version 0, type [`RAFT_CONTROL_TYPE`]) and
//! whose value is the entry (type, data, context) in Raft's protobuf
//! encoding. With dense offsets (every topic created since) that batch is
//! hidden: it takes no offset and reads never return it, so Kafka offsets
//! count records only. Logs of topics created before keep their numbering:
//! there each of Raft's own entries took one offset, a control batch that
//! consumers skip. The choice is the topic's (`dense_offsets` in its
//! metadata record), the same on every replica.
//!
//! Beside the segments, `raft-state` holds the hard state (term, vote,
//! commit), the voters and the index and term of the last entry before the
//! log's first one (the snapshot point) — while a snapshot is installed,
//! followed by the offset the log restarts at — replaced atomically.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage};
use sluice_storage::batch::{self, BuildOptions, RecordSpec};
use sluice_storage::fs::{FileSystem, RealFs};
use sluice_storage::{AppendOptions, BatchHeader, Clock, Log, LogConfig, checkpoint};

/// Control record type of Raft's own entries (Kafka's LEADER_CHANGE type;
/// transaction markers use 0 and 1).
pub const RAFT_CONTROL_TYPE: i16 = 2;
const STATE_FILE: &str = "raft-state";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Storage(#[from] sluice_storage::StorageError),
    #[error("raft entry {index}: {reason}")]
    BadEntry { index: u64, reason: String },
}

impl From<StoreError> for raft::Error {
    fn from(e: StoreError) -> Self {
        raft::Error::Store(raft::StorageError::Other(Box::new(e)))
    }
}

struct Inner {
    log: Log,
    hard_state: HardState,
    conf_state: ConfState,
    /// Index of the membership change `conf_state` last took in (0: none
    /// yet): an entry at or below it is not applied again (after a restart
    /// or a snapshot that carried a newer configuration than its index).
    conf_index: u64,
    /// Index and term of the entry just before the log's first.
    snapshot_index: u64,
    snapshot_term: u64,
    /// While a snapshot is installed: the offset the log restarts at.
    reset_to: Option<i64>,
    /// Raft's own entries take no offset (see the module doc).
    dense: bool,
    /// Where the state file's next record goes.
    state_file: checkpoint::Slotted,
    /// The commit index the state file holds.
    commit_written: u64,
}

/// A shared handle: the Raft node reads through it, the replica writes.
#[derive(Clone)]
pub struct ReplicaStore {
    inner: Arc<Mutex<Inner>>,
}

fn raft_key() -> [u8; 4] {
    let mut k = [0u8; 4];
    k[2..].copy_from_slice(&RAFT_CONTROL_TYPE.to_be_bytes());
    k
}

/// What a leader asks every replica to do to its own log, through Raft: the
/// entry carries it in its context (its data stays empty), so it is stored
/// as one of Raft's own entries, a control batch consumers skip, and each
/// replica carries it out when the entry commits, in log order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// DeleteRecords: the log start offset moves up to this offset.
    LogStart(i64),
}

const LOG_START_COMMAND: &[u8] = b"sluice.log-start:";

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Command::LogStart(offset) => [LOG_START_COMMAND, &offset.to_be_bytes()[..]].concat(),
        }
    }

    /// The command an entry carries, if any.
    pub fn of(e: &Entry) -> Option<Command> {
        if e.get_entry_type() != EntryType::EntryNormal || !e.data.is_empty() {
            return None;
        }
        let rest = e.context.strip_prefix(LOG_START_COMMAND)?;
        Some(Command::LogStart(i64::from_be_bytes(rest.try_into().ok()?)))
    }
}

/// The batch an entry is stored as: the same bytes on every replica (of a
/// log with the same `dense` choice).
pub fn entry_to_batch(e: &Entry, dense: bool) -> Result<Vec<u8>, StoreError> {
    let bad = |reason: String| StoreError::BadEntry {
        index: e.index,
        reason,
    };
    if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
        batch::validate(&e.data).map_err(|err| bad(err.to_string()))?;
        return Ok(e.data.to_vec());
    }
    let mut own = Entry::default();
    own.set_entry_type(e.get_entry_type());
    own.data = e.data.clone();
    own.context = e.context.clone();
    let value = own.write_to_bytes().map_err(|err| bad(err.to_string()))?;
    let key = raft_key();
    let mut b = batch::build(
        &[RecordSpec {
            key: Some(&key),
            value: Some(&value),
            // No time: every replica must build the same bytes.
            timestamp: -1,
        }],
        BuildOptions {
            control: true,
            ..BuildOptions::default()
        },
    );
    if dense {
        batch::hide(&mut b);
    }
    Ok(b)
}

/// The entry a stored batch is.
pub fn batch_to_entry(index: u64, batch: Bytes) -> Result<Entry, StoreError> {
    let bad = |reason: String| StoreError::BadEntry { index, reason };
    let h = BatchHeader::parse(&batch)?;
    let mut e = Entry::default();
    if h.is_control() {
        let recs = crate::cleaner::records::records(&batch, &h).map_err(bad)?;
        if let [r] = &recs[..]
            && r.key.as_deref() == Some(&raft_key()[..])
        {
            let value = r.value.as_deref().unwrap_or_default();
            e = Entry::parse_from_bytes(value).map_err(|err| bad(err.to_string()))?;
        } else {
            e.data = batch;
        }
    } else {
        e.data = batch;
    }
    e.index = index;
    e.term = h.partition_leader_epoch.max(0) as u64;
    Ok(e)
}

impl ReplicaStore {
    /// Opens the log in `dir`; a new one starts with `voters` as its
    /// configuration. `dense`: Raft's own entries take no offset.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        voters: &[u64],
        dense: bool,
    ) -> Result<Self, StoreError> {
        Self::open_with_fs(dir, config, clock, voters, dense, Arc::new(RealFs))
    }

    /// Like [`Self::open`], writing the log through `fs` (fault tests).
    pub fn open_with_fs(
        dir: &Path,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        voters: &[u64],
        dense: bool,
        fs: Arc<dyn FileSystem>,
    ) -> Result<Self, StoreError> {
        let log = Log::open_with_fs(dir, config, clock, fs)?;
        let mut hard_state = HardState::default();
        let mut conf_state = ConfState {
            voters: voters.to_vec(),
            ..ConfState::default()
        };
        let mut conf_index = 0;
        let (mut snapshot_index, mut snapshot_term) = (log.first_entry_index() - 1, 0);
        let mut reset_to = None;
        let (state_file, text) = checkpoint::Slotted::read(dir, STATE_FILE);
        if let Some(text) = text {
            let lines: Vec<Vec<i64>> = text
                .lines()
                .map(|l| checkpoint::numbers(l).unwrap_or_default())
                .collect();
            let ids = |v: &Vec<i64>| v.iter().map(|&v| v as u64).collect::<Vec<u64>>();
            // Three lines, or seven since membership changes: the rest of
            // the configuration (learners, outgoing voters of a joint
            // configuration, learners next, auto-leave).
            if let [hs, vs, snap, membership @ ..] = &lines[..]
                && let ([term, vote, commit], [index, sterm, rest @ ..]) = (&hs[..], &snap[..])
            {
                hard_state.term = *term as u64;
                hard_state.vote = *vote as u64;
                hard_state.commit = *commit as u64;
                conf_state.voters = ids(vs);
                if let [learners, outgoing, next, last] = membership {
                    conf_state.learners = ids(learners);
                    conf_state.voters_outgoing = ids(outgoing);
                    conf_state.learners_next = ids(next);
                    conf_state.auto_leave = last.first() == Some(&1);
                    conf_index = last.get(1).map_or(0, |&i| i as u64);
                }
                snapshot_index = *index as u64;
                snapshot_term = *sterm as u64;
                reset_to = rest.first().copied();
            }
        }
        let mut log = log;
        if let Some(base) = reset_to {
            // A snapshot install wrote its snapshot point, then stopped
            // before or while dropping the log: do it (again).
            tracing::warn!(dir = %dir.display(), snapshot_index, base, "finishing an interrupted snapshot install");
            log.reset(base, snapshot_index + 1)?;
        } else if snapshot_index >= log.first_entry_index() {
            // `delete_below` wrote the new snapshot point, then crashed
            // before deleting: finish it.
            let first = snapshot_index + 1;
            let offset = if first > log.last_entry_index() {
                log.log_end_offset()
            } else {
                BatchHeader::parse(&log.entry(first)?)?.base_offset
            };
            log.delete_segments_below(offset)?;
        }
        if snapshot_index + 1 != log.first_entry_index() {
            tracing::warn!(dir = %dir.display(), snapshot_index, first = log.first_entry_index(),
                "raft snapshot point does not match the log; using the log's");
            snapshot_index = log.first_entry_index() - 1;
        }
        // What recovery cut off can no longer count as committed.
        hard_state.commit = hard_state
            .commit
            .min(log.last_entry_index())
            .max(snapshot_index);
        let commit_written = hard_state.commit;
        let mut inner = Inner {
            log,
            hard_state,
            conf_state,
            conf_index,
            snapshot_index,
            snapshot_term,
            reset_to: None,
            dense,
            commit_written,
            state_file,
        };
        if reset_to.is_some() {
            // Done: the next open must not drop what is appended from now.
            Self::write_state(&mut inner)?;
        }
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    /// Whether Raft's own entries take no offset here.
    pub fn dense_offsets(&self) -> bool {
        self.lock().dense
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(inner: &mut Inner) -> Result<(), StoreError> {
        let hs = &inner.hard_state;
        let cs = &inner.conf_state;
        let ids = |v: &[u64]| {
            v.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut text = format!(
            "{} {} {}\n{}\n{} {}{}\n",
            hs.term,
            hs.vote,
            hs.commit,
            ids(&cs.voters),
            inner.snapshot_index,
            inner.snapshot_term,
            inner.reset_to.map_or(String::new(), |b| format!(" {b}"))
        );
        // The rest of the configuration only once a membership change made
        // one (the three-line form otherwise, as before).
        if inner.conf_index > 0 {
            text += &format!(
                "{}\n{}\n{}\n{} {}\n",
                ids(&cs.learners),
                ids(&cs.voters_outgoing),
                ids(&cs.learners_next),
                u8::from(cs.auto_leave),
                inner.conf_index
            );
        }
        let dir = inner.log.dir().to_owned();
        inner.state_file.write(&dir, STATE_FILE, &text)?;
        inner.commit_written = inner.hard_state.commit;
        Ok(())
    }

    /// Records the group's configuration after the membership change at
    /// entry `index` applied (durably, at once: who votes is part of Raft's
    /// safety).
    pub fn set_conf_state(&self, cs: ConfState, index: u64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.conf_state = cs;
        inner.conf_index = index;
        // Only a committed change is applied: the commit index written
        // with it covers it.
        inner.hard_state.commit = inner.hard_state.commit.max(index);
        Self::write_state(&mut inner)
    }

    /// The commit index as stored.
    pub fn commit_index(&self) -> u64 {
        self.lock().hard_state.commit
    }

    /// The term as stored (0: this replica never heard of any).
    pub fn hard_term(&self) -> u64 {
        self.lock().hard_state.term
    }

    /// The term and the vote in it, as stored.
    pub fn term_and_vote(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.hard_state.term, inner.hard_state.vote)
    }

    /// Starts from a term and vote an earlier replica of this group on this
    /// node left (see [`remember_votes`]), unless this one is past them.
    pub fn resume_votes(&self, term: u64, vote: u64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.hard_state.term >= term {
            return Ok(());
        }
        inner.hard_state.term = term;
        inner.hard_state.vote = vote;
        Self::write_state(&mut inner)
    }

    /// The index of the membership change the configuration last took in
    /// (0: none).
    pub fn conf_index(&self) -> u64 {
        self.lock().conf_index
    }

    /// The group's configuration as stored.
    pub fn conf_state(&self) -> ConfState {
        self.lock().conf_state.clone()
    }

    /// Appends entries from Raft, first cutting any conflicting suffix (a new
    /// leader overwrote it). Not yet durable: see [`Self::sync`].
    pub fn append(&self, entries: &[Entry]) -> Result<(), StoreError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut inner = self.lock();
        if first.index <= inner.log.last_entry_index() {
            inner.log.truncate_to_entry(first.index)?;
        }
        for e in entries {
            if e.index != inner.log.last_entry_index() + 1 {
                return Err(StoreError::BadEntry {
                    index: e.index,
                    reason: format!("the log ends at {}", inner.log.last_entry_index()),
                });
            }
            let batch = entry_to_batch(e, inner.dense)?;
            let opts = AppendOptions {
                leader_epoch: e.term as i32,
                log_append_time: None,
            };
            inner.log.append(&batch, &opts)?;
        }
        Ok(())
    }

    /// Records a new hard state. A term or vote change is made durable at
    /// once (Raft's safety rests on it); a commit index alone is written
    /// with the next one, since a lost commit index is only learnt again.
    pub fn set_hard_state(&self, hs: &HardState) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let must_sync = hs.term != inner.hard_state.term || hs.vote != inner.hard_state.vote;
        inner.hard_state = hs.clone();
        if must_sync {
            Self::write_state(&mut inner)?;
        }
        Ok(())
    }

    /// Writes the commit index through to disk at once (capped at the
    /// last entry the log holds durably): see `Replica::ready` on why a
    /// membership change is appended only after this.
    pub fn persist_commit(&self, commit: u64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let last = inner.log.last_entry_index();
        let commit = inner.hard_state.commit.max(commit.min(last));
        if commit == inner.hard_state.commit && inner.commit_written == commit {
            return Ok(());
        }
        inner.hard_state.commit = commit;
        Self::write_state(&mut inner)
    }

    pub fn set_commit(&self, commit: u64) {
        let mut inner = self.lock();
        inner.hard_state.commit = inner.hard_state.commit.max(commit);
    }

    /// Starts the next generation of the group from this replica alone (an
    /// unclean leader election, see `metadata::Generation`): `me` becomes
    /// the only voter; every entry the log holds counts as committed and
    /// applied, so no membership change of the earlier generation is taken
    /// in again; the term moves above `term_floor` and this replica's own.
    /// The log and the state are on disk before it returns.
    pub fn start_generation_alone(&self, me: u64, term_floor: u64) -> Result<(), StoreError> {
        self.sync()?;
        let mut inner = self.lock();
        let last = inner.log.last_entry_index();
        inner.hard_state.term = inner.hard_state.term.max(term_floor) + 1;
        inner.hard_state.vote = 0;
        inner.hard_state.commit = last;
        inner.conf_state = ConfState {
            voters: vec![me],
            ..ConfState::default()
        };
        inner.conf_index = last;
        Self::write_state(&mut inner)
    }

    /// fsyncs the appended entries.
    pub fn sync(&self) -> Result<i64, StoreError> {
        let durable = self.sync_point()?.sync()?;
        self.mark_durable(durable);
        Ok(durable)
    }

    /// What an fsync of the appended entries must cover (to sync with
    /// other groups' entries, see [`sluice_storage::GroupSync`]).
    pub fn sync_point(&self) -> Result<sluice_storage::SyncPoint, StoreError> {
        Ok(self.lock().log.sync_point()?)
    }

    /// Whether the topic asks for Kafka's flush policy (flush.messages
    /// above 1: an entry counts as held once written, as Kafka's replicas
    /// acknowledge from memory), and whether flush.messages or flush.ms
    /// asks for an fsync now.
    pub fn flush_policy(&self) -> (bool, bool) {
        let inner = self.lock();
        let lazy = inner
            .log
            .config()
            .flush_interval_messages
            .is_some_and(|n| n > 1);
        (lazy, lazy && inner.log.flush_due())
    }

    /// Records that the entries up to `offset` are on disk.
    pub fn mark_durable(&self, offset: i64) {
        self.lock().log.mark_durable(offset);
    }

    /// The offset just past entry `index` (0 for index 0).
    pub fn offset_after(&self, index: u64) -> Result<i64, StoreError> {
        if index == 0 {
            return Ok(0);
        }
        let inner = self.lock();
        if index < inner.log.first_entry_index() {
            // Entries up to the snapshot point end where the first kept
            // segment begins.
            let first_base = inner.log.segments().first().map_or(0, |s| s.base_offset);
            return Ok(first_base.max(inner.log.log_start_offset()));
        }
        let b = inner.log.entry(index)?;
        Ok(BatchHeader::parse(&b)?.next_offset())
    }

    /// Retention on a replicated log: deletes whole segments below `offset`
    /// (never the active one) and makes the deleted entries the snapshot
    /// point, whose term is recorded before anything is deleted.
    pub fn delete_below(&self, offset: i64) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        let segs = inner.log.segments();
        let doomed = segs[..segs.len() - 1]
            .iter()
            .take_while(|s| s.next_offset <= offset)
            .count();
        if doomed == 0 {
            return Ok(0);
        }
        // The first entry of the first kept segment (by index: a hidden
        // entry at the end of the segment before has the same offset).
        let new_first = segs[doomed].first_entry;
        inner.snapshot_term = inner.log.entry_term(new_first - 1)?.max(0) as u64;
        inner.snapshot_index = new_first - 1;
        Self::write_state(&mut inner)?;
        Ok(inner.log.delete_segments_below(offset)?)
    }

    /// Carries out a committed command (see [`Command`]); doing it again is
    /// harmless.
    pub fn apply(&self, command: Command) -> Result<(), StoreError> {
        match command {
            Command::LogStart(offset) => {
                let moved = {
                    let mut inner = self.lock();
                    let end = inner.log.log_end_offset();
                    if offset > end {
                        // The entry lies after the offset on the leader,
                        // so a replica holding it holds the offset too.
                        tracing::warn!(dir = %inner.log.dir().display(), offset, end,
                            "a log-start command past the log end; moving to the end");
                    }
                    inner.log.raise_log_start_offset(offset.min(end))?
                };
                if moved {
                    self.delete_below(offset)?;
                }
            }
        }
        Ok(())
    }

    /// Installs a leader's snapshot: everything here is dropped, and the log
    /// continues at the offset and entry index where the leader's begins.
    pub fn apply_snapshot(&self, snap: &Snapshot) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let base = Self::begin_snapshot(&mut inner, snap)?;
        let first = inner.snapshot_index + 1;
        inner.log.reset(base, first)?;
        inner.reset_to = None;
        Self::write_state(&mut inner)?;
        tracing::info!(dir = %inner.log.dir().display(), index = first - 1, offset = base, "installed a raft snapshot");
        Ok(())
    }

    /// The first half of [`Self::apply_snapshot`] alone, as a crash right
    /// after it leaves the replica (for tests).
    #[cfg(test)]
    pub(crate) fn begin_snapshot_only(&self, snap: &Snapshot) -> Result<(), StoreError> {
        Self::begin_snapshot(&mut self.lock(), snap).map(drop)
    }

    /// The first half of [`Self::apply_snapshot`]: the new snapshot point is
    /// recorded with the reset still to do, and the offset the log restarts
    /// at is returned. A crash from here until the state is written again
    /// makes open finish the reset (the log alone cannot tell the snapshot
    /// point's term, and a replica reporting a wrong one would never match
    /// its leader again).
    fn begin_snapshot(inner: &mut Inner, snap: &Snapshot) -> Result<i64, StoreError> {
        let meta = snap.get_metadata();
        let bad = |reason: String| StoreError::BadEntry {
            index: meta.index,
            reason,
        };
        let text = std::str::from_utf8(&snap.data).map_err(|e| bad(e.to_string()))?;
        // The offset the log restarts at, and (since membership changes)
        // the index of the change the snapshot's configuration took in.
        let numbers = checkpoint::numbers(text).unwrap_or_default();
        let Some(&base) = numbers.first() else {
            return Err(bad(format!("snapshot data '{text}'")));
        };
        inner.snapshot_index = meta.index;
        inner.snapshot_term = meta.term;
        inner.conf_state = meta.get_conf_state().clone();
        inner.conf_index = numbers.get(1).map_or(0, |&i| i as u64);
        inner.hard_state.commit = inner.hard_state.commit.max(meta.index);
        inner.reset_to = Some(base);
        Self::write_state(inner)?;
        Ok(base)
    }

    /// The term of entry `index`, if the log holds it.
    pub fn entry_term(&self, index: u64) -> Option<u64> {
        let inner = self.lock();
        if index < inner.log.first_entry_index() || index > inner.log.last_entry_index() {
            return None;
        }
        inner.log.entry_term(index).ok().map(|t| t.max(0) as u64)
    }

    /// Runs `f` on the log (reads for fetches and tests).
    pub fn with_log<T>(&self, f: impl FnOnce(&Log) -> T) -> T {
        f(&self.lock().log)
    }

    /// The log, locked, for the partition's reads and its housekeeping
    /// (rolling, cleaning, config). Deleting a prefix must go through
    /// [`Self::delete_below`], which moves the snapshot point with it.
    pub fn log(&self) -> StoreLog<'_> {
        StoreLog(self.lock())
    }

    /// Writes the hard state and a clean-shutdown marker.
    pub fn close(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        Self::write_state(&mut inner)?;
        inner.log.close()?;
        Ok(())
    }
}

/// The store's log under its lock.
pub struct StoreLog<'a>(MutexGuard<'a, Inner>);

impl std::ops::Deref for StoreLog<'_> {
    type Target = Log;
    fn deref(&self) -> &Log {
        &self.0.log
    }
}

impl std::ops::DerefMut for StoreLog<'_> {
    fn deref_mut(&mut self) -> &mut Log {
        &mut self.0.log
    }
}

impl Storage for ReplicaStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let inner = self.lock();
        Ok(RaftState {
            hard_state: inner.hard_state.clone(),
            conf_state: inner.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let inner = self.lock();
        if low < inner.log.first_entry_index() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > inner.log.last_entry_index() + 1 {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        let max = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut size = 0u64;
        for i in low..high {
            let b = inner.log.entry(i).map_err(StoreError::from)?;
            size += b.len() as u64;
            // Always at least one entry, like raft's own limit_size.
            if !out.is_empty() && size > max {
                break;
            }
            out.push(batch_to_entry(i, b)?);
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let inner = self.lock();
        if idx == inner.snapshot_index {
            return Ok(inner.snapshot_term);
        }
        if idx < inner.log.first_entry_index() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if idx > inner.log.last_entry_index() {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        let t = inner.log.entry_term(idx).map_err(StoreError::from)?;
        Ok(t.max(0) as u64)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.lock().log.first_entry_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.lock().log.last_entry_index())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // The snapshot is the log's deleted prefix: there is no state to copy
        // beyond where the log now begins. A follower that installs it drops
        // its log and continues at the first kept entry.
        let inner = self.lock();
        let first_base = inner.log.segments().first().map_or(0, |s| s.base_offset);
        let data = if inner.conf_index > 0 {
            format!("{first_base} {}", inner.conf_index)
        } else {
            first_base.to_string()
        };
        let mut snap = Snapshot {
            data: data.into(),
            ..Snapshot::default()
        };
        let meta = snap.mut_metadata();
        meta.index = inner.snapshot_index;
        meta.term = inner.snapshot_term;
        meta.set_conf_state(inner.conf_state.clone());
        Ok(snap)
    }
}

/// Where replicas moved off a node leave their term and vote, by group.
const VOTES_DIR: &str = ".raft-votes";

/// Keeps the term and vote of a replica whose folder is about to go (a
/// reassignment moved the group off this node). A replica of the same group
/// opened here again later — under the same Raft id — starts from them:
/// Raft forbids a second vote in a term, and an empty replica remembers
/// none, so without them it could vote again in a term it voted in.
pub fn remember_votes(
    data_dir: &Path,
    group: &str,
    term: u64,
    vote: u64,
) -> Result<(), StoreError> {
    let dir = data_dir.join(VOTES_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| StoreError::Storage(e.into()))?;
    checkpoint::write_atomic(&dir, group, &format!("{term} {vote}\n"))?;
    Ok(())
}

/// The term and vote an earlier replica of `group` left here, if any.
pub fn remembered_votes(data_dir: &Path, group: &str) -> Option<(u64, u64)> {
    let text = checkpoint::read(&data_dir.join(VOTES_DIR), group)?;
    match checkpoint::numbers(&text)?[..] {
        [term, vote] => Some((term as u64, vote as u64)),
        _ => None,
    }
}

/// Drops what [`remember_votes`] kept for `group` (taken up by a new
/// replica, or the topic is gone).
pub fn forget_votes(data_dir: &Path, group: &str) {
    let _ = checkpoint::remove(&data_dir.join(VOTES_DIR), group);
}

/// Drops what [`remember_votes`] kept for any group of `topic` (deleted:
/// a topic created again under its name is another group).
pub fn forget_votes_of_topic(data_dir: &Path, topic: &str) {
    let dir = data_dir.join(VOTES_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // `topic-index`, `@generation` after it (topic names hold no '@').
        let group = name.split('@').next().unwrap_or_default();
        let of_topic = group
            .rsplit_once('-')
            .is_some_and(|(t, i)| t == topic && i.parse::<u32>().is_ok());
        if of_topic {
            forget_votes(data_dir, &name);
        }
    }
}
