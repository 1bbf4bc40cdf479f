//! `lastmile serve`: load the ensemble, serve it over HTTP and gRPC until SIGTERM or SIGINT, drain,
//! exit 0. The admin API (hot swap, see `lastmile::deploy`) listens on its own addresses; SIGHUP
//! reloads the manifest through the same gate. Prints where it listens (the bound ports, so
//! `--http-addr 127.0.0.1:0` works) and how to call it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use lastmile::app::{self, AdminConfig, App, AppConfig, Drained};
use lastmile::deploy::{DeployConfig, Gate};
use lastmile::ensemble::{Ensemble, LockMode};
use lastmile::monitor::live::MonitorSettings;
use lastmile::registry::Registry;
use lastmile::service::Limits;
use lastmile::shadow::{LogConfig, ShadowSettings};

use super::{load, EnsembleArgs, Failure};

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    ensemble: EnsembleArgs,
    /// Address of the HTTP server (REST JSON, Open Inference Protocol, /metrics). Port 0 picks a
    /// free port.
    #[arg(long, env = "LASTMILE_HTTP_ADDR", default_value = "127.0.0.1:8000")]
    http_addr: SocketAddr,
    /// Address of the gRPC server (own API, inference.GRPCInferenceService, health, reflection).
    #[arg(long, env = "LASTMILE_GRPC_ADDR", default_value = "127.0.0.1:8001")]
    grpc_addr: SocketAddr,
    /// Items being scored at once over all requests; a request that would exceed it is refused at
    /// once (HTTP 429, gRPC RESOURCE_EXHAUSTED).
    #[arg(long, env = "LASTMILE_MAX_ITEMS_IN_FLIGHT", default_value_t = Limits::default().max_items_in_flight)]
    max_items_in_flight: usize,
    /// Items in one request (HTTP 413, gRPC INVALID_ARGUMENT beyond it). Also the V2 model's
    /// max_batch_size.
    #[arg(long, env = "LASTMILE_MAX_ITEMS_PER_REQUEST", default_value_t = Limits::default().max_items_per_request)]
    max_items_per_request: usize,
    /// Bytes of one text field of one item (HTTP 422, gRPC INVALID_ARGUMENT beyond it).
    #[arg(long, env = "LASTMILE_MAX_FIELD_BYTES", default_value_t = Limits::default().max_field_bytes)]
    max_field_bytes: usize,
    /// Bytes of one HTTP request body or gRPC message (HTTP 413, gRPC INVALID_ARGUMENT beyond it).
    #[arg(long, env = "LASTMILE_MAX_BODY_BYTES", default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT before exiting anyway.
    #[arg(long, env = "LASTMILE_DRAIN_TIMEOUT", default_value_t = 30.0)]
    drain_timeout: f64,
    /// Seconds any request is waited for at most (a caller may ask for less with gRPC's deadline,
    /// the `lastmile-timeout-ms` header or `timeout_ms`); past it: HTTP 504 / DEADLINE_EXCEEDED,
    /// and what it still had queued is never computed. 0: no limit.
    #[arg(long, env = "LASTMILE_REQUEST_TIMEOUT", default_value_t = 30.0)]
    request_timeout: f64,
    /// Milliseconds a request may wait for its turn on the compute threads, as estimated from the
    /// work queued ahead of it; one that would wait longer is refused at once (HTTP 429 with
    /// Retry-After, gRPC RESOURCE_EXHAUSTED), so that served requests keep a bounded latency
    /// under overload. 0: never refuse for the wait.
    #[arg(long, env = "LASTMILE_MAX_QUEUE_WAIT", default_value_t = 500.0)]
    max_queue_wait: f64,
    /// Serve SageMaker's container contract (`GET /ping`, `POST /invocations`, `GET
    /// /execution-parameters`) on 0.0.0.0 at --sagemaker-port instead of --http-addr. Implied
    /// when no manifest is given: `serve` alone is how SageMaker starts a container, and reads
    /// /opt/ml/model/manifest.toml.
    #[arg(long, env = "LASTMILE_SAGEMAKER")]
    sagemaker: bool,
    /// The port of the SageMaker contract (SageMaker sets SAGEMAKER_BIND_TO_PORT when the image
    /// says it may; 8080 otherwise). Port 0 picks a free port.
    #[arg(long, env = "SAGEMAKER_BIND_TO_PORT", default_value_t = lastmile::edge::sagemaker::DEFAULT_PORT)]
    sagemaker_port: u16,
    #[command(flatten)]
    shadow: ShadowArgs,
    #[command(flatten)]
    monitor: MonitorArgs,
    #[command(flatten)]
    admin: Box<AdminArgs>,
}

/// The live monitor: members' influence and prediction drift on a sampled share of live items
/// (`GET /admin/v1/monitor/report[.html]`, `lastmile_monitor_*` metrics).
#[derive(Args)]
struct MonitorArgs {
    /// Share of live items the monitor analyses (scored again at low priority); 0 turns it off.
    #[arg(long, env = "LASTMILE_MONITOR_FRACTION", default_value_t = MonitorSettings::default().fraction)]
    monitor_fraction: f64,
    /// Seed of the monitor's sampling.
    #[arg(long, env = "LASTMILE_MONITOR_SEED", default_value_t = 0)]
    monitor_seed: u64,
    /// Sampled items waiting for the monitor, at most; beyond, they are dropped and counted.
    #[arg(long, env = "LASTMILE_MONITOR_QUEUE_ITEMS", default_value_t = MonitorSettings::default().queue_items)]
    monitor_queue_items: usize,
    /// The monitor's rolling window: the last N analysed items...
    #[arg(long, env = "LASTMILE_MONITOR_WINDOW_ITEMS", default_value_t = MonitorSettings::default().window_items)]
    monitor_window_items: usize,
    /// ...none older than this many seconds.
    #[arg(long, env = "LASTMILE_MONITOR_WINDOW_SECONDS", default_value_t = MonitorSettings::default().window.as_secs_f64())]
    monitor_window_seconds: f64,
    /// Items of the manifest's validation set scored for a drift reference when neither the
    /// deploy gate nor `[monitor] reference` gave one.
    #[arg(long, env = "LASTMILE_MONITOR_REFERENCE_ITEMS", default_value_t = MonitorSettings::default().reference_items)]
    monitor_reference_items: usize,
}

impl MonitorArgs {
    fn settings(self) -> Result<MonitorSettings, Failure> {
        let usage = |message: &str| Failure {
            message: message.to_owned(),
            code: 2,
        };
        if !(self.monitor_fraction.is_finite() && (0.0..=1.0).contains(&self.monitor_fraction)) {
            return Err(usage("--monitor-fraction must be between 0 and 1"));
        }
        if !(self.monitor_window_seconds.is_finite() && self.monitor_window_seconds > 0.0) {
            return Err(usage(
                "--monitor-window-seconds must be a number of seconds > 0",
            ));
        }
        Ok(MonitorSettings {
            fraction: self.monitor_fraction,
            seed: self.monitor_seed,
            queue_items: self.monitor_queue_items,
            window_items: self.monitor_window_items.max(1),
            window: Duration::from_secs_f64(self.monitor_window_seconds),
            reference_items: self.monitor_reference_items,
            ..MonitorSettings::default()
        })
    }
}

/// The admin API (hot swap: load, validate, promote, rollback) and what reloads the manifest.
#[derive(Args)]
struct AdminArgs {
    /// Address of the admin REST API (/admin/v1/...). Keep it on loopback, or set --admin-token.
    #[arg(long, env = "LASTMILE_ADMIN_ADDR", default_value = "127.0.0.1:8002")]
    admin_addr: SocketAddr,
    /// Address of the admin gRPC API (lastmile.v1.Admin).
    #[arg(
        long,
        env = "LASTMILE_ADMIN_GRPC_ADDR",
        default_value = "127.0.0.1:8003"
    )]
    admin_grpc_addr: SocketAddr,
    /// Bearer token every admin call must carry (`authorization: Bearer <token>`). Required when
    /// an admin address is not loopback.
    #[arg(long, env = "LASTMILE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Do not keep the replaced ensemble for rollback: free it as soon as its last request ends.
    #[arg(long, env = "LASTMILE_NO_KEEP_PREVIOUS")]
    no_keep_previous: bool,
    /// Promotion gate: a candidate's top-1 accuracy on the validation set must reach this (0-1).
    #[arg(long, env = "LASTMILE_MIN_ACCURACY", default_value_t = 0.0)]
    min_accuracy: f64,
    /// Promotion gate: how far below the live ensemble's top-1 a candidate's may fall (0-1; 0: at
    /// least as good as live).
    #[arg(long, env = "LASTMILE_MAX_DROP", default_value_t = 0.0)]
    max_drop: f64,
    /// Poll the manifest every this many seconds and deploy it when its content changes (0: off).
    /// SIGHUP always reloads it.
    #[arg(long, env = "LASTMILE_WATCH_MANIFEST", default_value_t = 0.0)]
    watch_manifest: f64,
    /// Items run through a candidate before it may be promoted.
    #[arg(long, env = "LASTMILE_WARMUP_ITEMS", default_value_t = DeployConfig::default().warmup_items)]
    warmup_items: usize,
    /// Log every validation of a candidate as a run of this MLflow experiment (the candidate's
    /// evaluation, as `lastmile eval --mlflow-experiment` logs it, and the gate's decision); a
    /// deploy request may name another.
    #[arg(long, env = "LASTMILE_MLFLOW_EXPERIMENT")]
    mlflow_experiment: Option<String>,
}

impl AdminArgs {
    fn config(self, ensemble: &EnsembleArgs) -> Result<AdminConfig, Failure> {
        let usage = |message: String| Failure { message, code: 2 };
        let gate = Gate::default()
            .with(Some(self.min_accuracy), Some(self.max_drop))
            .map_err(|m| usage(format!("--{}", m.replacen('_', "-", 1))))?;
        if !(self.watch_manifest.is_finite() && self.watch_manifest >= 0.0) {
            return Err(usage(
                "--watch-manifest must be a number of seconds >= 0".into(),
            ));
        }
        let config = AdminConfig {
            http_addr: self.admin_addr,
            grpc_addr: self.admin_grpc_addr,
            token: self.admin_token,
            deploy: DeployConfig {
                load_threads: ensemble.threads,
                gate,
                warmup_items: self.warmup_items,
                sources: ensemble.sources.sources(LockMode::Obey),
                mlflow_experiment: self.mlflow_experiment,
                ..DeployConfig::default()
            },
            keep_previous: !self.no_keep_previous,
            manifest: Some(ensemble.manifest.clone()),
            sighup: true,
            watch: (self.watch_manifest > 0.0)
                .then(|| Duration::from_secs_f64(self.watch_manifest)),
        };
        config.check().map_err(usage)?;
        Ok(config)
    }
}

/// How a shadow ensemble runs once one is staged (`lastmile deploy --shadow`).
#[derive(Args)]
struct ShadowArgs {
    /// Mirrored items waiting for the shadow, at most; when the queue is full, mirroring is
    /// skipped (and counted) rather than slowing live traffic.
    #[arg(long, env = "LASTMILE_SHADOW_QUEUE_ITEMS", default_value_t = ShadowSettings::default().queue_items)]
    shadow_queue_items: usize,
    /// Depth of the top-k comparison between live and shadow answers.
    #[arg(long, env = "LASTMILE_SHADOW_COMPARE_K", default_value_t = ShadowSettings::default().compare_k)]
    shadow_compare_k: usize,
    /// The report's rolling window: the last N mirrored items...
    #[arg(long, env = "LASTMILE_SHADOW_WINDOW_ITEMS", default_value_t = ShadowSettings::default().window_items)]
    shadow_window_items: usize,
    /// ...none older than this many seconds.
    #[arg(long, env = "LASTMILE_SHADOW_WINDOW_SECONDS", default_value_t = ShadowSettings::default().window.as_secs_f64())]
    shadow_window_seconds: f64,
    /// Write items on which the shadow's winner differs from live's (input fields, both answers)
    /// as JSON Lines to this file, rotated by size. Off when not given.
    #[arg(long, env = "LASTMILE_SHADOW_LOG")]
    shadow_log: Option<PathBuf>,
    /// Largest size of one disagreement log file before it is rotated (FILE.1, FILE.2, ...).
    #[arg(long, env = "LASTMILE_SHADOW_LOG_MAX_BYTES", default_value_t = LogConfig::new("").max_bytes)]
    shadow_log_max_bytes: u64,
    /// Disagreement log files kept, the one being written included.
    #[arg(long, env = "LASTMILE_SHADOW_LOG_FILES", default_value_t = LogConfig::new("").files)]
    shadow_log_files: usize,
}

impl ShadowArgs {
    fn settings(self) -> Result<ShadowSettings, Failure> {
        if !(self.shadow_window_seconds.is_finite() && self.shadow_window_seconds >= 0.0) {
            return Err(Failure {
                message: "--shadow-window-seconds must be a number of seconds >= 0".into(),
                code: 2,
            });
        }
        Ok(ShadowSettings {
            queue_items: self.shadow_queue_items,
            compare_k: self.shadow_compare_k,
            window_items: self.shadow_window_items,
            window: Duration::from_secs_f64(self.shadow_window_seconds),
            log: self.shadow_log.map(|path| LogConfig {
                path,
                max_bytes: self.shadow_log_max_bytes,
                files: self.shadow_log_files,
            }),
            ..ShadowSettings::default()
        })
    }
}

impl ServeArgs {
    /// `serve` with no manifest: SageMaker's way of starting the container (its manifest, in
    /// /opt/ml/model, is the default then).
    pub fn started_by_sagemaker(&mut self) {
        self.sagemaker = true;
    }
}

pub fn run(args: ServeArgs) -> Result<(), Failure> {
    let drain_timeout = args.drain_timeout;
    let ensemble_args = args.ensemble.clone();
    let sagemaker = args.sagemaker;
    // Flags are checked before anything is loaded.
    let config = args.config()?;
    let (ensemble, pool) = load(&ensemble_args)?;
    let banner = Banner::of(&ensemble, pool.threads(), ensemble_args.manifest, sagemaker);
    let registry = Arc::new(Registry::new(ensemble));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lastmile-io")
        .build()?;
    let served = runtime.block_on(async move {
        let mut app = app::start(registry, Arc::new(pool), config)
            .await
            .map_err(|e| Failure {
                message: e.to_string(),
                code: 1,
            })?;
        banner.print(&app);
        match app.wait().await? {
            Drained::Clean => eprintln!("lastmile: stopped (every in-flight request finished)"),
            Drained::TimedOut => eprintln!(
                "lastmile: stopped after the drain timeout ({drain_timeout}s) with requests \
                 still in flight"
            ),
        }
        Ok(())
    });
    // Work nobody waits for any more (a candidate still loading when shutdown began) must not
    // hold the exit: the drain above is the promise.
    runtime.shutdown_background();
    served
}

impl ServeArgs {
    /// The server's configuration, or which flag is wrong (exit 2).
    fn config(self) -> Result<AppConfig, Failure> {
        let seconds = |v: f64, flag: &str| {
            if v.is_finite() && v >= 0.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(Failure {
                    message: format!("--{flag} must be a number of seconds >= 0"),
                    code: 2,
                })
            }
        };
        let drain_timeout = seconds(self.drain_timeout, "drain-timeout")?;
        let request_timeout = seconds(self.request_timeout, "request-timeout")?;
        if !(self.max_queue_wait.is_finite() && self.max_queue_wait >= 0.0) {
            return Err(Failure {
                message: "--max-queue-wait must be a number of milliseconds >= 0".into(),
                code: 2,
            });
        }
        let max_queue_wait = Duration::from_secs_f64(self.max_queue_wait / 1000.0);
        let http_addr = if self.sagemaker {
            SocketAddr::from(([0, 0, 0, 0], self.sagemaker_port))
        } else {
            self.http_addr
        };
        Ok(AppConfig {
            http_addr,
            sagemaker: self.sagemaker,
            grpc_addr: self.grpc_addr,
            limits: Limits {
                max_items_in_flight: self.max_items_in_flight,
                max_items_per_request: self.max_items_per_request,
                max_field_bytes: self.max_field_bytes,
                max_body_bytes: self.max_body_bytes,
                request_timeout: (!request_timeout.is_zero()).then_some(request_timeout),
                max_queue_wait: (!max_queue_wait.is_zero()).then_some(max_queue_wait),
            },
            drain_timeout,
            handle_signals: true,
            shadow: self.shadow.settings()?,
            monitor: self.monitor.settings()?,
            admin: Some(self.admin.config(&self.ensemble)?),
            ..AppConfig::default()
        })
    }
}

/// What `serve` prints once it listens: what is served, where, and how to call it.
struct Banner {
    summary: String,
    sagemaker: bool,
    name: String,
    first_field: String,
    manifest: PathBuf,
}

impl Banner {
    fn of(ensemble: &Ensemble, threads: usize, manifest: PathBuf, sagemaker: bool) -> Banner {
        Banner {
            sagemaker,
            summary: format!(
                "ensemble {:?} version {} ({} models, {} labels, {threads} compute threads), digest {}",
                ensemble.name,
                ensemble.version,
                ensemble.models.len(),
                ensemble.labels.len(),
                ensemble.digest,
            ),
            name: ensemble.name.clone(),
            first_field: ensemble.fields.first().cloned().unwrap_or_default(),
            manifest,
        }
    }

    fn print(&self, app: &App) {
        let (http, grpc) = (app.http_addr, app.grpc_addr);
        let Banner {
            summary,
            sagemaker: _,
            name,
            first_field,
            manifest,
        } = self;
        println!("lastmile: serving {summary}");
        if self.sagemaker {
            println!("  SageMaker http://{http}  (GET /ping, POST /invocations, GET /execution-parameters)");
        }
        println!("  REST  http://{http}  (POST /v1/predict, GET /v1/ensemble, /v2/models/{name}/infer, /metrics, /openapi.json)");
        println!("  gRPC  {grpc}  (lastmile.v1.Lastmile, inference.GRPCInferenceService, grpc.health.v1, reflection)");
        println!(
            "  try:  curl -s http://{http}/v1/predict -H 'content-type: application/json' \
             -d '{{\"item\": {{\"{first_field}\": \"steel chef knife\"}}}}'"
        );
        if let Some(admin) = &app.admin {
            println!(
                "  admin http://{}  (GET /admin/v1/status, POST /admin/v1/deploy, /load, /validate, \
                 /promote, /rollback, /release), gRPC {} (lastmile.v1.Admin); SIGHUP reloads {}",
                admin.http_addr,
                admin.grpc_addr,
                manifest.display()
            );
            println!(
                "  monitor http://{}/admin/v1/monitor/report.html  (members' influence and drift on sampled traffic)",
                admin.http_addr
            );
        }
        tracing::info!(%http, %grpc, "serving");
    }
}
