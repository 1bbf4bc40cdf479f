//! The HTTP server: lastmile's own REST JSON API (`POST /v1/predict`, `GET /v1/ensemble`), the
//! Open Inference Protocol routes (`/v2/...`, in `v2_http`), `/metrics`, `/openapi.json`, and the
//! answers for routes and methods that do not exist. Every failure is an [`ApiError`].
//!
//! `POST /v1/predict` takes one item (`{"item": {...}}`) or a batch (`{"items": [...]}`), each item
//! an object of fields (plus an optional per-item `candidates`), and optional `top_k`,
//! `candidates` and `explain` for the whole request. The answer mirrors the request: `item` or
//! `items`, and the `ensemble` (name and version) that answered.

use std::sync::Arc;

use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::describe::ensemble_info;
use super::error::{ApiError, ErrorKind};
use super::metered::{MeteredLayer, Transport};
use super::state::AppState;
use super::{openapi, v2_http};
use crate::ensemble::{ItemAnswer, ItemError, ItemOptions};

pub fn router(state: Arc<AppState>, metrics: Option<&'static PrometheusHandle>) -> Router {
    Router::new()
        .route("/v1/predict", post(predict))
        .route("/v1/ensemble", get(ensemble))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/metrics", get(move || render_metrics(metrics)))
        .merge(v2_http::routes())
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorKind::MethodNotAllowed,
                "this route does not take this method",
            )
        })
        .with_state(state)
        .layer(MeteredLayer::new(Transport::Http))
}

/// A request body read whole, within `--max-body-bytes`.
pub struct LimitedBody {
    pub headers: HeaderMap,
    pub bytes: Bytes,
}

impl FromRequest<Arc<AppState>> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let limit = state.limits.max_body_bytes;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictBody {
    item: Option<Map<String, Value>>,
    items: Option<Vec<Map<String, Value>>>,
    top_k: Option<usize>,
    candidates: Option<Vec<String>>,
    #[serde(default)]
    explain: bool,
}

#[derive(Serialize)]
pub struct EnsembleRef<'a> {
    pub name: &'a str,
    pub version: &'a str,
}

#[derive(Serialize)]
struct PredictReply<'a> {
    ensemble: EnsembleRef<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<&'a ItemAnswer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<&'a [ItemAnswer]>,
}

async fn predict(
    State(state): State<Arc<AppState>>,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    let body: PredictBody = parse_json(&body.bytes)?;
    let (raw, single) =
        match (body.item, body.items) {
            (Some(item), None) => (vec![item], true),
            (None, Some(items)) => (items, false),
            _ => return Err(ApiError::bad_request(
                "give exactly one of `item` (an object of fields) or `items` (an array of them)",
            )),
        };
    let options = ItemOptions {
        top_k: body.top_k.unwrap_or(ItemOptions::default().top_k),
        candidates: body.candidates,
        explain: body.explain,
    };
    let checked = state.check(raw, |ensemble, object| {
        let mut options = options.clone();
        if let Some(candidates) = item_candidates(&object)? {
            options.candidates = Some(candidates);
        }
        ensemble.item_from_json(&object, options)
    })?;
    let ensemble = Arc::clone(&checked.ensemble);
    let answers = state.predict(checked).await?;
    let reply = PredictReply {
        ensemble: EnsembleRef {
            name: &ensemble.name,
            version: &ensemble.version,
        },
        item: single.then(|| &answers[0]),
        items: (!single).then_some(answers.as_slice()),
    };
    Ok(Json(reply).into_response())
}

/// An item's own `candidates`, which override the request's.
fn item_candidates(object: &Map<String, Value>) -> Result<Option<Vec<String>>, ItemError> {
    let bad = || ItemError {
        field: Some("candidates".into()),
        reason: "expected an array of strings".into(),
    };
    match object.get("candidates") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad()),
    }
}

async fn ensemble(
    State(state): State<Arc<AppState>>,
) -> Json<crate::proto::lastmile::v1::EnsembleInfo> {
    Json(ensemble_info(&state.registry.snapshot()))
}

async fn render_metrics(metrics: Option<&'static PrometheusHandle>) -> Response {
    let text = match metrics {
        Some(handle) => handle.render(),
        None => "# another metrics recorder was installed first; nothing to show\n".to_owned(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
