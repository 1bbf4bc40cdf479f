//! `lastmile serve`: load the ensemble, serve it over HTTP and gRPC until SIGTERM or SIGINT, drain,
//! exit 0. Prints where it listens (the bound ports, so `--http-addr 127.0.0.1:0` works) and how
//! to call it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use lastmile::registry::Registry;
use lastmile::server::{self, Drained, Limits, ServerConfig};
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
    #[command(flatten)]
    shadow: ShadowArgs,
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

pub fn run(args: ServeArgs) -> Result<(), Failure> {
    if !(args.drain_timeout.is_finite() && args.drain_timeout >= 0.0) {
        return Err(Failure {
            message: "--drain-timeout must be a number of seconds >= 0".into(),
            code: 2,
        });
    }
    let shadow = args.shadow.settings()?;
    let (ensemble, pool) = load(&args.ensemble)?;
    let summary = format!(
        "ensemble {:?} version {} ({} models, {} labels, {} compute threads)",
        ensemble.name,
        ensemble.version,
        ensemble.models.len(),
        ensemble.labels.len(),
        pool.threads()
    );
    let first_field = ensemble.fields.first().cloned().unwrap_or_default();
    let name = ensemble.name.clone();
    let registry = Arc::new(Registry::new(ensemble));
    let config = ServerConfig {
        http_addr: args.http_addr,
        grpc_addr: args.grpc_addr,
        limits: Limits {
            max_items_in_flight: args.max_items_in_flight,
            max_items_per_request: args.max_items_per_request,
            max_field_bytes: args.max_field_bytes,
            max_body_bytes: args.max_body_bytes,
        },
        drain_timeout: Duration::from_secs_f64(args.drain_timeout),
        handle_signals: true,
        shadow,
        hold: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lastmile-io")
        .build()?;
    runtime.block_on(async move {
        let handle = server::start(registry, Arc::new(pool), config)
            .await
            .map_err(|e| Failure {
                message: format!(
                    "cannot listen on {} (HTTP) and {} (gRPC): {e}",
                    args.http_addr, args.grpc_addr
                ),
                code: 1,
            })?;
        let (http, grpc) = (handle.http_addr, handle.grpc_addr);
        println!("lastmile: serving {summary}");
        println!("  REST  http://{http}  (POST /v1/predict, GET /v1/ensemble, /v2/models/{name}/infer, /metrics, /openapi.json)");
        println!("  gRPC  {grpc}  (lastmile.v1.Lastmile, inference.GRPCInferenceService, grpc.health.v1, reflection)");
        println!(
            "  try:  curl -s http://{http}/v1/predict -H 'content-type: application/json' \
             -d '{{\"item\": {{\"{first_field}\": \"steel chef knife\"}}}}'"
        );
        tracing::info!(%http, %grpc, "serving");
        match handle.wait().await? {
            Drained::Clean => eprintln!("lastmile: stopped (every in-flight request finished)"),
            Drained::TimedOut => eprintln!(
                "lastmile: stopped after the drain timeout ({}s) with requests still in flight",
                args.drain_timeout
            ),
        }
        Ok(())
    })
}
