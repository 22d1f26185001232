//! A process-wide bound on open segment files.
//!
//! A broker with tens of thousands of partitions cannot keep every segment's
//! file open and mapped: the open-file limit (`ulimit -n`) and the kernel's
//! `vm.max_map_count` would run out. So a segment opens its `.log` file, and
//! maps it, when it is first used, and the least recently used segments are
//! closed again whenever more than [`capacity`] are open. Nothing is lost by
//! closing: written data is in the page cache (an fsync through any later
//! handle covers it), and slices handed out keep their own map alive.
//!
//! Recency is a global tick stamped on every use; eviction closes the oldest
//! eighth at once so its cost (a sort of the open set) is paid rarely. A
//! segment busy at that moment (its slot lock held) is skipped, never waited
//! for, so two threads opening segments cannot deadlock.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use memmap2::{Mmap, MmapOptions};

use crate::error::{Result, StorageError};

/// Until [`set_capacity`] is called: enough for tests and small brokers.
const DEFAULT_CAPACITY: usize = 1024;

static CAPACITY: AtomicUsize = AtomicUsize::new(DEFAULT_CAPACITY);
static TICK: AtomicU64 = AtomicU64::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
static OPEN: Mutex<Option<HashMap<u64, Weak<SlotInner>>>> = Mutex::new(None);

/// Most segment files open at once (at least 16).
pub fn set_capacity(n: usize) {
    CAPACITY.store(n.max(16), Ordering::Relaxed);
}

pub fn capacity() -> usize {
    CAPACITY.load(Ordering::Relaxed)
}

/// Segment files open right now.
pub fn open_count() -> usize {
    registry().as_ref().map_or(0, HashMap::len)
}

fn registry() -> MutexGuard<'static, Option<HashMap<u64, Weak<SlotInner>>>> {
    OPEN.lock().unwrap_or_else(|p| p.into_inner())
}

/// An open segment file and its map; cheap to clone.
#[derive(Clone)]
pub struct OpenFile {
    pub file: Arc<File>,
    pub map: Arc<Mmap>,
}

impl OpenFile {
    /// Where `bytes` starts in the file, when it lies within this file's
    /// map (a slice read from it, however cut since).
    pub fn position_of(&self, bytes: &[u8]) -> Option<u64> {
        let base = self.map.as_ptr() as usize;
        let start = bytes.as_ptr() as usize;
        let inside = start >= base && start + bytes.len() <= base + self.map.len();
        inside.then(|| (start - base) as u64)
    }
}

impl std::fmt::Debug for OpenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenFile")
            .field("map_len", &self.map.len())
            .finish()
    }
}

struct SlotInner {
    id: u64,
    path: PathBuf,
    last_used: AtomicU64,
    open: Mutex<Option<OpenFile>>,
}

impl SlotInner {
    fn lock(&self) -> MutexGuard<'_, Option<OpenFile>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One segment's file: opened on demand, closed when the cache needs room.
pub struct FileSlot {
    inner: Arc<SlotInner>,
}

/// Every map handed out, by the (device, inode) of its file: a file may be
/// cut only while no map of it is alive, whichever segment (or earlier
/// incarnation of the log) made the map.
type Maps = HashMap<(u64, u64), Vec<Weak<Mmap>>>;
static MAPS: Mutex<Option<(Maps, usize)>> = Mutex::new(None);

fn inode(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

// SAFETY note for every map: Sluice's own process is the only writer of
// segment files and only appends past what readers can see; a file is cut
// only when no map of it is alive (see `FileSlot::cut`). Pages past the end
// of the file are mapped but never read.
fn map(file: &File, path: &Path, len: usize) -> Result<Arc<Mmap>> {
    let meta = file.metadata().map_err(|e| StorageError::io(path, e))?;
    // SAFETY: see above.
    let map = unsafe { MmapOptions::new().len(len.max(1)).map(file) }
        .map_err(|e| StorageError::io(path, e))?;
    let map = Arc::new(map);
    let mut maps = MAPS.lock().unwrap_or_else(|p| p.into_inner());
    let (maps, inserts) = maps.get_or_insert_with(Default::default);
    let list = maps.entry(inode(&meta)).or_default();
    list.retain(|m| m.strong_count() > 0);
    list.push(Arc::downgrade(&map));
    *inserts += 1;
    if *inserts % 4096 == 0 {
        maps.retain(|_, l| {
            l.retain(|m| m.strong_count() > 0);
            !l.is_empty()
        });
    }
    Ok(map)
}

/// Whether some map of the file at `path` is still alive.
fn mapped(path: &Path) -> Result<bool> {
    let meta = std::fs::metadata(path).map_err(|e| StorageError::io(path, e))?;
    let maps = MAPS.lock().unwrap_or_else(|p| p.into_inner());
    Ok(maps
        .as_ref()
        .and_then(|(m, _)| m.get(&inode(&meta)))
        .is_some_and(|l| l.iter().any(|m| m.strong_count() > 0)))
}

impl FileSlot {
    /// A slot for `path`, holding `file` (already open) mapped over `map_len`
    /// bytes.
    pub fn with_file(path: PathBuf, file: File, map_len: usize) -> Result<Self> {
        let map = map(&file, &path, map_len)?;
        let slot = Self {
            inner: Arc::new(SlotInner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                path,
                last_used: AtomicU64::new(TICK.fetch_add(1, Ordering::Relaxed)),
                open: Mutex::new(Some(OpenFile {
                    file: Arc::new(file),
                    map,
                })),
            }),
        };
        slot.register();
        Ok(slot)
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The open file, opening and mapping it over at least `map_len` bytes
    /// if it was closed.
    pub fn get(&self, map_len: usize) -> Result<OpenFile> {
        self.inner
            .last_used
            .store(TICK.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        let mut open = self.inner.lock();
        if let Some(o) = &*open {
            return Ok(o.clone());
        }
        let path = &self.inner.path;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| StorageError::io(path, e))?;
        let map = map(&file, path, map_len)?;
        let o = OpenFile {
            file: Arc::new(file),
            map,
        };
        *open = Some(o.clone());
        drop(open);
        self.register();
        Ok(o)
    }

    /// Replaces the map with one of `len` bytes (the file outgrew the old
    /// one; slices of the old map keep it alive).
    pub fn remap(&self, len: usize) -> Result<OpenFile> {
        let mut o = self.get(len)?;
        if o.map.len() >= len {
            return Ok(o);
        }
        let mut open = self.inner.lock();
        o.map = map(&o.file, &self.inner.path, len)?;
        *open = Some(o.clone());
        Ok(o)
    }

    /// Cuts the file to `len` bytes and fsyncs it. In place when no map of
    /// it is alive; otherwise the kept prefix is copied to a new file
    /// renamed over the old one, so slices in flight keep reading the old
    /// inode (cutting pages under a live map would make reads of them
    /// fault). Callers hold no `OpenFile` of this slot meanwhile.
    pub fn cut(&self, len: u64) -> Result<()> {
        let path = &self.inner.path;
        let io = |p: &Path| {
            let p = p.to_owned();
            move |e| StorageError::io(p, e)
        };
        let mut open = self.inner.lock();
        let was_open = open.take().is_some();
        if !mapped(path)? {
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io(path))?;
            f.set_len(len).map_err(io(path))?;
            f.sync_all().map_err(io(path))?;
        } else {
            let swap = path.with_extension("log.swap");
            let mut out = File::create(&swap).map_err(io(&swap))?;
            let mut kept = std::io::Read::take(File::open(path).map_err(io(path))?, len);
            let copied = std::io::copy(&mut kept, &mut out).map_err(io(&swap))?;
            if copied != len {
                return Err(StorageError::io(
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("{copied} bytes where {len} were expected"),
                    ),
                ));
            }
            out.sync_all().map_err(io(&swap))?;
            std::fs::rename(&swap, path).map_err(io(path))?;
            // The rename itself on disk: lost in a crash, the longer file
            // would come back, and with it the entries cut off (a replica
            // truncates its log to the leader's before appending).
            if let Some(dir) = path.parent() {
                crate::checkpoint::sync_dir(dir)?;
            }
        }
        drop(open);
        if was_open {
            self.unregister();
        }
        Ok(())
    }

    /// Closes the file if it is open (it reopens on the next use).
    pub fn close(&self) {
        if self.inner.lock().take().is_some() {
            self.unregister();
        }
    }

    fn register(&self) {
        let mut reg = registry();
        let open = reg.get_or_insert_with(HashMap::new);
        open.insert(self.inner.id, Arc::downgrade(&self.inner));
        let cap = capacity();
        if open.len() > cap {
            evict(open, cap, self.inner.id);
        }
    }

    fn unregister(&self) {
        if let Some(open) = registry().as_mut() {
            open.remove(&self.inner.id);
        }
    }
}

impl Drop for FileSlot {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// Closes the least recently used files until an eighth of the capacity is
/// free again, sparing `keep` and any slot whose lock is held.
fn evict(open: &mut HashMap<u64, Weak<SlotInner>>, cap: usize, keep: u64) {
    let target = cap - cap / 8;
    let mut by_age: Vec<(u64, u64)> = open
        .iter()
        .filter(|&(&id, _)| id != keep)
        .map(|(&id, w)| {
            let used = w
                .upgrade()
                .map_or(0, |s| s.last_used.load(Ordering::Relaxed));
            (used, id)
        })
        .collect();
    by_age.sort_unstable();
    for (_, id) in by_age {
        if open.len() <= target {
            break;
        }
        let Some(slot) = open.get(&id).and_then(Weak::upgrade) else {
            open.remove(&id);
            continue;
        };
        // Busy means in use right now: not a candidate.
        if let Ok(mut open_file) = slot.open.try_lock() {
            *open_file = None;
            drop(open_file);
            open.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(dir: &Path, name: &str) -> FileSlot {
        let path = dir.join(name);
        std::fs::write(&path, b"hello world").unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        FileSlot::with_file(path, file, 4096).unwrap()
    }

    fn is_open(s: &FileSlot) -> bool {
        s.inner.lock().is_some()
    }

    // One test touches the global capacity, so the cases run in sequence.
    #[test]
    fn least_recently_used_files_close_and_reopen_on_use() {
        let dir = tempfile::tempdir().unwrap();
        set_capacity(16);
        let slots: Vec<FileSlot> = (0..40).map(|i| slot(dir.path(), &format!("{i}"))).collect();
        let open = slots.iter().filter(|s| is_open(s)).count();
        assert!(open <= 16, "{open} open");
        // The newest stayed open, the oldest were closed.
        assert!(is_open(&slots[39]));
        assert!(!is_open(&slots[0]));
        // A closed file reopens with its contents.
        let o = slots[0].get(4096).unwrap();
        assert_eq!(&o.map[..11], b"hello world");
        assert!(is_open(&slots[0]));
        // A map handed out outlives its slot's eviction.
        for s in &slots[1..] {
            s.get(4096).unwrap();
        }
        assert!(!is_open(&slots[0]));
        assert_eq!(&o.map[..5], b"hello");

        // Cutting under a live map copies; without one it cuts in place.
        let s = &slots[39];
        let held = s.get(4096).unwrap();
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let before = inode(s.path());
        s.cut(5).unwrap();
        assert_ne!(inode(s.path()), before, "a live map forces a copy");
        assert_eq!(&held.map[..11], b"hello world");
        drop(held);
        let before = inode(s.path());
        s.cut(2).unwrap();
        assert_eq!(inode(s.path()), before);
        assert_eq!(std::fs::read(s.path()).unwrap(), b"he");
        set_capacity(DEFAULT_CAPACITY);
    }
}
