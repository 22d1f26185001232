//! The records of `__transaction_state`, in Kafka's layouts: key version 0
//! (the transactional id), value version 0 (producer id and epoch, timeout,
//! state, partitions, timestamps) or 1 (the same, flexible, with the
//! previous producer id and the client's transaction version as tagged
//! fields). A null value removes the id.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{TxnMeta, TxnState};

pub fn key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + transactional_id.len());
    b.put_i16(0);
    put_str(&mut b, transactional_id);
    b.freeze()
}

/// The value of an id's record: version 1 (flexible, with the previous
/// producer id and the client's transaction version as tagged fields) once
/// the id uses transaction version 2 or has rotated its producer id, as
/// Kafka writes it; version 0 otherwise.
pub fn value(m: &TxnMeta) -> Bytes {
    let flexible = m.client_version >= 2 || m.prev_producer_id >= 0;
    let mut b = BytesMut::with_capacity(64);
    b.put_i16(if flexible { 1 } else { 0 });
    b.put_i64(m.producer_id);
    b.put_i16(m.epoch);
    b.put_i32(m.timeout_ms);
    b.put_i8(m.state as i8);
    // Partitions grouped by topic.
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (t, p) in &m.partitions {
        match topics.last_mut() {
            Some((last, ps)) if *last == t.as_str() => ps.push(*p),
            _ => topics.push((t.as_str(), vec![*p])),
        }
    }
    if flexible {
        put_uvarint(&mut b, topics.len() as u64 + 1);
        for (t, ps) in topics {
            put_uvarint(&mut b, t.len() as u64 + 1);
            b.put_slice(t.as_bytes());
            put_uvarint(&mut b, ps.len() as u64 + 1);
            for p in ps {
                b.put_i32(p);
            }
            put_uvarint(&mut b, 0); // no tagged fields
        }
    } else {
        b.put_i32(topics.len() as i32);
        for (t, ps) in topics {
            put_str(&mut b, t);
            b.put_i32(ps.len() as i32);
            for p in ps {
                b.put_i32(p);
            }
        }
    }
    b.put_i64(m.last_update_ms);
    b.put_i64(m.start_ms);
    if flexible {
        // Tagged fields, in tag order, only those off their default:
        // 0 PreviousProducerId (int64), 2 ClientTransactionVersion (int16).
        let mut tags: Vec<(u64, Vec<u8>)> = Vec::new();
        if m.prev_producer_id >= 0 {
            tags.push((0, m.prev_producer_id.to_be_bytes().to_vec()));
        }
        if m.client_version != 0 {
            tags.push((2, m.client_version.to_be_bytes().to_vec()));
        }
        put_uvarint(&mut b, tags.len() as u64);
        for (tag, data) in tags {
            put_uvarint(&mut b, tag);
            put_uvarint(&mut b, data.len() as u64);
            b.put_slice(&data);
        }
    }
    b.freeze()
}

fn put_uvarint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8(v as u8 | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn get_uvarint(b: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = get_i8(b)? as u8;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err("a varint runs too long".into())
}

/// A compact string or array length (stored plus one; 0 is null).
fn get_compact_len(b: &mut &[u8]) -> Result<Option<usize>, String> {
    match get_uvarint(b)? {
        0 => Ok(None),
        n => usize::try_from(n - 1).map(Some).map_err(|e| e.to_string()),
    }
}

fn get_bytes<'a>(b: &mut &'a [u8], len: usize) -> Result<&'a [u8], String> {
    if b.remaining() < len {
        return Err(format!("a field of {len} bytes does not fit"));
    }
    let (field, rest) = b.split_at(len);
    *b = rest;
    Ok(field)
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn get_str(b: &mut &[u8]) -> Result<String, String> {
    let len = get_i16(b)?;
    if len < 0 || b.remaining() < len as usize {
        return Err(format!("a string of {len} bytes does not fit"));
    }
    let s = std::str::from_utf8(&b[..len as usize])
        .map_err(|e| e.to_string())?
        .to_owned();
    b.advance(len as usize);
    Ok(s)
}

macro_rules! getter {
    ($name:ident, $t:ty, $get:ident) => {
        fn $name(b: &mut &[u8]) -> Result<$t, String> {
            if b.remaining() < std::mem::size_of::<$t>() {
                return Err("the record ends early".into());
            }
            Ok(b.$get())
        }
    };
}
getter!(get_i8, i8, get_i8);
getter!(get_i16, i16, get_i16);
getter!(get_i32, i32, get_i32);
getter!(get_i64, i64, get_i64);

/// The transactional id of a key.
pub fn decode_key(mut k: &[u8]) -> Result<String, String> {
    let version = get_i16(&mut k)?;
    if version != 0 {
        return Err(format!("unknown key version {version}"));
    }
    get_str(&mut k)
}

pub fn decode_value(mut v: &[u8]) -> Result<TxnMeta, String> {
    let version = get_i16(&mut v)?;
    if !(0..=1).contains(&version) {
        return Err(format!("unknown value version {version}"));
    }
    let flexible = version == 1;
    let producer_id = get_i64(&mut v)?;
    let epoch = get_i16(&mut v)?;
    let timeout_ms = get_i32(&mut v)?;
    let state = TxnState::from_i8(get_i8(&mut v)?)?;
    let mut partitions = BTreeSet::new();
    if flexible {
        for _ in 0..get_compact_len(&mut v)?.unwrap_or(0) {
            let len = get_compact_len(&mut v)?.ok_or("a null topic name")?;
            let topic = std::str::from_utf8(get_bytes(&mut v, len)?)
                .map_err(|e| e.to_string())?
                .to_owned();
            for _ in 0..get_compact_len(&mut v)?.unwrap_or(0) {
                partitions.insert((topic.clone(), get_i32(&mut v)?));
            }
            skip_tagged_fields(&mut v)?;
        }
    } else {
        let topics = get_i32(&mut v)?;
        for _ in 0..topics.max(0) {
            let topic = get_str(&mut v)?;
            let n = get_i32(&mut v)?;
            for _ in 0..n.max(0) {
                partitions.insert((topic.clone(), get_i32(&mut v)?));
            }
        }
    }
    let last_update_ms = get_i64(&mut v)?;
    let start_ms = get_i64(&mut v)?;
    let (mut prev_producer_id, mut client_version) = (-1, 0);
    if flexible {
        for _ in 0..get_uvarint(&mut v)? {
            let tag = get_uvarint(&mut v)?;
            let len = usize::try_from(get_uvarint(&mut v)?).map_err(|e| e.to_string())?;
            let mut data = get_bytes(&mut v, len)?;
            match tag {
                0 => prev_producer_id = get_i64(&mut data)?,
                2 => client_version = get_i16(&mut data)?,
                // NextProducerId, or a field of a later release.
                _ => {}
            }
        }
    }
    Ok(TxnMeta {
        producer_id,
        prev_producer_id,
        epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        last_update_ms,
        client_version,
        written: -1,
    })
}

fn skip_tagged_fields(b: &mut &[u8]) -> Result<(), String> {
    for _ in 0..get_uvarint(b)? {
        get_uvarint(b)?;
        let len = usize::try_from(get_uvarint(b)?).map_err(|e| e.to_string())?;
        get_bytes(b, len)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_in_kafkas_layout() {
        let m = TxnMeta {
            producer_id: 7,
            prev_producer_id: -1,
            epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [
                ("a".to_owned(), 0),
                ("a".to_owned(), 2),
                ("b".to_owned(), 1),
            ]
            .into_iter()
            .collect(),
            start_ms: 100,
            last_update_ms: 200,
            client_version: 0,
            written: -1,
        };
        assert_eq!(decode_key(&key("tx-1")).unwrap(), "tx-1");
        let v = value(&m);
        // version, pid, epoch, timeout, state, 2 topics
        assert_eq!(&v[..2], &[0, 0]);
        assert_eq!(v[16], TxnState::Ongoing as u8);
        assert_eq!(&v[17..21], &2i32.to_be_bytes());
        let back = decode_value(&v).unwrap();
        assert_eq!(back.partitions, m.partitions);
        assert_eq!(
            (back.producer_id, back.epoch, back.timeout_ms, back.state),
            (7, 3, 60_000, TxnState::Ongoing)
        );
        assert_eq!((back.start_ms, back.last_update_ms), (100, 200));
        assert!(decode_value(&v[..20]).is_err());

        // Transaction version 2, after a producer id rotation: version 1.
        let rotated = TxnMeta {
            prev_producer_id: 6,
            client_version: 2,
            ..m.clone()
        };
        let v = value(&rotated);
        assert_eq!(&v[..2], &[0, 1]);
        // pid, epoch, timeout, state; then 2 topics as a compact array
        // (length + 1), "a" as a compact string, 2 partitions.
        assert_eq!(&v[17..21], &[3, 2, b'a', 3]);
        // The tagged fields close the record: two of them, tag 0 (8 bytes)
        // and tag 2 (2 bytes).
        assert_eq!(
            &v[v.len() - 15..],
            &[2, 0, 8, 0, 0, 0, 0, 0, 0, 0, 6, 2, 2, 0, 2]
        );
        let back = decode_value(&v).unwrap();
        assert_eq!(back.partitions, m.partitions);
        assert_eq!((back.prev_producer_id, back.client_version), (6, 2));
        assert_eq!(
            (
                back.producer_id,
                back.epoch,
                back.start_ms,
                back.last_update_ms
            ),
            (7, 3, 100, 200)
        );
        for cut in [20, v.len() - 1] {
            assert!(decode_value(&v[..cut]).is_err());
        }
        // An unknown tag (NextProducerId) is skipped.
        let mut with_next = v[..v.len() - 15].to_vec();
        with_next.extend_from_slice(&[1, 1, 8, 0, 0, 0, 0, 0, 0, 0, 9]);
        let back = decode_value(&with_next).unwrap();
        assert_eq!((back.prev_producer_id, back.client_version), (-1, 0));
    }
}
