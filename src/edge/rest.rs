//! lastmile's own REST JSON API: `POST /v1/predict` and `GET /v1/ensemble`.
//!
//! `POST /v1/predict` takes one item (`{"item": {...}}`) or a batch (`{"items": [...]}`), each item
//! an object of fields (plus an optional per-item `candidates`), and optional `top_k`,
//! `candidates` and `explain` for the whole request. The answer mirrors the request: `item` or
//! `items`, and the `ensemble` that answered (name, version and digest: the manifest text and
//! every model file's content hash, so an answer traces to the exact bytes).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::body::{parse_object, present, LimitedBody};
use super::describe::ensemble_info;
use super::error::ApiError;
use super::timeout;
use crate::ensemble::{Ensemble, ItemAnswer, ItemError, ValidItem};
use crate::service::{Items, Request, RequestOptions, Service, ServiceError, Target};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictBody {
    // Given, they must be what they say: `"items": null` beside an `item` is a mistake to report.
    #[serde(default, deserialize_with = "present")]
    item: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "present")]
    items: Option<Vec<Map<String, Value>>>,
    /// At most the own gRPC API's bound (a uint32), as on every transport.
    top_k: Option<u32>,
    candidates: Option<Vec<String>>,
    #[serde(default)]
    explain: bool,
    /// false: every member runs, whatever the ensemble's `[cascade]`.
    cascade: Option<bool>,
    /// Milliseconds the caller waits (also the `lastmile-timeout-ms` header).
    timeout_ms: Option<i64>,
}

/// Which ensemble answered: its name, version and digest (the exact bytes that answered).
#[derive(Serialize)]
pub struct EnsembleRef<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub digest: &'a str,
}

impl<'a> EnsembleRef<'a> {
    pub fn of(e: &'a Ensemble) -> Self {
        EnsembleRef {
            name: &e.name,
            version: &e.version,
            digest: &e.digest,
        }
    }
}

#[derive(Serialize)]
struct PredictReply<'a> {
    ensemble: EnsembleRef<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<&'a ItemAnswer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<&'a [ItemAnswer]>,
}

/// Items as JSON objects of fields (each may carry its own `candidates`), read with the
/// request's options.
pub struct JsonItems {
    pub objects: Vec<Map<String, Value>>,
    pub options: RequestOptions,
}

impl Items for JsonItems {
    fn read(self, e: &Ensemble) -> Result<Vec<Result<ValidItem, ItemError>>, ServiceError> {
        let options = self.options;
        options.check()?;
        Ok(self
            .objects
            .into_iter()
            .map(|object| {
                let own = item_candidates(&object)?;
                e.item_from_json(&object, options.for_item(own))
            })
            .collect())
    }
}

pub async fn predict(
    State(service): State<Arc<Service>>,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    let headers = body.headers;
    let body: PredictBody = parse_object(&body.bytes)?;
    let timeout = timeout::http(&headers, body.timeout_ms)?;
    let (objects, single) =
        match (body.item, body.items) {
            (Some(item), None) => (vec![item], true),
            (None, Some(items)) => (items, false),
            _ => return Err(ApiError::bad_request(
                "give exactly one of `item` (an object of fields) or `items` (an array of them)",
            )),
        };
    let options = RequestOptions {
        top_k: body.top_k.map(|k| k as usize),
        candidates: body.candidates,
        explain: body.explain,
        cascade: body.cascade,
    };
    let items = JsonItems { objects, options };
    let reply = service
        .predict(Request {
            target: Target::Live,
            items,
            timeout,
        })
        .await?;
    let answers = reply.answers.as_slice();
    let body = PredictReply {
        ensemble: EnsembleRef::of(&reply.ensemble),
        item: single.then(|| &answers[0]),
        items: (!single).then_some(answers),
    };
    Ok(Json(body).into_response())
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

pub async fn ensemble(
    State(service): State<Arc<Service>>,
) -> Result<Json<crate::proto::lastmile::v1::EnsembleInfo>, ApiError> {
    let live = service.snapshot(&Target::Live)?;
    Ok(Json(ensemble_info(&live)))
}
