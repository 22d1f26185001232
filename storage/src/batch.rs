//! The Kafka record batch (magic 2) header.
//!
//! ```text
//! 0  base offset        i64   ─┐ owned by the broker,
//! 8  batch length       i32    │ outside the CRC
//! 12 partition leader epoch i32┘
//! 16 magic              i8 (= 2)
//! 17 crc                u32   CRC-32C of bytes 21..end
//! 21 attributes         i16   bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control
//! 23 last offset delta  i32
//! 27 base timestamp     i64
//! 35 max timestamp      i64
//! 43 producer id        i64
//! 51 producer epoch     i16
//! 53 base sequence      i32
//! 57 record count       i32
//! 61 records…
//! ```

use crate::error::{Result, StorageError};

pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before the batch-length field's counted region (base offset + length).
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;

pub const ATTR_TIMESTAMP_TYPE: i16 = 1 << 3;
pub const ATTR_TRANSACTIONAL: i16 = 1 << 4;
pub const ATTR_CONTROL: i16 = 1 << 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl BatchHeader {
    /// Reads the header at the start of `bytes` (which may hold more after it).
    /// Checks only what the header itself can tell: size fields and magic.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < BATCH_HEADER_LEN {
            return Err(StorageError::InvalidBatch(format!(
                "{} bytes cannot hold a {BATCH_HEADER_LEN}-byte batch header",
                bytes.len()
            )));
        }
        let h = BatchHeader {
            base_offset: i64_at(bytes, 0),
            batch_length: i32_at(bytes, 8),
            partition_leader_epoch: i32_at(bytes, 12),
            magic: bytes[16] as i8,
            crc: u32::from_be_bytes(bytes[17..21].try_into().expect("4 bytes")),
            attributes: i16_at(bytes, 21),
            last_offset_delta: i32_at(bytes, 23),
            base_timestamp: i64_at(bytes, 27),
            max_timestamp: i64_at(bytes, 35),
            producer_id: i64_at(bytes, 43),
            producer_epoch: i16_at(bytes, 51),
            base_sequence: i32_at(bytes, 53),
            record_count: i32_at(bytes, 57),
        };
        if h.magic != 2 {
            return Err(StorageError::InvalidBatch(format!(
                "magic {} (only 2 is stored)",
                h.magic
            )));
        }
        if (h.batch_length as i64) < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(StorageError::InvalidBatch(format!(
                "batch length {} is shorter than a header",
                h.batch_length
            )));
        }
        // -1 only on a control batch: a replicated log's own entry that
        // takes no offset (see [`hide`]).
        if h.last_offset_delta < 0 && !(h.last_offset_delta == -1 && h.is_control()) {
            return Err(StorageError::InvalidBatch(format!(
                "negative last offset delta {}",
                h.last_offset_delta
            )));
        }
        Ok(h)
    }

    /// Bytes the whole batch occupies, header included.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// A batch that takes no offset (last offset delta -1, a control
    /// batch): an entry of a replicated log's own that no reader sees.
    pub fn is_hidden(&self) -> bool {
        self.last_offset_delta == -1
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn compression(&self) -> i16 {
        self.attributes & 0x7
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE != 0
    }

    /// Checks that `batch` is exactly this header's batch and that its CRC holds.
    pub fn validate_crc(&self, batch: &[u8]) -> Result<()> {
        if batch.len() < self.total_size() {
            return Err(StorageError::InvalidBatch(format!(
                "batch claims {} bytes but {} are present",
                self.total_size(),
                batch.len()
            )));
        }
        let computed = crc32c::crc32c(&batch[CRC_START..self.total_size()]);
        if computed != self.crc {
            return Err(StorageError::CorruptBatch {
                stored: self.crc,
                computed,
            });
        }
        Ok(())
    }
}

/// Parses and fully validates the single batch that `batch` must be.
pub fn validate(batch: &[u8]) -> Result<BatchHeader> {
    let h = BatchHeader::parse(batch)?;
    if h.total_size() != batch.len() {
        return Err(StorageError::InvalidBatch(format!(
            "batch length says {} bytes, {} were given",
            h.total_size(),
            batch.len()
        )));
    }
    h.validate_crc(batch)?;
    Ok(h)
}

/// Writes the broker-owned fields (outside the CRC) into a copy of the first 16 bytes.
pub fn patched_prefix(batch: &[u8], base_offset: i64, leader_epoch: i32) -> [u8; 16] {
    let mut p = [0u8; 16];
    p.copy_from_slice(&batch[..16]);
    p[0..8].copy_from_slice(&base_offset.to_be_bytes());
    p[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    p
}

/// Makes a control batch one that takes no offset: its last offset delta
/// becomes -1, so its base offset is also the offset after it and the next
/// batch starts at the same offset. A replicated log stores its own entries
/// (a new leader's empty entry, configuration changes, commands) this way:
/// they hold a place in the log, never a Kafka offset, and reads never
/// return them.
pub fn hide(batch: &mut [u8]) {
    debug_assert!(
        i16_at(batch, 21) & ATTR_CONTROL != 0,
        "only control batches hide"
    );
    batch[23..27].copy_from_slice(&(-1i32).to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Sets LogAppendTime on a copy of the batch: the timestamp-type bit and the max
/// timestamp (clients read the max timestamp as every record's time in such a
/// batch, as Kafka defines it), then recomputes the CRC.
pub fn with_log_append_time(batch: &[u8], time: i64) -> Vec<u8> {
    let mut b = batch.to_vec();
    let attrs = i16_at(&b, 21) | ATTR_TIMESTAMP_TYPE;
    b[21..23].copy_from_slice(&attrs.to_be_bytes());
    b[35..43].copy_from_slice(&time.to_be_bytes());
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A batch with the header of `original` (base offset, leader epoch, last
/// offset delta, timestamps, producer id, epoch and base sequence) around a new
/// records section: `records` holding `count` records (compressed as
/// `attributes` says). The compactor uses it to drop records from a batch
/// without moving any offset.
pub fn with_records(original: &[u8], records: &[u8], count: i32, attributes: i16) -> Vec<u8> {
    let mut b = Vec::with_capacity(BATCH_HEADER_LEN + records.len());
    b.extend_from_slice(&original[..BATCH_HEADER_LEN]);
    b.extend_from_slice(records);
    let length = (b.len() - LOG_OVERHEAD) as i32;
    b[8..12].copy_from_slice(&length.to_be_bytes());
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// One record for [`build`].
#[derive(Debug, Clone, Default)]
pub struct RecordSpec<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub timestamp: i64,
}

/// Options for [`build`].
#[derive(Debug, Clone, Copy)]
pub struct BuildOptions {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub control: bool,
    /// Part of a transaction (data, or a COMMIT/ABORT marker with `control`).
    pub transactional: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            control: false,
            transactional: false,
        }
    }
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// Builds an uncompressed v2 batch (base offset 0), for tests and benchmarks.
pub fn build(records: &[RecordSpec<'_>], opts: BuildOptions) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let base_ts = records[0].timestamp;
    let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(base_ts);
    let mut body = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut rec = Vec::new();
        rec.push(0u8); // record attributes
        put_varint(&mut rec, r.timestamp - base_ts);
        put_varint(&mut rec, i as i64);
        match r.key {
            Some(k) => {
                put_varint(&mut rec, k.len() as i64);
                rec.extend_from_slice(k);
            }
            None => put_varint(&mut rec, -1),
        }
        match r.value {
            Some(v) => {
                put_varint(&mut rec, v.len() as i64);
                rec.extend_from_slice(v);
            }
            None => put_varint(&mut rec, -1),
        }
        put_varint(&mut rec, 0); // headers
        put_varint(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let mut b = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((BATCH_HEADER_LEN - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    let attrs: i16 = if opts.control { ATTR_CONTROL } else { 0 }
        | if opts.transactional {
            ATTR_TRANSACTIONAL
        } else {
            0
        };
    b.extend_from_slice(&attrs.to_be_bytes());
    b.extend_from_slice(&((records.len() - 1) as i32).to_be_bytes());
    b.extend_from_slice(&base_ts.to_be_bytes());
    b.extend_from_slice(&max_ts.to_be_bytes());
    b.extend_from_slice(&opts.producer_id.to_be_bytes());
    b.extend_from_slice(&opts.producer_epoch.to_be_bytes());
    b.extend_from_slice(&opts.base_sequence.to_be_bytes());
    b.extend_from_slice(&(records.len() as i32).to_be_bytes());
    b.extend_from_slice(&body);
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A batch of `count` records whose values are `value_size` bytes, at `timestamp`.
pub fn build_simple(count: usize, value_size: usize, timestamp: i64) -> Vec<u8> {
    let value = vec![b'v'; value_size];
    let specs: Vec<RecordSpec<'_>> = (0..count)
        .map(|_| RecordSpec {
            key: None,
            value: Some(&value),
            timestamp,
        })
        .collect();
    build(&specs, BuildOptions::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_batches_validate_and_report_their_fields() {
        let b = build(
            &[
                RecordSpec {
                    key: Some(b"k"),
                    value: Some(b"v1"),
                    timestamp: 100,
                },
                RecordSpec {
                    key: None,
                    value: Some(b"v2"),
                    timestamp: 250,
                },
            ],
            BuildOptions {
                producer_id: 7,
                producer_epoch: 1,
                base_sequence: 3,
                ..BuildOptions::default()
            },
        );
        let h = validate(&b).unwrap();
        assert_eq!(h.record_count, 2);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!((h.base_timestamp, h.max_timestamp), (100, 250));
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (7, 1, 3)
        );
        assert!(!h.is_control());
    }

    #[test]
    fn any_flipped_bit_after_the_broker_fields_is_caught() {
        let b = build_simple(3, 10, 5);
        for i in 16..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x10;
            assert!(validate(&c).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn broker_fields_do_not_affect_the_crc() {
        let b = build_simple(1, 1, 0);
        let mut c = b.clone();
        c[..16].copy_from_slice(&patched_prefix(&b, 12345, 9));
        let h = validate(&c).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (12345, 9));
    }

    #[test]
    fn log_append_time_rewrites_and_stays_valid() {
        let b = build_simple(2, 1, 10);
        let c = with_log_append_time(&b, 99);
        let h = validate(&c).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99);
    }

    #[test]
    fn short_or_wrong_magic_input_is_an_error_not_a_panic() {
        assert!(BatchHeader::parse(&[0; 10]).is_err());
        let mut b = build_simple(1, 1, 0);
        b[16] = 1;
        assert!(BatchHeader::parse(&b).is_err());
        let mut b = build_simple(1, 1, 0);
        b[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(BatchHeader::parse(&b).is_err());
    }
}
