//! Errors raised while reading or writing the wire format.

use thiserror::Error;

/// Every way a request can fail to be read, or a response to be written.
///
/// Each of these leaves the broker no answer it could send in the protocol, so the
/// connection that produced it is closed (after a log line), as Kafka does.
#[derive(Debug, Error)]
pub enum ProtocolError {
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { size: i64, max: usize },
    #[error("frame length {0} is negative")]
    NegativeLength(i32),
    #[error("frame of {0} bytes is too short to hold a request header")]
    TruncatedHeader(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{api} v{version} is not supported")]
    UnsupportedVersion { api: &'static str, version: i16 },
    #[error("malformed {api} v{version} request: {reason}")]
    Malformed {
        api: &'static str,
        version: i16,
        reason: String,
    },
    /// The broker will not serve this request on this connection (it closes
    /// it, so the client turns to another broker).
    #[error("refused: {0}")]
    Refused(String),
    #[error("failed to encode {api} v{version} response: {reason}")]
    Encode {
        api: &'static str,
        version: i16,
        reason: String,
    },
}

pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;
