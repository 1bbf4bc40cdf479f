//! The OpenAPI 3 document of the HTTP API, served at `/openapi.json`. Written by hand next to the
//! handlers it describes, and made to say what they enforce: the integration tests check that
//! every documented route answers and that answers carry the documented fields, and schemathesis
//! (`tests/it/fuzz/openapi.rs`) that every request the document allows is served and every answer
//! conforms to it.

use serde_json::{json, Value};

use super::error::ErrorKind;
use super::timeout::TIMEOUT_HEADER;
use crate::ensemble::Ensemble;
use crate::runtime::InputKind;

fn error_responses(codes: &[&str]) -> Value {
    let mut map = serde_json::Map::new();
    for code in codes {
        let description = match *code {
            "400" => "Malformed request: JSON, tensors, or the request's shape.",
            "404" => "No such model or version.",
            "413" => {
                "Too many items (--max-items-per-request) or body too large (--max-body-bytes)."
            }
            "422" => {
                "An item does not fit the ensemble, or a field is too long (--max-field-bytes)."
            }
            "429" => {
                "Overloaded: too many items in flight (--max-items-in-flight), or the request \
                 would wait longer than --max-queue-wait for the compute threads; retry after \
                 the Retry-After header's seconds."
            }
            "500" => "A model failed.",
            "503" => "The server is shutting down.",
            "504" => {
                "The request's deadline (timeout_ms, the lastmile-timeout-ms header, or \
                 --request-timeout) passed before it was answered; what it still had queued was \
                 never computed."
            }
            _ => "Error.",
        };
        map.insert(
            (*code).into(),
            json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    Value::Object(map)
}

/// `base` with `extra`'s entries added (objects' keys, arrays' elements).
fn with(mut base: Value, extra: Value) -> Value {
    match (&mut base, extra) {
        (Value::Object(b), Value::Object(e)) => b.extend(e),
        (Value::Array(b), Value::Array(e)) => b.extend(e),
        _ => {}
    }
    base
}

/// The `{model}` path parameter: the served ensemble's name, the only one that is not a 404.
fn model_params(ensemble: &str) -> Value {
    json!([{"name": "model", "in": "path", "required": true,
            "schema": {"type": "string", "enum": [ensemble]}, "example": ensemble,
            "description": "The ensemble's name (any other is answered 404)."}])
}

/// The optional header giving a request's timeout.
fn timeout_header() -> Value {
    json!({"name": TIMEOUT_HEADER, "in": "header", "required": false,
        "schema": {"type": "integer", "minimum": 1, "maximum": 3_600_000},
        "description": "Milliseconds the caller waits (the shorter of this and the request's own \
            timeout_ms wins); past it the answer is 504 and queued work is dropped."})
}

/// An item as `ensemble` reads it: each field a string, or exactly as many numbers as the model
/// reading it takes (those fields are required), and at least one field.
fn item_schema(ensemble: &Ensemble) -> Value {
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for (f, name) in ensemble.fields.iter().enumerate() {
        let schema = match feature_width(ensemble, f) {
            Some(width) => {
                required.push(name.clone());
                json!({"type": "array", "items": {"type": "number"},
                    "minItems": width, "maxItems": width})
            }
            None => json!({"type": "string", "nullable": true,
                "description": "Text; null or absent: the item has no such field."}),
        };
        properties.insert(name.clone(), schema);
    }
    properties.insert(
        "candidates".into(),
        json!({"type": "array", "nullable": true,
        "items": {"type": "string", "minLength": 1},
        "description": "This item's label restriction; overrides the request's."}),
    );
    let mut item = json!({"type": "object",
        "description": "Fields by name. Keys the ensemble does not read are ignored.",
        "properties": properties, "additionalProperties": true,
        // At least one field given, and not null.
        "anyOf": ensemble.fields.iter().map(|f| json!({"required": [f],
            "properties": {f: {"not": {"nullable": true, "enum": [null]}}}})).collect::<Vec<_>>()});
    if !required.is_empty() {
        item["required"] = json!(required);
    }
    item
}

/// A request `ensemble` answers: one item, each field a tensor of the right type and shape.
fn infer_example(ensemble: &Ensemble) -> Value {
    let inputs: Vec<Value> = ensemble
        .fields
        .iter()
        .enumerate()
        .map(|(f, name)| match feature_width(ensemble, f) {
            Some(width) => json!({"name": name, "datatype": "FP32", "shape": [1, width],
                "data": vec![0.0; width]}),
            None => json!({"name": name, "datatype": "BYTES", "shape": [1],
                "data": ["stainless steel chef knife"]}),
        })
        .collect();
    json!({"inputs": inputs, "parameters": {"top_k": 3}})
}

/// How many numbers field `f` holds, when a model reads it as features.
fn feature_width(ensemble: &Ensemble, f: usize) -> Option<usize> {
    ensemble
        .models
        .iter()
        .find_map(|m| match m.runtime.input_kind() {
            InputKind::Features { width } if m.field_ids.contains(&f) => Some(width),
            _ => None,
        })
}

/// The document for a server whose live ensemble is `ensemble`.
pub fn document(ensemble: &Ensemble) -> Value {
    let predict_errors = error_responses(&["400", "413", "422", "429", "500", "503", "504"]);
    let model_params = || model_params(&ensemble.name);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "lastmile",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Ensemble inference server for fastText and ONNX text classifiers: \
                lastmile's own API (/v1), the Open Inference Protocol (KServe V2, /v2) with \
                Triton's binary tensor and model configuration extensions, and Prometheus metrics."
        },
        "paths": {
            "/v1/predict": {"post": {
                "summary": "Classify one item or a batch of items.",
                "operationId": "predict",
                "parameters": [timeout_header()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}}},
                "responses": with(json!({"200": {"description": "One answer per item, in order.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}}}}), predict_errors.clone())
            }},
            "/v1/ensemble": {"get": {
                "summary": "The ensemble being served: name, version, models, labels, vote.",
                "operationId": "getEnsemble",
                "responses": {"200": {"description": "The ensemble.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EnsembleInfo"}}}}}
            }},
            "/metrics": {"get": {
                "summary": "Prometheus metrics (text exposition format).",
                "operationId": "metrics",
                "responses": {"200": {"description": "Metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}}}
            }},
            "/openapi.json": {"get": {
                "summary": "This document.",
                "operationId": "openapi",
                "responses": {"200": {"description": "OpenAPI 3 document.", "content": {"application/json": {"schema": {"type": "object"}}}}}
            }},
            "/v2": {"get": {
                "summary": "Server metadata (Open Inference Protocol).",
                "operationId": "serverMetadata",
                "responses": {"200": {"description": "Name, version, extensions.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServerMetadata"}}}}}
            }},
            "/v2/health/live": {"get": {
                "summary": "Liveness: 200 while the process serves.",
                "operationId": "serverLive",
                "responses": {"200": {"description": "Live."}}
            }},
            "/v2/health/ready": {"get": {
                "summary": "Readiness: 200 when requests are accepted, 503 while shutting down.",
                "operationId": "serverReady",
                "responses": with(json!({"200": {"description": "Ready."}}), error_responses(&["503"]))
            }},
            "/v2/models/{model}": {"get": {
                "summary": "Model metadata: versions, platform, input and output tensors.",
                "operationId": "modelMetadata",
                "parameters": model_params(),
                "responses": with(json!({"200": {"description": "Metadata.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ModelMetadata"}}}}}), error_responses(&["404"]))
            }},
            "/v2/models/{model}/ready": {"get": {
                "summary": "Model readiness.",
                "operationId": "modelReady",
                "parameters": model_params(),
                "responses": with(json!({"200": {"description": "Ready."}}), error_responses(&["404", "503"]))
            }},
            "/v2/repository/index": {"post": {
                "summary": "The model repository extension's index: the live ensemble and those held beside it.",
                "description": "Loading and unloading change what is live: they are on the admin \
                    listener, behind its token, through the deploy gate.",
                "operationId": "repositoryIndex",
                "requestBody": {"required": false, "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/RepositoryIndexRequest"}}}},
                "responses": with(json!({"200": {"description": "One entry per model held.",
                    "content": {"application/json": {"schema": {"type": "array", "items": {
                        "$ref": "#/components/schemas/RepositoryIndexEntry"}}}}}}), error_responses(&["400", "413"]))
            }},
            "/v2/models/stats": {"get": {
                "summary": "Statistics extension: the live ensemble's counts and times, then each member's.",
                "operationId": "allModelStatistics",
                "responses": {"200": {"description": "Statistics in Triton's shape.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ModelStatistics"}}}}}
            }},
            "/v2/models/{model}/stats": {"get": {
                "summary": "Statistics extension: the ensemble's counts and times, then each member's.",
                "operationId": "modelStatistics",
                "parameters": model_params(),
                "responses": with(json!({"200": {"description": "Statistics in Triton's shape.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ModelStatistics"}}}}}), error_responses(&["404"]))
            }},
            "/v2/models/{model}/config": {"get": {
                "summary": "Triton model configuration (model configuration extension).",
                "operationId": "modelConfig",
                "parameters": model_params(),
                "responses": with(json!({"200": {"description": "Configuration.",
                    "content": {"application/json": {"schema": {"type": "object"}}}}}), error_responses(&["404"]))
            }},
            "/v2/models/{model}/infer": {"post": {
                "summary": "Inference with JSON tensors, or with Triton's binary tensor extension.",
                "description": "Triton's binary tensor extension: the body is the JSON request \
                    followed by the tensors' bytes, and the Inference-Header-Content-Length \
                    header gives the JSON part's length (it must not exceed the body, and that \
                    part must be an InferRequest). The header is left out of the parameters here \
                    because it changes how the body reads: with it, a plain JSON body is only \
                    valid when the header equals the body's length.",
                "operationId": "modelInfer",
                "parameters": with(model_params(), json!([timeout_header()])),
                "requestBody": {"required": true, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                        "description": "An InferRequest's JSON, then the binary tensor data; \
                            send Inference-Header-Content-Length with it."}}}},
                "responses": with(json!({"200": {"description": "Output tensors `labels` (BYTES) and `scores` (FP32), shape [N, k].",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/InferResponse"}},
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}),
                    with(error_responses(&["404"]), predict_errors))
            }}
        },
        "components": {"schemas": schemas(ensemble)}
    })
}

fn schemas(ensemble: &Ensemble) -> Value {
    let codes: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
    let v2_timeout_ms = json!({"type": "integer", "minimum": 1, "maximum": 3_600_000,
        "description": "Milliseconds the caller waits; past it the answer is 504 and queued \
            work is dropped."});
    let mut timeout_ms = v2_timeout_ms.clone();
    timeout_ms["nullable"] = json!(true);
    let label_score = json!({"type": "object", "required": ["label", "score"],
        "properties": {"label": {"type": "string"}, "score": {"type": "number", "format": "float"}}});
    json!({
        "Error": {"type": "object", "required": ["error", "code"], "properties": {
            "error": {"type": "string", "description": "What went wrong, naming the limit, item, field or tensor."},
            "code": {"type": "string", "enum": codes}}},
        "Item": item_schema(ensemble),
        "PredictRequest": {"type": "object", "additionalProperties": false,
            "description": "Exactly one of `item` and `items`.",
            "oneOf": [{"required": ["item"]}, {"required": ["items"]}],
            "properties": {
                "item": {"$ref": "#/components/schemas/Item"},
                "items": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Item"}},
                "top_k": {"type": "integer", "minimum": 0, "maximum": 4_294_967_295u64, "default": 5, "nullable": true,
                    "description": "Predictions per item (at most the ensemble's label count)."},
                "candidates": {"type": "array", "items": {"type": "string", "minLength": 1},
                    "nullable": true,
                    "description": "Labels (names or name prefixes) the answers may hold."},
                "explain": {"type": "boolean", "default": false},
                "cascade": {"type": "boolean", "default": true, "nullable": true,
                    "description": "false: run every member, whatever the ensemble's [cascade]."},
                "timeout_ms": timeout_ms}},
        "LabelScore": label_score,
        "ModelAnswer": {"type": "object", "properties": {
            "name": {"type": "string"}, "weight": {"type": "number"},
            "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/LabelScore"}},
            "contributions": {"type": "array", "items": {"$ref": "#/components/schemas/LabelScore"}}}},
        "ItemAnswer": {"type": "object", "required": ["predictions", "agreement"], "properties": {
            "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/LabelScore"}},
            "rules_fired": {"type": "array", "items": {"type": "string"}},
            "agreement": {"type": "integer", "description": "Models whose top labels hold the winner."},
            "abstained": {"type": "string", "description": "Why the answer is empty, when a rule abstained."},
            "degraded": {"type": "array", "description": "Present when the item was voted without \
                some members (each failed or ran out of its timeout_ms): which, and why.",
                "items": {"type": "object", "required": ["model", "reason"], "properties": {
                    "model": {"type": "string"}, "reason": {"type": "string"}}}},
            "models": {"type": "array", "items": {"$ref": "#/components/schemas/ModelAnswer"},
                "description": "With explain: each model's part."},
            "cascade": {"type": "object", "required": ["stage", "stages", "members_run"],
                "description": "With a [cascade]: the stage that answered and how many members ran.",
                "properties": {
                    "stage": {"type": "integer"}, "stages": {"type": "integer"},
                    "members_run": {"type": "integer"},
                    "trace": {"type": "array", "description": "With explain: each stage run.",
                        "items": {"type": "object", "properties": {
                            "stage": {"type": "integer"}, "test": {"type": "string"},
                            "value": {"type": "number", "nullable": true},
                            "threshold": {"type": "number", "nullable": true},
                            "members": {"type": "integer"}, "stopped": {"type": "boolean"}}}}}}}},
        "EnsembleRef": {"type": "object", "required": ["name", "version", "digest"], "properties": {
            "name": {"type": "string"}, "version": {"type": "string"},
            "digest": {"type": "string", "description":
                "sha256: over the manifest text and every model file's content hash: the exact bytes that answered."}}},
        "PredictResponse": {"type": "object", "required": ["ensemble"], "properties": {
            "ensemble": {"$ref": "#/components/schemas/EnsembleRef"},
            "item": {"$ref": "#/components/schemas/ItemAnswer"},
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/ItemAnswer"}}}},
        "EnsembleInfo": {"type": "object", "properties": {
            "name": {"type": "string"}, "version": {"type": "string"},
            "digest": {"type": "string"}, "manifest_sha256": {"type": "string"},
            "fields": {"type": "array", "items": {"type": "string"}},
            "label_count": {"type": "integer"},
            "bytes": {"type": "integer"},
            "models": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "kind": {"type": "string", "enum": ["fasttext", "onnx"]},
                "bytes": {"type": "integer"}, "sha256": {"type": "string"},
                "labels": {"type": "integer"}, "weight": {"type": "number"},
                "group": {"type": "string"}, "fields": {"type": "array", "items": {"type": "string"}},
                "provenance": {"type": "object", "description":
                    "model and labels: {source, file, sha256, bytes, registry: {tracking_uri, model, version, alias, run_id, run_name, experiment_id, artifact_uri, params, tags, datasets}}; locked; declared ([model.provenance])."}}}},
            "vote": {"type": "object", "properties": {
                "strategy": {"type": "string"}, "agreement_k": {"type": "integer"},
                "rank_k": {"type": "integer"}, "floor": {"type": "number"},
                "groups": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "strategy": {"type": "string"}, "weight": {"type": "number"}}}},
                "rules": {"type": "array", "items": {"type": "object", "properties": {
                    "type": {"type": "string"}, "name": {"type": "string"}}}}}}}},
        "ServerMetadata": {"type": "object", "properties": {
            "name": {"type": "string"}, "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}}}},
        "RepositoryIndexRequest": {"type": "object", "additionalProperties": false, "properties": {
            "ready": {"type": "boolean", "description": "Only the models that answer inference."},
            "repository_name": {"type": "string", "description": "Accepted and ignored: there is one repository."}}},
        "RepositoryIndexEntry": {"type": "object", "required": ["name", "version", "state"], "properties": {
            "name": {"type": "string"}, "version": {"type": "string"},
            "state": {"type": "string", "enum": ["READY", "UNAVAILABLE"]},
            "reason": {"type": "string", "description": "Why it is not ready: kept for rollback, a candidate not yet promoted, shutting down."}}},
        "StatDuration": {"type": "object", "required": ["count", "ns"], "properties": {
            "count": {"type": "integer", "minimum": 0}, "ns": {"type": "integer", "minimum": 0}}},
        "ModelStatistics": {"type": "object", "required": ["model_stats"], "properties": {
            "model_stats": {"type": "array", "items": {"type": "object",
                "required": ["name", "version", "inference_count", "execution_count", "inference_stats"], "properties": {
                "name": {"type": "string"}, "version": {"type": "string"},
                "last_inference": {"type": "integer", "description": "Milliseconds since the epoch; 0 before the first."},
                "inference_count": {"type": "integer", "minimum": 0},
                "execution_count": {"type": "integer", "minimum": 0},
                "inference_stats": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/StatDuration"}},
                "batch_stats": {"type": "array", "items": {"type": "object"}}}}}}},
        "TensorMetadata": {"type": "object", "properties": {
            "name": {"type": "string"}, "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}}}},
        "ModelMetadata": {"type": "object", "properties": {
            "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorMetadata"}},
            "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorMetadata"}},
            "parameters": {"type": "object", "additionalProperties": {"type": "string"}, "description":
                "ensemble_digest, manifest_sha256, and each model's provenance as model.NAME.KEY."}}},
        "InferInput": {"type": "object", "required": ["name", "shape", "datatype", "data"],
            "description": "A JSON tensor: `data` holds the product of `shape` values of \
                `datatype` (strings for BYTES, numbers otherwise), flat or nested. (With the \
                binary tensor extension, `parameters.binary_data_size` replaces `data`.)",
            "properties": {
            "name": {"type": "string", "enum": ensemble.fields, "description": "A field of the ensemble."},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string", "enum": ["BYTES", "FP32", "FP64"]},
            "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer"}}},
            "data": {"type": "array", "items": {}}}},
        "InferRequest": {"type": "object", "required": ["inputs"], "example": infer_example(ensemble),
            "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object", "properties": {
                "top_k": {"type": "integer", "minimum": 0, "maximum": 4_294_967_295u64, "default": 5},
                "binary_data_output": {"type": "boolean"},
                "cascade": {"type": "boolean", "default": true},
                "timeout_ms": v2_timeout_ms}},
            "inputs": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/InferInput"}},
            "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "enum": ["labels", "scores"]},
                "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}}}}}}},
        "InferResponse": {"type": "object", "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {"type": "object", "properties": {
                "ensemble_name": {"type": "string"}, "ensemble_version": {"type": "string"},
                "ensemble_digest": {"type": "string"}}},
            "outputs": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "datatype": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer"}},
                "parameters": {"type": "object"},
                "data": {"type": "array", "items": {}}}}}}}
    })
}
