//! Request headers.
//!
//! Every request starts with `api_key: i16, api_version: i16, correlation_id: i32`
//! whatever its header version, so [`peek`] reads those three without knowing the
//! API. Only once the broker has decided it serves that key and version is the full
//! header (v0, v1 with client id, v2 with tagged fields) decoded.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

use crate::error::{ProtocolError, Result};

/// The fixed first eight bytes of every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Reads the fixed prefix of a request frame.
pub fn peek(frame: &[u8]) -> Result<RequestPrefix> {
    if frame.len() < 8 {
        return Err(ProtocolError::TruncatedHeader(frame.len()));
    }
    Ok(RequestPrefix {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// Human name of an API key, for logs and errors.
pub fn api_name(key: ApiKey) -> &'static str {
    // The generated enum variants carry Kafka's own API names.
    macro_rules! names {
        ($($v:ident),* $(,)?) => {
            match key { $(ApiKey::$v => stringify!($v),)* _ => "Other" }
        };
    }
    names!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        DescribeGroups,
        ListGroups,
        SaslHandshake,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        OffsetForLeaderEpoch,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        WriteTxnMarkers,
        TxnOffsetCommit,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
        DescribeConfigs,
        AlterConfigs,
        DescribeLogDirs,
        SaslAuthenticate,
        CreatePartitions,
        DeleteGroups,
        IncrementalAlterConfigs,
        OffsetDelete,
        DescribeCluster,
        DescribeProducers,
        ConsumerGroupHeartbeat,
        ConsumerGroupDescribe,
        GetTelemetrySubscriptions,
    )
}

/// Decodes the full request header of `frame`, leaving `frame` at the request body.
pub fn decode(frame: &mut Bytes, key: ApiKey, version: i16) -> Result<RequestHeader> {
    let header_version = key.request_header_version(version);
    RequestHeader::decode(frame, header_version).map_err(|e| ProtocolError::Malformed {
        api: api_name(key),
        version,
        reason: format!("request header: {e:#}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn peek_needs_eight_bytes() {
        assert!(matches!(
            peek(&[0, 18, 0]),
            Err(ProtocolError::TruncatedHeader(3))
        ));
        let p = peek(&[0, 18, 0, 3, 0, 0, 0, 7, 99]).unwrap();
        assert_eq!(
            p,
            RequestPrefix {
                api_key: 18,
                api_version: 3,
                correlation_id: 7
            }
        );
    }

    #[test]
    fn decodes_flexible_and_non_flexible_headers() {
        for (key, version) in [(ApiKey::Metadata, 1), (ApiKey::Metadata, 12)] {
            let h = RequestHeader::default()
                .with_request_api_key(key as i16)
                .with_request_api_version(version)
                .with_correlation_id(42)
                .with_client_id(Some(StrBytes::from_static_str("c")));
            let mut buf = BytesMut::new();
            h.encode(&mut buf, key.request_header_version(version))
                .unwrap();
            buf.extend_from_slice(b"body");
            let mut frame = buf.freeze();
            let got = decode(&mut frame, key, version).unwrap();
            assert_eq!(got.correlation_id, 42);
            assert_eq!(got.client_id.as_deref(), Some("c"));
            assert_eq!(&frame[..], b"body");
        }
    }
}
