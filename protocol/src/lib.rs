//! sluice-protocol: the Kafka wire format as Sluice speaks it. No I/O.
//!
//! Module map:
//! - [`frame`]: the 4-byte length prefix; sizes are checked before any allocation.
//! - [`header`]: a cheap peek at key/version/correlation id, then the full request header.
//! - [`versions`]: the table of advertised API versions and the ApiVersions answer built from it.
//! - [`codec`]: decoding request bodies and encoding framed responses.
//! - [`list_offsets_v0`]: ListOffsets v0, which the generated types lack.
//! - [`error`]: the crate's error type.
//!
//! Message layouts come from the `kafka-protocol` crate (generated from Kafka's own
//! schemas), re-exported as [`kafka`], so that no layout is typed by hand here —
//! except ListOffsets v0 (`list_offsets_v0`), older than the crate's schemas.

pub mod codec;
pub mod error;
pub mod frame;
pub mod header;
pub mod list_offsets_v0;
pub mod versions;

pub use error::{ProtocolError, Result};
pub use kafka_protocol as kafka;
