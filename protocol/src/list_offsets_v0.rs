//! ListOffsets v0, the one layout typed by hand: the `kafka-protocol` crate
//! generates ListOffsets from v1 only, and v0 is what old clients (Kafka's
//! 0.8/0.9-era consumers, kafka-python with `api_version=(0, 9)`, Sarama
//! before V0_10_1_0) send.
//!
//! v0 differs from v1 in two fields: a request partition carries
//! `max_num_offsets`, and a response partition carries a list of offsets
//! (`old_style_offsets`) instead of one timestamp and offset. Both layouts
//! are plain (no flexible versions, no tagged fields):
//!
//! ```text
//! request:  replica_id int32, topics [name string, partitions [partition_index int32,
//!           timestamp int64, max_num_offsets int32]]
//! response: topics [name string, partitions [partition_index int32, error_code int16,
//!           old_style_offsets [int64]]]
//! ```
//!
//! The types implement the `kafka-protocol` traits (for version 0 only), so
//! the broker's usual decode and encode functions carry them.

use anyhow::{Result, bail};
use kafka_protocol::protocol::buf::{ByteBuf, ByteBufMut};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

fn only_v0(version: i16) -> Result<()> {
    if version != 0 {
        bail!("ListOffsets v{version} is not the hand-written v0 layout");
    }
    Ok(())
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOffsetsV0Request {
    pub replica_id: i32,
    pub topics: Vec<RequestTopic>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestTopic {
    pub name: StrBytes,
    pub partitions: Vec<RequestPartition>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestPartition {
    pub partition_index: i32,
    /// -1 latest, -2 earliest, else: offsets of segments written before it.
    pub timestamp: i64,
    /// How many offsets the answer may list.
    pub max_num_offsets: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOffsetsV0Response {
    pub topics: Vec<ResponseTopic>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseTopic {
    pub name: StrBytes,
    pub partitions: Vec<ResponsePartition>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponsePartition {
    pub partition_index: i32,
    pub error_code: i16,
    /// Descending.
    pub old_style_offsets: Vec<i64>,
}

// The primitives of the classic (non-flexible) encoding.

fn need<B: ByteBuf>(buf: &B, n: usize) -> Result<()> {
    if buf.remaining() < n {
        bail!("{n} bytes needed, {} left", buf.remaining());
    }
    Ok(())
}

fn get_i16<B: ByteBuf>(buf: &mut B) -> Result<i16> {
    need(buf, 2)?;
    Ok(buf.get_i16())
}

fn get_i32<B: ByteBuf>(buf: &mut B) -> Result<i32> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}

fn get_i64<B: ByteBuf>(buf: &mut B) -> Result<i64> {
    need(buf, 8)?;
    Ok(buf.get_i64())
}

/// A non-nullable string: int16 length, UTF-8 bytes.
fn get_string<B: ByteBuf>(buf: &mut B) -> Result<StrBytes> {
    let len = get_i16(buf)?;
    if len < 0 {
        bail!("null string where a string is required");
    }
    let bytes = buf.try_get_bytes(len as usize)?;
    Ok(StrBytes::from_utf8(bytes)?)
}

fn put_string<B: ByteBufMut>(buf: &mut B, s: &StrBytes) -> Result<()> {
    let Ok(len) = i16::try_from(s.len()) else {
        bail!("string of {} bytes is too long", s.len());
    };
    buf.put_i16(len);
    buf.put_slice(s.as_bytes());
    Ok(())
}

/// A non-nullable array: int32 count, then the elements. The vector grows
/// as elements arrive, so a lying count cannot make it allocate up front.
fn get_array<B: ByteBuf, T>(
    buf: &mut B,
    mut element: impl FnMut(&mut B) -> Result<T>,
) -> Result<Vec<T>> {
    let n = get_i32(buf)?;
    if n < 0 {
        bail!("array length {n}");
    }
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(element(buf)?);
    }
    Ok(out)
}

fn put_count<B: ByteBufMut>(buf: &mut B, n: usize) -> Result<()> {
    let Ok(n) = i32::try_from(n) else {
        bail!("array of {n} elements is too long");
    };
    buf.put_i32(n);
    Ok(())
}

impl Encodable for ListOffsetsV0Request {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, version: i16) -> Result<()> {
        only_v0(version)?;
        buf.put_i32(self.replica_id);
        put_count(buf, self.topics.len())?;
        for t in &self.topics {
            put_string(buf, &t.name)?;
            put_count(buf, t.partitions.len())?;
            for p in &t.partitions {
                buf.put_i32(p.partition_index);
                buf.put_i64(p.timestamp);
                buf.put_i32(p.max_num_offsets);
            }
        }
        Ok(())
    }
    fn compute_size(&self, version: i16) -> Result<usize> {
        only_v0(version)?;
        Ok(4 + 4
            + self
                .topics
                .iter()
                .map(|t| 2 + t.name.len() + 4 + t.partitions.len() * (4 + 8 + 4))
                .sum::<usize>())
    }
}

impl Decodable for ListOffsetsV0Request {
    fn decode<B: ByteBuf>(buf: &mut B, version: i16) -> Result<Self> {
        only_v0(version)?;
        let replica_id = get_i32(buf)?;
        let topics = get_array(buf, |buf| {
            Ok(RequestTopic {
                name: get_string(buf)?,
                partitions: get_array(buf, |buf| {
                    Ok(RequestPartition {
                        partition_index: get_i32(buf)?,
                        timestamp: get_i64(buf)?,
                        max_num_offsets: get_i32(buf)?,
                    })
                })?,
            })
        })?;
        Ok(Self { replica_id, topics })
    }
}

impl Encodable for ListOffsetsV0Response {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, version: i16) -> Result<()> {
        only_v0(version)?;
        put_count(buf, self.topics.len())?;
        for t in &self.topics {
            put_string(buf, &t.name)?;
            put_count(buf, t.partitions.len())?;
            for p in &t.partitions {
                buf.put_i32(p.partition_index);
                buf.put_i16(p.error_code);
                put_count(buf, p.old_style_offsets.len())?;
                for o in &p.old_style_offsets {
                    buf.put_i64(*o);
                }
            }
        }
        Ok(())
    }
    fn compute_size(&self, version: i16) -> Result<usize> {
        only_v0(version)?;
        Ok(4 + self
            .topics
            .iter()
            .map(|t| {
                2 + t.name.len()
                    + 4
                    + t.partitions
                        .iter()
                        .map(|p| 4 + 2 + 4 + 8 * p.old_style_offsets.len())
                        .sum::<usize>()
            })
            .sum::<usize>())
    }
}

impl Decodable for ListOffsetsV0Response {
    fn decode<B: ByteBuf>(buf: &mut B, version: i16) -> Result<Self> {
        only_v0(version)?;
        let topics = get_array(buf, |buf| {
            Ok(ResponseTopic {
                name: get_string(buf)?,
                partitions: get_array(buf, |buf| {
                    Ok(ResponsePartition {
                        partition_index: get_i32(buf)?,
                        error_code: get_i16(buf)?,
                        old_style_offsets: get_array(buf, get_i64)?,
                    })
                })?,
            })
        })?;
        Ok(Self { topics })
    }
}

/// Request header v1 (client id, no tagged fields), as for v1–v5.
impl HeaderVersion for ListOffsetsV0Request {
    fn header_version(_version: i16) -> i16 {
        1
    }
}

/// Response header v0 (correlation id only).
impl HeaderVersion for ListOffsetsV0Response {
    fn header_version(_version: i16) -> i16 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};

    #[test]
    fn request_layout_is_kafkas() {
        let req = ListOffsetsV0Request {
            replica_id: -1,
            topics: vec![RequestTopic {
                name: StrBytes::from_static_str("t"),
                partitions: vec![RequestPartition {
                    partition_index: 2,
                    timestamp: -2,
                    max_num_offsets: 5,
                }],
            }],
        };
        let mut b = BytesMut::new();
        req.encode(&mut b, 0).unwrap();
        let want: &[u8] = &[
            0xff, 0xff, 0xff, 0xff, // replica_id -1
            0, 0, 0, 1, // one topic
            0, 1, b't', // name
            0, 0, 0, 1, // one partition
            0, 0, 0, 2, // partition_index
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, // timestamp -2
            0, 0, 0, 5, // max_num_offsets
        ];
        assert_eq!(&b[..], want);
        assert_eq!(req.compute_size(0).unwrap(), want.len());
        let mut bytes = Bytes::copy_from_slice(want);
        assert_eq!(ListOffsetsV0Request::decode(&mut bytes, 0).unwrap(), req);
        assert!(bytes.is_empty());
    }

    #[test]
    fn response_layout_is_kafkas() {
        let resp = ListOffsetsV0Response {
            topics: vec![ResponseTopic {
                name: StrBytes::from_static_str("t"),
                partitions: vec![ResponsePartition {
                    partition_index: 0,
                    error_code: 3,
                    old_style_offsets: vec![7, 0],
                }],
            }],
        };
        let mut b = BytesMut::new();
        resp.encode(&mut b, 0).unwrap();
        let want: &[u8] = &[
            0, 0, 0, 1, // one topic
            0, 1, b't', // name
            0, 0, 0, 1, // one partition
            0, 0, 0, 0, // partition_index
            0, 3, // error_code
            0, 0, 0, 2, // two offsets
            0, 0, 0, 0, 0, 0, 0, 7, //
            0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(&b[..], want);
        assert_eq!(resp.compute_size(0).unwrap(), want.len());
        let mut bytes = Bytes::copy_from_slice(want);
        assert_eq!(ListOffsetsV0Response::decode(&mut bytes, 0).unwrap(), resp);
    }

    #[test]
    fn other_versions_and_short_input_are_errors() {
        let mut b = BytesMut::new();
        assert!(ListOffsetsV0Request::default().encode(&mut b, 1).is_err());
        let mut short = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0]);
        assert!(ListOffsetsV0Request::decode(&mut short, 0).is_err());
        // A lying count fails at the end of the input, having allocated little.
        let mut lying = Bytes::from_static(&[0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]);
        assert!(ListOffsetsV0Request::decode(&mut lying, 0).is_err());
    }
}
