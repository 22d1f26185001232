//! The storage error type.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid record batch: {0}")]
    InvalidBatch(String),
    #[error("corrupt record batch: CRC {stored:#010x} stored, {computed:#010x} computed")]
    CorruptBatch { stored: u32, computed: u32 },
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error("entry index {index} is out of range [{first}, {last}]")]
    EntryOutOfRange { index: u64, first: u64, last: u64 },
    #[error("offset {0} is not a batch boundary")]
    NotABatchBoundary(i64),
    #[error("segment {0} was removed or changed while it was being cleaned")]
    SegmentGone(i64),
}

impl StorageError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<std::io::Error> for StorageError {
    fn from(source: std::io::Error) -> Self {
        StorageError::Io {
            path: PathBuf::new(),
            source,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
