//! What must hold on both transports: candidates restrict the answers, explanations are the
//! explained answers.

use lastmile::ensemble::ItemOptions;
use lastmile::proto::inference as pb;
use lastmile::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use lastmile::service::Limits;
use serde_json::{json, Value};

use super::*;

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
            inputs: product_inputs(),
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
            inputs: product_inputs(),
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
