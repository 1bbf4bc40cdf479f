//! The edge's one error type and the one place errors meet the wire. Each layer below fails with
//! its own type ([`ServiceError`] for the request path, [`DeployError`] for hot swap and shadow);
//! here each variant gets its [`ErrorKind`], once, and an [`ApiError`] is mapped to an HTTP
//! status with a JSON body `{"error": message, "code": kind}`, to a gRPC status (with the kind in
//! the `lastmile-error` metadata key), and to the `code` label of the request metrics. Every
//! transport fails through [`ApiError`], so a request refused over REST and over gRPC says the
//! same thing.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tonic::Code;

use crate::deploy::DeployError;
use crate::service::ServiceError;

/// gRPC metadata key (and HTTP header) carrying [`ErrorKind::as_str`] on every error response.
pub const ERROR_HEADER: &str = "lastmile-error";

/// What went wrong, as clients and dashboards see it: the wire vocabulary of both the serving and
/// the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed JSON, protobuf or tensors; a request that does not follow the API's shape.
    BadRequest,
    /// Well-formed, but an item does not fit the ensemble (wrong field type, no known field).
    InvalidInput,
    /// More items in one request than `--max-items-per-request`.
    TooManyItems,
    /// A text field longer than `--max-field-bytes`.
    FieldTooLarge,
    /// A request body (or gRPC message) larger than `--max-body-bytes`.
    BodyTooLarge,
    /// Admission control: `--max-items-in-flight` items are already being scored.
    Overloaded,
    /// No such route, model, version or gRPC method.
    NotFound,
    MethodNotAllowed,
    /// A body in a content type the route does not read (SageMaker's `/invocations`).
    UnsupportedMediaType,
    /// An `Accept` the route cannot answer in.
    NotAcceptable,
    /// The server is draining for shutdown.
    ShuttingDown,
    /// A model failed while scoring.
    PredictFailed,
    /// The client went away before the answer.
    Cancelled,
    /// The request's deadline passed before it was answered.
    DeadlineExceeded,
    /// An admin call without the admin token (when the server has one).
    Unauthenticated,
    /// A candidate ensemble that cannot be promoted: it did not load, warm up or pass the gate.
    Rejected,
    /// An admin call that does not fit the registry's state (no candidate to promote, no previous
    /// ensemble to roll back to).
    Conflict,
    /// A bug.
    Internal,
}

impl ErrorKind {
    /// The stable name used in JSON bodies, gRPC metadata and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::TooManyItems => "too_many_items",
            ErrorKind::FieldTooLarge => "field_too_large",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::NotAcceptable => "not_acceptable",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::PredictFailed => "predict_failed",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Internal => "internal",
        }
    }

    pub(crate) const ALL: [ErrorKind; 18] = [
        ErrorKind::BadRequest,
        ErrorKind::InvalidInput,
        ErrorKind::TooManyItems,
        ErrorKind::FieldTooLarge,
        ErrorKind::BodyTooLarge,
        ErrorKind::Overloaded,
        ErrorKind::NotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::UnsupportedMediaType,
        ErrorKind::NotAcceptable,
        ErrorKind::ShuttingDown,
        ErrorKind::PredictFailed,
        ErrorKind::Cancelled,
        ErrorKind::DeadlineExceeded,
        ErrorKind::Unauthenticated,
        ErrorKind::Rejected,
        ErrorKind::Conflict,
        ErrorKind::Internal,
    ];

    /// The kind named by [`ErrorKind::as_str`].
    pub fn parse(name: &str) -> Option<ErrorKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::InvalidInput | ErrorKind::FieldTooLarge => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::TooManyItems | ErrorKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            ErrorKind::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            // 499 is nginx's "client closed request"; nobody reads it, but the metrics do.
            ErrorKind::Cancelled => StatusCode::from_u16(499).expect("499 is a valid status"),
            ErrorKind::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::PredictFailed | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(self) -> Code {
        match self {
            ErrorKind::BadRequest
            | ErrorKind::InvalidInput
            | ErrorKind::TooManyItems
            | ErrorKind::FieldTooLarge
            | ErrorKind::BodyTooLarge
            | ErrorKind::UnsupportedMediaType
            | ErrorKind::NotAcceptable => Code::InvalidArgument,
            ErrorKind::Overloaded => Code::ResourceExhausted,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::MethodNotAllowed => Code::Unimplemented,
            ErrorKind::ShuttingDown => Code::Unavailable,
            ErrorKind::Cancelled => Code::Cancelled,
            ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::Rejected | ErrorKind::Conflict => Code::FailedPrecondition,
            ErrorKind::PredictFailed | ErrorKind::Internal => Code::Internal,
        }
    }

    /// The kind of a response that did not come from an [`ApiError`] (a framework's own 404, a
    /// panic turned into 500): the nearest kind, for the metrics.
    pub fn from_http_status(status: StatusCode) -> ErrorKind {
        match status.as_u16() {
            401 => ErrorKind::Unauthenticated,
            404 => ErrorKind::NotFound,
            405 => ErrorKind::MethodNotAllowed,
            406 => ErrorKind::NotAcceptable,
            415 => ErrorKind::UnsupportedMediaType,
            409 => ErrorKind::Conflict,
            413 => ErrorKind::BodyTooLarge,
            422 => ErrorKind::InvalidInput,
            429 => ErrorKind::Overloaded,
            503 => ErrorKind::ShuttingDown,
            504 => ErrorKind::DeadlineExceeded,
            400..=499 => ErrorKind::BadRequest,
            _ => ErrorKind::Internal,
        }
    }

    /// As [`ErrorKind::from_http_status`], for a gRPC status that tonic produced itself.
    pub fn from_grpc_code(code: Code) -> ErrorKind {
        match code {
            Code::InvalidArgument | Code::FailedPrecondition => ErrorKind::BadRequest,
            Code::OutOfRange => ErrorKind::BodyTooLarge,
            Code::NotFound | Code::Unimplemented => ErrorKind::NotFound,
            Code::ResourceExhausted => ErrorKind::Overloaded,
            Code::Unavailable => ErrorKind::ShuttingDown,
            Code::Cancelled => ErrorKind::Cancelled,
            Code::DeadlineExceeded => ErrorKind::DeadlineExceeded,
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            _ => ErrorKind::Internal,
        }
    }
}

/// A request that failed: its kind and a message for the caller (naming the limit, the item, the
/// field or the tensor at fault).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    /// When a refused caller may retry (HTTP `Retry-After`, gRPC `retry-after` and
    /// `grpc-retry-pushback-ms` metadata).
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// tonic's own "message too large" refusal, re-said as ours (it names the flag to change).
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            ErrorKind::BodyTooLarge,
            format!("the request is larger than the limit of {limit} bytes (--max-body-bytes)"),
        )
    }

    /// What a stream's decode error becomes: our body limit, or a malformed message.
    pub fn from_decode(status: tonic::Status, body_limit: usize) -> Self {
        from_tonic(&status, body_limit).unwrap_or_else(|| {
            Self::bad_request(format!("malformed message: {}", status.message()))
        })
    }
}

/// Whether tonic refused a message for its size.
fn is_too_large(status: &tonic::Status) -> bool {
    status.code() == Code::OutOfRange && status.message().contains("message length too large")
}

/// Whether tonic could not decode a message (it says INTERNAL; it is the client's fault).
fn is_undecodable(status: &tonic::Status) -> bool {
    status.code() == Code::Internal && status.message().starts_with("failed to decode Protobuf")
}

/// Our error for a status tonic produced itself while reading a request, if it is one of ours:
/// a message over the body limit, or bytes that are not the expected message.
pub(crate) fn from_tonic(status: &tonic::Status, body_limit: usize) -> Option<ApiError> {
    if is_too_large(status) {
        Some(ApiError::body_too_large(body_limit))
    } else if is_undecodable(status) {
        Some(ApiError::bad_request(format!(
            "malformed message: {}",
            status.message()
        )))
    } else {
        None
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let kind = match &e {
            ServiceError::Malformed(_) | ServiceError::NoItems => ErrorKind::BadRequest,
            ServiceError::TooManyItems { .. } => ErrorKind::TooManyItems,
            ServiceError::QueueFull { .. } => ErrorKind::Overloaded,
            ServiceError::Item { .. } => ErrorKind::InvalidInput,
            ServiceError::FieldTooLarge { .. } => ErrorKind::FieldTooLarge,
            ServiceError::Overloaded { .. } => ErrorKind::Overloaded,
            ServiceError::ShuttingDown => ErrorKind::ShuttingDown,
            ServiceError::DeadlineExceeded { .. } => ErrorKind::DeadlineExceeded,
            ServiceError::UnknownModel { .. } | ServiceError::UnknownVersion { .. } => {
                ErrorKind::NotFound
            }
            ServiceError::Predict(_) => ErrorKind::PredictFailed,
        };
        ApiError {
            retry_after: e.retry_after(),
            ..ApiError::new(kind, e.to_string())
        }
    }
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        let kind = match &e {
            DeployError::Rejected { .. } => ErrorKind::Rejected,
            DeployError::NoCandidate
            | DeployError::NoPrevious
            | DeployError::CandidateReplaced
            | DeployError::NoShadow => ErrorKind::Conflict,
            DeployError::NeverStaged => ErrorKind::NotFound,
            DeployError::Invalid(_) => ErrorKind::BadRequest,
            DeployError::ShuttingDown => ErrorKind::ShuttingDown,
            DeployError::Internal(_) => ErrorKind::Internal,
        };
        ApiError::new(kind, e.to_string())
    }
}

/// Lets a handler returning `Result<_, tonic::Status>` use `?` on a layer's error.
impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<DeployError> for tonic::Status {
    fn from(e: DeployError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.message, "code": self.kind.as_str()});
        let mut response = (self.kind.http_status(), axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            ERROR_HEADER,
            http::HeaderValue::from_static(self.kind.as_str()),
        );
        if let Some(after) = self.retry_after {
            headers.insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(after.as_secs()),
            );
        }
        response
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(
            ERROR_HEADER,
            tonic::metadata::MetadataValue::from_static(e.kind.as_str()),
        );
        if let Some(after) = e.retry_after {
            metadata.insert("retry-after", after.as_secs().into());
            metadata.insert("grpc-retry-pushback-ms", (after.as_millis() as u64).into());
        }
        tonic::Status::with_metadata(e.kind.grpc_code(), e.message, metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn limits_are_client_errors_on_both_transports() {
        for kind in [
            ErrorKind::TooManyItems,
            ErrorKind::FieldTooLarge,
            ErrorKind::BodyTooLarge,
        ] {
            assert!(kind.http_status().is_client_error());
            assert_eq!(kind.grpc_code(), Code::InvalidArgument);
        }
        assert_eq!(ErrorKind::Overloaded.http_status().as_u16(), 429);
        assert_eq!(ErrorKind::Overloaded.grpc_code(), Code::ResourceExhausted);
    }

    #[test]
    fn grpc_status_carries_the_kind() {
        let status: tonic::Status = ApiError::new(ErrorKind::Overloaded, "busy").into();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.metadata().get(ERROR_HEADER).unwrap(), "overloaded");
    }
}
