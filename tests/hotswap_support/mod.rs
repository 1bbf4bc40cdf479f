//! Shared by the `hotswap_*` integration tests: manifests written to a temporary directory from the
//! fastText fixtures (with absolute paths), a labelled validation set made from the fixtures'
//! validation lines, the real server on free ports with its admin API, and plain clients for the
//! admin API (reqwest, tonic) and for predictions.
#![allow(dead_code)]

#[path = "../admin_support/mod.rs"]
mod admin_support;
pub use admin_support::admin_call;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lastmile::admin::{AdminConfig, DeployConfig, Gate};
use lastmile::ensemble::{Ensemble, ItemAnswer, ItemOptions, ValidItem};
use lastmile::proto::lastmile::v1 as pb;
use lastmile::registry::Registry;
use lastmile::scheduler::ComputePool;
use lastmile::server::{self, Handle, Hold, ServerConfig};
use serde_json::{json, Value};
use tonic::transport::Channel;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fasttext(file: &str) -> String {
    root()
        .join("tests/fixtures/fasttext")
        .join(file)
        .display()
        .to_string()
}

/// A manifest named `name` version `version` with one fastText model per `(model, fixture file)`,
/// reading `title`; `extra` goes before the models (e.g. `validation = "..."`, `[rename]`).
pub fn manifest_text(name: &str, version: &str, models: &[(&str, &str)], extra: &str) -> String {
    let mut text = format!(
        "name = \"{name}\"\nversion = \"{version}\"\n{extra}\n[defaults]\nfields = [\"title\"]\n"
    );
    for (model, file) in models {
        text += &format!(
            "\n[[model]]\nname = \"{model}\"\nkind = \"fasttext\"\npath = \"{}\"\n",
            fasttext(file)
        );
    }
    text
}

pub fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// The fixtures' validation lines as labelled JSON Lines (`title`, `label`: the first label),
/// written to `dir/valid.jsonl`.
pub fn validation_set(dir: &Path) -> PathBuf {
    let valid = std::fs::read_to_string(root().join("tests/fixtures/fasttext/valid.txt")).unwrap();
    let mut data = String::new();
    for line in valid.lines() {
        let (labels, words): (Vec<&str>, Vec<&str>) = line
            .split_whitespace()
            .partition(|t| t.starts_with("__label__"));
        let label = labels[0].trim_start_matches("__label__");
        data += &format!("{}\n", json!({"title": words.join(" "), "label": label}));
    }
    write(dir, "valid.jsonl", &data)
}

/// The fixtures' ten labels.
pub const LABELS: [&str; 10] = [
    "arts_&_crafts-supplies",
    "board_games",
    "laptops",
    "phone_cases",
    "running_shoes",
    "garden_tools",
    "camping_tents",
    "baby_strollers",
    "coffee_makers",
    "kitchen_knives",
];

/// A `[rename]` table moving every label to the next one: a "retrain" that is always wrong.
pub fn scrambled_labels() -> String {
    let mut text = "[rename]\n".to_owned();
    for (i, l) in LABELS.iter().enumerate() {
        text += &format!("\"{l}\" = \"{}\"\n", LABELS[(i + 1) % LABELS.len()]);
    }
    text
}

pub struct Options {
    pub token: Option<String>,
    pub keep_previous: bool,
    pub gate: Gate,
    pub hold: Option<Arc<Hold>>,
    /// Holds every admin operation once its candidate is loaded.
    pub deploy_hold: Option<Arc<Hold>>,
    /// The manifest SIGHUP and the watch reload.
    pub reload: Option<PathBuf>,
    pub sighup: bool,
    pub watch: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token: None,
            keep_previous: true,
            gate: Gate::default(),
            hold: None,
            deploy_hold: None,
            reload: None,
            sighup: false,
            watch: None,
        }
    }
}

pub struct Server {
    pub handle: Handle,
    pub http: String,
    pub grpc: String,
    pub admin_http: String,
    pub admin_grpc: String,
    pub token: Option<String>,
}

impl Server {
    /// The real server serving `manifest`, with its admin API on free loopback ports.
    pub async fn start(manifest: &Path, options: Options) -> Server {
        let pool = Arc::new(ComputePool::new(2).expect("a compute pool"));
        let ensemble = Arc::new(Ensemble::load(manifest, 2).expect("the live manifest loads"));
        let config = ServerConfig {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            hold: options.hold,
            admin: Some(AdminConfig {
                http_addr: "127.0.0.1:0".parse().unwrap(),
                grpc_addr: "127.0.0.1:0".parse().unwrap(),
                token: options.token.clone(),
                deploy: DeployConfig {
                    load_threads: 2,
                    gate: options.gate,
                    warmup_items: 4,
                    eval_batch: 16,
                    hold: options.deploy_hold,
                },
                keep_previous: options.keep_previous,
                manifest: options.reload,
                sighup: options.sighup,
                watch: options.watch,
            }),
            ..ServerConfig::default()
        };
        let handle = server::start(Arc::new(Registry::new(ensemble)), pool, config)
            .await
            .expect("the server starts");
        let admin = handle.admin.as_ref().expect("the admin API runs");
        Server {
            http: format!("http://{}", handle.http_addr),
            grpc: format!("http://{}", handle.grpc_addr),
            admin_http: format!("http://{}", admin.http_addr),
            admin_grpc: format!("http://{}", admin.grpc_addr),
            token: options.token,
            handle,
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.handle.state.registry
    }

    /// A call to the admin REST API with the server's token (if any): status and JSON answer.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        admin_call(&self.admin_http, self.token.as_deref(), method, path, body).await
    }

    pub async fn status(&self) -> pb::RegistryStatus {
        let (code, v) = self.admin("GET", "/admin/v1/status", None).await;
        assert_eq!(code, 200, "{v}");
        serde_json::from_value(v).expect("a status")
    }

    /// `POST /admin/v1/deploy`.
    pub async fn deploy(&self, body: Value) -> (u16, Value) {
        self.admin("POST", "/admin/v1/deploy", Some(body)).await
    }

    /// The admin gRPC client, sending the server's token (if any).
    pub async fn admin_client(&self) -> AdminClient {
        admin_client(&self.admin_grpc, self.token.as_deref()).await
    }

    pub async fn own_client(
        &self,
    ) -> pb::lastmile_client::LastmileClient<tonic::transport::Channel> {
        pb::lastmile_client::LastmileClient::connect(self.grpc.clone())
            .await
            .expect("the gRPC server accepts a connection")
    }

    /// `POST /v1/predict` with titles: the answering version and the answers.
    pub async fn predict_rest(
        &self,
        client: &reqwest::Client,
        titles: &[&str],
    ) -> Result<(String, Vec<Value>), String> {
        let items: Vec<Value> = titles.iter().map(|t| json!({"title": t})).collect();
        let response = client
            .post(format!("{}/v1/predict", self.http))
            .json(&json!({"items": items, "top_k": 3}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {body}"));
        }
        let version = body["ensemble"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok((
            version,
            body["items"].as_array().cloned().unwrap_or_default(),
        ))
    }

    /// The answers `ensemble` gives in-process to titles (top 3), as the transports carry them.
    pub async fn expected(&self, ensemble: &Arc<Ensemble>, titles: &[&str]) -> Vec<Ranked> {
        let items: Vec<ValidItem> = titles.iter().map(|t| item(ensemble, t)).collect();
        let answers = self
            .handle
            .state
            .pool
            .predict(ensemble, items)
            .await
            .expect("the ensemble predicts");
        answers.iter().map(Ranked::from_lib).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

pub fn item(e: &Ensemble, title: &str) -> ValidItem {
    let o = json!({ "title": title });
    e.item_from_json(
        o.as_object().unwrap(),
        ItemOptions {
            top_k: 3,
            ..ItemOptions::default()
        },
    )
    .unwrap()
}

pub type AdminClient = pb::admin_client::AdminClient<
    tonic::service::interceptor::InterceptedService<Channel, BearerToken>,
>;

/// Adds `authorization: Bearer <token>` to every call (when there is a token).
#[derive(Clone)]
pub struct BearerToken(pub Option<String>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        Ok(req)
    }
}

pub async fn admin_client(url: &str, token: Option<&str>) -> AdminClient {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .expect("the admin gRPC server accepts a connection");
    pb::admin_client::AdminClient::with_interceptor(channel, BearerToken(token.map(str::to_owned)))
}

/// An answer's ranked labels and scores, whatever carried it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked(pub Vec<(String, f32)>);

impl Ranked {
    pub fn from_lib(a: &ItemAnswer) -> Ranked {
        Ranked(
            a.predictions
                .iter()
                .map(|p| (p.label.clone(), p.score))
                .collect(),
        )
    }

    pub fn from_json(v: &Value) -> Ranked {
        Ranked(
            v["predictions"]
                .as_array()
                .expect("predictions")
                .iter()
                .map(|p| {
                    (
                        p["label"].as_str().unwrap().to_owned(),
                        p["score"].as_f64().unwrap() as f32,
                    )
                })
                .collect(),
        )
    }

    pub fn from_proto(a: &pb::ItemAnswer) -> Ranked {
        Ranked(
            a.predictions
                .iter()
                .map(|p| (p.label.clone(), p.score))
                .collect(),
        )
    }

    /// Same labels in the same order, scores within `tol` (batching may change the last bits).
    pub fn matches(&self, other: &Ranked, tol: f32) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() <= tol)
    }
}

/// Waits (polling) until `check` holds; panics after a generous bound so a bug cannot hang CI.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..6000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting for: {what}");
}
