//! Why the request path refused or failed a request. The messages are what clients read; the
//! edge gives each variant its wire kind, HTTP status and gRPC code (`edge::error`), once.

use crate::ensemble::{ItemError, PredictError};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServiceError {
    /// The request's own shape is wrong (as a transport decoded it: a malformed tensor, an
    /// option out of range).
    #[error("{0}")]
    Malformed(String),
    #[error("the request has no items")]
    NoItems,
    #[error(
        "the request has {items} items, more than the limit of {limit} (--max-items-per-request)"
    )]
    TooManyItems { items: usize, limit: usize },
    /// Item `index` (0-based) does not fit the ensemble.
    #[error("item {index}: {error}")]
    Item { index: usize, error: ItemError },
    #[error(
        "item {index}: field {field:?} has {bytes} bytes, more than the limit of {limit} \
         (--max-field-bytes)"
    )]
    FieldTooLarge {
        index: usize,
        field: String,
        bytes: usize,
        limit: usize,
    },
    #[error(
        "overloaded: {in_flight} of {capacity} items in flight, this request needs {needed} \
         (--max-items-in-flight); retry later"
    )]
    Overloaded {
        in_flight: usize,
        capacity: usize,
        needed: usize,
    },
    /// The work queued ahead would make the request wait longer than `--max-queue-wait`.
    #[error(
        "overloaded: the compute threads have about {wait_ms} ms of work queued, more than the \
         {max_ms} ms a request may wait (--max-queue-wait); retry after {retry_after_s} s"
    )]
    QueueFull {
        wait_ms: u64,
        max_ms: u64,
        /// When a retry has a fair chance: the queued work's time, rounded up to a second.
        retry_after_s: u64,
    },
    #[error("the server is shutting down; retry on another instance")]
    ShuttingDown,
    /// The request's deadline passed before it was answered; nothing more is computed for it.
    #[error(
        "the request's deadline ({timeout_ms} ms) passed before it was answered; what it still \
         had queued will not be computed"
    )]
    DeadlineExceeded { timeout_ms: u64 },
    /// A request addressed to a model by name (the Open Inference Protocol) that is not served.
    #[error("unknown model {asked:?}: this server serves {served:?}")]
    UnknownModel { asked: String, served: String },
    #[error("model {name:?} has no version {asked:?}: version {served:?} is served")]
    UnknownVersion {
        name: String,
        asked: String,
        served: String,
    },
    /// A model failed while scoring.
    #[error("{0}")]
    Predict(#[from] PredictError),
}

impl ServiceError {
    /// When the caller may retry with a fair chance, for a refusal that says so.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ServiceError::QueueFull { retry_after_s, .. } => {
                Some(std::time::Duration::from_secs(*retry_after_s))
            }
            _ => None,
        }
    }
}
