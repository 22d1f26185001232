//! Records inside a v2 batch, as the compactor needs them: each record's raw
//! bytes, offset, key and whether it is a tombstone. Nothing is re-encoded: a
//! kept record's bytes (with their offset and timestamp deltas, relative to
//! the batch header the compactor keeps) are copied as they are.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::compression::{
    Compressor, Decompressor, Gzip, Lz4, None as Plain, Snappy, Zstd,
};
use sluice_storage::{BATCH_HEADER_LEN, BatchHeader, batch};

/// One record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef {
    pub offset: i64,
    pub key: Option<Bytes>,
    /// None for a tombstone.
    pub value: Option<Bytes>,
    /// The whole record: its length prefix and body.
    pub raw: Bytes,
}

fn varint(b: &mut &[u8]) -> Result<i64, String> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let Some((&byte, rest)) = b.split_first() else {
            return Err("a varint runs past the end of the records".into());
        };
        *b = rest;
        z |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
        }
    }
    Err("a varint is longer than 10 bytes".into())
}

fn take<'a>(b: &mut &'a [u8], len: i64) -> Result<Option<&'a [u8]>, String> {
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if len > b.len() {
        return Err(format!(
            "a {len}-byte field runs past the end of its record"
        ));
    }
    let (field, rest) = b.split_at(len);
    *b = rest;
    Ok(Some(field))
}

/// The records section of `batch`, decompressed.
pub fn records_section(batch: &Bytes, h: &BatchHeader) -> Result<Bytes, String> {
    let mut body = batch.slice(BATCH_HEADER_LEN..h.total_size().min(batch.len()));
    let copy = |b: &mut Bytes| Ok(b.copy_to_bytes(b.remaining()));
    let out = match h.compression() {
        0 => Plain::decompress(&mut body, copy),
        1 => Gzip::decompress(&mut body, copy),
        2 => Snappy::decompress(&mut body, copy),
        3 => Lz4::decompress(&mut body, copy),
        4 => Zstd::decompress(&mut body, copy),
        c => return Err(format!("unknown compression codec {c}")),
    };
    out.map_err(|e| format!("cannot decompress the batch: {e}"))
}

/// The records of one batch, in order.
pub fn records(batch: &Bytes, h: &BatchHeader) -> Result<Vec<RecordRef>, String> {
    let section = records_section(batch, h)?;
    let mut out = Vec::with_capacity(h.record_count.max(0) as usize);
    let mut rest: &[u8] = &section;
    for _ in 0..h.record_count {
        let start = section.len() - rest.len();
        let len = varint(&mut rest)?;
        let mut body = take(&mut rest, len)?.ok_or("a record with a negative length")?;
        let end = section.len() - rest.len();
        let _attributes = take(&mut body, 1)?;
        let _timestamp_delta = varint(&mut body)?;
        let offset_delta = varint(&mut body)?;
        let key_len = varint(&mut body)?;
        let key = take(&mut body, key_len)?;
        let value_len = varint(&mut body)?;
        let value = take(&mut body, value_len)?;
        out.push(RecordRef {
            offset: h.base_offset + offset_delta,
            key: key.map(|k| section.slice_ref(k)),
            value: value.map(|v| section.slice_ref(v)),
            raw: section.slice(start..end),
        });
    }
    Ok(out)
}

/// `original` with only `kept` of its records (a subset, in order). The
/// header is kept, so every offset stays where it was; a batch left with no
/// records is stored as an empty, uncompressed batch.
pub fn rebuild(original: &[u8], h: &BatchHeader, kept: &[&RecordRef]) -> Result<Vec<u8>, String> {
    if kept.is_empty() {
        // An empty batch is no longer part of a transaction (or a marker):
        // nothing in it needs one, and a marker that guards nothing can go.
        let attributes = h.attributes & !(0x7 | batch::ATTR_TRANSACTIONAL | batch::ATTR_CONTROL);
        return Ok(batch::with_records(original, &[], 0, attributes));
    }
    let mut raw = BytesMut::with_capacity(kept.iter().map(|r| r.raw.len()).sum());
    for r in kept {
        raw.extend_from_slice(&r.raw);
    }
    let mut out = BytesMut::with_capacity(raw.len());
    let fill = |b: &mut BytesMut| {
        b.extend_from_slice(&raw);
        Ok(())
    };
    let done = match h.compression() {
        0 => Plain::compress(&mut out, fill),
        1 => Gzip::compress(&mut out, fill),
        2 => Snappy::compress(&mut out, fill),
        3 => Lz4::compress(&mut out, fill),
        4 => Zstd::compress(&mut out, fill),
        c => return Err(format!("unknown compression codec {c}")),
    };
    done.map_err(|e| format!("cannot compress the batch: {e}"))?;
    Ok(batch::with_records(
        original,
        &out,
        kept.len() as i32,
        h.attributes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recompress::test_batch;
    use kafka_protocol::records::{Compression, RecordBatchDecoder};

    fn batch(codec: Compression) -> Bytes {
        let records: Vec<_> = (0..6)
            .map(|i| {
                (
                    (i != 4).then(|| Bytes::from(format!("key-{}", i % 3))),
                    (i != 5).then(|| Bytes::from(format!("value-{i}"))),
                )
            })
            .collect();
        test_batch::encode(100, &records, codec)
    }

    #[test]
    fn records_are_read_and_a_subset_rebuilt_in_every_codec() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = batch(codec);
            let h = BatchHeader::parse(&b).unwrap();
            let recs = records(&b, &h).unwrap();
            let offsets: Vec<i64> = recs.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, (100..106).collect::<Vec<_>>());
            assert_eq!(recs[4].key, None);
            assert_eq!(recs[1].key.as_deref(), Some(&b"key-1"[..]));
            assert!(recs[5].value.is_none());
            assert_eq!(recs[0].value.as_deref(), Some(&b"value-0"[..]));

            let kept: Vec<&RecordRef> = recs.iter().filter(|r| r.offset % 2 == 1).collect();
            let out = Bytes::from(rebuild(&b, &h, &kept).unwrap());
            let h2 = BatchHeader::parse(&out).unwrap();
            h2.validate_crc(&out).unwrap();
            assert_eq!(
                (h2.base_offset, h2.last_offset_delta, h2.max_timestamp),
                (h.base_offset, h.last_offset_delta, h.max_timestamp)
            );
            assert_eq!((h2.producer_id, h2.base_sequence), (7, 40));
            assert_eq!((h2.record_count, h2.compression()), (3, codec as i16));
            // Kafka's own decoder agrees on what is left.
            let decoded = RecordBatchDecoder::decode(&mut out.clone())
                .unwrap()
                .records;
            let got: Vec<(i64, Option<Bytes>)> = decoded
                .iter()
                .map(|r| (r.offset, r.value.clone()))
                .collect();
            assert_eq!(
                got,
                vec![
                    (101, Some(Bytes::from("value-1"))),
                    (103, Some(Bytes::from("value-3"))),
                    (105, None)
                ],
                "{codec:?}"
            );
            assert_eq!(decoded[0].headers.len(), 1);

            let empty = Bytes::from(rebuild(&b, &h, &[]).unwrap());
            let he = BatchHeader::parse(&empty).unwrap();
            he.validate_crc(&empty).unwrap();
            assert_eq!((he.record_count, he.compression(), empty.len()), (0, 0, 61));
            assert_eq!(he.next_offset(), h.next_offset());
        }
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let b = batch(Compression::None);
        let h = BatchHeader::parse(&b).unwrap();
        for cut in BATCH_HEADER_LEN..b.len() {
            // Shorter record sections: every prefix must fail cleanly.
            let mut short = BytesMut::from(&b[..cut]);
            let len = (cut - 12) as i32;
            short[8..12].copy_from_slice(&len.to_be_bytes());
            let hs = BatchHeader::parse(&short).unwrap();
            assert!(records(&short.freeze(), &hs).is_err(), "cut at {cut}");
        }
        assert_eq!(records(&b, &h).unwrap().len(), 6);
    }
}
