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

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{Result, StorageError};

pub const CLEAN_SHUTDOWN: &str = "clean-shutdown";
pub const RECOVERY_POINT: &str = "recovery-point";
pub const LOG_START: &str = "log-start";

pub fn write_atomic(dir: &Path, name: &str, contents: &str) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let io = |p: &Path| {
        let p = p.to_owned();
        move |e| StorageError::io(p, e)
    };
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(contents.as_bytes()).map_err(io(&tmp))?;
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
