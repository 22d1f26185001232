//! Requests from this broker to other brokers' Kafka listeners, as Kafka's
//! brokers send them: WriteTxnMarkers from a transaction coordinator to
//! partition leaders, and the KIP-890 verification (AddPartitionsToTxn with
//! verify_only) from a partition leader to a transaction coordinator. One
//! connection per peer, one request at a time on it, dropped on any error
//! and made again on the next call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use crate::bench::client::{Receiver, Sender, connect};
use crate::broker::Broker;

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
        let (host, port) = broker
            .broker_address(node)
            .ok_or_else(|| format!("broker {node} is not registered"))?;
        let conn = self.conn(node);
        let mut slot = conn.lock().await;
        let attempt = async {
            if slot.is_none() {
                *slot = Some(
                    connect(&format!("{host}:{port}"))
                        .await
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
