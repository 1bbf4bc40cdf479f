//! The one test server: the real server (`lastmile::app::start`) in this process on free ports
//! for every listener, admin included, built with [`TestServer::builder`]: the manifest (the
//! starter by default), limits, the admin API, shadow settings, holds at hook points.
//!
//! The process has one metrics recorder, so a test that reads `/metrics` asks for the server
//! [`exclusive`](Builder::exclusive)ly: it then runs while no other test's server does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lastmile::app::{self, AdminConfig, App, AppConfig, Drained};
use lastmile::deploy::{DeployConfig, Deployer, Gate};
use lastmile::ensemble::{Ensemble, ItemAnswer, ItemOptions, Loader, Sources, ValidItem};
use lastmile::monitor::live::{Monitor, MonitorSettings};
use lastmile::proto::lastmile::v1 as pb;
use lastmile::registry::{Held, Registry, Trigger};
use lastmile::runtime::Runtime;
use lastmile::scheduler::ComputePool;
use lastmile::service::{Limits, Service};
use lastmile::shadow::{Shadow, ShadowSettings, ShadowSlot, StageOptions};
use serde_json::{json, Value};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::client::{self, AdminClient, Answer, Reply, Transport};
use super::hooks::{Hold, TestHooks};
use super::{starter, title_item, title_items};

/// Servers hold it shared; a test reading process-wide metrics holds it alone.
static SERVERS: RwLock<()> = RwLock::const_new(());

/// Held by a test that runs the request path in process without a [`TestServer`] (the fuzz
/// targets): shared like a server's, so that an exclusive test's metrics stay its own.
pub fn in_process() -> RwLockReadGuard<'static, ()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let wait = std::time::Duration::from_secs(600);
    runtime
        .block_on(async { tokio::time::timeout(wait, SERVERS.read()).await })
        .expect("an exclusive test's server never stopped")
}

enum Guard {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

/// The admin API a test server runs, on free loopback ports.
#[derive(Clone)]
pub struct AdminOptions {
    pub token: Option<String>,
    pub keep_previous: bool,
    pub gate: Gate,
    /// The manifest SIGHUP and the watch reload.
    pub reload: Option<PathBuf>,
    pub sighup: bool,
    pub watch: Option<Duration>,
}

impl Default for AdminOptions {
    fn default() -> Self {
        AdminOptions {
            token: None,
            keep_previous: true,
            gate: Gate::default(),
            reload: None,
            sighup: false,
            watch: None,
        }
    }
}

/// Wraps a live model's runtime (by model name) before the server starts.
type Wrap = Box<dyn Fn(&str, Arc<dyn Runtime>) -> Arc<dyn Runtime>>;

pub struct Builder {
    manifest: PathBuf,
    sources: Sources,
    mlflow_experiment: Option<String>,
    config: AppConfig,
    admin: Option<AdminOptions>,
    hooks: TestHooks,
    exclusive: bool,
    wrap: Option<Wrap>,
    threads: usize,
}

impl Builder {
    pub fn manifest(mut self, manifest: &Path) -> Self {
        self.manifest = manifest.to_owned();
        self
    }

    /// Where model files named by registry URIs come from (the startup manifest and every
    /// candidate).
    pub fn sources(mut self, sources: Sources) -> Self {
        self.sources = sources;
        self
    }

    /// The server logs every validation to this MLflow experiment.
    pub fn mlflow_experiment(mut self, experiment: &str) -> Self {
        self.mlflow_experiment = Some(experiment.to_owned());
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    pub fn admin(mut self, admin: AdminOptions) -> Self {
        self.admin = Some(admin);
        self
    }

    pub fn shadow(mut self, settings: ShadowSettings) -> Self {
        self.config.shadow = settings;
        self
    }

    /// How the live monitor runs (the default samples 1 % of items).
    pub fn monitor(mut self, settings: MonitorSettings) -> Self {
        self.config.monitor = settings;
        self
    }

    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    /// SageMaker's container contract on the HTTP listener too.
    pub fn sagemaker(mut self) -> Self {
        self.config.sagemaker = true;
        self
    }

    /// SIGTERM and SIGINT (to this test process) begin the drain.
    pub fn handle_signals(mut self) -> Self {
        self.config.handle_signals = true;
        self
    }

    /// Admitted requests wait at `hold` before they are scored.
    pub fn hold_requests(mut self, hold: &Arc<Hold>) -> Self {
        self.hooks.admitted = Some(Arc::clone(hold));
        self
    }

    /// Every deploy operation waits at `hold` once its candidate is loaded.
    pub fn hold_deploys(mut self, hold: &Arc<Hold>) -> Self {
        self.hooks.candidate_loaded = Some(Arc::clone(hold));
        self
    }

    /// The shadow worker waits at `hold` before each batch.
    pub fn hold_shadow(mut self, hold: &Arc<Hold>) -> Self {
        self.hooks.shadow_batch = Some(Arc::clone(hold));
        self
    }

    /// Wraps each live model's runtime (given its name) to make it fail, hang, count...
    pub fn wrap_models(
        mut self,
        wrap: impl Fn(&str, Arc<dyn Runtime>) -> Arc<dyn Runtime> + 'static,
    ) -> Self {
        self.wrap = Some(Box::new(wrap));
        self
    }

    /// Compute threads (default 2).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// No other test's server runs while this one does (for tests reading `/metrics`).
    pub fn exclusive(mut self) -> Self {
        self.exclusive = true;
        self
    }

    pub async fn start(self) -> TestServer {
        // Bounded: a test hung holding a server fails this one instead of hanging the run.
        let wait = std::time::Duration::from_secs(600);
        let guard = if self.exclusive {
            let g = tokio::time::timeout(wait, SERVERS.write()).await;
            Guard::Alone(g.expect("other tests' servers never stopped"))
        } else {
            let g = tokio::time::timeout(wait, SERVERS.read()).await;
            Guard::Shared(g.expect("an exclusive test's server never stopped"))
        };
        let pool = Arc::new(ComputePool::new(self.threads).expect("a compute pool"));
        let (manifest, sources) = (self.manifest.clone(), self.sources.clone());
        // Off the async threads: a registry source is fetched with a blocking client.
        let ensemble = tokio::task::spawn_blocking(move || {
            let loader = Loader {
                threads: 2,
                sources,
            };
            Ensemble::load_with(&manifest, &loader, &[]).expect("the manifest loads")
        })
        .await
        .expect("the loader thread");
        let mut ensemble = ensemble;
        if let Some(wrap) = &self.wrap {
            for m in &mut ensemble.models {
                m.runtime = wrap(&m.spec.name, Arc::clone(&m.runtime));
            }
        }
        let ensemble = Arc::new(ensemble);
        let token = self.admin.as_ref().and_then(|a| a.token.clone());
        let local = || "127.0.0.1:0".parse().unwrap();
        let config = AppConfig {
            http_addr: local(),
            grpc_addr: local(),
            admin: self.admin.map(|a| AdminConfig {
                http_addr: local(),
                grpc_addr: local(),
                token: a.token,
                deploy: DeployConfig {
                    load_threads: 2,
                    gate: a.gate,
                    warmup_items: 4,
                    eval_batch: 16,
                    sources: self.sources,
                    mlflow_experiment: self.mlflow_experiment,
                },
                keep_previous: a.keep_previous,
                manifest: a.reload,
                sighup: a.sighup,
                watch: a.watch,
            }),
            hooks: Arc::new(self.hooks),
            ..self.config
        };
        let app = app::start(Arc::new(Registry::new(ensemble)), pool, config)
            .await
            .expect("the server starts");
        let admin = app.admin;
        TestServer {
            http: format!("http://{}", app.http_addr),
            grpc: format!("http://{}", app.grpc_addr),
            admin_http: admin.map_or(String::new(), |a| format!("http://{}", a.http_addr)),
            admin_grpc: admin.map_or(String::new(), |a| format!("http://{}", a.grpc_addr)),
            token,
            app,
            _guard: guard,
        }
    }
}

/// A running test server; dropping it stops any shadow and begins the drain.
pub struct TestServer {
    pub app: App,
    /// `http://127.0.0.1:PORT` of the serving HTTP listener.
    pub http: String,
    /// `http://127.0.0.1:PORT` of the serving gRPC listener, for tonic clients.
    pub grpc: String,
    /// The admin listeners' URLs (empty without the admin API).
    pub admin_http: String,
    pub admin_grpc: String,
    /// The admin token, if the admin API has one.
    pub token: Option<String>,
    _guard: Guard,
}

impl TestServer {
    pub fn builder() -> Builder {
        Builder {
            manifest: starter(),
            sources: Sources::default(),
            mlflow_experiment: None,
            config: AppConfig::default(),
            admin: None,
            hooks: TestHooks::default(),
            exclusive: false,
            wrap: None,
            threads: 2,
        }
    }

    /// The starter ensemble with `limits`.
    pub async fn start(limits: Limits) -> TestServer {
        Self::builder().limits(limits).start().await
    }

    pub fn service(&self) -> &Arc<Service> {
        &self.app.service
    }

    pub fn registry(&self) -> &Arc<Registry> {
        self.app.registry()
    }

    pub fn pool(&self) -> &Arc<ComputePool> {
        self.service().pool()
    }

    pub fn shadow_slot(&self) -> &Arc<ShadowSlot> {
        self.service().shadow()
    }

    pub fn monitor(&self) -> &Arc<Monitor> {
        self.service().monitor()
    }

    pub fn deployer(&self) -> &Arc<Deployer> {
        self.app.deployer.as_ref().expect("the admin side runs")
    }

    /// The live ensemble.
    pub fn live(&self) -> Arc<Ensemble> {
        self.registry().snapshot()
    }

    pub fn shutdown(&self) {
        self.app.shutdown();
    }

    pub async fn draining(&self) {
        self.app.draining().await;
    }

    pub async fn wait(&mut self) -> Drained {
        self.app.wait().await.expect("the server stops")
    }

    /// The live ensemble's answers in-process, straight from the compute pool.
    pub async fn expected(&self, items: Vec<ValidItem>) -> Vec<ItemAnswer> {
        self.pool()
            .predict(&self.live(), items)
            .await
            .expect("the ensemble predicts")
    }

    /// `ensemble`'s answers to `items`, straight from the compute pool.
    pub async fn answers_of(
        &self,
        ensemble: &Arc<Ensemble>,
        items: Vec<ValidItem>,
    ) -> Vec<ItemAnswer> {
        self.pool()
            .predict(ensemble, items)
            .await
            .expect("the ensemble predicts")
    }

    /// JSON objects as the live ensemble reads them (`Ensemble::item_from_json`).
    pub fn items(&self, objects: &[Value], options: ItemOptions) -> Vec<ValidItem> {
        let e = self.live();
        objects
            .iter()
            .map(|o| {
                e.item_from_json(o.as_object().expect("an object"), options.clone())
                    .expect("a valid item")
            })
            .collect()
    }

    /// Stages `shadow` in-process, mirroring `fraction` of items (sampling seed 0).
    pub fn stage(&self, shadow: Arc<Ensemble>, fraction: f64) -> Arc<Shadow> {
        let held = Held::new(shadow, String::new(), Trigger::Admin, None);
        self.shadow_slot().stage(
            held,
            StageOptions { fraction, seed: 0 },
            Arc::clone(self.pool()),
        )
    }

    /// Loads a manifest beside the live ensemble (sharing unchanged models).
    pub fn load(&self, manifest: &Path) -> Ensemble {
        let live = self.live();
        Ensemble::load_reusing(manifest, 2, &[&live]).expect("the manifest loads")
    }

    /// `POST /v1/predict` with titles (top 3): the answering version and the answers.
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

    /// The answers `ensemble` gives in-process to titles (top 3).
    pub async fn expected_for(&self, ensemble: &Arc<Ensemble>, titles: &[&str]) -> Vec<Answer> {
        let items = titles.iter().map(|t| title_item(ensemble, t, 3)).collect();
        let answers = self.answers_of(ensemble, items).await;
        answers.iter().map(Answer::from_lib).collect()
    }

    /// Sends items with only a title in one request over `transport` (V2: to the live
    /// ensemble's name), asking for `top_k` labels.
    pub async fn send(
        &self,
        transport: Transport,
        titles: &[impl AsRef<str>],
        top_k: usize,
    ) -> Result<Reply, String> {
        let name = self.live().name.clone();
        client::send(
            transport,
            &self.http,
            &self.grpc,
            &name,
            &title_items(titles),
            top_k,
        )
        .await
    }

    pub async fn own_client(
        &self,
    ) -> pb::lastmile_client::LastmileClient<tonic::transport::Channel> {
        pb::lastmile_client::LastmileClient::new(self.channel().await)
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        client::channel(&self.grpc).await
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        client::get(&format!("{}{path}", self.http)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, serde_json::to_vec(body).unwrap()).await
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        client::post_raw(&format!("{}{path}", self.http), body).await
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.1
    }

    fn admin_url(&self) -> &str {
        assert!(!self.admin_http.is_empty(), "the admin API runs");
        &self.admin_http
    }

    /// A call to the admin REST API with the server's token (if any): status and JSON answer.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.admin_as(self.token.as_deref(), method, path, body)
            .await
    }

    /// A call to the admin REST API with `token`.
    pub async fn admin_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        client::admin_call(self.admin_url(), token, method, path, body).await
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
        assert!(!self.admin_grpc.is_empty(), "the admin API runs");
        client::admin_client(&self.admin_grpc, self.token.as_deref()).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shadow_slot().stop();
        self.app.shutdown();
    }
}
