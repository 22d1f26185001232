//! Small files kept beside the segments.
//!
//! - `clean-shutdown`: present only while the log is closed after a clean close;
//!   removed (durably) when the log is opened, so its absence at the next open
//!   means the log must be recovered.
//! - `recovery-point`: an offset below which everything was fsynced; recovery
//!   re-validates only segments that may hold offsets at or above it.
//! - `log-start`: `log_start_offset first_segment_base first_entry_index`, written
//!   before segments are deleted, so an interrupted deletion is finished at open.
//!
//! Each is replaced atomically: write a temporary file, fsync, rename, fsync dir.
//!
//! A record rewritten often (a Raft group's term and vote, on every
//! election) is kept in a [`Slotted`] file instead: two fixed slots written
//! in place by turns, each with a sequence number and a checksum, so an
//! update is one write and one fdatasync — no new inode, no rename, no
//! directory fsync — and a torn write loses only the update it was making.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{Result, StorageError};

pub const CLEAN_SHUTDOWN: &str = "clean-shutdown";
pub const RECOVERY_POINT: &str = "recovery-point";
pub const LOG_START: &str = "log-start";

pub fn write_atomic(dir: &Path, name: &str, contents: &str) -> Result<()> {
    write_atomic_bytes(dir, name, contents.as_bytes())
}

fn write_atomic_bytes(dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let io = |p: &Path| {
        let p = p.to_owned();
        move |e| StorageError::io(p, e)
    };
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(contents).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)
}

pub fn read(dir: &Path, name: &str) -> Option<String> {
    fs::read_to_string(dir.join(name)).ok()
}

pub fn remove(dir: &Path, name: &str) -> Result<()> {
    match fs::remove_file(dir.join(name)) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(dir.join(name), e)),
    }
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))
}

/// Parses whitespace-separated integers; `None` if the file is damaged.
pub fn numbers(text: &str) -> Option<Vec<i64>> {
    text.split_whitespace().map(|t| t.parse().ok()).collect()
}

/// A small text record updated in place (see the module comment). Slot
/// layout: magic `SLR1`, sequence number (u64), text length (u32), CRC-32C
/// of the sequence, length and text (u32), the text, zeros up to
/// [`Slotted::SLOT`] bytes. The file is the two slots; the valid one with
/// the higher sequence number holds the record.
#[derive(Debug, Default, Clone, Copy)]
pub struct Slotted {
    /// Sequence number of the last record written or read (0: none, or
    /// the file is still in the one-record text form of earlier releases,
    /// which the first write replaces).
    seq: u64,
}

const SLOT_MAGIC: &[u8; 4] = b"SLR1";
const SLOT_HEAD: usize = 20;

impl Slotted {
    pub const SLOT: usize = 512;

    /// Reads the record of file `name` in `dir`: a slotted file's newest
    /// valid slot, or the whole file when it is plain text (written by an
    /// earlier release with [`write_atomic`]). None when it is missing or
    /// no slot is valid.
    pub fn read(dir: &Path, name: &str) -> (Self, Option<String>) {
        let Ok(bytes) = fs::read(dir.join(name)) else {
            return (Self::default(), None);
        };
        let slotted = bytes.len() == 2 * Self::SLOT
            && bytes.chunks(Self::SLOT).any(|s| s.starts_with(SLOT_MAGIC));
        if !slotted {
            return (Self::default(), String::from_utf8(bytes).ok());
        }
        let best = bytes
            .chunks(Self::SLOT)
            .filter_map(Self::parse_slot)
            .max_by_key(|(seq, _)| *seq);
        match best {
            Some((seq, text)) => (Self { seq }, Some(text)),
            None => (Self::default(), None),
        }
    }

    fn parse_slot(slot: &[u8]) -> Option<(u64, String)> {
        if !slot.starts_with(SLOT_MAGIC) {
            return None;
        }
        let seq = u64::from_be_bytes(slot[4..12].try_into().ok()?);
        let len = u32::from_be_bytes(slot[12..16].try_into().ok()?) as usize;
        let crc = u32::from_be_bytes(slot[16..20].try_into().ok()?);
        let text = slot.get(SLOT_HEAD..SLOT_HEAD + len)?;
        let mut sum = crc32c::crc32c(&slot[4..16]);
        sum = crc32c::crc32c_append(sum, text);
        if sum != crc {
            return None;
        }
        Some((seq, String::from_utf8(text.to_vec()).ok()?))
    }

    fn slot(seq: u64, text: &[u8]) -> Vec<u8> {
        let mut slot = vec![0u8; Self::SLOT];
        slot[..4].copy_from_slice(SLOT_MAGIC);
        slot[4..12].copy_from_slice(&seq.to_be_bytes());
        slot[12..16].copy_from_slice(&(text.len() as u32).to_be_bytes());
        let sum = crc32c::crc32c_append(crc32c::crc32c(&slot[4..16]), text);
        slot[16..20].copy_from_slice(&sum.to_be_bytes());
        slot[SLOT_HEAD..SLOT_HEAD + text.len()].copy_from_slice(text);
        slot
    }

    /// Writes `contents` durably: in place over the older slot, or, the
    /// first time (no slotted file yet), as a new file written atomically.
    /// A record too long for a slot is written as plain text, atomically.
    pub fn write(&mut self, dir: &Path, name: &str, contents: &str) -> Result<()> {
        let text = contents.as_bytes();
        if text.len() > Self::SLOT - SLOT_HEAD {
            self.seq = 0;
            return write_atomic(dir, name, contents);
        }
        let seq = self.seq + 1;
        let at = (seq % 2) as usize * Self::SLOT;
        let slot = Self::slot(seq, text);
        let path = dir.join(name);
        let io = |e| StorageError::io(&path, e);
        if self.seq == 0 {
            let mut file = vec![0u8; 2 * Self::SLOT];
            file[at..at + Self::SLOT].copy_from_slice(&slot);
            write_atomic_bytes(dir, name, &file)?;
        } else {
            use std::os::unix::fs::FileExt;
            let f = fs::OpenOptions::new().write(true).open(&path).map_err(io)?;
            f.write_all_at(&slot, at as u64).map_err(io)?;
            f.sync_data().map_err(io)?;
        }
        self.seq = seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slotted_records_replace_each_other_and_survive_a_torn_slot() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(Slotted::read(d, "s").1, None);
        // A file from an earlier release: plain text, read as it is.
        write_atomic(d, "s", "1 2 3\n").unwrap();
        let (mut s, text) = Slotted::read(d, "s");
        assert_eq!(text.as_deref(), Some("1 2 3\n"));
        for i in 0..5 {
            s.write(d, "s", &format!("term {i}")).unwrap();
            let (again, text) = Slotted::read(d, "s");
            assert_eq!(text, Some(format!("term {i}")));
            assert_eq!(again.seq, s.seq);
        }
        assert_eq!(
            fs::metadata(d.join("s")).unwrap().len(),
            2 * Slotted::SLOT as u64
        );
        // The newest slot torn: the one before it holds.
        let mut bytes = fs::read(d.join("s")).unwrap();
        let newest = (s.seq % 2) as usize * Slotted::SLOT;
        bytes[newest + SLOT_HEAD] ^= 0xff;
        fs::write(d.join("s"), &bytes).unwrap();
        let (mut back, text) = Slotted::read(d, "s");
        assert_eq!(text.as_deref(), Some("term 3"));
        // Writing on from there overwrites the torn slot, not the good one.
        back.write(d, "s", "term 9").unwrap();
        assert_eq!(Slotted::read(d, "s").1.as_deref(), Some("term 9"));
        // Too long for a slot: plain text, still read back.
        let long = "9 ".repeat(400);
        back.write(d, "s", &long).unwrap();
        assert_eq!(Slotted::read(d, "s").1, Some(long));
        back.write(d, "s", "short again").unwrap();
        assert_eq!(Slotted::read(d, "s").1.as_deref(), Some("short again"));
    }
}
