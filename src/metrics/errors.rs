//! The error codes a response carries, for the errors-per-API series: the
//! top-level code and each topic's, partition's, group's or resource's, as
//! Kafka's `errorCounts()` gathers them (0 is left out when counted).

use kafka_protocol::messages::*;

pub trait ErrorCodes {
    fn error_codes(&self, out: &mut Vec<i16>);
}

/// `$t`'s codes, gathered by `$body` from `$r` into `$out`.
macro_rules! codes {
    ($($t:ty => |$r:ident, $out:ident| $body:expr;)*) => {
        $(impl ErrorCodes for $t {
            fn error_codes(&self, $out: &mut Vec<i16>) {
                let $r = self;
                $body
            }
        })*
    };
}

/// Responses with only a top-level error code.
macro_rules! top_level {
    ($($t:ty),* $(,)?) => {
        $(impl ErrorCodes for $t {
            fn error_codes(&self, out: &mut Vec<i16>) {
                out.push(self.error_code);
            }
        })*
    };
}

top_level!(
    ApiVersionsResponse,
    JoinGroupResponse,
    SyncGroupResponse,
    HeartbeatResponse,
    LeaveGroupResponse,
    InitProducerIdResponse,
    SaslHandshakeResponse,
    SaslAuthenticateResponse,
    ConsumerGroupHeartbeatResponse,
    EndTxnResponse,
    DescribeClusterResponse,
    AddOffsetsToTxnResponse,
    DescribeAclsResponse,
    ListGroupsResponse,
    OffsetDeleteResponse,
    DescribeQuorumResponse,
    DescribeUserScramCredentialsResponse,
    ElectLeadersResponse,
    ListPartitionReassignmentsResponse,
    UnregisterBrokerResponse,
    AddRaftVoterResponse,
    RemoveRaftVoterResponse,
    ListTransactionsResponse,
    DescribeLogDirsResponse,
    ListConfigResourcesResponse,
    AddPartitionsToTxnResponse,
);

codes! {
    ProduceResponse => |r, out| {
        for t in &r.responses {
            out.extend(t.partition_responses.iter().map(|p| p.error_code));
        }
    };
    FetchResponse => |r, out| {
        out.push(r.error_code);
        for t in &r.responses {
            out.extend(t.partitions.iter().map(|p| p.error_code));
        }
    };
    ListOffsetsResponse => |r, out| {
        for t in &r.topics {
            out.extend(t.partitions.iter().map(|p| p.error_code));
        }
    };
    MetadataResponse => |r, out| {
        out.push(r.error_code);
        out.extend(r.topics.iter().map(|t| t.error_code));
    };
    CreateTopicsResponse => |r, out| out.extend(r.topics.iter().map(|t| t.error_code));
    DeleteTopicsResponse => |r, out| out.extend(r.responses.iter().map(|t| t.error_code));
    CreatePartitionsResponse => |r, out| out.extend(r.results.iter().map(|t| t.error_code));
    OffsetCommitResponse => |r, out| {
        for t in &r.topics {
            out.extend(t.partitions.iter().map(|p| p.error_code));
        }
    };
    TxnOffsetCommitResponse => |r, out| {
        for t in &r.topics {
            out.extend(t.partitions.iter().map(|p| p.error_code));
        }
    };
    OffsetFetchResponse => |r, out| {
        out.push(r.error_code);
        for t in &r.topics {
            out.extend(t.partitions.iter().map(|p| p.error_code));
        }
        for g in &r.groups {
            out.push(g.error_code);
            for t in &g.topics {
                out.extend(t.partitions.iter().map(|p| p.error_code));
            }
        }
    };
    DescribeGroupsResponse => |r, out| out.extend(r.groups.iter().map(|g| g.error_code));
    DeleteGroupsResponse => |r, out| out.extend(r.results.iter().map(|g| g.error_code));
    ConsumerGroupDescribeResponse => |r, out| out.extend(r.groups.iter().map(|g| g.error_code));
    FindCoordinatorResponse => |r, out| {
        out.push(r.error_code);
        out.extend(r.coordinators.iter().map(|c| c.error_code));
    };
    CreateAclsResponse => |r, out| out.extend(r.results.iter().map(|a| a.error_code));
    DeleteAclsResponse => |r, out| out.extend(r.filter_results.iter().map(|a| a.error_code));
    DescribeConfigsResponse => |r, out| out.extend(r.results.iter().map(|c| c.error_code));
    AlterConfigsResponse => |r, out| out.extend(r.responses.iter().map(|c| c.error_code));
    IncrementalAlterConfigsResponse => |r, out| out.extend(r.responses.iter().map(|c| c.error_code));
    AlterPartitionReassignmentsResponse => |r, out| {
        out.push(r.error_code);
        for t in &r.responses {
            out.extend(t.partitions.iter().map(|p| p.error_code));
        }
    };
    DeleteRecordsResponse => |r, out| {
        for t in &r.topics {
            out.extend(t.partitions.iter().map(|p| p.error_code));
        }
    };
    OffsetForLeaderEpochResponse => |r, out| {
        for t in &r.topics {
            out.extend(t.partitions.iter().map(|p| p.error_code));
        }
    };
    DescribeTopicPartitionsResponse => |r, out| out.extend(r.topics.iter().map(|t| t.error_code));
    DescribeProducersResponse => |r, out| {
        for t in &r.topics {
            out.extend(t.partitions.iter().map(|p| p.error_code));
        }
    };
    DescribeTransactionsResponse => |r, out| {
        out.extend(r.transaction_states.iter().map(|t| t.error_code));
    };
    WriteTxnMarkersResponse => |r, out| {
        for m in &r.markers {
            for t in &m.topics {
                out.extend(t.partitions.iter().map(|p| p.error_code));
            }
        }
    };
    AlterUserScramCredentialsResponse => |r, out| {
        out.extend(r.results.iter().map(|u| u.error_code));
    };
}

/// Counts `resp`'s error codes for `request`.
pub fn observe(metrics: &super::Metrics, request: &'static str, resp: &impl ErrorCodes) {
    let mut codes = Vec::new();
    resp.error_codes(&mut codes);
    metrics.observe_errors(request, &codes);
}
