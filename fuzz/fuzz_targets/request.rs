//! Arbitrary bytes through the broker's request-reading path: frame splitting,
//! header peek, version check, header decode, and the body decode of every
//! served API. Anything but a clean `Ok`/`Err` (a panic, an overflow, a huge
//! allocation) is a bug.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sluice::handlers::{Parsed, decode_request_body, parse_request, version_table};
use sluice_protocol::frame::FrameDecoder;

// The broker binary's allocator, so the fuzzer checks what ships.
#[global_allocator]
static ALLOC: sluice::alloc::BrokerAlloc = sluice::alloc::BrokerAlloc;

fuzz_target!(|data: &[u8]| {
    let table = version_table();
    // As a stream of frames.
    let decoder = FrameDecoder::new(1 << 20);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = decoder.decode(&mut buf) {
        if let Ok(Parsed::Request { key, version, body, .. }) = parse_request(frame.freeze(), &table) {
            let _ = decode_request_body(key, version, body);
        }
    }
    // As one frame's contents, so the fuzzer need not find a valid length first.
    if let Ok(Parsed::Request { key, version, body, .. }) = parse_request(Bytes::copy_from_slice(data), &table) {
        let _ = decode_request_body(key, version, body);
    }
});
