//! compression.type: a topic that names a codec stores every batch with it.
//! A batch produced with another codec is decoded and encoded again with the
//! topic's, keeping everything a consumer or the idempotence check sees:
//! offsets deltas, timestamps and their type, keys, values, headers, producer
//! id, epoch and sequences, control and transactional flags.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use crate::error::BrokerError;

/// The codec named by a compression.type value; None keeps what the
/// producer sent.
pub fn target(compression_type: &str) -> Option<Compression> {
    match compression_type {
        "uncompressed" => Some(Compression::None),
        "gzip" => Some(Compression::Gzip),
        "snappy" => Some(Compression::Snappy),
        "lz4" => Some(Compression::Lz4),
        "zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// The codec bits of a batch's attributes.
fn codec_of(batch: &[u8]) -> i16 {
    i16::from_be_bytes([batch[21], batch[22]]) & 0x7
}

/// `batch` stored with `codec`: as is when it already uses it, else
/// re-encoded as one batch with the same header fields.
pub fn recompress(batch: &Bytes, codec: Compression) -> Result<Bytes, BrokerError> {
    if codec_of(batch) == codec as i16 {
        return Ok(batch.clone());
    }
    let mut input = batch.clone();
    let set = RecordBatchDecoder::decode(&mut input)
        .map_err(|e| BrokerError::CorruptMessage(format!("cannot decompress the batch: {e}")))?;
    let mut out = BytesMut::with_capacity(batch.len());
    RecordBatchEncoder::encode(
        &mut out,
        &set.records,
        &RecordEncodeOptions {
            version: 2,
            compression: codec,
        },
    )
    .map_err(|e| BrokerError::InvalidRecord(format!("cannot compress the batch: {e}")))?;
    Ok(out.freeze())
}

/// Record batches for unit tests: idempotent-producer records (producer 7,
/// epoch 1, sequences from 40) with one header each.
#[cfg(test)]
pub(crate) mod test_batch {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// One batch of `records` (key, value) at offsets from `first_offset`.
    pub fn encode(
        first_offset: i64,
        records: &[(Option<Bytes>, Option<Bytes>)],
        codec: Compression,
    ) -> Bytes {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (key, value))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: 7,
                producer_epoch: 1,
                timestamp_type: TimestampType::Creation,
                offset: first_offset + i as i64,
                sequence: 40 + i as i32,
                timestamp: 1_000 + i as i64,
                key: key.clone(),
                value: value.clone(),
                headers: [(
                    kafka_protocol::protocol::StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"x")),
                )]
                .into_iter()
                .collect(),
            })
            .collect();
        let mut b = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut b,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: codec,
            },
        )
        .unwrap();
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::BatchHeader;

    fn batch(codec: Compression) -> Bytes {
        let records: Vec<_> = (0..5)
            .map(|i| {
                (
                    Some(Bytes::from(format!("k{i}"))),
                    Some(Bytes::from(vec![b'v'; 300])),
                )
            })
            .collect();
        test_batch::encode(0, &records, codec)
    }

    #[test]
    fn every_codec_round_trips_with_header_fields_kept() {
        let all = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];
        for from in all {
            let original = batch(from);
            let want = RecordBatchDecoder::decode(&mut original.clone())
                .unwrap()
                .records;
            let h0 = BatchHeader::parse(&original).unwrap();
            for to in all {
                let out = recompress(&original, to).unwrap();
                let h = BatchHeader::parse(&out).unwrap();
                h.validate_crc(&out).unwrap();
                assert_eq!(h.compression(), to as i16, "{from:?} -> {to:?}");
                assert_eq!(
                    (
                        h.producer_id,
                        h.producer_epoch,
                        h.base_sequence,
                        h.record_count,
                        h.last_offset_delta
                    ),
                    (
                        h0.producer_id,
                        h0.producer_epoch,
                        h0.base_sequence,
                        h0.record_count,
                        h0.last_offset_delta
                    )
                );
                assert_eq!(h.max_timestamp, h0.max_timestamp);
                let got = RecordBatchDecoder::decode(&mut out.clone())
                    .unwrap()
                    .records;
                assert_eq!(got, want, "{from:?} -> {to:?}");
            }
        }
        // Compression pays off on these values.
        assert!(
            recompress(&batch(Compression::None), Compression::Zstd)
                .unwrap()
                .len()
                < batch(Compression::None).len() / 2
        );
    }

    #[test]
    fn garbage_inside_a_compressed_batch_is_an_error() {
        let mut b = BytesMut::from(&batch(Compression::Gzip)[..]);
        let n = b.len();
        b[n - 10] ^= 0xff;
        assert!(recompress(&b.freeze(), Compression::None).is_err());
    }
}
