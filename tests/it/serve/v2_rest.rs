//! The V2 protocol over REST: health, metadata, Triton's model configuration, JSON and binary
//! tensors, and malformed tensors refused with a 4xx.

use lastmile::service::Limits;
use serde_json::{json, Value};

use super::*;

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
    let mut meta = json(&body);
    // The provenance parameters are tested in `provenance`; here, that they are there.
    let parameters = meta.as_object_mut().unwrap().remove("parameters").unwrap();
    assert_eq!(parameters["ensemble_digest"], json!(server.live().digest));
    assert_eq!(
        meta,
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
