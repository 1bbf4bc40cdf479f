//! `lastmile serve`: load the ensemble, serve it over HTTP and gRPC until SIGTERM or SIGINT, drain,
//! exit 0. Prints where it listens (the bound ports, so `--http-addr 127.0.0.1:0` works) and how
//! to call it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use lastmile::registry::Registry;
use lastmile::server::{self, Drained, Limits, ServerConfig};

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
}

pub fn run(args: ServeArgs) -> Result<(), Failure> {
    if !(args.drain_timeout.is_finite() && args.drain_timeout >= 0.0) {
        return Err(Failure {
            message: "--drain-timeout must be a number of seconds >= 0".into(),
            code: 2,
        });
    }
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
