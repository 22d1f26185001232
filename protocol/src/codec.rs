//! Request bodies in, framed responses out.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use std::ops::Range;

use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::error::{ProtocolError, Result};
use crate::header::api_name;

/// Decodes a request body.
///
/// Bytes left after the body are ignored, as Kafka's own parser does: some
/// clients send them (librdkafka's Metadata v12 ends with three), and refusing
/// would close their connection.
pub fn decode_body<T: Decodable>(body: &mut Bytes, key: ApiKey, version: i16) -> Result<T> {
    let decoded = T::decode(body, version).map_err(|e| ProtocolError::Malformed {
        api: api_name(key),
        version,
        reason: format!("{e:#}"),
    })?;
    if !body.is_empty() {
        tracing::debug!(
            api = api_name(key),
            version,
            trailing = body.len(),
            "ignoring bytes after the request body"
        );
    }
    Ok(decoded)
}

/// Encodes `[size][response header][body]` in one buffer sized up front.
pub fn encode_response<T: Encodable>(
    correlation_id: i32,
    key: ApiKey,
    version: i16,
    body: &T,
) -> Result<Bytes> {
    let err = |e: anyhow::Error| ProtocolError::Encode {
        api: api_name(key),
        version,
        reason: format!("{e:#}"),
    };
    let header_version = key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header
        .compute_size(header_version)
        .and_then(|h| Ok(h + body.compute_size(version)?))
        .map_err(err)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version).map_err(err)?;
    body.encode(&mut buf, version).map_err(err)?;
    debug_assert_eq!(buf.len(), 4 + size);
    Ok(buf.freeze())
}

/// Slices at least this long are sent from where they are rather than copied
/// into the response buffer.
const MIN_SPLICE: usize = 8 * 1024;

/// Like [`encode_response`], but the bytes of `shared` (record sets already in
/// memory, such as memory-mapped segment slices) are not copied: the response
/// comes out as the encoded parts between them and the slices themselves, in
/// order, to be written one after another (or in one vectored write).
pub fn encode_response_spliced<T: Encodable>(
    correlation_id: i32,
    key: ApiKey,
    version: i16,
    body: &T,
    shared: &[Bytes],
) -> Result<Vec<Bytes>> {
    let err = |e: anyhow::Error| ProtocolError::Encode {
        api: api_name(key),
        version,
        reason: format!("{e:#}"),
    };
    let header_version = key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header
        .compute_size(header_version)
        .and_then(|h| Ok(h + body.compute_size(version)?))
        .map_err(err)?;
    let copied = size - shared.iter().map(Bytes::len).sum::<usize>().min(size);
    let mut buf = SpliceBuf {
        parts: Vec::with_capacity(1 + 2 * shared.len()),
        head: BytesMut::with_capacity(4 + copied),
        before: 0,
        shared,
        next: 0,
    };
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version).map_err(err)?;
    body.encode(&mut buf, version).map_err(err)?;
    let parts = buf.finish();
    debug_assert_eq!(parts.iter().map(Bytes::len).sum::<usize>(), 4 + size);
    Ok(parts)
}

/// An encoding buffer that, handed a slice which is one of `shared` (same
/// address and length, in the order given), keeps a reference to it instead
/// of copying it.
///
/// The generated message encoders write forward only; the seek and range
/// calls of [`ByteBufMut`] (used by record-batch encoding, never by message
/// bodies) work within the part being written.
struct SpliceBuf<'a> {
    /// Finished parts, in order.
    parts: Vec<Bytes>,
    /// The part being written.
    head: BytesMut,
    /// Bytes in `parts`.
    before: usize,
    shared: &'a [Bytes],
    /// The first of `shared` not yet met.
    next: usize,
}

impl SpliceBuf<'_> {
    fn finish(mut self) -> Vec<Bytes> {
        if !self.head.is_empty() {
            self.parts.push(self.head.freeze());
        }
        self.parts
    }

    /// The entry of `shared` that `src` is, if any, from `next` on.
    fn shared_match(&self, src: &[u8]) -> Option<usize> {
        if src.len() < MIN_SPLICE {
            return None;
        }
        (self.next..self.shared.len()).find(|&i| {
            let b = &self.shared[i];
            b.as_ptr() == src.as_ptr() && b.len() == src.len()
        })
    }
}

// SAFETY: every method hands on to `head`, a BytesMut, whose own guarantees
// hold; `put_slice` only adds whole parts beside it.
unsafe impl BufMut for SpliceBuf<'_> {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`, which is
        // `head`'s.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.shared_match(src) {
            Some(i) => {
                if !self.head.is_empty() {
                    let done = self.head.split().freeze();
                    self.before += done.len();
                    self.parts.push(done);
                }
                self.before += src.len();
                self.parts.push(self.shared[i].clone());
                self.next = i + 1;
            }
            None => self.head.extend_from_slice(src),
        }
    }
}

impl ByteBufMut for SpliceBuf<'_> {
    fn offset(&self) -> usize {
        self.before + self.head.len()
    }

    fn seek(&mut self, offset: usize) {
        self.head.seek(offset.saturating_sub(self.before));
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let start = r.start.saturating_sub(self.before);
        let end = r.end.saturating_sub(self.before);
        self.head.range(start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest, MetadataResponse};

    /// A Fetch response with record sets of the given sizes in two topics.
    fn fetch_response(
        version: i16,
        sizes: &[usize],
    ) -> (kafka_protocol::messages::FetchResponse, Vec<Bytes>) {
        use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        let sets: Vec<Bytes> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Bytes::from((0..n).map(|b| (b * 7 + i) as u8).collect::<Vec<u8>>()))
            .collect();
        let topics = sets
            .chunks(2)
            .enumerate()
            .map(|(t, pair)| {
                FetchableTopicResponse::default()
                    .with_topic(kafka_protocol::messages::TopicName(
                        if version < 13 {
                            format!("t{t}")
                        } else {
                            String::new()
                        }
                        .into(),
                    ))
                    .with_partitions(
                        pair.iter()
                            .enumerate()
                            .map(|(p, r)| {
                                PartitionData::default()
                                    .with_partition_index(p as i32)
                                    .with_high_watermark(1000)
                                    .with_records(Some(r.clone()))
                            })
                            .collect(),
                    )
            })
            .collect();
        let resp = kafka_protocol::messages::FetchResponse::default()
            .with_session_id(3)
            .with_responses(topics);
        (resp, sets)
    }

    #[test]
    fn spliced_fetch_is_the_same_bytes_with_large_record_sets_shared_not_copied() {
        // 7 (non-flexible) and 12, 17 (flexible: compact lengths, tags).
        for version in [7, 12, 17] {
            let (resp, sets) = fetch_response(version, &[64 * 1024, 100, 0, 1 << 20]);
            let whole = encode_response(9, ApiKey::Fetch, version, &resp).unwrap();
            let parts = encode_response_spliced(9, ApiKey::Fetch, version, &resp, &sets).unwrap();
            let joined: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
            assert_eq!(joined, whole.to_vec(), "v{version}");
            // The two large sets are parts of their own, the very same memory;
            // the small ones were copied into the encoded parts.
            let shared: Vec<usize> = parts
                .iter()
                .filter(|p| {
                    sets.iter()
                        .any(|s| !s.is_empty() && s.as_ptr() == p.as_ptr())
                })
                .map(Bytes::len)
                .collect();
            assert_eq!(shared, vec![64 * 1024, 1 << 20], "v{version}");
            // Header, set, middle, set, and in flexible versions the tagged
            // fields after the last set.
            let tail = usize::from(version >= 12);
            assert_eq!(parts.len(), 4 + tail, "v{version}");
        }
    }

    #[test]
    fn spliced_encoding_copies_equal_bytes_that_are_not_the_shared_memory() {
        // Same content at another address (a copy) is not mistaken for it.
        let (resp, sets) = fetch_response(16, &[32 * 1024, 32 * 1024]);
        let copies: Vec<Bytes> = sets.iter().map(|s| Bytes::copy_from_slice(s)).collect();
        let parts = encode_response_spliced(1, ApiKey::Fetch, 16, &resp, &copies).unwrap();
        assert_eq!(parts.len(), 1);
        let whole = encode_response(1, ApiKey::Fetch, 16, &resp).unwrap();
        assert_eq!(parts[0], whole);
    }

    #[test]
    fn api_versions_response_header_is_v0_even_for_v3() {
        let body = ApiVersionsResponse::default();
        let framed = encode_response(7, ApiKey::ApiVersions, 3, &body).unwrap();
        let size = i32::from_be_bytes(framed[..4].try_into().unwrap()) as usize;
        assert_eq!(size, framed.len() - 4);
        assert_eq!(&framed[4..8], &7i32.to_be_bytes());
        // v0 header is the correlation id alone; the body starts with error_code 0.
        assert_eq!(&framed[8..10], &[0, 0]);
    }

    #[test]
    fn flexible_responses_carry_an_empty_tag_buffer_in_the_header() {
        let body = MetadataResponse::default();
        let framed = encode_response(1, ApiKey::Metadata, 12, &body).unwrap();
        assert_eq!(
            framed[8], 0,
            "empty tagged-field section after correlation id"
        );
    }

    #[test]
    fn trailing_bytes_after_a_body_are_tolerated() {
        let req = MetadataRequest::default().with_topics(None);
        let mut buf = BytesMut::new();
        req.encode(&mut buf, 4).unwrap();
        buf.extend_from_slice(&[0, 0, 0]);
        let mut body = buf.freeze();
        let r: MetadataRequest = decode_body(&mut body, ApiKey::Metadata, 4).unwrap();
        assert!(r.topics.is_none());
    }

    #[test]
    fn a_truncated_body_is_malformed() {
        let req = MetadataRequest::default().with_topics(None);
        let mut buf = BytesMut::new();
        req.encode(&mut buf, 4).unwrap();
        let mut body = buf.freeze().slice(..2);
        let r: Result<MetadataRequest> = decode_body(&mut body, ApiKey::Metadata, 4);
        assert!(matches!(r, Err(ProtocolError::Malformed { .. })));
    }
}
