//! Shared by the `serve_*` integration tests: boots the real server in-process on free ports with
//! the starter ensemble, and gives plain clients for it (reqwest for HTTP, tonic for gRPC) plus a
//! transport-neutral view of an answer to compare them with the compute pool's own answers.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use lastmile::ensemble::{Ensemble, ItemAnswer, ItemOptions, ValidItem};
use lastmile::proto::lastmile::v1 as pb;
use lastmile::registry::Registry;
use lastmile::scheduler::ComputePool;
use lastmile::server::{self, Handle, Hold, Limits, ServerConfig};
use serde::Deserialize;
use serde_json::{Map, Value};

pub fn manifest() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/starter/manifest.toml")
}

pub struct TestServer {
    pub handle: Option<Handle>,
    /// `http://127.0.0.1:PORT`
    pub http: String,
    /// `http://127.0.0.1:PORT`, for tonic clients.
    pub grpc: String,
    pub hold: Option<Arc<Hold>>,
}

impl TestServer {
    pub async fn start(limits: Limits) -> TestServer {
        Self::start_with(limits, None).await
    }

    /// A server whose admitted requests wait at `hold` until it is released.
    pub async fn start_held(limits: Limits) -> TestServer {
        Self::start_with(limits, Some(Hold::new())).await
    }

    async fn start_with(limits: Limits, hold: Option<Arc<Hold>>) -> TestServer {
        let pool = Arc::new(ComputePool::new(2).expect("a compute pool"));
        let ensemble =
            Arc::new(Ensemble::load(&manifest(), 2).expect("the starter ensemble loads"));
        let config = ServerConfig {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            limits,
            hold: hold.clone(),
            ..ServerConfig::default()
        };
        let handle = server::start(Arc::new(Registry::new(ensemble)), pool, config)
            .await
            .expect("the server starts");
        TestServer {
            http: format!("http://{}", handle.http_addr),
            grpc: format!("http://{}", handle.grpc_addr),
            handle: Some(handle),
            hold,
        }
    }

    pub fn handle(&self) -> &Handle {
        self.handle.as_ref().expect("the server is running")
    }

    /// The ensemble being served, and the answers it gives in-process.
    pub async fn expected(&self, items: Vec<ValidItem>) -> Vec<ItemAnswer> {
        let state = &self.handle().state;
        state
            .pool
            .predict(&state.registry.snapshot(), items)
            .await
            .expect("the ensemble predicts")
    }

    /// Items as `Ensemble::item_from_json` checks them.
    pub fn items(&self, objects: &[Value], options: ItemOptions) -> Vec<ValidItem> {
        let e = self.handle().state.registry.snapshot();
        objects
            .iter()
            .map(|o| {
                e.item_from_json(o.as_object().expect("an object"), options.clone())
                    .expect("a valid item")
            })
            .collect()
    }

    pub async fn own_client(
        &self,
    ) -> pb::lastmile_client::LastmileClient<tonic::transport::Channel> {
        pb::lastmile_client::LastmileClient::connect(self.grpc.clone())
            .await
            .expect("the gRPC server accepts a connection")
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.grpc.clone())
            .unwrap()
            .connect()
            .await
            .expect("the gRPC server accepts a connection")
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("{}{path}", self.http))
            .await
            .expect("the HTTP server answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, serde_json::to_vec(body).unwrap()).await
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.http))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the HTTP server answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("a JSON body, got {text:?}: {e}"));
        (status, value)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.shutdown();
        }
    }
}

/// An answer as any transport gives it, for comparing transports with the compute pool's own answers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Answer {
    pub predictions: Vec<Scored>,
    #[serde(default)]
    pub rules_fired: Vec<String>,
    pub agreement: u32,
    #[serde(default)]
    pub abstained: Option<String>,
    #[serde(default)]
    pub models: Vec<ModelPart>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Scored {
    pub label: String,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelPart {
    pub name: String,
    pub weight: f32,
    pub predictions: Vec<Scored>,
    pub contributions: Vec<Scored>,
}

impl Answer {
    pub fn from_lib(a: &ItemAnswer) -> Answer {
        let scored = |v: &[lastmile::ensemble::LabelScore]| {
            v.iter()
                .map(|p| Scored {
                    label: p.label.clone(),
                    score: p.score,
                })
                .collect()
        };
        Answer {
            predictions: scored(&a.predictions),
            rules_fired: a.rules_fired.clone(),
            agreement: a.agreement,
            abstained: a.abstained.clone(),
            models: a
                .models
                .iter()
                .flatten()
                .map(|m| ModelPart {
                    name: m.name.clone(),
                    weight: m.weight,
                    predictions: scored(&m.predictions),
                    contributions: scored(&m.contributions),
                })
                .collect(),
        }
    }

    pub fn from_proto(a: &pb::ItemAnswer) -> Answer {
        let scored = |v: &[pb::LabelScore]| {
            v.iter()
                .map(|p| Scored {
                    label: p.label.clone(),
                    score: p.score,
                })
                .collect()
        };
        Answer {
            predictions: scored(&a.predictions),
            rules_fired: a.rules_fired.clone(),
            agreement: a.agreement,
            abstained: (!a.abstained.is_empty()).then(|| a.abstained.clone()),
            models: a
                .models
                .iter()
                .map(|m| ModelPart {
                    name: m.name.clone(),
                    weight: m.weight,
                    predictions: scored(&m.predictions),
                    contributions: scored(&m.contributions),
                })
                .collect(),
        }
    }

    pub fn from_json(v: &Value) -> Answer {
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("an answer, got {v}: {e}"))
    }
}

pub fn answers_lib(v: &[ItemAnswer]) -> Vec<Answer> {
    v.iter().map(Answer::from_lib).collect()
}

/// A proto item with text fields.
pub fn proto_item(fields: &[(&str, &str)]) -> pb::Item {
    pb::Item {
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

/// A JSON item with text fields.
pub fn json_item(fields: &[(&str, &str)]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect::<Map<String, Value>>(),
    )
}

/// Products of the starter ensemble's kinds, as (title, description).
pub const PRODUCTS: [(&str, &str); 4] = [
    ("steel chef knife", "forged blade for the kitchen"),
    ("running shoes", "lightweight trainers"),
    ("garden hose", "30 m with spray nozzle"),
    ("wireless headphones", "noise cancelling"),
];
