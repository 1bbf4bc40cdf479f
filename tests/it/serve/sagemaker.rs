//! SageMaker's container contract (`--sagemaker`): `/ping`, `/execution-parameters`, and
//! `/invocations` with each content type (the own API's body, a V2 body, `instances`, JSON Lines,
//! CSV), answered per `Accept` with the same answers as the own API; bad bodies refused with a
//! 4xx that says why; the binary on `SAGEMAKER_BIND_TO_PORT=0`.

use reqwest::Client;
use serde_json::{json, Value};

use crate::support::child::Served;
use crate::support::{starter, TestServer};

const TITLES: [&str; 3] = ["steel chef knife", "ceramic coffee mug", "wooden toy train"];

async fn invoke(http: &str, content_type: &str, accept: Option<&str>, body: &str) -> (u16, String) {
    let mut request = Client::new()
        .post(format!("{http}/invocations"))
        .header("content-type", content_type)
        .body(body.to_owned());
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The own API's answers to the titles (top 5), as JSON.
async fn own_answers(server: &TestServer) -> Vec<Value> {
    let items: Vec<Value> = TITLES.iter().map(|t| json!({"title": t})).collect();
    let (code, body) = server
        .post_json("/v1/predict", &json!({"items": items}))
        .await;
    assert_eq!(code, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_execution_parameters_answer_without_model_work() {
    let server = TestServer::builder().sagemaker().start().await;
    let ping = reqwest::get(format!("{}/ping", server.http)).await.unwrap();
    assert_eq!(ping.status(), 200);
    assert_eq!(ping.text().await.unwrap(), "");
    let (code, body) = server.get("/execution-parameters").await;
    assert_eq!(code, 200, "{body}");
    let params: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(params["BatchStrategy"], "MULTI_RECORD");
    assert_eq!(params["MaxConcurrentTransforms"], 2);
    assert!(params["MaxPayloadInMB"].as_u64().unwrap() >= 1, "{params}");
    // Off without --sagemaker.
    let plain = TestServer::builder().start().await;
    assert_eq!(plain.get("/ping").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_content_type_gets_the_own_apis_answers() {
    let server = TestServer::builder().sagemaker().start().await;
    let want = own_answers(&server).await;
    let http = &server.http;

    // application/json, the own API's body: answered as /v1/predict answers it.
    let items: Vec<Value> = TITLES.iter().map(|t| json!({"title": t})).collect();
    let own = json!({"items": items}).to_string();
    let (code, body) = invoke(http, "application/json", None, &own).await;
    assert_eq!(code, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["items"].as_array().unwrap(), &want);

    // application/json, instances (objects or bare strings for the first field).
    let instances = json!({"instances": [{"title": TITLES[0]}, TITLES[1], {"title": TITLES[2]}]});
    let (code, body) = invoke(http, "application/json", None, &instances.to_string()).await;
    assert_eq!(code, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["predictions"].as_array().unwrap(), &want);
    assert_eq!(body["ensemble"]["name"], "starter");

    // ... and the same as JSON Lines when asked.
    let accept = Some("application/jsonlines");
    let (code, body) = invoke(http, "application/json", accept, &instances.to_string()).await;
    assert_eq!(code, 200, "{body}");
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, want);

    // application/jsonlines: JSON Lines back by default, JSON when asked.
    let jsonl: String = TITLES
        .iter()
        .map(|t| format!("{}\n", json!({"title": t})))
        .collect();
    let (code, body) = invoke(http, "application/jsonlines", None, &format!("{jsonl}\n")).await;
    assert_eq!(code, 200, "{body}");
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, want);
    let accept = Some("application/json");
    let (code, body) = invoke(http, "application/jsonlines", accept, &jsonl).await;
    assert_eq!(code, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["predictions"].as_array().unwrap(), &want);

    // text/csv: the header row names the fields; an empty cell is a missing field.
    let csv: String = std::iter::once("title,description\n".to_owned())
        .chain(TITLES.iter().map(|t| format!("\"{t}\",\n")))
        .collect();
    let (code, body) = invoke(http, "text/csv", None, &csv).await;
    assert_eq!(code, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["predictions"].as_array().unwrap(), &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_body_is_answered_as_the_live_models_infer() {
    let server = TestServer::builder().sagemaker().start().await;
    let v2 = json!({
        "inputs": [{"name": "title", "datatype": "BYTES", "shape": [3, 1], "data": TITLES}],
        "parameters": {"top_k": 3},
    });
    let (code, want) = server.post_json("/v2/models/starter/infer", &v2).await;
    assert_eq!(code, 200, "{want}");
    let (code, body) = invoke(&server.http, "application/json", None, &v2.to_string()).await;
    assert_eq!(code, 200, "{body}");
    let got: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_refused_with_the_reason() {
    let server = TestServer::builder().sagemaker().start().await;
    let http = &server.http;
    let cases: [(&str, Option<&str>, &str, u16, &str); 10] = [
        (
            "image/png",
            None,
            "xx",
            415,
            "application/jsonlines or text/csv",
        ),
        (
            "application/json",
            Some("text/html"),
            "{}",
            406,
            "accept application/json",
        ),
        (
            "application/json",
            None,
            "{\"instances\": [",
            400,
            "malformed JSON",
        ),
        ("application/json", None, "[1, 2]", 400, "must be an object"),
        (
            "application/json",
            None,
            "{\"instances\": [3]}",
            400,
            "instances[0]",
        ),
        (
            "application/json",
            None,
            "{\"instances\": [], \"x\": 1}",
            400,
            "unknown field",
        ),
        (
            "application/jsonlines",
            None,
            "{\"title\": \"a\"}\n[1]\n",
            400,
            "line 2",
        ),
        (
            "text/csv",
            None,
            "title\n\"a\",\"b\"\n",
            400,
            "malformed CSV",
        ),
        ("text/csv", None, "title,description\n", 400, "no item"),
        (
            "application/json",
            None,
            "{\"instances\": [{\"colour\": \"red\"}]}",
            422,
            "item 0",
        ),
    ];
    for (content_type, accept, body, status, reason) in cases {
        let (code, answer) = invoke(http, content_type, accept, body).await;
        assert_eq!(code, status, "{content_type} {body:?}: {answer}");
        assert!(answer.contains(reason), "{content_type} {body:?}: {answer}");
    }
    // The own API's answers are JSON documents: no JSON Lines for them.
    let own = json!({"item": {"title": "knife"}}).to_string();
    let (code, answer) = invoke(
        http,
        "application/json",
        Some("application/jsonlines"),
        &own,
    )
    .await;
    assert_eq!(code, 406, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_sagemaker_on_the_port_it_is_given() {
    let served = Served::start_with(
        &starter(),
        &["--sagemaker"],
        &[("SAGEMAKER_BIND_TO_PORT", "0")],
    );
    let http = format!("http://{}", served.rest);
    assert!(served.rest.starts_with("0.0.0.0:"), "{}", served.rest);
    assert!(!served.rest.ends_with(":8080"), "{}", served.rest);
    let ping = reqwest::get(format!("{http}/ping")).await.unwrap();
    assert_eq!(ping.status(), 200);
    let (code, body) = invoke(&http, "text/csv", None, "title\nsteel chef knife\n").await;
    assert_eq!(code, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["predictions"][0]["predictions"][0]["label"],
        "kitchen_knives"
    );
    served.signal("TERM");
    assert_eq!(served.wait(), Some(0));
}
