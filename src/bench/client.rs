//! A small Kafka wire client for the load generator: one connection, the
//! versions negotiated with ApiVersions, requests written and answers read on
//! separate halves so that several requests can be in flight.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// The request-writing half, with the versions the broker serves.
pub struct Sender {
    half: OwnedWriteHalf,
    next_correlation: i32,
    versions: HashMap<i16, (i16, i16)>,
}

/// The answer-reading half.
pub struct Receiver {
    half: OwnedReadHalf,
}

pub async fn connect(addr: &str) -> Result<(Sender, Receiver)> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let mut tx = Sender {
        half: w,
        next_correlation: 1,
        versions: HashMap::new(),
    };
    let mut rx = Receiver { half: r };
    // ApiVersions v0: every broker answers it.
    let corr = tx
        .send(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
        .await?;
    let resp: ApiVersionsResponse = rx.recv(corr, 0).await?;
    if resp.error_code != 0 {
        return Err(format!("ApiVersions failed with error {}", resp.error_code).into());
    }
    tx.versions = resp
        .api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect();
    Ok((tx, rx))
}

impl Sender {
    /// The highest version in `ours` that the broker serves.
    pub fn version(&self, key: ApiKey, ours: RangeInclusive<i16>) -> Result<i16> {
        let (min, max) = self
            .versions
            .get(&(key as i16))
            .copied()
            .ok_or_else(|| format!("the broker does not serve {key:?}"))?;
        let v = max.min(*ours.end());
        if v < min.max(*ours.start()) {
            return Err(format!(
                "no common version of {key:?}: broker {min}-{max}, bench {ours:?}"
            )
            .into());
        }
        Ok(v)
    }

    /// Writes one request; returns its correlation id.
    pub async fn send<Req: Encodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<i32> {
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let mut body = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str("sluice-bench")))
            .encode(&mut body, Req::header_version(version))?;
        req.encode(&mut body, version)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.half.write_all(&frame).await?;
        Ok(correlation)
    }
}

impl Receiver {
    /// Reads the next answer, which must be for `correlation`.
    pub async fn recv<Resp: Decodable + HeaderVersion>(
        &mut self,
        correlation: i32,
        version: i16,
    ) -> Result<Resp> {
        let mut len = [0u8; 4];
        self.half.read_exact(&mut len).await?;
        let n = i32::from_be_bytes(len);
        if !(0..=(256 << 20)).contains(&n) {
            return Err(format!("bad response length {n}").into());
        }
        let mut buf = vec![0u8; n as usize];
        self.half.read_exact(&mut buf).await?;
        let mut b = Bytes::from(buf);
        let header = ResponseHeader::decode(&mut b, Resp::header_version(version))?;
        if header.correlation_id != correlation {
            return Err(format!(
                "answer {} out of order (expected {correlation})",
                header.correlation_id
            )
            .into());
        }
        let resp = Resp::decode(&mut b, version)?;
        if b.has_remaining() {
            return Err("trailing bytes in a response".into());
        }
        Ok(resp)
    }
}
