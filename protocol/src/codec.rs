//! Request bodies in, framed responses out.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
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

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest, MetadataResponse};

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
