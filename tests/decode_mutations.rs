//! A deterministic, bounded cousin of the fuzz target (fuzz/): valid request
//! frames of every served API and version, mutated many ways, must go through
//! parsing and body decoding as a clean Ok or Err — never a panic.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice::handlers::{
    Parsed, SERVED, decode_request_body, default_request_body, parse_request, version_table,
};

// The broker binary's allocator: without it a lying element count aborts.
#[global_allocator]
static ALLOC: sluice::alloc::BrokerAlloc = sluice::alloc::BrokerAlloc;

/// A framed default request of `key` at `version` (length prefix excluded).
fn frame(key: ApiKey, version: i16) -> Vec<u8> {
    let mut b = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("m")))
        .encode(&mut b, key.request_header_version(version))
        .unwrap();
    let body = default_request_body(key, version)
        .unwrap_or_else(|| panic!("{key:?} served but has no request type"));
    b.extend_from_slice(&body);
    b.to_vec()
}

fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for &(key, min, max) in SERVED {
        for v in min..=max {
            out.push(frame(key, v));
        }
    }
    out
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn mutated_requests_never_panic() {
    let table = version_table();
    let seeds = seeds();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut parsed = 0;
    for _ in 0..40_000 {
        let mut f = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(4) {
            match rng.below(5) {
                0 if !f.is_empty() => {
                    let i = rng.below(f.len());
                    f[i] = rng.next() as u8;
                }
                1 if !f.is_empty() => {
                    let at = rng.below(f.len());
                    f.truncate(at);
                }
                2 => {
                    let extra: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                    f.extend_from_slice(&extra);
                }
                3 if f.len() > 8 => {
                    // A length field somewhere in the body set to something wild.
                    let i = 8 + rng.below(f.len() - 8);
                    let v = [0x7f, 0xff, 0xff, 0xff];
                    for (k, b) in v.iter().enumerate() {
                        if i + k < f.len() {
                            f[i + k] = *b;
                        }
                    }
                }
                _ => {
                    let i = rng.below(f.len().max(1));
                    if i < f.len() {
                        f[i] ^= 0x80;
                    }
                }
            }
        }
        let frame = Bytes::from(f);
        if let Ok(Parsed::Request {
            key, version, body, ..
        }) = parse_request(frame, &table)
        {
            parsed += 1;
            let _ = decode_request_body(key, version, body);
        }
    }
    assert!(
        parsed > 1000,
        "mutations should mostly keep a parsable header ({parsed})"
    );
}
