//! CreatePartitions: grow a topic (never shrink), optionally validate only.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{RequestContext, str_bytes};
use crate::security::acl::AclOperation;

pub async fn handle(
    ctx: &RequestContext,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if !ctx.authorize_topic(AclOperation::Alter, &name) {
            r.error_code = ResponseError::TopicAuthorizationFailed.code();
            r.error_message = Some(str_bytes("Authorization failed."));
            results.push(r);
            continue;
        }
        let outcome = match &t.assignments {
            None => Ok(None),
            Some(a) => a
                .iter()
                .map(|x| super::create_topics::broker_ids(&x.broker_ids))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
        };
        // A bad id matters only when partitions are to be added: growing
        // to fewer is INVALID_PARTITIONS first, as in Kafka.
        let grows = ctx
            .broker
            .topic(&name)
            .is_some_and(|cur| t.count > cur.partitions.len() as i32);
        let outcome = match outcome {
            Err(_) if !grows => Ok(None),
            other => other,
        };
        let outcome = match outcome {
            // In a cluster, the broker checks the lists against the image.
            Ok(lists) if ctx.broker.cluster().is_some() => ctx
                .broker
                .create_partitions(&name, t.count, lists, req.validate_only)
                .await
                .map_err(|e| (e.code, e.message)),
            Ok(lists) => single_node(ctx, &name, t.count, lists, req.validate_only).await,
            Err(e) => Err(e),
        };
        if let Err((code, message)) = outcome {
            info_limited!(topic = %name, code, detail = %message, "partitions not created");
            r.error_code = code;
            r.error_message = Some(str_bytes(message));
        }
        results.push(r);
    }
    CreatePartitionsResponse::default().with_results(results)
}

/// On a single broker, an assignment can only name that broker, once for
/// each new partition.
async fn single_node(
    ctx: &RequestContext,
    name: &str,
    count: i32,
    lists: Option<Vec<Vec<u64>>>,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let node = ctx.broker.node_id() as u64;
    let current = ctx.broker.topic(name).map(|t| t.partitions.len() as i32);
    let bad_assignment = match (&lists, current) {
        (Some(a), Some(cur)) if a.len() as i32 != count - cur => Some(format!(
            "{} assignments given for {} new partitions",
            a.len(),
            count - cur
        )),
        (Some(a), _)
            if a.iter()
                .any(|x| x.is_empty() || x.iter().any(|&b| b != node)) =>
        {
            Some(format!("replicas must be broker {node}, the only broker"))
        }
        _ => None,
    };
    match bad_assignment {
        Some(m) if current.is_some_and(|c| count > c) => {
            Err((ResponseError::InvalidReplicaAssignment.code(), m))
        }
        _ => ctx
            .broker
            .create_partitions(name, count, None, validate_only)
            .await
            .map_err(|e| (e.code, e.message)),
    }
}
