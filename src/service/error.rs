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
    #[error("the server is shutting down; retry on another instance")]
    ShuttingDown,
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
