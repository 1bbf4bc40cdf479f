//! The OpenAPI 3 document of the HTTP API, served at `/openapi.json`. Written by hand next to the
//! handlers it describes; the integration tests check that every documented route answers and that
//! answers carry the documented fields.

use serde_json::{json, Value};

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
            "429" => "Too many items in flight (--max-items-in-flight); retry later.",
            "500" => "A model failed.",
            "503" => "The server is shutting down.",
            _ => "Error.",
        };
        map.insert(
            (*code).into(),
            json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    Value::Object(map)
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        b.extend(e);
    }
    base
}

fn model_params() -> Value {
    json!([{"name": "model", "in": "path", "required": true, "schema": {"type": "string"},
            "description": "The ensemble's name."}])
}

pub fn document() -> Value {
    let predict_errors = error_responses(&["400", "413", "422", "429", "500", "503"]);
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
            "/v2/models/{model}/config": {"get": {
                "summary": "Triton model configuration (model configuration extension).",
                "operationId": "modelConfig",
                "parameters": model_params(),
                "responses": with(json!({"200": {"description": "Configuration.",
                    "content": {"application/json": {"schema": {"type": "object"}}}}}), error_responses(&["404"]))
            }},
            "/v2/models/{model}/infer": {"post": {
                "summary": "Inference with JSON tensors, or with Triton's binary tensor extension \
                    (send the JSON part's length in Inference-Header-Content-Length and the tensor \
                    bytes after it).",
                "operationId": "modelInfer",
                "parameters": with_header(model_params()),
                "requestBody": {"required": true, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": with(json!({"200": {"description": "Output tensors `labels` (BYTES) and `scores` (FP32), shape [N, k].",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/InferResponse"}},
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}),
                    with(error_responses(&["404"]), predict_errors))
            }}
        },
        "components": {"schemas": schemas()}
    })
}

fn with_header(params: Value) -> Value {
    let mut list = params.as_array().cloned().unwrap_or_default();
    list.push(
        json!({"name": "Inference-Header-Content-Length", "in": "header", "required": false,
        "schema": {"type": "integer", "minimum": 0},
        "description": "Length of the JSON part when binary tensor data follows it."}),
    );
    Value::Array(list)
}

fn schemas() -> Value {
    let label_score = json!({"type": "object", "required": ["label", "score"],
        "properties": {"label": {"type": "string"}, "score": {"type": "number", "format": "float"}}});
    json!({
        "Error": {"type": "object", "required": ["error", "code"], "properties": {
            "error": {"type": "string", "description": "What went wrong, naming the limit, item, field or tensor."},
            "code": {"type": "string", "enum": ["bad_request", "invalid_input", "too_many_items",
                "field_too_large", "body_too_large", "overloaded", "not_found", "method_not_allowed",
                "shutting_down", "predict_failed", "cancelled", "internal"]}}},
        "Item": {"type": "object", "description": "Fields by name: text, or an array of numbers for \
            numeric fields. Keys the ensemble does not read are ignored.",
            "properties": {"candidates": {"type": "array", "items": {"type": "string"},
                "description": "This item's label restriction; overrides the request's."}},
            "additionalProperties": true},
        "PredictRequest": {"type": "object", "additionalProperties": false,
            "description": "Exactly one of `item` and `items`.",
            "properties": {
                "item": {"$ref": "#/components/schemas/Item"},
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                "top_k": {"type": "integer", "minimum": 0, "default": 5,
                    "description": "Predictions per item (at most the ensemble's label count)."},
                "candidates": {"type": "array", "items": {"type": "string"},
                    "description": "Labels (names or name prefixes) the answers may hold."},
                "explain": {"type": "boolean", "default": false}}},
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
            "models": {"type": "array", "items": {"$ref": "#/components/schemas/ModelAnswer"},
                "description": "With explain: each model's part."}}},
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
        "InferInput": {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
            "name": {"type": "string", "description": "A field of the ensemble."},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string", "enum": ["BYTES", "FP32", "FP64"]},
            "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer"}}},
            "data": {"type": "array", "items": {}}}},
        "InferRequest": {"type": "object", "required": ["inputs"], "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object", "properties": {
                "top_k": {"type": "integer", "minimum": 0, "default": 5},
                "binary_data_output": {"type": "boolean"}}},
            "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/InferInput"}},
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
