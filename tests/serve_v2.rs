//! The Open Inference Protocol (KServe V2) served for real: REST with JSON tensors and with
//! Triton's binary tensor extension, gRPC with typed and raw contents, metadata, Triton's model
//! configuration, readiness; answers equal `Ensemble::predict`; malformed tensors are refused with
//! a 4xx / INVALID_ARGUMENT that says what is wrong.

mod serve_support;

use lastmile::ensemble::{ItemAnswer, ItemOptions};
use lastmile::proto::inference as pb;
use lastmile::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use lastmile::server::Limits;
use serde_json::{json, Value};
use serve_support::{json_item, TestServer, PRODUCTS};
use tonic::Code;

/// Labels and scores, `[N][k]`, as `Ensemble::predict` gives them for the products.
async fn expected(server: &TestServer, k: usize) -> (Vec<Vec<String>>, Vec<Vec<f32>>) {
    expected_with(
        server,
        ItemOptions {
            top_k: k,
            ..ItemOptions::default()
        },
    )
    .await
}

async fn expected_with(
    server: &TestServer,
    options: ItemOptions,
) -> (Vec<Vec<String>>, Vec<Vec<f32>>) {
    let answers = expected_answers(server, options).await;
    let labels = answers
        .iter()
        .map(|a| a.predictions.iter().map(|p| p.label.clone()).collect())
        .collect();
    let scores = answers
        .iter()
        .map(|a| a.predictions.iter().map(|p| p.score).collect())
        .collect();
    (labels, scores)
}

/// The products' whole answers, as `Ensemble::predict` gives them with `options`.
async fn expected_answers(server: &TestServer, options: ItemOptions) -> Vec<ItemAnswer> {
    let objects: Vec<Value> = PRODUCTS
        .iter()
        .map(|(t, d)| json_item(&[("title", t), ("description", d)]))
        .collect();
    server.expected(server.items(&objects, options)).await
}

fn titles() -> Vec<&'static str> {
    PRODUCTS.iter().map(|(t, _)| *t).collect()
}

fn descriptions() -> Vec<&'static str> {
    PRODUCTS.iter().map(|(_, d)| *d).collect()
}

fn rows<T: Clone>(flat: &[T], k: usize) -> Vec<Vec<T>> {
    flat.chunks(k).map(<[T]>::to_vec).collect()
}

/// BYTES elements in Triton's binary encoding.
fn encode_bytes(elements: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in elements {
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e.as_bytes());
    }
    out
}

fn decode_bytes(mut raw: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let len = u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize;
        out.push(String::from_utf8(raw[4..4 + len].to_vec()).unwrap());
        raw = &raw[4 + len..];
    }
    out
}

fn decode_f32(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_health_metadata_and_model_config() {
    let server = TestServer::start(Limits::default()).await;
    let json = |text: &str| serde_json::from_str::<Value>(text).unwrap();

    let (status, body) = server.get("/v2").await;
    assert_eq!(status, 200);
    let meta = json(&body);
    assert_eq!(meta["name"], "lastmile");
    for ext in ["binary_tensor_data", "model_configuration"] {
        assert!(meta["extensions"].as_array().unwrap().contains(&json!(ext)));
    }
    assert_eq!(server.get("/v2/health/live").await.0, 200);
    assert_eq!(server.get("/v2/health/ready").await.0, 200);
    assert_eq!(server.get("/v2/models/starter/ready").await.0, 200);
    assert_eq!(
        server.get("/v2/models/starter/versions/1/ready").await.0,
        200
    );

    let (status, body) = server.get("/v2/models/starter").await;
    assert_eq!(status, 200);
    assert_eq!(
        json(&body),
        json!({
            "name": "starter", "versions": ["1"], "platform": "lastmile_ensemble",
            "inputs": [
                {"name": "title", "datatype": "BYTES", "shape": [-1, 1]},
                {"name": "description", "datatype": "BYTES", "shape": [-1, 1]}],
            "outputs": [
                {"name": "labels", "datatype": "BYTES", "shape": [-1, -1]},
                {"name": "scores", "datatype": "FP32", "shape": [-1, -1]},
                {"name": "explanation", "datatype": "BYTES", "shape": [-1, 1]}]
        })
    );

    let (status, body) = server.get("/v2/models/starter/config").await;
    assert_eq!(status, 200);
    let config = json(&body);
    assert_eq!(config["name"], "starter");
    assert_eq!(config["max_batch_size"], 256);
    assert_eq!(
        config["input"][0],
        json!({"name": "title", "data_type": "TYPE_STRING", "dims": [1], "optional": true})
    );
    assert_eq!(
        config["output"][1],
        json!({"name": "scores", "data_type": "TYPE_FP32", "dims": [-1]})
    );

    for path in [
        "/v2/models/nope",
        "/v2/models/nope/ready",
        "/v2/models/starter/versions/2",
        "/v2/models/nope/config",
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 404, "{path}");
        let error = json(&body);
        assert_eq!(error["code"], "not_found");
        assert!(
            error["error"].as_str().unwrap().contains("serve"),
            "{error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_infer_with_json_tensors_equals_the_ensemble() {
    let server = TestServer::start(Limits::default()).await;
    let (labels, scores) = expected(&server, 3).await;
    let (status, body) = server
        .post_json(
            "/v2/models/starter/infer",
            &json!({
                "id": "req-7",
                "parameters": {"top_k": 3},
                "inputs": [
                    {"name": "title", "shape": [4, 1], "datatype": "BYTES", "data": titles()},
                    {"name": "description", "shape": [4], "datatype": "BYTES", "data": descriptions()}
                ]
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_name"], "starter");
    assert_eq!(body["model_version"], "1");
    assert_eq!(body["id"], "req-7");
    let outputs = body["outputs"].as_array().unwrap();
    assert_eq!(outputs[0]["name"], "labels");
    assert_eq!(outputs[0]["datatype"], "BYTES");
    assert_eq!(outputs[0]["shape"], json!([4, 3]));
    let got: Vec<String> = serde_json::from_value(outputs[0]["data"].clone()).unwrap();
    assert_eq!(rows(&got, 3), labels);
    assert_eq!(outputs[1]["name"], "scores");
    assert_eq!(outputs[1]["datatype"], "FP32");
    let got: Vec<f32> = serde_json::from_value(outputs[1]["data"].clone()).unwrap();
    assert_eq!(rows(&got, 3), scores);

    // Versioned route, one output asked for, default top_k (5), nested data.
    let (status, body) = server
        .post_json(
            "/v2/models/starter/versions/1/infer",
            &json!({
                "inputs": [{"name": "title", "shape": [2, 1], "datatype": "BYTES",
                            "data": [["steel chef knife"], ["running shoes"]]}],
                "outputs": [{"name": "scores"}]
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let outputs = body["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["shape"], json!([2, 5]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_infer_with_binary_tensors_equals_the_ensemble() {
    let server = TestServer::start(Limits::default()).await;
    let (labels, scores) = expected(&server, 4).await;
    let title_bytes = encode_bytes(&titles());
    let head = json!({
        "parameters": {"top_k": 4},
        "inputs": [
            {"name": "title", "shape": [4, 1], "datatype": "BYTES",
             "parameters": {"binary_data_size": title_bytes.len()}},
            {"name": "description", "shape": [4, 1], "datatype": "BYTES", "data": descriptions()}
        ],
        "outputs": [
            {"name": "labels", "parameters": {"binary_data": true}},
            {"name": "scores", "parameters": {"binary_data": true}}
        ]
    });
    let head = serde_json::to_vec(&head).unwrap();
    let mut body = head.clone();
    body.extend_from_slice(&title_bytes);
    let response = reqwest::Client::new()
        .post(format!("{}/v2/models/starter/infer", server.http))
        .header("Inference-Header-Content-Length", head.len())
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let json_len: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    let reply: Value = serde_json::from_slice(&bytes[..json_len]).unwrap();
    let outputs = reply["outputs"].as_array().unwrap();
    let labels_size = outputs[0]["parameters"]["binary_data_size"]
        .as_u64()
        .unwrap() as usize;
    let scores_size = outputs[1]["parameters"]["binary_data_size"]
        .as_u64()
        .unwrap() as usize;
    assert!(outputs[0].get("data").is_none());
    let binary = &bytes[json_len..];
    assert_eq!(binary.len(), labels_size + scores_size);
    assert_eq!(rows(&decode_bytes(&binary[..labels_size]), 4), labels);
    assert_eq!(rows(&decode_f32(&binary[labels_size..]), 4), scores);

    // binary_data_output asks for every output in binary.
    let head = serde_json::to_vec(&json!({
        "parameters": {"binary_data_output": true},
        "inputs": [{"name": "title", "shape": [1], "datatype": "BYTES", "data": ["knife"]}]
    }))
    .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/v2/models/starter/infer", server.http))
        .body(head)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .contains_key("inference-header-content-length"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tensors_are_refused_with_a_clear_4xx() {
    let server = TestServer::start(Limits::default()).await;
    let title = |shape: Value, datatype: &str, data: Value| json!({"inputs": [{"name": "title", "shape": shape, "datatype": datatype, "data": data}]});
    let cases: Vec<(Value, &str)> = vec![
        (title(json!([1]), "INT32", json!([1])), "datatype INT32"),
        (
            title(json!([1]), "FP32", json!([1.0])),
            "datatype FP32 where BYTES",
        ),
        (
            title(json!([2]), "BYTES", json!(["a", "b", "c"])),
            "holds 2 elements but 3",
        ),
        (
            title(json!([1, 2]), "BYTES", json!(["a", "b"])),
            "expected [N] or [N, 1]",
        ),
        (title(json!([-1]), "BYTES", json!(["a"])), "negative"),
        (
            title(json!([1]), "BYTES", json!([7])),
            "element 0 of BYTES data is not a string",
        ),
        (json!({"inputs": []}), "no inputs"),
        (json!({"outputs": []}), "missing field `inputs`"),
        (
            json!({"inputs": [{"name": "titel", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}),
            "unknown input \"titel\" (inputs: title, description)",
        ),
        (
            json!({"inputs": [
                {"name": "title", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
                {"name": "description", "shape": [1], "datatype": "BYTES", "data": ["c"]}]}),
            "disagree on the batch size",
        ),
        (
            json!({"inputs": [{"name": "title", "shape": [1], "datatype": "BYTES"}]}),
            "no data",
        ),
        (
            json!({"inputs": [{"name": "title", "shape": [1], "datatype": "BYTES",
                               "parameters": {"binary_data_size": 9}}]}),
            "runs past the end",
        ),
        (
            json!({"inputs": [{"name": "title", "shape": [1], "datatype": "BYTES", "data": ["a"]}],
                   "outputs": [{"name": "probabilities"}]}),
            "unknown output \"probabilities\" (outputs: labels, scores, explanation)",
        ),
        (
            json!({"inputs": [{"name": "title", "shape": [1], "datatype": "BYTES", "data": ["a"]}],
                   "parameters": {"top_k": "five"}}),
            "top_k",
        ),
    ];
    for (body, message) in cases {
        let (status, reply) = server.post_json("/v2/models/starter/infer", &body).await;
        assert_eq!(status, 400, "{body} -> {reply}");
        assert_eq!(reply["code"], "bad_request", "{body} -> {reply}");
        let error = reply["error"].as_str().unwrap();
        assert!(
            error.contains(message),
            "{body}: {error:?} lacks {message:?}"
        );
    }

    // An item with only empty texts has no field: the ensemble's own check (422).
    let (status, reply) = server
        .post_json(
            "/v2/models/starter/infer",
            &title(json!([1]), "BYTES", json!([""])),
        )
        .await;
    assert_eq!(status, 422, "{reply}");
    assert_eq!(reply["code"], "invalid_input");

    // Binary framing errors.
    let post = |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let mut request =
            reqwest::Client::new().post(format!("{}/v2/models/starter/infer", server.http));
        for (k, v) in headers {
            request = request.header(k, v);
        }
        async move {
            let response = request.body(body).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let head = br#"{"inputs": [{"name": "title", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 5}}]}"#;
    let mut body = head.to_vec();
    body.extend_from_slice(&[3, 0, 0, 0, 0xff, 0xfe, 0xfd]);
    let cases = vec![
        (
            vec![("inference-header-content-length", "999999".to_owned())],
            body.clone(),
            "within the body",
        ),
        (
            vec![("inference-header-content-length", head.len().to_string())],
            body.clone(),
            "ends inside an element",
        ),
        (
            vec![("inference-header-content-length", "abc".to_owned())],
            body.clone(),
            "must be a number",
        ),
    ];
    for (headers, body, message) in cases {
        let (status, reply) = post(headers, body).await;
        assert_eq!(status, 400, "{reply}");
        assert!(
            reply["error"].as_str().unwrap().contains(message),
            "{reply}"
        );
    }
    let mut body = head.to_vec();
    body.extend_from_slice(&[1, 0, 0, 0, 0xff, 9, 9]);
    let (status, reply) = post(
        vec![("inference-header-content-length", head.len().to_string())],
        body,
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("binary data follow"),
        "{reply}"
    );

    let (status, reply) = server
        .post_json(
            "/v2/models/other/infer",
            &title(json!([1]), "BYTES", json!(["a"])),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(reply["code"], "not_found");
}

fn bytes_input(name: &str, values: &[&str]) -> pb::model_infer_request::InferInputTensor {
    pb::model_infer_request::InferInputTensor {
        name: name.into(),
        datatype: "BYTES".into(),
        shape: vec![values.len() as i64, 1],
        parameters: Default::default(),
        contents: Some(pb::InferTensorContents {
            bytes_contents: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
            ..Default::default()
        }),
    }
}

/// The `candidates` parameter restricts every answer on both transports, as a JSON array in a
/// string (V2 parameters are scalars) and, over REST, as a plain array.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_restrict_the_answers_on_both_transports() {
    let server = TestServer::start(Limits::default()).await;
    let accepted = vec!["garden".to_owned(), "toys".to_owned()];
    let (labels, scores) = expected_with(
        &server,
        ItemOptions {
            top_k: 2,
            candidates: Some(accepted.clone()),
            ..ItemOptions::default()
        },
    )
    .await;
    assert!(labels.iter().all(|r| r.len() == 2), "{labels:?}");
    assert!(labels
        .iter()
        .flatten()
        .all(|l| l.starts_with("garden") || l.starts_with("toys")));
    let as_string = serde_json::to_string(&accepted).unwrap();
    for candidates in [json!(accepted), json!(as_string)] {
        let (status, body) = server
            .post_json(
                "/v2/models/starter/infer",
                &json!({
                    "parameters": {"top_k": 2, "candidates": candidates},
                    "inputs": [
                        {"name": "title", "shape": [4], "datatype": "BYTES", "data": titles()},
                        {"name": "description", "shape": [4], "datatype": "BYTES", "data": descriptions()}
                    ]
                }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let got: Vec<String> = serde_json::from_value(body["outputs"][0]["data"].clone()).unwrap();
        assert_eq!(rows(&got, 2), labels);
        let got: Vec<f32> = serde_json::from_value(body["outputs"][1]["data"].clone()).unwrap();
        assert_eq!(rows(&got, 2), scores);
    }

    let mut client = GrpcInferenceServiceClient::new(server.channel().await);
    let mut parameters = top_k(2);
    parameters.insert(
        "candidates".to_owned(),
        pb::InferParameter {
            parameter_choice: Some(pb::infer_parameter::ParameterChoice::StringParam(as_string)),
        },
    );
    let reply = client
        .model_infer(pb::ModelInferRequest {
            model_name: "starter".into(),
            parameters,
            inputs: vec![
                bytes_input("title", &titles()),
                bytes_input("description", &descriptions()),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The server answers gRPC in raw contents, as tritonclient expects.
    assert_eq!(
        rows(&decode_bytes(&reply.raw_output_contents[0]), 2),
        labels
    );

    let (status, reply) = server
        .post_json(
            "/v2/models/starter/infer",
            &json!({"parameters": {"candidates": 5},
                    "inputs": [{"name": "title", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}),
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("candidates"),
        "{reply}"
    );
}

/// `explanation` holds each item's whole answer with `explain`, as the own API writes it: asked
/// for by name, or by the `explain` parameter; labels and scores do not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explanations_on_both_transports_are_the_explained_answers() {
    let server = TestServer::start(Limits::default()).await;
    let options = ItemOptions {
        top_k: 3,
        explain: true,
        ..ItemOptions::default()
    };
    let want: Vec<Value> = expected_answers(&server, options)
        .await
        .iter()
        // Through text, as the server sends it (f32 scores read back as the same f64).
        .map(|a| serde_json::from_str(&serde_json::to_string(a).unwrap()).unwrap())
        .collect();
    assert!(want
        .iter()
        .all(|a| a["models"].as_array().is_some_and(|m| !m.is_empty())));
    let (labels, scores) = expected(&server, 3).await;
    let parsed = |texts: Vec<String>| -> Vec<Value> {
        texts
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect()
    };
    let inputs = json!([
        {"name": "title", "shape": [4], "datatype": "BYTES", "data": titles()},
        {"name": "description", "shape": [4], "datatype": "BYTES", "data": descriptions()}
    ]);

    // The parameter adds it to the default outputs.
    let (status, body) = server
        .post_json(
            "/v2/models/starter/infer",
            &json!({"parameters": {"top_k": 3, "explain": true}, "inputs": inputs}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let outputs = body["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 3, "{body}");
    let got: Vec<String> = serde_json::from_value(outputs[0]["data"].clone()).unwrap();
    assert_eq!(rows(&got, 3), labels);
    let got: Vec<f32> = serde_json::from_value(outputs[1]["data"].clone()).unwrap();
    assert_eq!(rows(&got, 3), scores);
    assert_eq!(outputs[2]["name"], "explanation");
    assert_eq!(outputs[2]["datatype"], "BYTES");
    assert_eq!(outputs[2]["shape"], json!([4, 1]));
    let texts: Vec<String> = serde_json::from_value(outputs[2]["data"].clone()).unwrap();
    assert_eq!(parsed(texts), want);

    // Named alone, without the parameter.
    let (status, body) = server
        .post_json(
            "/v2/models/starter/infer",
            &json!({"parameters": {"top_k": 3}, "inputs": inputs,
                    "outputs": [{"name": "explanation"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let outputs = body["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1, "{body}");
    let texts: Vec<String> = serde_json::from_value(outputs[0]["data"].clone()).unwrap();
    assert_eq!(parsed(texts), want);

    // gRPC, named beside the labels.
    let mut client = GrpcInferenceServiceClient::new(server.channel().await);
    let named = |name: &str| pb::model_infer_request::InferRequestedOutputTensor {
        name: name.into(),
        ..Default::default()
    };
    let reply = client
        .model_infer(pb::ModelInferRequest {
            model_name: "starter".into(),
            parameters: top_k(3),
            inputs: vec![
                bytes_input("title", &titles()),
                bytes_input("description", &descriptions()),
            ],
            outputs: vec![named("labels"), named("explanation")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.outputs[1].name, "explanation");
    assert_eq!(reply.outputs[1].shape, vec![4, 1]);
    assert_eq!(
        rows(&decode_bytes(&reply.raw_output_contents[0]), 3),
        labels
    );
    assert_eq!(parsed(decode_bytes(&reply.raw_output_contents[1])), want);

    let (status, body) = server
        .post_json(
            "/v2/models/starter/infer",
            &json!({"parameters": {"explain": "yes"}, "inputs": inputs}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("explain"),
        "{body}"
    );
}

fn top_k(k: i64) -> std::collections::HashMap<String, pb::InferParameter> {
    [(
        "top_k".to_owned(),
        pb::InferParameter {
            parameter_choice: Some(pb::infer_parameter::ParameterChoice::Int64Param(k)),
        },
    )]
    .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_inference_service_serves_the_ensemble() {
    let server = TestServer::start(Limits::default()).await;
    let mut client = GrpcInferenceServiceClient::new(server.channel().await);
    let live = client.server_live(pb::ServerLiveRequest {}).await.unwrap();
    assert!(live.into_inner().live);
    assert!(
        client
            .server_ready(pb::ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let ready = |name: &str, version: &str| pb::ModelReadyRequest {
        name: name.into(),
        version: version.into(),
    };
    assert!(
        client
            .model_ready(ready("starter", ""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        client
            .model_ready(ready("starter", "1"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !client
            .model_ready(ready("starter", "2"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !client
            .model_ready(ready("other", ""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );

    let meta = client
        .server_metadata(pb::ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, "lastmile");
    assert!(meta.extensions.contains(&"binary_tensor_data".to_owned()));
    let model = client
        .model_metadata(pb::ModelMetadataRequest {
            name: "starter".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(model.versions, ["1"]);
    let names: Vec<&str> = model.inputs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["title", "description"]);
    assert_eq!(model.outputs[0].shape, [-1, -1]);
    let config = client
        .model_config(pb::ModelConfigRequest {
            name: "starter".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(config.max_batch_size, 256);
    assert_eq!(config.input[0].data_type, pb::DataType::TypeString as i32);
    assert_eq!(config.input[0].dims, [1]);
    assert_eq!(config.output[1].data_type, pb::DataType::TypeFp32 as i32);
    let status = client
        .model_metadata(pb::ModelMetadataRequest {
            name: "other".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let (labels, scores) = expected(&server, 3).await;
    let check = |reply: pb::ModelInferResponse| {
        assert_eq!(reply.model_name, "starter");
        assert_eq!(reply.outputs[0].name, "labels");
        assert_eq!(reply.outputs[0].shape, [4, 3]);
        assert_eq!(reply.outputs[1].datatype, "FP32");
        assert_eq!(
            rows(&decode_bytes(&reply.raw_output_contents[0]), 3),
            labels
        );
        assert_eq!(rows(&decode_f32(&reply.raw_output_contents[1]), 3), scores);
    };
    // Typed contents.
    let reply = client
        .model_infer(pb::ModelInferRequest {
            model_name: "starter".into(),
            id: "g1".into(),
            parameters: top_k(3),
            inputs: vec![
                bytes_input("title", &titles()),
                bytes_input("description", &descriptions()),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.id, "g1");
    check(reply);
    // Raw contents, as tritonclient sends them.
    let mut inputs = vec![
        bytes_input("title", &titles()),
        bytes_input("description", &descriptions()),
    ];
    inputs.iter_mut().for_each(|i| i.contents = None);
    let reply = client
        .model_infer(pb::ModelInferRequest {
            model_name: "starter".into(),
            parameters: top_k(3),
            inputs,
            raw_input_contents: vec![encode_bytes(&titles()), encode_bytes(&descriptions())],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    check(reply);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_malformed_tensors_are_invalid_arguments() {
    let server = TestServer::start(Limits::default()).await;
    let mut client = GrpcInferenceServiceClient::new(server.channel().await);
    let request = |inputs, raw| pb::ModelInferRequest {
        model_name: "starter".into(),
        inputs,
        raw_input_contents: raw,
        ..Default::default()
    };
    let mut wrong_type = bytes_input("title", &["knife"]);
    wrong_type.datatype = "INT64".into();
    let mut wrong_shape = bytes_input("title", &["knife"]);
    wrong_shape.shape = vec![3];
    let cases = vec![
        (request(vec![wrong_type], vec![]), "datatype INT64"),
        (request(vec![wrong_shape], vec![]), "holds 3 elements but 1"),
        (request(vec![], vec![]), "no inputs"),
        (
            request(vec![bytes_input("title", &["a"])], vec![vec![], vec![]]),
            "raw_input_contents has 2 entries for 1 inputs",
        ),
        (
            request(
                vec![bytes_input("title", &["a"])],
                vec![vec![9, 0, 0, 0, 1]],
            ),
            "ends inside an element",
        ),
    ];
    for (req, message) in cases {
        let status = client.model_infer(req).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(message),
            "{status:?} lacks {message:?}"
        );
    }
    let status = client
        .model_infer(pb::ModelInferRequest {
            model_name: "other".into(),
            inputs: vec![bytes_input("title", &["a"])],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}
