//! The CLI's connections: one to the bootstrap address, more to the
//! brokers Metadata names (partition leaders, group coordinators), each
//! opened on first use. Every connection and every answer is bounded by
//! `--timeout`; a broker that cannot be reached is [`CliError::Unreachable`].

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use super::ClientArgs;
use super::output::{CliError, check};
use crate::client::sasl::{SaslLogin, authenticate};
use crate::client::{self, Receiver, Sender};

/// Which broker a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    /// The bootstrap connection (any broker will do).
    Any,
    /// The broker with this node id.
    Id(i32),
}

struct Conn {
    tx: Sender,
    rx: Receiver,
}

pub struct Admin {
    /// The bootstrap address that answered (reopened if its connection is lost).
    bootstrap: String,
    timeout: Duration,
    tls: client::Tls,
    sasl: Option<SaslLogin>,
    conns: HashMap<Node, Conn>,
    /// Node id → host:port, from the last Metadata answer.
    brokers: HashMap<i32, String>,
}

/// Kafka's name type from a `&str`.
pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

impl Admin {
    /// Connects to the bootstrap address within `--timeout`.
    pub async fn connect(args: &ClientArgs) -> Result<Admin, CliError> {
        let timeout = args.timeout()?;
        let mut admin = Admin {
            bootstrap: String::new(),
            timeout,
            tls: args.tls()?,
            sasl: args.sasl()?,
            conns: HashMap::new(),
            brokers: HashMap::new(),
        };
        // Like bootstrap.servers: a list, tried in turn, all within the timeout.
        let deadline = tokio::time::Instant::now() + timeout;
        let mut failures = Vec::new();
        for addr in args
            .bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                failures.push(format!("{addr}: not tried, the --timeout ran out"));
                break;
            }
            match admin.open_within(addr, left).await {
                Ok(conn) => {
                    admin.conns.insert(Node::Any, conn);
                    admin.bootstrap = addr.to_owned();
                    return Ok(admin);
                }
                Err(CliError::Unreachable(why)) => failures.push(why),
                Err(e) => return Err(e),
            }
        }
        match failures.len() {
            0 => Err(CliError::Usage("--bootstrap: no address given".into())),
            _ => Err(CliError::Unreachable(failures.join("; "))),
        }
    }

    async fn open(&self, addr: &str) -> Result<Conn, CliError> {
        self.open_within(addr, self.timeout).await
    }

    /// A connection to `addr` (TLS, ApiVersions and SASL as configured)
    /// within `wait`.
    async fn open_within(&self, addr: &str, wait: Duration) -> Result<Conn, CliError> {
        let unreachable = |why: String| {
            CliError::Unreachable(format!(
                "cannot reach the broker at {addr}: {why} (check --bootstrap or SLUICE_BOOTSTRAP)"
            ))
        };
        match tokio::time::timeout(wait, client::connect(addr, &self.tls)).await {
            Err(_) => Err(unreachable(format!(
                "no connection within {} s",
                self.timeout.as_secs_f64()
            ))),
            Ok(Err(e)) => Err(unreachable(
                e.to_string()
                    .trim_start_matches(&format!("cannot connect to {addr}: "))
                    .to_owned(),
            )),
            Ok(Ok((mut tx, mut rx))) => {
                if let Some(login) = &self.sasl {
                    match tokio::time::timeout(self.timeout, authenticate(&mut tx, &mut rx, login))
                        .await
                    {
                        Err(_) => {
                            return Err(unreachable(format!(
                                "no SASL answer within {} s",
                                self.timeout.as_secs_f64()
                            )));
                        }
                        Ok(Err(e)) => {
                            return Err(CliError::Failed(format!(
                                "cannot log in to {addr} as {} with {}: {e}",
                                login.username, login.mechanism
                            )));
                        }
                        Ok(Ok(())) => {}
                    }
                }
                Ok(Conn { tx, rx })
            }
        }
    }

    async fn conn(&mut self, node: Node) -> Result<&mut Conn, CliError> {
        if !self.conns.contains_key(&node) {
            let Node::Id(id) = node else {
                // Lost after a timeout or error: the same address again.
                let conn = self.open(&self.bootstrap.clone()).await?;
                return Ok(self.conns.entry(node).or_insert(conn));
            };
            if !self.brokers.contains_key(&id) {
                // Boxed: metadata() comes back here for the bootstrap connection.
                Box::pin(self.metadata(Some(&[]))).await?;
            }
            let addr = self.brokers.get(&id).cloned().ok_or_else(|| {
                CliError::Failed(format!(
                    "broker {id} is not among the brokers Metadata lists"
                ))
            })?;
            let conn = self.open(&addr).await?;
            self.conns.insert(node, conn);
        }
        Ok(self.conns.get_mut(&node).expect("inserted above"))
    }

    /// Closes the connection to `node` (a request on it was abandoned);
    /// the next request opens a new one.
    pub fn forget(&mut self, node: Node) {
        self.conns.remove(&node);
    }

    /// The highest version of `key` in `ours` that `node` serves.
    pub async fn version(
        &mut self,
        node: Node,
        key: ApiKey,
        ours: RangeInclusive<i16>,
    ) -> Result<i16, CliError> {
        let conn = self.conn(node).await?;
        conn.tx
            .version(key, ours)
            .map_err(|e| CliError::Failed(format!("{e}")))
    }

    /// One request to `node` at the highest common version in `ours`,
    /// built for that version by `build`; its answer and version.
    pub async fn call<Req, Resp>(
        &mut self,
        node: Node,
        key: ApiKey,
        ours: RangeInclusive<i16>,
        build: impl FnOnce(i16) -> Req,
    ) -> Result<(Resp, i16), CliError>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        let v = self.version(node, key, ours).await?;
        let req = build(v);
        let timeout = self.timeout;
        let conn = self.conn(node).await?;
        let lost = |e: client::Error| {
            CliError::Unreachable(format!("connection lost during {key:?}: {e}"))
        };
        let corr = conn.tx.send(key, v, &req).await.map_err(lost)?;
        match tokio::time::timeout(timeout, conn.rx.recv(corr, v)).await {
            Err(_) => {
                // The connection is out of step now.
                self.conns.remove(&node);
                Err(CliError::Failed(format!(
                    "no answer to {key:?} within {} s",
                    timeout.as_secs_f64()
                )))
            }
            Ok(Err(e)) => {
                self.conns.remove(&node);
                Err(lost(e))
            }
            Ok(Ok(r)) => Ok((r, v)),
        }
    }

    /// A request that has no answer (a Produce with acks 0).
    pub async fn send_only<Req: Encodable + HeaderVersion>(
        &mut self,
        node: Node,
        key: ApiKey,
        ours: RangeInclusive<i16>,
        build: impl FnOnce(i16) -> Req,
    ) -> Result<(), CliError> {
        let v = self.version(node, key, ours).await?;
        let req = build(v);
        let conn = self.conn(node).await?;
        conn.tx
            .send(key, v, &req)
            .await
            .map_err(|e| CliError::Unreachable(format!("connection lost during {key:?}: {e}")))?;
        Ok(())
    }

    /// Metadata for `topics` (None: every topic; Some(&[]): none, brokers
    /// only); remembers the brokers' addresses.
    pub async fn metadata(
        &mut self,
        topics: Option<&[String]>,
    ) -> Result<MetadataResponse, CliError> {
        let (m, _): (MetadataResponse, _) = self
            .call(Node::Any, ApiKey::Metadata, 1..=12, |v| {
                let mut req = MetadataRequest::default().with_topics(topics.map(|ts| {
                    ts.iter()
                        .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                        .collect()
                }));
                if v >= 4 {
                    req.allow_auto_topic_creation = false;
                }
                req
            })
            .await?;
        self.brokers = m
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect();
        Ok(m)
    }

    /// Partition → leader of `topic`; an error naming the topic when it
    /// does not exist.
    pub async fn leaders(&mut self, topic: &str) -> Result<Vec<(i32, i32)>, CliError> {
        let m = self.metadata(Some(&[topic.to_owned()])).await?;
        let t = m
            .topics
            .first()
            .ok_or_else(|| CliError::Failed(format!("no metadata for topic {topic}")))?;
        check(|| format!("cannot read topic {topic}"), t.error_code, None)?;
        let mut out: Vec<(i32, i32)> = t
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// The node id of the coordinator of `group`, retrying while it loads.
    pub async fn coordinator(&mut self, group: &str) -> Result<Node, CliError> {
        let retry = client::Retry::new(
            format!("FindCoordinator for group {group}"),
            Duration::from_millis(100),
        );
        loop {
            let (r, v): (FindCoordinatorResponse, i16) = self
                .call(Node::Any, ApiKey::FindCoordinator, 0..=4, |v| {
                    let req = FindCoordinatorRequest::default();
                    if v >= 4 {
                        req.with_coordinator_keys(vec![str_bytes(group)])
                    } else {
                        req.with_key(str_bytes(group))
                    }
                })
                .await?;
            let (code, msg, id, host, port) = if v >= 4 {
                let c = r.coordinators.into_iter().next().ok_or_else(|| {
                    CliError::Failed("FindCoordinator answered no coordinator".into())
                })?;
                (c.error_code, c.error_message, c.node_id.0, c.host, c.port)
            } else {
                (r.error_code, r.error_message, r.node_id.0, r.host, r.port)
            };
            if code == 0 {
                self.brokers.insert(id, format!("{host}:{port}"));
                return Ok(Node::Id(id));
            }
            if retry.after(code, client::RETRIABLE).await.is_err() {
                return Err(super::output::kafka_error(
                    &format!("cannot find the coordinator of group {group}"),
                    code,
                    msg.as_deref(),
                ));
            }
        }
    }
}
