//! Kafka requests from this broker to other brokers, as Kafka's brokers
//! send them on their inter-broker listener: WriteTxnMarkers from a
//! transaction coordinator to partition leaders, and the KIP-890
//! verification (AddPartitionsToTxn with verify_only) from a partition
//! leader to a transaction coordinator. They go to the peer's internal
//! listener (its `controller.quorum.voters` address, as the Raft transport),
//! after the inter-broker Kafka hello: so a broker cut off from its peers
//! reaches none of them this way either. One connection per peer, one
//! request at a time on it, dropped on any error and made again on the
//! next call. Over mutual TLS when the internal listener uses it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use crate::broker::Broker;
use crate::client::{Receiver, Sender, connect_stream, connect_tcp};
use crate::replication::transport::{self, LinkKind, LinkStream, hello};

/// How long one request to a peer may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

type Conn = Arc<tokio::sync::Mutex<Option<(Sender, Receiver)>>>;

#[derive(Default)]
pub struct Peers {
    conns: Mutex<HashMap<i32, Conn>>,
}

impl Peers {
    fn conn(&self, node: i32) -> Conn {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(node)
            .or_default()
            .clone()
    }

    /// Sends one request to broker `node` and reads its answer.
    pub async fn call<Req, Resp>(
        &self,
        broker: &Broker,
        node: i32,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<Resp, String>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        let cluster = broker
            .cluster()
            .ok_or_else(|| format!("no broker {node}: this broker runs alone"))?;
        let addr = u64::try_from(node)
            .ok()
            .and_then(|n| cluster.internal_address(n))
            .ok_or_else(|| format!("broker {node} is not a controller quorum voter"))?;
        let me = cluster.me;
        let name = cluster
            .server_name(node as u64)
            .ok_or_else(|| format!("broker {node} is not a controller quorum voter"))?;
        let conn = self.conn(node);
        let mut slot = conn.lock().await;
        let attempt = async {
            if slot.is_none() {
                let stream = transport::connect(addr, &name, cluster.internal_tls.as_deref())
                    .await
                    .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
                let hello = hello(LinkKind::Kafka, me);
                *slot = Some(
                    match stream {
                        LinkStream::Plain(s) => connect_tcp(s, &hello).await,
                        LinkStream::Tls(s) => connect_stream(*s, &hello).await,
                    }
                    .map_err(|e| e.to_string())?,
                );
            }
            let (tx, rx) = slot.as_mut().expect("connected above");
            let corr = tx
                .send(key, version, req)
                .await
                .map_err(|e| e.to_string())?;
            rx.recv::<Resp>(corr, version)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                *slot = None;
                Err(format!("{key:?} to broker {node}: {e}"))
            }
            Err(_) => {
                *slot = None;
                Err(format!(
                    "{key:?} to broker {node}: no answer in {CALL_TIMEOUT:?}"
                ))
            }
        }
    }
}
