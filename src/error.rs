//! Broker errors and their one mapping to Kafka error codes.

use kafka_protocol::error::ResponseError;
use sluice_storage::StorageError;

/// What a partition-level operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("unknown topic id")]
    UnknownTopicId,
    #[error("corrupt record batch: {0}")]
    CorruptMessage(String),
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// Some records of a batch are invalid (KIP-467): (index of the record in
    /// the batch, why).
    #[error("{}", records_rejected(.0))]
    InvalidRecords(Vec<(i32, String)>),
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: usize },
    #[error("sequence {got} out of order, expected {expected}")]
    OutOfOrderSequence { expected: i32, got: i32 },
    #[error("producer epoch {got} is older than {current}")]
    InvalidProducerEpoch { current: i16, got: i16 },
    #[error("offset {offset} out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("timed out waiting for replication")]
    RequestTimedOut,
    #[error("this broker does not lead the partition")]
    NotLeaderOrFollower,
    #[error("fewer replicas reachable than min.insync.replicas")]
    NotEnoughReplicas,
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("a newer transaction coordinator wrote this producer's last marker")]
    TransactionCoordinatorFenced,
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    #[error("storage failure: {0}")]
    Storage(StorageError),
}

impl From<StorageError> for BrokerError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            } => BrokerError::OffsetOutOfRange {
                offset,
                start: log_start,
                end: log_end,
            },
            other => BrokerError::Storage(other),
        }
    }
}

impl BrokerError {
    /// The Kafka error code a client receives for this error.
    pub fn code(&self) -> i16 {
        let e = match self {
            BrokerError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
            BrokerError::UnknownTopicId => ResponseError::UnknownTopicId,
            BrokerError::CorruptMessage(_) => ResponseError::CorruptMessage,
            BrokerError::InvalidRecord(_) | BrokerError::InvalidRecords(_) => {
                ResponseError::InvalidRecord
            }
            BrokerError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
            BrokerError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
            BrokerError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
            BrokerError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            BrokerError::RequestTimedOut => ResponseError::RequestTimedOut,
            BrokerError::NotLeaderOrFollower => ResponseError::NotLeaderOrFollower,
            BrokerError::NotEnoughReplicas => ResponseError::NotEnoughReplicas,
            BrokerError::InvalidRequest(_) => ResponseError::InvalidRequest,
            BrokerError::TransactionCoordinatorFenced => {
                ResponseError::TransactionCoordinatorFenced
            }
            BrokerError::InvalidTxnState(_) => ResponseError::InvalidTxnState,
            BrokerError::Storage(StorageError::CorruptBatch { .. }) => {
                ResponseError::CorruptMessage
            }
            BrokerError::Storage(StorageError::InvalidBatch(_)) => ResponseError::CorruptMessage,
            BrokerError::Storage(_) => ResponseError::KafkaStorageError,
        };
        e.code()
    }
}

pub const NONE: i16 = 0;

/// Shorthand for a code from kafka-protocol's table.
pub fn code(e: ResponseError) -> i16 {
    e.code()
}

/// The partition-level message of a produce with invalid records, as Kafka
/// words it: the count and the first three.
fn records_rejected(errors: &[(i32, String)]) -> String {
    let first: Vec<String> = errors
        .iter()
        .take(3)
        .map(|(i, m)| format!("RecordError(batchIndex={i}, message='{m}')"))
        .collect();
    format!(
        "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
        errors.len(),
        first.join(", ")
    )
}
