//! How long a caller waits, as each transport says it: gRPC's `grpc-timeout` metadata, the
//! `lastmile-timeout-ms` HTTP header, or a `timeout_ms` field or parameter in the request itself.
//! The shortest given wins; the request path bounds it by the server's `--request-timeout`.

use std::time::Duration;

use http::HeaderMap;

use super::error::ApiError;
use crate::service::parse_grpc_timeout;

/// The HTTP header giving a REST request's timeout in milliseconds.
pub const TIMEOUT_HEADER: &str = "lastmile-timeout-ms";

/// The longest timeout a request may give: an hour (beyond it, `--request-timeout` is the tool).
const MAX_MS: u64 = 3_600_000;

/// A `timeout_ms` as a duration, refusing 0, negatives and more than an hour, naming `what`.
pub fn milliseconds(ms: i64, what: &str) -> Result<Duration, ApiError> {
    if (1..=MAX_MS as i64).contains(&ms) {
        Ok(Duration::from_millis(ms as u64))
    } else {
        Err(ApiError::bad_request(format!(
            "{what} must be a number of milliseconds between 1 and {MAX_MS}, got {ms}"
        )))
    }
}

/// The shorter of two optional timeouts.
pub fn shorter(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A REST request's timeout: the header, and the body's own `timeout_ms` if it has one.
pub fn http(headers: &HeaderMap, body_ms: Option<i64>) -> Result<Option<Duration>, ApiError> {
    let header = match headers.get(TIMEOUT_HEADER) {
        None => None,
        Some(v) => {
            let ms = v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{TIMEOUT_HEADER} must be a whole number of milliseconds"
                    ))
                })?;
            Some(milliseconds(ms, TIMEOUT_HEADER)?)
        }
    };
    let body = body_ms
        .map(|ms| milliseconds(ms, "timeout_ms"))
        .transpose()?;
    Ok(shorter(header, body))
}

/// A gRPC call's deadline, from its `grpc-timeout` (an unreadable one is ignored, as gRPC
/// servers do).
pub fn grpc(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
}

/// A protobuf message's own `timeout_ms` (0: none).
pub fn field(ms: u32) -> Result<Option<Duration>, ApiError> {
    match ms {
        0 => Ok(None),
        ms => milliseconds(i64::from(ms), "timeout_ms").map(Some),
    }
}
