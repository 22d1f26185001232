//! DescribeQuorum: the controller quorum, Kafka's `__cluster_metadata`
//! partition 0 (admin describeMetadataQuorum, `kafka-metadata-quorum.sh`):
//! its leader, term (leader epoch), high watermark, and each voter's log end
//! offset and last fetch / caught-up times.
//!
//! Alone, a broker is a quorum of one: itself, leader at epoch 0, with no
//! metadata log (offsets 0). In a cluster the controller group's leader
//! answers from its Raft progress: the voters of its configuration (as
//! AddRaftVoter and RemoveRaftVoter left it), and its learners — brokers
//! that do not vote — as observers. A Kafka broker forwards this request to the
//! active controller, and the Java client sends it to any broker, so a
//! Sluice broker that does not lead the quorum forwards it too, to the
//! leader's client listener. A forwarded request is never forwarded again:
//! a broker that got one and does not lead (leadership moved meanwhile), or
//! that knows no leader, answers NOT_LEADER_OR_FOLLOWER, as a Kafka
//! controller does, and the client retries.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{RequestContext, str_bytes, topic_name};
use crate::cluster::CONTROLLER_GROUP;
use crate::security::acl::AclOperation;

/// The client id of a forwarded request (followed by the forwarding node).
const FORWARDED: &str = "sluice-forwarded-describe-quorum";

/// How long a forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn handle(ctx: &RequestContext, req: DescribeQuorumRequest) -> DescribeQuorumResponse {
    if !ctx.authorize_cluster(AclOperation::Describe) {
        return DescribeQuorumResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let asks_for_the_quorum = matches!(
        &req.topics[..],
        [t] if t.topic_name.0.as_str() == CONTROLLER_GROUP
            && t.partitions.len() == 1
            && t.partitions[0].partition_index == 0
    );
    if !asks_for_the_quorum {
        // Kafka's answer to any other partition (it has one quorum).
        return DescribeQuorumResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(str_bytes(format!(
                "only the quorum of {CONTROLLER_GROUP} partition 0 can be described"
            ))));
    }
    let broker = &ctx.broker;
    let now = broker.now_ms();
    let Some(cluster) = broker.cluster() else {
        let (host, port) = broker.config.advertised();
        let me = broker.node_id();
        let voter = ReplicaState::default()
            .with_replica_id(BrokerId(me))
            .with_log_end_offset(0)
            .with_last_fetch_timestamp(now)
            .with_last_caught_up_timestamp(now);
        let partition = partition()
            .with_leader_id(BrokerId(me))
            .with_leader_epoch(0)
            .with_high_watermark(0)
            .with_current_voters(vec![voter]);
        let node = node(me, "PLAINTEXT", &host, port);
        return answer(ctx.version, partition, vec![node]);
    };
    let nodes = cluster
        .voters
        .iter()
        .map(|(id, addr)| {
            node(
                *id as i32,
                "CONTROLLER",
                &addr.ip().to_string(),
                addr.port() as i32,
            )
        })
        .collect();
    let status = cluster.host.status(CONTROLLER_GROUP).unwrap_or_default();
    if status.is_leader {
        let tick_ms = broker.config.raft_tick_ms.max(1) as i64;
        let at = |ago: Option<u64>| ago.map_or(-1, |t| now - t as i64 * tick_ms);
        let progress = cluster
            .host
            .inspect(CONTROLLER_GROUP, |r| {
                r.voter_progress()
                    .and_then(|v| Ok((v, r.learner_progress()?)))
            })
            .await;
        if let Some(Ok((progress, learners))) = progress
            && !progress.is_empty()
        {
            let states = |list: &[crate::replication::replica::VoterProgress]| {
                list.iter()
                    .map(|v| {
                        ReplicaState::default()
                            .with_replica_id(BrokerId(v.id as i32))
                            .with_log_end_offset(v.log_end_offset)
                            .with_last_fetch_timestamp(at(v.heard_ticks_ago))
                            .with_last_caught_up_timestamp(at(v.caught_up_ticks_ago))
                    })
                    .collect::<Vec<_>>()
            };
            // The brokers that do not vote follow the log as learners:
            // Kafka's observers.
            let partition = partition()
                .with_leader_id(BrokerId(cluster.me as i32))
                .with_leader_epoch(status.term as i32)
                .with_high_watermark(status.high_watermark)
                .with_current_voters(states(&progress))
                .with_observers(states(&learners));
            return answer(ctx.version, partition, nodes);
        }
    }
    let forwarded = ctx
        .header
        .client_id
        .as_deref()
        .is_some_and(|c| c.starts_with(FORWARDED));
    // The forward is a plain Kafka connection: to the leader's address on
    // a PLAINTEXT listener (none: answered here, as when the leader is
    // unreachable).
    let plaintext = broker.config.listener_specs().ok().and_then(|specs| {
        specs
            .into_iter()
            .find(|l| l.protocol == crate::security::SecurityProtocol::Plaintext)
            .map(|l| l.name)
    });
    let leader = status
        .leader
        .filter(|&l| l != cluster.me)
        .and_then(|l| broker.broker_address_on(plaintext.as_deref()?, l as i32));
    if let (false, Some((host, port))) = (forwarded, leader) {
        let client_id = format!("{FORWARDED}-{}", cluster.me);
        let asked = forward(&host, port, ctx.version, &client_id, &req);
        match tokio::time::timeout(FORWARD_TIMEOUT, asked).await {
            Ok(Ok(resp)) => return resp,
            Ok(Err(e)) => {
                warn_limited!(error = %e, %host, port, "DescribeQuorum could not be forwarded to the controller leader")
            }
            Err(_) => {
                warn_limited!(%host, port, "DescribeQuorum forwarded to the controller leader got no answer in time")
            }
        }
    }
    let partition = partition()
        .with_error_code(ResponseError::NotLeaderOrFollower.code())
        .with_error_message(Some(str_bytes(
            "this broker does not lead the controller quorum",
        )))
        .with_leader_id(BrokerId(status.leader.map_or(-1, |l| l as i32)))
        .with_leader_epoch(status.term as i32)
        .with_high_watermark(-1);
    answer(ctx.version, partition, Vec::new())
}

/// Partition 0 of the quorum, no error.
fn partition() -> PartitionData {
    PartitionData::default()
        .with_partition_index(0)
        .with_error_message(None)
}

fn node(id: i32, listener: &str, host: &str, port: i32) -> Node {
    Node::default()
        .with_node_id(BrokerId(id))
        .with_listeners(vec![
            Listener::default()
                .with_name(str_bytes(listener))
                .with_host(str_bytes(host))
                .with_port(u16::try_from(port).unwrap_or(0)),
        ])
}

/// The response of `version`: the nodes only from v2, which has them.
fn answer(version: i16, partition: PartitionData, nodes: Vec<Node>) -> DescribeQuorumResponse {
    DescribeQuorumResponse::default()
        .with_error_message(None)
        .with_topics(vec![
            TopicData::default()
                .with_topic_name(topic_name(CONTROLLER_GROUP))
                .with_partitions(vec![partition]),
        ])
        .with_nodes(if version >= 2 { nodes } else { Vec::new() })
}

type ForwardError = Box<dyn std::error::Error + Send + Sync>;

/// Sends `req` to the broker at `host:port` on a connection of its own
/// and reads its answer.
async fn forward(
    host: &str,
    port: i32,
    version: i16,
    client_id: &str,
    req: &DescribeQuorumRequest,
) -> Result<DescribeQuorumResponse, ForwardError> {
    const CORRELATION: i32 = 1;
    let mut stream = tokio::net::TcpStream::connect((host, u16::try_from(port)?)).await?;
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::DescribeQuorum as i16)
        .with_request_api_version(version)
        .with_correlation_id(CORRELATION)
        .with_client_id(Some(str_bytes(client_id)))
        .encode(&mut body, DescribeQuorumRequest::header_version(version))?;
    req.encode(&mut body, version)?;
    let mut frame = BytesMut::with_capacity(4 + body.len());
    frame.put_i32(i32::try_from(body.len())?);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await?;
    let size = stream.read_i32().await?;
    if !(0..=(16 << 20)).contains(&size) {
        return Err(format!("response size {size}").into());
    }
    let mut buf = vec![0; size as usize];
    stream.read_exact(&mut buf).await?;
    let mut b = Bytes::from(buf);
    let header = ResponseHeader::decode(&mut b, DescribeQuorumResponse::header_version(version))?;
    if header.correlation_id != CORRELATION {
        return Err(format!("answer to correlation id {}", header.correlation_id).into());
    }
    let resp = DescribeQuorumResponse::decode(&mut b, version)?;
    if b.has_remaining() {
        return Err(format!("{} bytes after the response", b.remaining()).into());
    }
    Ok(resp)
}
