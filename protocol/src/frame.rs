//! Length-prefixed frames: `[i32 size][size bytes]`.
//!
//! The decoder never allocates for a frame before its size has been checked
//! against the limit (Kafka's `socket.request.max.bytes`, 100 MiB by default), so a
//! hostile length prefix cannot make the broker reserve gigabytes.

use bytes::{Buf, BytesMut};

use crate::error::{ProtocolError, Result};

/// Kafka's default `socket.request.max.bytes`.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;

/// Splits a byte stream into frames.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame_bytes: usize,
}

impl FrameDecoder {
    pub fn new(max_frame_bytes: usize) -> Self {
        Self { max_frame_bytes }
    }

    /// Takes one whole frame (without its length prefix) off the front of `buf`.
    ///
    /// `Ok(None)` means "read more": the frame is incomplete. When the length is
    /// known but the body is still missing, `buf` is grown to fit it, once.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<BytesMut>> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if size < 0 {
            return Err(ProtocolError::NegativeLength(size));
        }
        let size = size as usize;
        if size > self.max_frame_bytes {
            return Err(ProtocolError::FrameTooLarge {
                size: size as i64,
                max: self.max_frame_bytes,
            });
        }
        if buf.len() < 4 + size {
            buf.reserve(4 + size - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        Ok(Some(buf.split_to(size)))
    }
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&(body.len() as i32).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn splits_pipelined_frames_and_waits_for_partial_ones() {
        let d = FrameDecoder::default();
        let mut buf = framed(b"one");
        buf.extend_from_slice(&framed(b"second"));
        buf.extend_from_slice(&[0, 0, 0, 9, b'x']);
        assert_eq!(&d.decode(&mut buf).unwrap().unwrap()[..], b"one");
        assert_eq!(&d.decode(&mut buf).unwrap().unwrap()[..], b"second");
        assert!(d.decode(&mut buf).unwrap().is_none());
        assert_eq!(buf.len(), 5, "partial frame stays buffered");
    }

    #[test]
    fn rejects_negative_and_oversized_lengths_before_allocating() {
        let d = FrameDecoder::new(1024);
        let mut neg = BytesMut::from(&(-5i32).to_be_bytes()[..]);
        assert!(matches!(
            d.decode(&mut neg),
            Err(ProtocolError::NegativeLength(-5))
        ));
        let mut huge = BytesMut::from(&i32::MAX.to_be_bytes()[..]);
        let cap_before = huge.capacity();
        assert!(matches!(
            d.decode(&mut huge),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        assert_eq!(huge.capacity(), cap_before);
    }

    #[test]
    fn exact_limit_is_accepted() {
        let d = FrameDecoder::new(8);
        let mut buf = framed(b"12345678");
        assert_eq!(d.decode(&mut buf).unwrap().unwrap().len(), 8);
    }
}
