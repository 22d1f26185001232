//! The file-system seam.
//!
//! The log does every write and sync through a [`FileSystem`], so tests can make
//! the N-th write or every fsync fail and check that the log reports the error and
//! recovers to a valid prefix.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

pub trait FileSystem: Send + Sync + Debug {
    /// Opens a file for reading and writing, creating it if asked.
    fn open(&self, path: &Path, create: bool) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
    }
    fn write_at(&self, file: &File, buf: &[u8], pos: u64) -> io::Result<()> {
        file.write_all_at(buf, pos)
    }
    fn sync(&self, file: &File) -> io::Result<()> {
        let started = std::time::Instant::now();
        let r = file.sync_data();
        crate::stats::FSYNC.observe(started.elapsed());
        r
    }
    /// Writes back every dirty page of the file system `anchor` is on and
    /// commits its journal (syncfs), reporting any writeback error on it
    /// since `anchor` was opened.
    fn sync_filesystem(&self, anchor: &File) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let started = std::time::Instant::now();
        // SAFETY: syncfs only reads the descriptor, which `anchor` keeps open.
        let r = unsafe { libc::syncfs(anchor.as_raw_fd()) };
        crate::stats::FSYNC.observe(started.elapsed());
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Real files.
#[derive(Debug, Default)]
pub struct RealFs;

impl FileSystem for RealFs {}

/// Real files with injected failures.
#[derive(Debug)]
pub struct FaultyFs {
    /// Bytes that may still be written before writes fail (negative: unlimited).
    write_budget: AtomicI64,
    fail_syncs: AtomicBool,
}

impl Default for FaultyFs {
    fn default() -> Self {
        Self {
            write_budget: AtomicI64::new(-1),
            fail_syncs: AtomicBool::new(false),
        }
    }
}

impl FaultyFs {
    /// After `bytes` more bytes, every write fails (the failing write is partial,
    /// like a full disk).
    pub fn fail_writes_after(&self, bytes: i64) {
        self.write_budget.store(bytes, Ordering::SeqCst);
    }
    /// Whether a write limit was set and reached.
    pub fn exhausted(&self) -> bool {
        self.write_budget.load(Ordering::SeqCst) == 0
    }
    pub fn fail_syncs(&self, fail: bool) {
        self.fail_syncs.store(fail, Ordering::SeqCst);
    }
}

impl FileSystem for FaultyFs {
    fn write_at(&self, file: &File, buf: &[u8], pos: u64) -> io::Result<()> {
        let budget = self.write_budget.load(Ordering::SeqCst);
        if budget >= 0 {
            if (buf.len() as i64) > budget {
                file.write_all_at(&buf[..budget as usize], pos)?;
                self.write_budget.store(0, Ordering::SeqCst);
                return Err(io::Error::other("injected write failure"));
            }
            self.write_budget
                .fetch_sub(buf.len() as i64, Ordering::SeqCst);
        }
        file.write_all_at(buf, pos)
    }
    fn sync(&self, file: &File) -> io::Result<()> {
        if self.fail_syncs.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        file.sync_data()
    }
    fn sync_filesystem(&self, anchor: &File) -> io::Result<()> {
        if self.fail_syncs.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected syncfs failure"));
        }
        RealFs.sync_filesystem(anchor)
    }
}
