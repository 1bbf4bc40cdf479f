//! Reading request bodies, the same way on every REST route (serving and admin): whole, within
//! `--max-body-bytes`, and JSON parsed with the path of what is wrong in it.

use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use serde::Deserialize;

use super::error::ApiError;

/// What a router's state must say for [`LimitedBody`]: the largest body it takes.
pub trait BodyLimit {
    fn body_limit(&self) -> usize;
}

/// A request body read whole, within the state's [`BodyLimit`].
pub struct LimitedBody {
    pub headers: HeaderMap,
    pub bytes: Bytes,
}

impl<S: BodyLimit + Send + Sync> FromRequest<S> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = state.body_limit();
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::body_too_large(limit));
        }
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
            if is_length_limit(&e) {
                ApiError::body_too_large(limit)
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })?;
        Ok(LimitedBody {
            headers: parts.headers,
            bytes,
        })
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Parses a JSON body into `T`, or says what is wrong with it and where.
/// For `#[serde(default, deserialize_with = "present")]`: an optional field that, when given,
/// must not be null (a null beside what it would conflict with is a mistake to report).
pub fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// [`parse_json`] for a request that is an object of named fields. serde also reads a struct from
/// an array of its fields in order, so `[]` would pass for a request whose fields all have
/// defaults (schemathesis found `POST /v2/repository/index` answering `[]`): refused here.
pub fn parse_object<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => Err(ApiError::bad_request(
            "malformed JSON: the body must be a JSON object, not an array",
        )),
        _ => parse_json(bytes),
    }
}

pub fn parse_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("malformed JSON: {inner}"))
        } else {
            ApiError::bad_request(format!("malformed JSON at `{path}`: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}
