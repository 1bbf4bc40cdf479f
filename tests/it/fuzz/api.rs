//! The HTTP APIs, in process (the real router and service, no socket): the own `/v1/predict`,
//! V2 `infer` with JSON and with binary tensors. Every body is answered, a refusal is a 4xx with
//! a JSON `error` and `code`, and nothing is a 5xx.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::Router;
use lastmile::ensemble::Ensemble;
use lastmile::registry::Registry;
use lastmile::scheduler::ComputePool;
use lastmile::service::{Limits, Service};
use proptest::prelude::*;
use serde_json::{Map, Value};
use tower::ServiceExt;

use super::{corpus, mutate, run, runner};

/// The starter ensemble's service, shared by every fuzz target (loading it once).
pub fn service() -> Arc<Service> {
    static SERVICE: OnceLock<Arc<Service>> = OnceLock::new();
    Arc::clone(SERVICE.get_or_init(|| {
        let ensemble = Ensemble::load(&crate::support::starter(), 2).expect("the starter loads");
        let registry = Arc::new(Registry::new(Arc::new(ensemble)));
        let pool = Arc::new(ComputePool::new(2).expect("a compute pool"));
        Arc::new(lastmile::app::offline(registry, pool, Limits::default()))
    }))
}

/// Names the own API and V2 give meaning to, and values at their edges.
const KEYS: &[&str] = &[
    "item",
    "items",
    "title",
    "description",
    "top_k",
    "candidates",
    "explain",
    "timeout_ms",
    "inputs",
    "outputs",
    "name",
    "shape",
    "datatype",
    "data",
    "parameters",
    "id",
    "binary_data_size",
    "binary_data",
    "classification",
];
const STRINGS: &[&str] = &[
    "",
    "title",
    "description",
    "labels",
    "scores",
    "explanation",
    "BYTES",
    "FP32",
    "INT64",
    "BOOL",
    "FP16",
    "kitchen",
    "kitchen/knives",
    "[\"kitchen\"]",
    "steel chef knife",
    "\u{0}",
    "\u{feff}",
    "é",
    "starter",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop::sample::select(&[0i64, 1, -1, 2, 3, 255, 256, 1 << 31, i64::MAX, i64::MIN][..])
            .prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(STRINGS).prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
    ]
}

/// A JSON value whose keys are mostly the APIs' own.
pub fn json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(String::from),
        1 => "\\PC{0,8}",
    ];
    leaf().prop_recursive(5, 48, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Held while a target runs: the service is a server like a TestServer's (it counts metrics).
pub fn guard() -> impl Drop {
    crate::support::server::in_process()
}

fn router() -> Router {
    lastmile::edge::router(service(), None, false)
}

/// Sends one request in process; `Err` says what broke the oracle.
pub async fn check(request: http::Request<Body>, what: &str) -> Result<(), String> {
    let response = router()
        .oneshot(request)
        .await
        .map_err(|e| format!("{what}: the router failed: {e}"))?;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|e| format!("{what}: the body: {e}"))?;
    if status.is_server_error() {
        return Err(format!(
            "{what}: {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    if !status.is_success() {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| format!("{what}: {status} without a JSON body"))?;
        let message = v["error"].as_str().unwrap_or("");
        if message.is_empty() || !v["code"].is_string() {
            return Err(format!("{what}: {status} without an error and a code: {v}"));
        }
    }
    Ok(())
}

fn post(uri: &str, body: Vec<u8>, header: Option<usize>) -> http::Request<Body> {
    let mut r = http::Request::post(uri).header("content-type", "application/json");
    if let Some(n) = header {
        r = r.header(lastmile::edge::v2::http::HEADER_LENGTH, n.to_string());
    }
    r.body(Body::from(body)).unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn bodies(target: &str) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        mutate::mutated(corpus(target), 8),
        json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]
}

#[test]
fn own_api_answers_every_body_with_an_answer_or_a_4xx() {
    let _servers = guard();
    run(runner("rest", 600), "rest", bodies("rest"), |body| {
        block_on(check(post("/v1/predict", body, None), "/v1/predict"))
    });
}

#[test]
fn v2_infer_answers_every_json_body_with_an_answer_or_a_4xx() {
    let uri = "/v2/models/starter/infer";
    let _servers = guard();
    run(
        runner("v2-json", 600),
        "v2-json",
        bodies("v2-json"),
        |body| block_on(check(post(uri, body, None), uri)),
    );
}

#[test]
fn v2_binary_tensors_are_decoded_or_refused_with_a_4xx() {
    let uri = "/v2/models/starter/infer";
    // A header length that is right, or off, or past the body.
    let inputs = (
        mutate::mutated(corpus("v2-binary"), 6),
        prop_oneof![Just(None), (0usize..4096).prop_map(Some)],
    );
    let _servers = guard();
    run(
        runner("v2-binary", 600),
        "v2-binary",
        inputs,
        |(body, length)| {
            // Else the length of the JSON the body starts with, as a client would send it.
            let header = length.or_else(|| {
                let mut values = serde_json::Deserializer::from_slice(&body).into_iter::<Value>();
                values.next()?.ok()?;
                Some(values.byte_offset())
            });
            block_on(check(post(uri, body, header), uri))
        },
    );
}
