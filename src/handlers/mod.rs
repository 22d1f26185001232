//! One handler per API, and the table that says which versions are served.
//!
//! [`SERVED`] is the single source of truth: the ApiVersions answer is built from
//! it and dispatch only happens for what it lists. A version appears here only
//! when its handler honours every field of that version and a client test
//! exercises it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{self as m, ApiKey, RequestHeader};
use sluice_protocol::codec::{decode_body, encode_response, encode_response_spliced};
use sluice_protocol::list_offsets_v0::ListOffsetsV0Request;
use sluice_protocol::versions::{ApiRange, VersionTable};
use sluice_protocol::{ProtocolError, Result};

use crate::broker::Broker;

pub(crate) mod acls;
mod alter_configs;
pub mod api_versions;
mod consumer_group;
mod create_partitions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_log_dirs;
mod describe_producers;
mod describe_quorum;
mod describe_topic_partitions;
mod elect_leaders;
mod fetch;
pub mod fetch_session;
mod group_admin;
mod groups;
mod init_producer_id;
mod list_config_resources;
mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
mod offsets;
mod produce;
mod raft_voters;
mod reassignments;
mod scram_credentials;
mod txn;
mod unregister_broker;

/// Everything a handler knows about the request it serves.
pub struct RequestContext {
    pub broker: Arc<Broker>,
    pub header: RequestHeader,
    pub version: i16,
    pub peer: SocketAddr,
    /// Who sent the request (see [`crate::security`]).
    pub session: Arc<crate::security::Session>,
}

/// (API, lowest served version, highest served version).
pub const SERVED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 0, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::UnregisterBroker, 0, 0),
    (ApiKey::AddRaftVoter, 0, 0),
    (ApiKey::RemoveRaftVoter, 0, 0),
    (ApiKey::ListConfigResources, 0, 1),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
];

pub fn version_table() -> VersionTable {
    VersionTable::new(
        SERVED
            .iter()
            .map(|&(key, min, max)| ApiRange { key, min, max })
            .collect(),
    )
}

macro_rules! dispatch {
    ($ctx:ident, $key:ident, $body:ident; $($api:ident => $req:ty => $handler:path),* $(,)?) => {
        match $key {
            // v0 has its own layout (not in the generated types).
            ApiKey::ListOffsets if $ctx.version == 0 => {
                let req: ListOffsetsV0Request = decode_body(&mut $body, $key, 0)?;
                let resp = list_offsets::handle_v0(&$ctx, req).await;
                encode_response($ctx.header.correlation_id, $key, 0, &resp).map(Some)
            }
            $(ApiKey::$api => {
                let req: $req = decode_body(&mut $body, $key, $ctx.version)?;
                let resp = $handler(&$ctx, req).await;
                crate::metrics::errors::observe(&$ctx.broker.metrics, sluice_protocol::header::api_name($key), &resp);
                encode_response($ctx.header.correlation_id, $key, $ctx.version, &resp).map(Some)
            })*
            ApiKey::Produce => {
                let req: m::ProduceRequest = decode_body(&mut $body, $key, $ctx.version)?;
                match produce::handle(&$ctx, req).await {
                    produce::Answer::Response(resp) => {
                        crate::metrics::errors::observe(&$ctx.broker.metrics, "Produce", &resp);
                        encode_response($ctx.header.correlation_id, $key, $ctx.version, &resp).map(Some)
                    }
                    produce::Answer::Silent => Ok(None),
                    produce::Answer::Close(reason) => Err(ProtocolError::Refused(reason)),
                }
            }
            other => Err(ProtocolError::UnknownApiKey(other as i16)),
        }
    };
}

/// A response still to come: a Produce waiting for its acknowledgements.
pub type Later = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<Bytes>>> + Send>>;

/// Phase one of a Produce: decodes it and appends its batches, in the order
/// the connection read it; the future returned waits for the
/// acknowledgements and encodes the response (none for acks=0).
pub async fn produce_appended(ctx: RequestContext, mut body: Bytes) -> Result<Later> {
    let req: m::ProduceRequest = decode_body(&mut body, ApiKey::Produce, ctx.version)?;
    let appended = produce::append_all(&ctx, req).await;
    Ok(Box::pin(async move {
        match appended.answer(&ctx).await {
            produce::Answer::Response(resp) => {
                crate::metrics::errors::observe(&ctx.broker.metrics, "Produce", &resp);
                encode_response(
                    ctx.header.correlation_id,
                    ApiKey::Produce,
                    ctx.version,
                    &resp,
                )
                .map(Some)
            }
            produce::Answer::Silent => Ok(None),
            produce::Answer::Close(reason) => Err(ProtocolError::Refused(reason)),
        }
    }))
}

/// A part of a response to write: bytes, and where they lie in a segment
/// file when they are records read from one (they may be sent from it).
pub struct Part {
    pub bytes: Bytes,
    pub file: Option<(Arc<std::fs::File>, u64)>,
}

/// A Fetch, answered as parts to write in order: the record sets read from
/// the log are never copied into the response buffer; they are written from
/// the segments' memory maps, or sent from their files.
pub async fn fetch_spliced(ctx: RequestContext, mut body: Bytes) -> Result<Vec<Part>> {
    let req: m::FetchRequest = decode_body(&mut body, ApiKey::Fetch, ctx.version)?;
    let (resp, sources) = fetch::handle_sourced(&ctx, req).await;
    crate::metrics::errors::observe(&ctx.broker.metrics, "Fetch", &resp);
    let shared: Vec<Bytes> = sources.iter().map(|(b, _)| b.clone()).collect();
    let parts = encode_response_spliced(
        ctx.header.correlation_id,
        ApiKey::Fetch,
        ctx.version,
        &resp,
        &shared,
    )?;
    Ok(parts
        .into_iter()
        .map(|bytes| {
            let file = sources
                .iter()
                .find(|(b, _)| b.as_ptr() == bytes.as_ptr() && b.len() == bytes.len())
                .and_then(|(_, f)| Some((f.file.clone(), f.position_of(&bytes)?)));
            Part { bytes, file }
        })
        .collect())
}

/// Decodes the body of a request the version table admitted, serves it, and
/// encodes the framed response.
pub async fn handle(ctx: RequestContext, key: ApiKey, mut body: Bytes) -> Result<Option<Bytes>> {
    dispatch!(ctx, key, body;
        ApiVersions => m::ApiVersionsRequest => api_versions::handle,
        Metadata => m::MetadataRequest => metadata::handle,
        Fetch => m::FetchRequest => fetch::handle,
        ListOffsets => m::ListOffsetsRequest => list_offsets::handle,
        CreateTopics => m::CreateTopicsRequest => create_topics::handle,
        InitProducerId => m::InitProducerIdRequest => init_producer_id::handle,
        DeleteTopics => m::DeleteTopicsRequest => delete_topics::handle,
        CreatePartitions => m::CreatePartitionsRequest => create_partitions::handle,
        DescribeConfigs => m::DescribeConfigsRequest => describe_configs::handle,
        DescribeCluster => m::DescribeClusterRequest => describe_cluster::handle,
        FindCoordinator => m::FindCoordinatorRequest => group_admin::find_coordinator,
        JoinGroup => m::JoinGroupRequest => groups::join,
        SyncGroup => m::SyncGroupRequest => groups::sync,
        Heartbeat => m::HeartbeatRequest => groups::heartbeat,
        LeaveGroup => m::LeaveGroupRequest => groups::leave,
        OffsetCommit => m::OffsetCommitRequest => offsets::commit,
        OffsetFetch => m::OffsetFetchRequest => offsets::fetch,
        OffsetDelete => m::OffsetDeleteRequest => offsets::delete,
        DescribeGroups => m::DescribeGroupsRequest => group_admin::describe,
        ListGroups => m::ListGroupsRequest => group_admin::list,
        DeleteGroups => m::DeleteGroupsRequest => group_admin::delete,
        ConsumerGroupHeartbeat => m::ConsumerGroupHeartbeatRequest => consumer_group::heartbeat,
        ConsumerGroupDescribe => m::ConsumerGroupDescribeRequest => consumer_group::describe,
        AlterConfigs => m::AlterConfigsRequest => alter_configs::alter,
        IncrementalAlterConfigs => m::IncrementalAlterConfigsRequest => alter_configs::incremental,
        DeleteRecords => m::DeleteRecordsRequest => delete_records::handle,
        OffsetForLeaderEpoch => m::OffsetForLeaderEpochRequest => offset_for_leader_epoch::handle,
        DescribeTopicPartitions => m::DescribeTopicPartitionsRequest => describe_topic_partitions::handle,
        DescribeLogDirs => m::DescribeLogDirsRequest => describe_log_dirs::handle,
        ElectLeaders => m::ElectLeadersRequest => elect_leaders::handle,
        AlterPartitionReassignments => m::AlterPartitionReassignmentsRequest => reassignments::alter,
        ListPartitionReassignments => m::ListPartitionReassignmentsRequest => reassignments::list,
        UnregisterBroker => m::UnregisterBrokerRequest => unregister_broker::handle,
        AddRaftVoter => m::AddRaftVoterRequest => raft_voters::add,
        RemoveRaftVoter => m::RemoveRaftVoterRequest => raft_voters::remove,
        ListConfigResources => m::ListConfigResourcesRequest => list_config_resources::handle,
        DescribeProducers => m::DescribeProducersRequest => describe_producers::handle,
        DescribeQuorum => m::DescribeQuorumRequest => describe_quorum::handle,
        AddPartitionsToTxn => m::AddPartitionsToTxnRequest => txn::add_partitions,
        AddOffsetsToTxn => m::AddOffsetsToTxnRequest => txn::add_offsets,
        EndTxn => m::EndTxnRequest => txn::end_txn,
        TxnOffsetCommit => m::TxnOffsetCommitRequest => txn::txn_offset_commit,
        WriteTxnMarkers => m::WriteTxnMarkersRequest => txn::write_txn_markers,
        DescribeTransactions => m::DescribeTransactionsRequest => txn::describe_transactions,
        ListTransactions => m::ListTransactionsRequest => txn::list_transactions,
        CreateAcls => m::CreateAclsRequest => acls::create,
        DescribeAcls => m::DescribeAclsRequest => acls::describe,
        DeleteAcls => m::DeleteAclsRequest => acls::delete,
        SaslHandshake => m::SaslHandshakeRequest => scram_credentials::handshake,
        SaslAuthenticate => m::SaslAuthenticateRequest => scram_credentials::authenticate,
        DescribeUserScramCredentials => m::DescribeUserScramCredentialsRequest => scram_credentials::describe,
        AlterUserScramCredentials => m::AlterUserScramCredentialsRequest => scram_credentials::alter,
    )
}

/// A request frame after the checks that need no handler.
#[derive(Debug)]
pub enum Parsed {
    /// A served API at a served version; `body` starts after the header.
    Request {
        key: ApiKey,
        version: i16,
        header: RequestHeader,
        body: Bytes,
    },
    /// ApiVersions at a version we do not serve: answered with error 35.
    UnsupportedApiVersions { correlation_id: i32, version: i16 },
}

/// Reads the prefix, checks key and version against the table, and decodes the
/// header. Errors mean the connection must be closed.
pub fn parse_request(frame: Bytes, versions: &VersionTable) -> Result<Parsed> {
    let prefix = sluice_protocol::header::peek(&frame)?;
    let key = ApiKey::try_from(prefix.api_key)
        .map_err(|_| ProtocolError::UnknownApiKey(prefix.api_key))?;
    let version = prefix.api_version;
    if !versions.supports(key, version) {
        if key == ApiKey::ApiVersions {
            return Ok(Parsed::UnsupportedApiVersions {
                correlation_id: prefix.correlation_id,
                version,
            });
        }
        return Err(ProtocolError::UnsupportedVersion {
            api: sluice_protocol::header::api_name(key),
            version,
        });
    }
    let mut body = frame;
    let header = sluice_protocol::header::decode(&mut body, key, version)?;
    Ok(Parsed::Request {
        key,
        version,
        header,
        body,
    })
}

/// Calls `$m!` with every served API and its request type: the one list the
/// decode-only and default-encode helpers below are generated from.
macro_rules! request_types {
    ($m:ident) => {
        $m!(
            Produce => m::ProduceRequest,
            Fetch => m::FetchRequest,
            ListOffsets => m::ListOffsetsRequest,
            Metadata => m::MetadataRequest,
            ApiVersions => m::ApiVersionsRequest,
            CreateTopics => m::CreateTopicsRequest,
            InitProducerId => m::InitProducerIdRequest,
            DeleteTopics => m::DeleteTopicsRequest,
            CreatePartitions => m::CreatePartitionsRequest,
            DescribeConfigs => m::DescribeConfigsRequest,
            DescribeCluster => m::DescribeClusterRequest,
            FindCoordinator => m::FindCoordinatorRequest,
            JoinGroup => m::JoinGroupRequest,
            SyncGroup => m::SyncGroupRequest,
            Heartbeat => m::HeartbeatRequest,
            LeaveGroup => m::LeaveGroupRequest,
            OffsetCommit => m::OffsetCommitRequest,
            OffsetFetch => m::OffsetFetchRequest,
            OffsetDelete => m::OffsetDeleteRequest,
            DescribeGroups => m::DescribeGroupsRequest,
            ListGroups => m::ListGroupsRequest,
            DeleteGroups => m::DeleteGroupsRequest,
            ConsumerGroupHeartbeat => m::ConsumerGroupHeartbeatRequest,
            ConsumerGroupDescribe => m::ConsumerGroupDescribeRequest,
            AlterConfigs => m::AlterConfigsRequest,
            IncrementalAlterConfigs => m::IncrementalAlterConfigsRequest,
            DeleteRecords => m::DeleteRecordsRequest,
            OffsetForLeaderEpoch => m::OffsetForLeaderEpochRequest,
            DescribeTopicPartitions => m::DescribeTopicPartitionsRequest,
            DescribeLogDirs => m::DescribeLogDirsRequest,
            ElectLeaders => m::ElectLeadersRequest,
            AlterPartitionReassignments => m::AlterPartitionReassignmentsRequest,
            ListPartitionReassignments => m::ListPartitionReassignmentsRequest,
            UnregisterBroker => m::UnregisterBrokerRequest,
            AddRaftVoter => m::AddRaftVoterRequest,
            RemoveRaftVoter => m::RemoveRaftVoterRequest,
            ListConfigResources => m::ListConfigResourcesRequest,
            DescribeProducers => m::DescribeProducersRequest,
            DescribeQuorum => m::DescribeQuorumRequest,
            AddPartitionsToTxn => m::AddPartitionsToTxnRequest,
            AddOffsetsToTxn => m::AddOffsetsToTxnRequest,
            EndTxn => m::EndTxnRequest,
            TxnOffsetCommit => m::TxnOffsetCommitRequest,
            WriteTxnMarkers => m::WriteTxnMarkersRequest,
            DescribeTransactions => m::DescribeTransactionsRequest,
            ListTransactions => m::ListTransactionsRequest,
            CreateAcls => m::CreateAclsRequest,
            DescribeAcls => m::DescribeAclsRequest,
            DeleteAcls => m::DeleteAclsRequest,
            SaslHandshake => m::SaslHandshakeRequest,
            SaslAuthenticate => m::SaslAuthenticateRequest,
            DescribeUserScramCredentials => m::DescribeUserScramCredentialsRequest,
            AlterUserScramCredentials => m::AlterUserScramCredentialsRequest,
        )
    };
}

/// Decodes the body of a served request without serving it (for the fuzz
/// target; `every_served_api_decodes` keeps it in step with [`SERVED`]).
pub fn decode_request_body(key: ApiKey, version: i16, mut body: Bytes) -> Result<()> {
    if key == ApiKey::ListOffsets && version == 0 {
        return decode_body::<ListOffsetsV0Request>(&mut body, key, version).map(|_| ());
    }
    macro_rules! decode {
        ($($api:ident => $req:ty),* $(,)?) => {
            match key {
                $(ApiKey::$api => decode_body::<$req>(&mut body, key, version).map(|_| ()),)*
                other => Err(ProtocolError::UnknownApiKey(other as i16)),
            }
        };
    }
    request_types!(decode)
}

/// The body of a default (all fields empty) request of a served API at
/// `version`: seeds for the decode tests and the fuzz target. `None` for an
/// API that is not served.
pub fn default_request_body(key: ApiKey, version: i16) -> Option<Bytes> {
    use kafka_protocol::protocol::Encodable;
    fn enc<T: Encodable + Default>(version: i16) -> Option<Bytes> {
        let mut b = bytes::BytesMut::new();
        T::default().encode(&mut b, version).ok()?;
        Some(b.freeze())
    }
    if key == ApiKey::ListOffsets && version == 0 {
        return enc::<ListOffsetsV0Request>(version);
    }
    macro_rules! encode {
        ($($api:ident => $req:ty),* $(,)?) => {
            match key {
                $(ApiKey::$api => enc::<$req>(version),)*
                _ => None,
            }
        };
    }
    request_types!(encode)
}

/// A topic name as the generated types want it.
pub fn topic_name(s: &str) -> m::TopicName {
    m::TopicName(kafka_protocol::protocol::StrBytes::from_string(
        s.to_owned(),
    ))
}

pub fn str_bytes(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_api_decodes() {
        for &(key, min, max) in SERVED {
            for v in min..=max {
                let body = default_request_body(key, v)
                    .unwrap_or_else(|| panic!("{key:?} v{v} is served but has no request type"));
                decode_request_body(key, v, body).unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
            }
        }
    }
}
