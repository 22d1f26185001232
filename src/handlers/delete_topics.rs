//! DeleteTopics: by name (v1–5) or by name or topic id (v6).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use uuid::Uuid;

use super::{RequestContext, str_bytes, topic_name};
use crate::security::acl::AclOperation;

pub async fn handle(ctx: &RequestContext, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let broker = &ctx.broker;
    // (name if given, id if given)
    let wanted: Vec<(Option<String>, Uuid)> = if ctx.version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let mut r = DeletableTopicResult::default();
        let resolved = match (&name, id.is_nil()) {
            (Some(n), _) => Ok(n.clone()),
            (None, false) => broker.topic_by_id(id).map(|t| t.name.clone()).ok_or((
                ResponseError::UnknownTopicId,
                format!("no topic has id {id}"),
            )),
            (None, true) => Err((
                ResponseError::InvalidRequest,
                "neither a name nor an id".into(),
            )),
        };
        let outcome = match resolved {
            // DELETE on the topic (a topic named by id is shown by name
            // only to who may describe it).
            Ok(n) if !ctx.authorize_topic(AclOperation::Delete, &n) => {
                if name.is_some() || ctx.authorize_topic(AclOperation::Describe, &n) {
                    r.name = Some(topic_name(&n));
                }
                Err((
                    ResponseError::TopicAuthorizationFailed.code(),
                    "Authorization failed.".to_owned(),
                ))
            }
            Ok(n) => {
                r.name = Some(topic_name(&n));
                broker
                    .delete_topic(&n)
                    .await
                    .map_err(|e| (e.code, e.message))
            }
            Err((e, m)) => Err((e.code(), m)),
        };
        match outcome {
            Ok(deleted_id) => {
                if ctx.version >= 6 {
                    r.topic_id = deleted_id;
                }
            }
            Err((code, message)) => {
                info_limited!(topic = ?name, %id, code, detail = %message, "topic not deleted");
                r.error_code = code;
                if ctx.version >= 5 {
                    r.error_message = Some(str_bytes(message));
                }
                if ctx.version >= 6 {
                    r.topic_id = id;
                }
            }
        }
        responses.push(r);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
