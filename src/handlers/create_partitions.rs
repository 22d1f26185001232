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
    let node = ctx.broker.node_id();
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
        let current = ctx.broker.topic(&name).map(|t| t.partitions.len() as i32);
        let bad_assignment = match (&t.assignments, current) {
            (Some(a), Some(cur)) if a.len() as i32 != t.count - cur => Some(format!(
                "{} assignments given for {} new partitions",
                a.len(),
                t.count - cur
            )),
            (Some(a), _)
                if a.iter().any(|x| {
                    x.broker_ids.is_empty() || x.broker_ids.iter().any(|b| b.0 != node)
                }) =>
            {
                Some(format!("replicas must be broker {node}, the only broker"))
            }
            _ => None,
        };
        let outcome = match bad_assignment {
            Some(m) if current.is_some_and(|c| t.count > c) => {
                Err((ResponseError::InvalidReplicaAssignment.code(), m))
            }
            _ => ctx
                .broker
                .create_partitions(&name, t.count, req.validate_only)
                .await
                .map_err(|e| (e.code, e.message)),
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
