//! The records of `__transaction_state`, in Kafka's layouts: key version 0
//! (the transactional id), value version 0 (producer id and epoch, timeout,
//! state, partitions, timestamps). A null value removes the id.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{TxnMeta, TxnState};

pub fn key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + transactional_id.len());
    b.put_i16(0);
    put_str(&mut b, transactional_id);
    b.freeze()
}

pub fn value(m: &TxnMeta) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_i16(0);
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
    b.put_i32(topics.len() as i32);
    for (t, ps) in topics {
        put_str(&mut b, t);
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(p);
        }
    }
    b.put_i64(m.last_update_ms);
    b.put_i64(m.start_ms);
    b.freeze()
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
    if version != 0 {
        return Err(format!("unknown value version {version}"));
    }
    let producer_id = get_i64(&mut v)?;
    let epoch = get_i16(&mut v)?;
    let timeout_ms = get_i32(&mut v)?;
    let state = TxnState::from_i8(get_i8(&mut v)?)?;
    let mut partitions = BTreeSet::new();
    let topics = get_i32(&mut v)?;
    for _ in 0..topics.max(0) {
        let topic = get_str(&mut v)?;
        let n = get_i32(&mut v)?;
        for _ in 0..n.max(0) {
            partitions.insert((topic.clone(), get_i32(&mut v)?));
        }
    }
    let last_update_ms = get_i64(&mut v)?;
    let start_ms = get_i64(&mut v)?;
    Ok(TxnMeta {
        producer_id,
        epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        last_update_ms,
        written: -1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_in_kafkas_layout() {
        let m = TxnMeta {
            producer_id: 7,
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
    }
}
