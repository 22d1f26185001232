//! `sluice cluster describe`: the cluster id, brokers and controller
//! (DescribeCluster, else Metadata) and the controller quorum
//! (DescribeQuorum of `__cluster_metadata`, where the broker serves it).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::*;
use serde_json::json;

use super::admin::{Node, topic_name};
use super::output::{CliError, check, print, table};
use super::{Admin, ClientArgs};

#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub cmd: ClusterCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Cluster id, brokers, controller and the controller quorum.
    Describe,
}

pub async fn run(args: &ClusterArgs) -> Result<(), CliError> {
    let ClusterCommand::Describe = args.cmd;
    let mut admin = Admin::connect(&args.client).await?;
    let (r, _): (DescribeClusterResponse, _) = admin
        .call(Node::Any, ApiKey::DescribeCluster, 0..=1, |_| {
            DescribeClusterRequest::default()
        })
        .await?;
    check(
        || "cannot describe the cluster".into(),
        r.error_code,
        r.error_message.as_deref(),
    )?;
    let mut brokers: Vec<_> = r.brokers.iter().collect();
    brokers.sort_by_key(|b| b.broker_id.0);
    let controller = r.controller_id.0;
    let mut human = format!("Cluster {}  controller {controller}\n", r.cluster_id);
    human.push_str(&table(
        &["BROKER", "HOST", "PORT", "RACK", "FENCED"],
        &brokers
            .iter()
            .map(|b| {
                vec![
                    format!(
                        "{}{}",
                        b.broker_id.0,
                        if b.broker_id.0 == controller {
                            " *"
                        } else {
                            ""
                        }
                    ),
                    b.host.to_string(),
                    b.port.to_string(),
                    b.rack.as_deref().unwrap_or("-").to_owned(),
                    b.is_fenced.to_string(),
                ]
            })
            .collect::<Vec<_>>(),
    ));
    let quorum = quorum(&mut admin).await;
    let quorum_json = match &quorum {
        Ok(q) => {
            human.push_str(&format!(
                "\nQuorum  leader {}  epoch {}  high watermark {}\n",
                q.leader_id.0, q.leader_epoch, q.high_watermark
            ));
            let replicas: Vec<_> = q
                .current_voters
                .iter()
                .map(|v| (v, "voter"))
                .chain(q.observers.iter().map(|o| (o, "observer")))
                .collect();
            human.push_str(&table(
                &["NODE", "ROLE", "LOG END OFFSET", "LAG"],
                &replicas
                    .iter()
                    .map(|(v, role)| {
                        let role = if v.replica_id == q.leader_id {
                            "leader"
                        } else {
                            role
                        };
                        vec![
                            v.replica_id.0.to_string(),
                            role.to_owned(),
                            v.log_end_offset.to_string(),
                            (q.high_watermark - v.log_end_offset).max(0).to_string(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            ));
            json!({
                "leader": q.leader_id.0,
                "epoch": q.leader_epoch,
                "high_watermark": q.high_watermark,
                "voters": q.current_voters.iter().map(|v| json!({"node": v.replica_id.0, "log_end_offset": v.log_end_offset})).collect::<Vec<_>>(),
                "observers": q.observers.iter().map(|v| json!({"node": v.replica_id.0, "log_end_offset": v.log_end_offset})).collect::<Vec<_>>(),
            })
        }
        Err(e) => {
            human.push_str(&format!("\nQuorum: not available ({e})\n"));
            serde_json::Value::Null
        }
    };
    let value = json!({
        "cluster_id": r.cluster_id.as_str(),
        "controller": controller,
        "brokers": brokers.iter().map(|b| json!({
            "id": b.broker_id.0, "host": b.host.as_str(), "port": b.port,
            "rack": b.rack.as_deref(), "fenced": b.is_fenced,
        })).collect::<Vec<_>>(),
        "quorum": quorum_json,
    });
    print(args.client.json, &value, &human);
    Ok(())
}

/// The `__cluster_metadata` partition's quorum. NOT_LEADER_OR_FOLLOWER is
/// retriable, as in Kafka's Admin client: a broker answers it while it
/// cannot reach the quorum's leader (just after a start, or an election),
/// so the question is asked again for up to ten seconds.
async fn quorum(admin: &mut Admin) -> Result<describe_quorum_response::PartitionData, CliError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let p = quorum_once(admin).await?;
        let not_leader = p.error_code == ResponseError::NotLeaderOrFollower.code();
        if !not_leader || std::time::Instant::now() >= deadline {
            check(
                || "cannot describe the quorum".into(),
                p.error_code,
                p.error_message.as_deref(),
            )?;
            return Ok(p);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// One DescribeQuorum; the partition's own error is left to the caller.
async fn quorum_once(
    admin: &mut Admin,
) -> Result<describe_quorum_response::PartitionData, CliError> {
    let (r, _): (DescribeQuorumResponse, _) = admin
        .call(Node::Any, ApiKey::DescribeQuorum, 0..=2, |_| {
            DescribeQuorumRequest::default().with_topics(vec![
                TopicData::default()
                    .with_topic_name(topic_name("__cluster_metadata"))
                    .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
            ])
        })
        .await?;
    check(
        || "cannot describe the quorum".into(),
        r.error_code,
        r.error_message.as_deref(),
    )?;
    let p = r
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .next()
        .ok_or_else(|| CliError::Failed("DescribeQuorum answered no partition".into()))?;
    Ok(p)
}
