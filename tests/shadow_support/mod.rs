//! Shared by the `shadow_*` integration tests: the real server on free ports with the starter
//! ensemble live and given shadow settings; clients for the four ways a prediction comes in (own
//! REST, own gRPC, V2 REST, V2 gRPC), each returning ranked (label, score) lists; the items (the
//! fastText fixtures' texts); shadow manifests derived from the starter; runtime wrappers that make
//! a model slow or failing.
#![allow(dead_code)]

#[path = "../admin_support/mod.rs"]
mod admin_support;
use admin_support::admin_call;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lastmile::admin::{AdminConfig, DeployConfig};
use lastmile::ensemble::{Ensemble, ItemAnswer, ItemOptions, ValidItem};
use lastmile::proto::inference as v2;
use lastmile::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use lastmile::proto::lastmile::v1 as pb;
use lastmile::registry::Registry;
use lastmile::runtime::{InputKind, Inputs, RunError, Runtime, Scores};
use lastmile::scheduler::ComputePool;
use lastmile::server::{self, Handle, Limits, ServerConfig};
use lastmile::shadow::{Shadow, ShadowSettings, StageOptions};
use serde_json::{json, Value};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn starter() -> PathBuf {
    root().join("models/starter/manifest.toml")
}

/// The starter manifest with `edit` applied, as `name`/`version`, written to `dir` with absolute
/// model paths.
pub fn starter_variant(dir: &Path, version: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(starter()).unwrap();
    let fixtures = root().join("tests/fixtures");
    let text = text
        .replace("../../tests/fixtures", &fixtures.display().to_string())
        .replace("version = \"1\"", &format!("version = \"{version}\""));
    let path = dir.join(format!("starter-{version}.toml"));
    std::fs::write(&path, edit(text)).unwrap();
    path
}

/// The known-different shadow of these tests, as version "2": the starter without its knives
/// rule, with a rank vote across groups, and "pack" in a title forcing `board_games`.
pub fn known_variant(dir: &Path) -> PathBuf {
    starter_variant(dir, "2", |text| {
        let (head, _) = text.split_once("[[rule]]").unwrap();
        head.replace(
            "strategy = \"soft\"\nagreement_k",
            "strategy = \"rank\"\nagreement_k",
        ) + "[[rule]]\ntype = \"keyword\"\nname = \"packs\"\nfield = \"title\"\n\
               keywords = [\"pack\"]\nlabel = \"board_games\"\naction = \"force\"\n"
    })
}

/// Titles from the fastText fixtures (validation set, then training set): `n` of them.
pub fn titles(n: usize) -> Vec<String> {
    let fixtures = root().join("tests/fixtures/fasttext");
    let mut out = Vec::new();
    for file in ["valid.txt", "train.txt"] {
        for line in std::fs::read_to_string(fixtures.join(file))
            .unwrap()
            .lines()
        {
            let text = line.split_once(' ').map_or(line, |(_, t)| t).trim();
            if !text.is_empty() {
                out.push(text.to_owned());
            }
        }
    }
    assert!(out.len() >= n, "only {} titles", out.len());
    out.truncate(n);
    out
}

pub struct Server {
    pub handle: Handle,
    pub http: String,
    pub grpc: String,
}

/// The admin token of [`Server::start_admin`].
pub const TOKEN: &str = "shadow-test-token";

impl Server {
    pub async fn start(settings: ShadowSettings) -> Server {
        Self::start_with(settings, None).await
    }

    /// With the admin API (REST and gRPC) on free ports, behind [`TOKEN`].
    pub async fn start_admin(settings: ShadowSettings) -> Server {
        let admin = AdminConfig {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            token: Some(TOKEN.into()),
            deploy: DeployConfig {
                load_threads: 2,
                ..DeployConfig::default()
            },
            ..AdminConfig::default()
        };
        Self::start_with(settings, Some(admin)).await
    }

    async fn start_with(settings: ShadowSettings, admin: Option<AdminConfig>) -> Server {
        let pool = Arc::new(ComputePool::new(2).expect("a compute pool"));
        let ensemble = Arc::new(Ensemble::load(&starter(), 2).expect("the starter loads"));
        let config = ServerConfig {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            limits: Limits::default(),
            shadow: settings,
            admin,
            ..ServerConfig::default()
        };
        let handle = server::start(Arc::new(Registry::new(ensemble)), pool, config)
            .await
            .expect("the server starts");
        Server {
            http: format!("http://{}", handle.http_addr),
            grpc: format!("http://{}", handle.grpc_addr),
            handle,
        }
    }

    pub fn live(&self) -> Arc<Ensemble> {
        self.handle.state.registry.snapshot()
    }

    pub fn pool(&self) -> &Arc<ComputePool> {
        &self.handle.state.pool
    }

    /// Stages `shadow` in-process, mirroring `fraction` of items (sampling seed 0).
    pub fn stage(&self, shadow: Arc<Ensemble>, fraction: f64) -> Arc<Shadow> {
        self.handle.state.shadow.stage(
            shadow,
            StageOptions { fraction, seed: 0 },
            Arc::clone(self.pool()),
        )
    }

    /// Loads a manifest beside the live ensemble (sharing unchanged models).
    pub fn load(&self, manifest: &Path) -> Ensemble {
        let live = self.live();
        Ensemble::load_reusing(manifest, 2, &[&live]).expect("the shadow manifest loads")
    }

    /// Items of `ensemble` with only a title.
    pub fn items(ensemble: &Ensemble, titles: &[String], top_k: usize) -> Vec<ValidItem> {
        titles
            .iter()
            .map(|t| {
                let o = json!({ "title": t });
                ensemble
                    .item_from_json(
                        o.as_object().unwrap(),
                        ItemOptions {
                            top_k,
                            ..ItemOptions::default()
                        },
                    )
                    .expect("a valid item")
            })
            .collect()
    }

    /// `ensemble`'s answers, straight from the compute pool.
    pub async fn answers(
        &self,
        ensemble: &Arc<Ensemble>,
        titles: &[String],
        top_k: usize,
    ) -> Vec<ItemAnswer> {
        let items = Self::items(ensemble, titles, top_k.min(ensemble.labels.len()));
        self.pool()
            .predict(ensemble, items)
            .await
            .expect("the ensemble answers")
    }

    /// Sends `titles` in one request over `transport`; the ranked (label, score) lists.
    pub async fn send(&self, transport: Transport, titles: &[String], top_k: usize) -> Ranked {
        match transport {
            Transport::Rest => self.rest(titles, top_k).await,
            Transport::Grpc => self.grpc(titles, top_k).await,
            Transport::V2Rest => self.v2_rest(titles, top_k).await,
            Transport::V2Grpc => self.v2_grpc(titles, top_k).await,
        }
    }

    async fn rest(&self, titles: &[String], top_k: usize) -> Ranked {
        let items: Vec<Value> = titles.iter().map(|t| json!({ "title": t })).collect();
        let response = reqwest::Client::new()
            .post(format!("{}/v1/predict", self.http))
            .json(&json!({"items": items, "top_k": top_k}))
            .send()
            .await
            .expect("the HTTP server answers");
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                item["predictions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            p["label"].as_str().unwrap().to_owned(),
                            p["score"].as_f64().unwrap() as f32,
                        )
                    })
                    .collect()
            })
            .collect()
    }

    async fn grpc(&self, titles: &[String], top_k: usize) -> Ranked {
        let mut client = pb::lastmile_client::LastmileClient::connect(self.grpc.clone())
            .await
            .unwrap();
        let reply = client
            .predict(pb::PredictRequest {
                items: titles
                    .iter()
                    .map(|t| pb::Item {
                        fields: [("title".to_owned(), t.clone())].into(),
                        ..Default::default()
                    })
                    .collect(),
                top_k: top_k as u32,
                ..Default::default()
            })
            .await
            .expect("gRPC Predict answers")
            .into_inner();
        reply
            .items
            .iter()
            .map(|a| {
                a.predictions
                    .iter()
                    .map(|p| (p.label.clone(), p.score))
                    .collect()
            })
            .collect()
    }

    async fn v2_rest(&self, titles: &[String], top_k: usize) -> Ranked {
        let response = reqwest::Client::new()
            .post(format!("{}/v2/models/starter/infer", self.http))
            .json(&json!({
                "parameters": {"top_k": top_k},
                "inputs": [{"name": "title", "shape": [titles.len(), 1], "datatype": "BYTES",
                            "data": titles}]
            }))
            .send()
            .await
            .expect("the HTTP server answers");
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        let labels: Vec<String> =
            serde_json::from_value(body["outputs"][0]["data"].clone()).unwrap();
        let scores: Vec<f32> = serde_json::from_value(body["outputs"][1]["data"].clone()).unwrap();
        zip_rows(labels, scores, top_k)
    }

    async fn v2_grpc(&self, titles: &[String], top_k: usize) -> Ranked {
        let channel = tonic::transport::Endpoint::from_shared(self.grpc.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let reply = GrpcInferenceServiceClient::new(channel)
            .model_infer(v2::ModelInferRequest {
                model_name: "starter".into(),
                parameters: [(
                    "top_k".to_owned(),
                    v2::InferParameter {
                        parameter_choice: Some(v2::infer_parameter::ParameterChoice::Int64Param(
                            top_k as i64,
                        )),
                    },
                )]
                .into(),
                inputs: vec![v2::model_infer_request::InferInputTensor {
                    name: "title".into(),
                    datatype: "BYTES".into(),
                    shape: vec![titles.len() as i64, 1],
                    parameters: Default::default(),
                    contents: Some(v2::InferTensorContents {
                        bytes_contents: titles.iter().map(|t| t.as_bytes().to_vec()).collect(),
                        ..Default::default()
                    }),
                }],
                ..Default::default()
            })
            .await
            .expect("V2 ModelInfer answers")
            .into_inner();
        let mut raw = &reply.raw_output_contents[0][..];
        let mut labels = Vec::new();
        while !raw.is_empty() {
            let len = u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize;
            labels.push(String::from_utf8(raw[4..4 + len].to_vec()).unwrap());
            raw = &raw[4 + len..];
        }
        let scores = reply.raw_output_contents[1]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        zip_rows(labels, scores, top_k)
    }

    /// `http://127.0.0.1:PORT` of the admin REST API.
    pub fn admin_http(&self) -> String {
        format!(
            "http://{}",
            self.handle.admin.as_ref().expect("an admin API").http_addr
        )
    }

    /// A call to the admin REST API with the token: the status and the JSON answer.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.admin_as(Some(TOKEN), method, path, body).await
    }

    pub async fn admin_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        admin_call(&self.admin_http(), token, method, path, body).await
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.state.shadow.stop();
        self.handle.shutdown();
    }
}

/// Per item, the ranked (label, score) pairs.
pub type Ranked = Vec<Vec<(String, f32)>>;

pub fn ranked(answers: &[ItemAnswer]) -> Ranked {
    answers
        .iter()
        .map(|a| {
            a.predictions
                .iter()
                .map(|p| (p.label.clone(), p.score))
                .collect()
        })
        .collect()
}

fn zip_rows(labels: Vec<String>, scores: Vec<f32>, k: usize) -> Ranked {
    labels
        .chunks(k)
        .zip(scores.chunks(k))
        .map(|(l, s)| l.iter().cloned().zip(s.iter().copied()).collect())
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Rest,
    Grpc,
    V2Rest,
    V2Grpc,
}

pub const TRANSPORTS: [Transport; 4] = [
    Transport::Rest,
    Transport::Grpc,
    Transport::V2Rest,
    Transport::V2Grpc,
];

/// A model whose every batch fails at run time, as a broken model file or runtime would.
pub struct Failing(pub Arc<dyn Runtime>);

impl Runtime for Failing {
    fn labels(&self) -> &[String] {
        self.0.labels()
    }
    fn input_kind(&self) -> InputKind {
        self.0.input_kind()
    }
    fn run(&self, _: &Inputs<'_>, _: &mut Scores) -> Result<(), RunError> {
        Err(RunError::Runtime("deliberately failing test model".into()))
    }
    fn reorder_columns(&mut self, _: &[usize]) {
        unreachable!("columns are ordered at load time, before the wrapper exists")
    }
}

/// A model that takes `delay` longer per batch than the one it wraps (and answers the same).
pub struct Slow(pub Arc<dyn Runtime>, pub Duration);

impl Runtime for Slow {
    fn labels(&self) -> &[String] {
        self.0.labels()
    }
    fn input_kind(&self) -> InputKind {
        self.0.input_kind()
    }
    fn run(&self, inputs: &Inputs<'_>, out: &mut Scores) -> Result<(), RunError> {
        std::thread::sleep(self.1);
        self.0.run(inputs, out)
    }
    fn reorder_columns(&mut self, _: &[usize]) {
        unreachable!("columns are ordered at load time, before the wrapper exists")
    }
}
