//! Incremental fetch sessions (KIP-227).
//!
//! A consumer's full fetch (epoch 0) opens a session holding its partitions
//! and what it was last told of each (high watermark, log start). Its next
//! fetches (epoch 1, 2, …) name only partitions whose fetch position changed
//! and those to forget; the answer holds only partitions with something new:
//! records, a moved high watermark or log start, an error. Epoch -1 closes a
//! session (and fetches without one). Requests stay small with many
//! partitions, and a consumer that closes while a long poll is in flight is
//! answered with nothing it no longer expects.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::FetchRequest;
use uuid::Uuid;

/// Kafka's `max.incremental.fetch.session.cache.slots`.
pub const CACHE_SLOTS: usize = 1000;
/// Kafka's `min.incremental.fetch.session.eviction.ms`: a session idle this
/// long may make room for a new one.
const EVICTION_IDLE: Duration = Duration::from_secs(120);

/// A topic as the session's requests name it: by id from Fetch v13, by name
/// before.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicKey {
    Id(Uuid),
    Name(String),
}

/// One partition to read, from the request or from the session.
#[derive(Debug, Clone)]
pub struct FetchPart {
    pub topic: TopicKey,
    pub partition: i32,
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    pub current_leader_epoch: i32,
}

/// What the session last told the client of a partition.
#[derive(Debug, Clone)]
struct Cached {
    part: FetchPart,
    high_watermark: i64,
    log_start_offset: i64,
}

struct Session {
    /// The epoch the next request must carry.
    next_epoch: i32,
    by_id: bool,
    parts: IndexMap<(TopicKey, i32), Cached>,
    last_used: Instant,
}

/// How a request is served.
pub enum Context {
    /// No session: every partition asked for is answered; `new_session`
    /// (when not 0) is handed out and remembers them.
    Full {
        parts: Vec<FetchPart>,
        new_session: i32,
    },
    /// An open session: its partitions are read, only changes answered.
    Incremental { session: i32, parts: Vec<FetchPart> },
}

/// A partition's answer, as far as the session cares.
pub struct Answered {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub has_records: bool,
    pub error: bool,
}

#[derive(Default)]
pub struct FetchSessions {
    inner: Mutex<HashMap<i32, Session>>,
}

fn next_epoch(e: i32) -> i32 {
    if e == i32::MAX { 1 } else { e + 1 }
}

fn key_of(by_id: bool, id: Uuid, name: &str) -> TopicKey {
    if by_id {
        TopicKey::Id(id)
    } else {
        TopicKey::Name(name.to_owned())
    }
}

fn request_parts(req: &FetchRequest, by_id: bool) -> Vec<FetchPart> {
    req.topics
        .iter()
        .flat_map(|t| {
            let topic = key_of(by_id, t.topic_id, t.topic.0.as_str());
            t.partitions.iter().map(move |p| FetchPart {
                topic: topic.clone(),
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
            })
        })
        .collect()
}

impl FetchSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Session>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kafka's rules for a request's session id and epoch; the error code
    /// for a session that does not exist or an epoch out of turn.
    pub fn context(&self, req: &FetchRequest, by_id: bool) -> Result<Context, i16> {
        let (id, epoch) = (req.session_id, req.session_epoch);
        if epoch == -1 && id == 0 {
            // No session at all (librdkafka's way): no lock taken.
            return Ok(Context::Full {
                parts: request_parts(req, by_id),
                new_session: 0,
            });
        }
        let mut sessions = self.lock();
        if epoch == -1 || epoch == 0 {
            // A full fetch closes the session it names.
            if id != 0 && sessions.remove(&id).is_some() {
                tracing::debug!(session = id, "fetch session closed");
            }
            let parts = request_parts(req, by_id);
            let new_session = if epoch == 0 {
                Self::open(&mut sessions, by_id, &parts)
            } else {
                0
            };
            return Ok(Context::Full { parts, new_session });
        }
        if epoch < -1 {
            return Err(ResponseError::InvalidFetchSessionEpoch.code());
        }
        let Some(s) = sessions.get_mut(&id) else {
            return Err(ResponseError::FetchSessionIdNotFound.code());
        };
        if s.next_epoch != epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch.code());
        }
        if s.by_id != by_id {
            return Err(ResponseError::FetchSessionTopicIdError.code());
        }
        s.next_epoch = next_epoch(epoch);
        s.last_used = Instant::now();
        for part in request_parts(req, by_id) {
            let key = (part.topic.clone(), part.partition);
            match s.parts.get_mut(&key) {
                Some(c) => c.part = part,
                None => {
                    s.parts.insert(
                        key,
                        Cached {
                            part,
                            high_watermark: -1,
                            log_start_offset: -1,
                        },
                    );
                }
            }
        }
        for t in &req.forgotten_topics_data {
            let topic = key_of(by_id, t.topic_id, t.topic.0.as_str());
            for p in &t.partitions {
                s.parts.shift_remove(&(topic.clone(), *p));
            }
        }
        Ok(Context::Incremental {
            session: id,
            parts: s.parts.values().map(|c| c.part.clone()).collect(),
        })
    }

    /// A new session for `parts`, or 0 when the cache is full of sessions in
    /// use (the client then fetches without one).
    fn open(sessions: &mut HashMap<i32, Session>, by_id: bool, parts: &[FetchPart]) -> i32 {
        if sessions.len() >= CACHE_SLOTS {
            let idle = sessions
                .iter()
                .filter(|(_, s)| s.last_used.elapsed() >= EVICTION_IDLE)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| *id);
            match idle {
                Some(id) => {
                    sessions.remove(&id);
                }
                None => return 0,
            }
        }
        let id = loop {
            let b = Uuid::new_v4().into_bytes();
            let id = i32::from_be_bytes([b[0], b[1], b[2], b[3]]) & i32::MAX;
            if id != 0 && !sessions.contains_key(&id) {
                break id;
            }
        };
        let parts = parts
            .iter()
            .map(|p| {
                (
                    (p.topic.clone(), p.partition),
                    Cached {
                        part: p.clone(),
                        high_watermark: -1,
                        log_start_offset: -1,
                    },
                )
            })
            .collect();
        sessions.insert(
            id,
            Session {
                next_epoch: 1,
                by_id,
                parts,
                last_used: Instant::now(),
            },
        );
        id
    }

    /// Records what a session's answer told the client, and which of the
    /// partitions an incremental answer must hold (those with something
    /// new). Partitions that returned records move to the end of the
    /// session, so that the next answers start with the others.
    pub fn answered(
        &self,
        session: i32,
        incremental: bool,
        answers: &[((TopicKey, i32), Answered)],
    ) -> Vec<bool> {
        let mut sessions = self.lock();
        let Some(s) = sessions.get_mut(&session) else {
            return vec![true; answers.len()];
        };
        let mut keep = Vec::with_capacity(answers.len());
        for (key, a) in answers {
            let Some(c) = s.parts.get_mut(key) else {
                keep.push(!incremental);
                continue;
            };
            let changed = a.has_records
                || a.error
                || c.high_watermark != a.high_watermark
                || c.log_start_offset != a.log_start_offset;
            // After an error the partition is sent again once it is gone.
            c.high_watermark = if a.error { -1 } else { a.high_watermark };
            c.log_start_offset = a.log_start_offset;
            if a.has_records
                && let Some(i) = s.parts.get_index_of(key)
            {
                let last = s.parts.len() - 1;
                s.parts.move_index(i, last);
            }
            keep.push(!incremental || changed);
        }
        keep
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};

    fn req(session: i32, epoch: i32, parts: &[(&str, i32, i64)]) -> FetchRequest {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (t, p, off) in parts {
            let fp = FetchPartition::default()
                .with_partition(*p)
                .with_fetch_offset(*off);
            match topics.iter_mut().find(|x| x.topic.0.as_str() == *t) {
                Some(x) => x.partitions.push(fp),
                None => topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(t.to_string().into()))
                        .with_partitions(vec![fp]),
                ),
            }
        }
        FetchRequest::default()
            .with_session_id(session)
            .with_session_epoch(epoch)
            .with_topics(topics)
    }

    fn answer(hw: i64, records: bool) -> Answered {
        Answered {
            high_watermark: hw,
            log_start_offset: 0,
            has_records: records,
            error: false,
        }
    }

    fn key(t: &str, p: i32) -> (TopicKey, i32) {
        (TopicKey::Name(t.into()), p)
    }

    #[test]
    fn a_session_answers_only_what_changed() {
        let s = FetchSessions::default();
        let Ok(Context::Full { parts, new_session }) =
            s.context(&req(0, 0, &[("t", 0, 0), ("t", 1, 0)]), false)
        else {
            panic!("a full fetch")
        };
        assert_eq!(parts.len(), 2);
        assert_ne!(new_session, 0);
        let all = s.answered(
            new_session,
            false,
            &[
                (key("t", 0), answer(5, true)),
                (key("t", 1), answer(0, false)),
            ],
        );
        assert_eq!(all, vec![true, true], "a full answer holds everything");
        // Epoch 1 moves partition 0's position; partition 1 is unchanged.
        let Ok(Context::Incremental { session, parts }) =
            s.context(&req(new_session, 1, &[("t", 0, 5)]), false)
        else {
            panic!("incremental")
        };
        assert_eq!(session, new_session);
        // Partition 0 returned records, so it now comes last.
        let order: Vec<(i32, i64)> = parts
            .iter()
            .map(|p| (p.partition, p.fetch_offset))
            .collect();
        assert_eq!(order, vec![(1, 0), (0, 5)]);
        let keep = s.answered(
            session,
            true,
            &[
                (key("t", 1), answer(0, false)),
                (key("t", 0), answer(7, false)),
            ],
        );
        assert_eq!(keep, vec![false, true], "only the moved high watermark");
        // Out of turn: the epoch is 2 now.
        assert_eq!(
            s.context(&req(new_session, 1, &[]), false).err(),
            Some(ResponseError::InvalidFetchSessionEpoch.code())
        );
        assert_eq!(
            s.context(&req(12345, 1, &[]), false).err(),
            Some(ResponseError::FetchSessionIdNotFound.code())
        );
        assert_eq!(
            s.context(&req(new_session, 2, &[]), true).err(),
            Some(ResponseError::FetchSessionTopicIdError.code())
        );
        // Forgetting a partition removes it from the session.
        let mut r = req(new_session, 2, &[]);
        r.forgotten_topics_data = vec![
            ForgottenTopic::default()
                .with_topic(TopicName("t".into()))
                .with_partitions(vec![1]),
        ];
        let Ok(Context::Incremental { parts, .. }) = s.context(&r, false) else {
            panic!("incremental")
        };
        assert_eq!(
            parts.iter().map(|p| p.partition).collect::<Vec<_>>(),
            vec![0]
        );
        // Epoch -1 closes it: a sessionless full fetch.
        let Ok(Context::Full {
            parts,
            new_session: none,
        }) = s.context(&req(new_session, -1, &[]), false)
        else {
            panic!("full")
        };
        assert!(parts.is_empty());
        assert_eq!(none, 0);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn a_full_cache_hands_out_no_session() {
        let s = FetchSessions::default();
        for _ in 0..CACHE_SLOTS {
            let Ok(Context::Full { new_session, .. }) = s.context(&req(0, 0, &[]), false) else {
                panic!()
            };
            assert_ne!(new_session, 0);
        }
        let Ok(Context::Full { new_session, .. }) = s.context(&req(0, 0, &[]), false) else {
            panic!()
        };
        assert_eq!(new_session, 0, "all sessions are in use: none for this one");
    }
}
