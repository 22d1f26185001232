//! Transactions as the log records them, kept by every replica alike: which
//! producers have a transaction open (from the offset of its first batch),
//! the coordinator epoch of each producer's last marker, and the aborted
//! transactions (Kafka's aborted-transaction index, a `.txnindex` file per
//! segment).
//!
//! [`TxnState`] is a pure function of the log: [`TxnState::observe`] sees
//! every batch appended. Each segment's `.txnindex` holds the state at the
//! segment's base offset (written when the segment is created) and, once
//! the segment is sealed, the transactions whose ABORT marker is inside it
//! and the end offset it covers. Opening a log therefore replays only the
//! active segment — and a sealed one whose file a crash lost or damaged, or
//! that recovery had to check — starting from the state its file gives.
//!
//! File layout, big-endian:
//! ```text
//! magic "SLTX" · version u16 (= 1) · CRC-32C u32 of everything after it ·
//! base offset i64 · end offset i64 (-1 while the segment is active) ·
//! open count u32 · open × (producer id i64 · epoch i16 · first offset i64) ·
//! marker count u32 · × (producer id i64 · coordinator epoch i32) ·
//! aborted count u32 · aborted × (Kafka's entry: version i16 (= 0) ·
//!     producer id i64 · first offset i64 · last offset i64 ·
//!     last stable offset i64)
//! ```
//! A file is replaced whole (temporary file, rename), and one that fails
//! its checksum or covers a different range than its segment is rebuilt
//! from the segment.

use std::collections::HashMap;
use std::path::Path;

use crate::batch::{BATCH_HEADER_LEN, BatchHeader};
use crate::error::{Result, StorageError};

const MAGIC: &[u8; 4] = b"SLTX";
const VERSION: u16 = 1;
/// Kafka's aborted-transaction entry: version, producer id, three offsets.
const ENTRY_LEN: usize = 2 + 8 * 4;

/// A COMMIT or ABORT marker (a control record's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Abort,
    Commit,
}

impl Marker {
    /// The control record's type field: 0 = ABORT, 1 = COMMIT.
    pub fn kind(self) -> i16 {
        match self {
            Marker::Abort => 0,
            Marker::Commit => 1,
        }
    }
}

/// An aborted transaction: what a read_committed consumer must skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of its ABORT marker.
    pub last_offset: i64,
    /// The last stable offset right after the marker: the first offset of
    /// the oldest transaction still open then, or the marker's next offset.
    pub last_stable_offset: i64,
}

/// A transaction open on the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenTxn {
    pub first_offset: i64,
    /// The epoch of the batch that opened it.
    pub epoch: i16,
}

/// The transactions of a log at one offset (see the module comment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnState {
    pub open: HashMap<i64, OpenTxn>,
    /// The coordinator epoch of each producer's last marker.
    pub coordinator_epochs: HashMap<i64, i32>,
}

impl TxnState {
    /// Records a batch now in the log at `first..=last`; `marker` when it is
    /// a COMMIT or ABORT marker (see [`marker_of`]). Returns the transaction
    /// an ABORT marker ended.
    pub fn observe(
        &mut self,
        h: &BatchHeader,
        first: i64,
        last: i64,
        marker: Option<(Marker, i32)>,
    ) -> Option<AbortedTxn> {
        if let Some((m, coordinator_epoch)) = marker {
            self.coordinator_epochs
                .insert(h.producer_id, coordinator_epoch);
            let open = self.open.remove(&h.producer_id)?;
            if m != Marker::Abort {
                return None;
            }
            return Some(AbortedTxn {
                producer_id: h.producer_id,
                first_offset: open.first_offset,
                last_offset: last,
                last_stable_offset: self.first_unstable_offset().unwrap_or(last + 1),
            });
        }
        if h.is_transactional() && !h.is_control() && h.producer_id >= 0 {
            self.open.entry(h.producer_id).or_insert(OpenTxn {
                first_offset: first,
                epoch: h.producer_epoch,
            });
        }
        None
    }

    /// The first offset of the oldest open transaction.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.open.values().map(|o| o.first_offset).min()
    }
}

/// The marker a batch is, with its coordinator epoch, if it is a
/// transaction's COMMIT or ABORT: a control batch of the transactional kind
/// (Raft's own control entries are not transactional) whose first record's
/// key has a known type. Control batches are never compressed.
pub fn marker_of(h: &BatchHeader, batch: &[u8]) -> Option<(Marker, i32)> {
    if !h.is_control() || !h.is_transactional() || h.producer_id < 0 || h.compression() != 0 {
        return None;
    }
    let mut r = batch.get(BATCH_HEADER_LEN..h.total_size().min(batch.len()))?;
    let _length = varint(&mut r)?;
    r = r.get(1..)?; // attributes
    let _timestamp_delta = varint(&mut r)?;
    let _offset_delta = varint(&mut r)?;
    let key = bytes_field(&mut r)??;
    if key.len() < 4 {
        return None;
    }
    let marker = match i16::from_be_bytes([key[2], key[3]]) {
        0 => Marker::Abort,
        1 => Marker::Commit,
        _ => return None,
    };
    // Value: version (int16), coordinator epoch (int32).
    let coordinator_epoch = bytes_field(&mut r)
        .flatten()
        .filter(|v| v.len() >= 6)
        .map_or(0, |v| i32::from_be_bytes([v[2], v[3], v[4], v[5]]));
    Some((marker, coordinator_epoch))
}

/// The key and value of a marker's one control record.
pub fn marker_record(marker: Marker, coordinator_epoch: i32) -> ([u8; 4], [u8; 6]) {
    let mut key = [0u8; 4];
    key[2..4].copy_from_slice(&marker.kind().to_be_bytes());
    let mut value = [0u8; 6];
    value[2..6].copy_from_slice(&coordinator_epoch.to_be_bytes());
    (key, value)
}

fn varint(b: &mut &[u8]) -> Option<i64> {
    let mut z = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        z |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some((z >> 1) as i64 ^ -((z & 1) as i64));
        }
    }
    None
}

/// A length-prefixed field: None if malformed, Some(None) if null.
fn bytes_field<'a>(b: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    let len = varint(b)?;
    if len < 0 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    let field = b.get(..len)?;
    *b = &b[len..];
    Some(Some(field))
}

/// One segment's `.txnindex` contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentTxns {
    pub base_offset: i64,
    /// The offset the aborted list covers up to (exclusive); None while the
    /// segment is active (only the state at its base is meaningful then).
    pub end_offset: Option<i64>,
    /// The state at the segment's base offset.
    pub at_base: TxnState,
    /// Transactions aborted by markers inside the segment, by marker offset.
    pub aborted: Vec<AbortedTxn>,
}

impl SegmentTxns {
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.base_offset.to_be_bytes());
        body.extend_from_slice(&self.end_offset.unwrap_or(-1).to_be_bytes());
        let mut open: Vec<_> = self.at_base.open.iter().collect();
        open.sort_unstable_by_key(|(pid, _)| **pid);
        body.extend_from_slice(&(open.len() as u32).to_be_bytes());
        for (pid, o) in open {
            body.extend_from_slice(&pid.to_be_bytes());
            body.extend_from_slice(&o.epoch.to_be_bytes());
            body.extend_from_slice(&o.first_offset.to_be_bytes());
        }
        let mut epochs: Vec<_> = self.at_base.coordinator_epochs.iter().collect();
        epochs.sort_unstable();
        body.extend_from_slice(&(epochs.len() as u32).to_be_bytes());
        for (pid, e) in epochs {
            body.extend_from_slice(&pid.to_be_bytes());
            body.extend_from_slice(&e.to_be_bytes());
        }
        body.extend_from_slice(&(self.aborted.len() as u32).to_be_bytes());
        for a in &self.aborted {
            body.extend_from_slice(&0i16.to_be_bytes());
            body.extend_from_slice(&a.producer_id.to_be_bytes());
            body.extend_from_slice(&a.first_offset.to_be_bytes());
            body.extend_from_slice(&a.last_offset.to_be_bytes());
            body.extend_from_slice(&a.last_stable_offset.to_be_bytes());
        }
        let mut out = Vec::with_capacity(10 + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// None when the bytes are not a whole, intact file of this version.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < 10 || &bytes[..4] != MAGIC || bytes[4..6] != VERSION.to_be_bytes() {
            return None;
        }
        let crc = u32::from_be_bytes(bytes[6..10].try_into().ok()?);
        let mut b = &bytes[10..];
        if crc32c::crc32c(b) != crc {
            return None;
        }
        let base_offset = take_i64(&mut b)?;
        let end_offset = Some(take_i64(&mut b)?).filter(|&e| e >= 0);
        let mut at_base = TxnState::default();
        for _ in 0..take_u32(&mut b)? {
            let pid = take_i64(&mut b)?;
            let epoch = i16::from_be_bytes(take(&mut b, 2)?.try_into().ok()?);
            let first_offset = take_i64(&mut b)?;
            at_base.open.insert(
                pid,
                OpenTxn {
                    first_offset,
                    epoch,
                },
            );
        }
        for _ in 0..take_u32(&mut b)? {
            let pid = take_i64(&mut b)?;
            let epoch = i32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?);
            at_base.coordinator_epochs.insert(pid, epoch);
        }
        let n = take_u32(&mut b)? as usize;
        if b.len() != n.checked_mul(ENTRY_LEN)? {
            return None;
        }
        let mut aborted = Vec::with_capacity(n);
        for _ in 0..n {
            take(&mut b, 2)?;
            aborted.push(AbortedTxn {
                producer_id: take_i64(&mut b)?,
                first_offset: take_i64(&mut b)?,
                last_offset: take_i64(&mut b)?,
                last_stable_offset: take_i64(&mut b)?,
            });
        }
        Some(Self {
            base_offset,
            end_offset,
            at_base,
            aborted,
        })
    }

    /// Reads a segment's file; None if it is missing or damaged.
    pub fn read(path: &Path) -> Option<Self> {
        Self::decode(&std::fs::read(path).ok()?)
    }

    /// Replaces the file whole. Not fsynced: a file a crash damages fails
    /// its checksum and is rebuilt, and a sealed segment's file is trusted
    /// only if it covers the segment's whole range.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        std::fs::write(&tmp, self.encode()).map_err(|e| StorageError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| StorageError::io(path, e))
    }
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let field = b.get(..n)?;
    *b = &b[n..];
    Some(field)
}

fn take_i64(b: &mut &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(take(b, 8)?.try_into().ok()?))
}

fn take_u32(b: &mut &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(take(b, 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BuildOptions, RecordSpec, build};

    fn marker_batch(pid: i64, m: Marker, coordinator_epoch: i32) -> Vec<u8> {
        let (key, value) = marker_record(m, coordinator_epoch);
        build(
            &[RecordSpec {
                key: Some(&key),
                value: Some(&value),
                timestamp: 1,
            }],
            BuildOptions {
                producer_id: pid,
                producer_epoch: 0,
                control: true,
                transactional: true,
                ..BuildOptions::default()
            },
        )
    }

    #[test]
    fn markers_are_read_back_from_their_batch() {
        for (m, e) in [(Marker::Abort, 3), (Marker::Commit, 70000)] {
            let b = marker_batch(5, m, e);
            let h = BatchHeader::parse(&b).unwrap();
            assert_eq!(marker_of(&h, &b), Some((m, e)));
        }
        // A transactional data batch is not a marker, nor a garbled key.
        let data = build(
            &[RecordSpec {
                key: Some(b"k"),
                value: Some(b"v"),
                timestamp: 1,
            }],
            BuildOptions {
                producer_id: 5,
                producer_epoch: 0,
                transactional: true,
                ..BuildOptions::default()
            },
        );
        let h = BatchHeader::parse(&data).unwrap();
        assert_eq!(marker_of(&h, &data), None);
        let mut b = marker_batch(5, Marker::Abort, 1);
        let h = BatchHeader::parse(&b).unwrap();
        b.truncate(BATCH_HEADER_LEN + 3);
        assert_eq!(marker_of(&h, &b), None);
    }

    #[test]
    fn an_abort_records_the_transaction_and_the_stable_offset_after_it() {
        let mut s = TxnState::default();
        let data = |pid: i64| {
            let b = build(
                &[RecordSpec::default()],
                BuildOptions {
                    producer_id: pid,
                    producer_epoch: 2,
                    transactional: true,
                    ..BuildOptions::default()
                },
            );
            BatchHeader::parse(&b).unwrap()
        };
        let marker = |pid: i64| BatchHeader::parse(&marker_batch(pid, Marker::Abort, 0)).unwrap();
        assert_eq!(s.observe(&data(1), 10, 10, None), None);
        assert_eq!(s.observe(&data(2), 11, 11, None), None);
        assert_eq!(s.observe(&data(1), 12, 12, None), None);
        assert_eq!(s.first_unstable_offset(), Some(10));
        let a = s.observe(&marker(1), 13, 13, Some((Marker::Abort, 4)));
        assert_eq!(
            a,
            Some(AbortedTxn {
                producer_id: 1,
                first_offset: 10,
                last_offset: 13,
                last_stable_offset: 11,
            })
        );
        assert_eq!(s.coordinator_epochs[&1], 4);
        // A commit ends the other one and records nothing aborted.
        assert_eq!(
            s.observe(&marker(2), 14, 14, Some((Marker::Commit, 4))),
            None
        );
        assert_eq!(s.first_unstable_offset(), None);
        // A marker with nothing open records only the coordinator epoch.
        assert_eq!(
            s.observe(&marker(3), 15, 15, Some((Marker::Abort, 9))),
            None
        );
        assert_eq!(s.coordinator_epochs[&3], 9);
    }

    #[test]
    fn files_round_trip_and_damage_is_refused() {
        let mut at_base = TxnState::default();
        at_base.open.insert(
            7,
            OpenTxn {
                first_offset: 90,
                epoch: 3,
            },
        );
        at_base.coordinator_epochs.insert(7, 2);
        let f = SegmentTxns {
            base_offset: 100,
            end_offset: Some(200),
            at_base,
            aborted: vec![AbortedTxn {
                producer_id: 7,
                first_offset: 90,
                last_offset: 120,
                last_stable_offset: 121,
            }],
        };
        let bytes = f.encode();
        assert_eq!(SegmentTxns::decode(&bytes), Some(f.clone()));
        for cut in [0, 9, bytes.len() - 1] {
            assert_eq!(SegmentTxns::decode(&bytes[..cut]), None);
        }
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert_eq!(SegmentTxns::decode(&flipped), None);
        let active = SegmentTxns {
            end_offset: None,
            aborted: Vec::new(),
            ..f
        };
        assert_eq!(SegmentTxns::decode(&active.encode()), Some(active));
    }
}
