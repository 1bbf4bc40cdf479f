//! Amazon SageMaker's inference container contract, on the serving HTTP listener when the server
//! runs with `--sagemaker`:
//!
//! - `GET /ping`: 200 with an empty body while the server takes predictions (503 once it
//!   drains); no model work, so it stays fast under load;
//! - `POST /invocations`: the body's `Content-Type` says how to read it:
//!   - `application/json`: the own API's body (`item` / `items`, answered as `POST /v1/predict`
//!     answers), an Open Inference Protocol body (`inputs`, answered as the live model's
//!     `/v2/models/{name}/infer`), or `{"instances": [...]}` (each an object of fields, or a
//!     string for the first field; optional `top_k`, `candidates`, `explain` for all of them);
//!   - `application/jsonlines` (also `application/x-jsonlines`, `application/jsonl`): one object
//!     of fields per line, blank lines skipped (what Batch Transform sends with `SplitType=Line`);
//!   - `text/csv`: a header row naming the fields, then one item per row (an empty cell: the item
//!     lacks that field);
//!
//!   instances, lines and rows are answered per `Accept`: `application/json` (the default, but
//!   JSON Lines for a JSON Lines body) as `{"ensemble": ..., "predictions": [...]}`, or
//!   `application/jsonlines` with one answer per line, in order;
//! - `GET /execution-parameters`: what Batch Transform should send (concurrency, batching,
//!   largest payload).
//!
//! Every body goes down the one request path ([`Service::predict`]) through the own API's or the
//! V2 model's conversion: this module only reads the three content types into items.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::body::{parse_json, LimitedBody};
use super::error::{ApiError, ErrorKind};
use super::rest::{self, EnsembleRef, JsonItems};
use crate::ensemble::ItemAnswer;
use crate::service::{Request, RequestOptions, Service, Target};

/// The port SageMaker tells the container to listen on, and its default.
pub const PORT_ENV: &str = "SAGEMAKER_BIND_TO_PORT";
pub const DEFAULT_PORT: u16 = 8080;
/// Where SageMaker mounts the model artifacts (the manifest is `manifest.toml` in it).
pub const MODEL_DIR: &str = "/opt/ml/model";

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/ping", get(ping))
        .route("/invocations", post(invocations))
        .route("/execution-parameters", get(execution_parameters))
}

async fn ping(State(service): State<Arc<Service>>) -> StatusCode {
    if service.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn execution_parameters(State(service): State<Arc<Service>>) -> Json<Value> {
    let mb = (service.limits().max_body_bytes / (1024 * 1024)).max(1);
    Json(json!({
        "MaxConcurrentTransforms": service.pool().threads(),
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": mb,
    }))
}

/// How a body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Lines,
    Csv,
}

/// How the answers are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Json,
    Lines,
}

fn media_type(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn content_format(headers: &HeaderMap) -> Result<Format, ApiError> {
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Format::Json);
    };
    let v = v.to_str().unwrap_or("");
    match media_type(v).as_str() {
        "application/json" | "" => Ok(Format::Json),
        "application/jsonlines" | "application/x-jsonlines" | "application/jsonl" => {
            Ok(Format::Lines)
        }
        "text/csv" => Ok(Format::Csv),
        other => Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "content type {other:?} is not read here: send application/json, \
                 application/jsonlines or text/csv"
            ),
        )),
    }
}

/// The answer's format: the first `Accept` entry understood; none given: `default`.
fn accepted(headers: &HeaderMap, default: Answer) -> Result<Answer, ApiError> {
    let Some(v) = headers.get(header::ACCEPT) else {
        return Ok(default);
    };
    let v = v.to_str().unwrap_or("");
    for entry in v.split(',') {
        match media_type(entry).as_str() {
            "*/*" | "application/*" | "" => return Ok(default),
            "application/json" => return Ok(Answer::Json),
            "application/jsonlines" | "application/x-jsonlines" | "application/jsonl" => {
                return Ok(Answer::Lines)
            }
            _ => {}
        }
    }
    Err(ApiError::new(
        ErrorKind::NotAcceptable,
        format!("cannot answer in {v:?}: accept application/json or application/jsonlines"),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstancesBody {
    instances: Vec<Value>,
    top_k: Option<u32>,
    candidates: Option<Vec<String>>,
    #[serde(default)]
    explain: bool,
}

async fn invocations(
    State(service): State<Arc<Service>>,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    let format = content_format(&body.headers)?;
    let default = match format {
        Format::Lines => Answer::Lines,
        Format::Json | Format::Csv => Answer::Json,
    };
    let answer = accepted(&body.headers, default)?;
    let (objects, options) = match format {
        Format::Json => {
            let value: Value = parse_json(&body.bytes)?;
            let Some(object) = value.as_object() else {
                return Err(ApiError::bad_request(
                    "a JSON body must be an object: the own API's (`item` or `items`), an Open \
                     Inference Protocol request (`inputs`) or `{\"instances\": [...]}`",
                ));
            };
            if object.contains_key("item") || object.contains_key("items") {
                return own_or_v2(answer, rest::predict(State(service), body).await);
            }
            if object.contains_key("inputs") {
                let name = service.snapshot(&Target::Live)?.name.clone();
                let reply = super::v2::http::infer_body(&service, name, String::new(), body);
                return own_or_v2(answer, reply.await);
            }
            let body: InstancesBody = parse_json(&body.bytes)?;
            let first = service.snapshot(&Target::Live)?.fields[0].clone();
            let objects = body
                .instances
                .into_iter()
                .enumerate()
                .map(|(i, v)| instance(i, v, &first))
                .collect::<Result<Vec<_>, _>>()?;
            let options = RequestOptions {
                top_k: body.top_k.map(|k| k as usize),
                candidates: body.candidates,
                explain: body.explain,
                cascade: None,
            };
            (objects, options)
        }
        Format::Lines => (lines(&body.bytes)?, RequestOptions::default()),
        Format::Csv => (csv_rows(&body.bytes)?, RequestOptions::default()),
    };
    if objects.is_empty() {
        return Err(ApiError::bad_request("the body holds no item"));
    }
    let reply = service
        .predict(Request::new(Target::Live, JsonItems { objects, options }))
        .await?;
    Ok(write(
        answer,
        EnsembleRef::of(&reply.ensemble),
        &reply.answers,
    ))
}

/// The own API's and the V2 body's answers are JSON documents of their own shape.
fn own_or_v2(answer: Answer, reply: Result<Response, ApiError>) -> Result<Response, ApiError> {
    if answer == Answer::Lines {
        return Err(ApiError::new(
            ErrorKind::NotAcceptable,
            "the own API's and V2 bodies are answered in application/json; send instances, \
             JSON Lines or CSV for application/jsonlines answers",
        ));
    }
    reply
}

/// One instance: an object of fields, or a string for the ensemble's first field.
fn instance(index: usize, v: Value, first: &str) -> Result<Map<String, Value>, ApiError> {
    match v {
        Value::Object(o) => Ok(o),
        Value::String(s) => Ok(Map::from_iter([(first.to_owned(), Value::String(s))])),
        _ => Err(ApiError::bad_request(format!(
            "instances[{index}]: expected an object of fields or a string"
        ))),
    }
}

fn lines(bytes: &[u8]) -> Result<Vec<Map<String, Value>>, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ApiError::bad_request(format!("the JSON Lines body is not UTF-8: {e}")))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| ApiError::bad_request(format!("line {}: malformed JSON: {e}", n + 1)))?;
        match value {
            Value::Object(o) => out.push(o),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "line {}: expected an object of fields",
                    n + 1
                )))
            }
        }
    }
    Ok(out)
}

fn csv_rows(bytes: &[u8]) -> Result<Vec<Map<String, Value>>, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let bad = |e: csv::Error| ApiError::bad_request(format!("malformed CSV: {e}"));
    let header: Vec<String> = reader
        .headers()
        .map_err(bad)?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    if header.iter().all(String::is_empty) {
        return Err(ApiError::bad_request(
            "the CSV body needs a header row naming the fields",
        ));
    }
    let mut out = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let record = record.map_err(bad)?;
        let row: Map<String, Value> = header
            .iter()
            .zip(record.iter())
            .filter(|(name, cell)| !name.is_empty() && !cell.is_empty())
            .map(|(name, cell)| (name.clone(), Value::String(cell.to_owned())))
            .collect();
        if row.is_empty() {
            return Err(ApiError::bad_request(format!(
                "CSV row {}: every cell is empty",
                n + 1
            )));
        }
        out.push(row);
    }
    Ok(out)
}

#[derive(Serialize)]
struct Predictions<'a> {
    ensemble: EnsembleRef<'a>,
    predictions: &'a [ItemAnswer],
}

fn write(answer: Answer, ensemble: EnsembleRef<'_>, answers: &[ItemAnswer]) -> Response {
    match answer {
        Answer::Json => Json(Predictions {
            ensemble,
            predictions: answers,
        })
        .into_response(),
        Answer::Lines => {
            let mut out = Vec::new();
            for a in answers {
                serde_json::to_writer(&mut out, a).expect("answers serialise");
                out.push(b'\n');
            }
            let kind = HeaderValue::from_static("application/jsonlines");
            ([(header::CONTENT_TYPE, kind)], out).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), HeaderValue::from_str(v).unwrap()))
            .collect()
    }

    #[test]
    fn content_types_and_accept_are_read_as_sagemaker_sends_them() {
        let ct = |v: &str| content_format(&headers(&[(header::CONTENT_TYPE, v)]));
        assert_eq!(ct("application/json; charset=utf-8").unwrap(), Format::Json);
        assert_eq!(ct("application/jsonlines").unwrap(), Format::Lines);
        assert_eq!(ct("text/csv").unwrap(), Format::Csv);
        assert_eq!(
            ct("image/png").unwrap_err().kind,
            ErrorKind::UnsupportedMediaType
        );
        let acc = |v: &str| accepted(&headers(&[(header::ACCEPT, v)]), Answer::Json);
        assert_eq!(acc("application/jsonlines").unwrap(), Answer::Lines);
        assert_eq!(acc("text/html, */*").unwrap(), Answer::Json);
        assert_eq!(acc("text/html").unwrap_err().kind, ErrorKind::NotAcceptable);
        assert_eq!(
            accepted(&HeaderMap::new(), Answer::Lines).unwrap(),
            Answer::Lines
        );
    }

    #[test]
    fn csv_rows_take_the_header_as_fields_and_skip_empty_cells() {
        let rows = csv_rows(b"title,description\nknife,\"steel, sharp\"\nmug,\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["description"], "steel, sharp");
        assert!(!rows[1].contains_key("description"));
        assert!(
            csv_rows(b"title\n\"unterminated\n").is_err() || csv_rows(b"a,b\n1,2,3\n").is_err()
        );
    }
}
