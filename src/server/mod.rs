//! `lastmile serve`: an HTTP server (own REST API, Open Inference Protocol REST, metrics, OpenAPI)
//! and a gRPC server (own API, `inference.GRPCInferenceService`, health, reflection) over one live
//! ensemble, with admission control and graceful shutdown. [`start`] binds both (port 0 works: the
//! [`Handle`] says which ports were bound) and returns at once; [`Handle::wait`] returns once both
//! servers, and the admin servers if any, have drained after a shutdown (SIGTERM/SIGINT, or
//! [`Handle::shutdown`]).

pub mod admission;
mod describe;
pub mod error;
mod grpc;
mod http;
pub(crate) mod metered;
mod openapi;
mod state;
mod v2;
mod v2_grpc;
mod v2_http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

pub use admission::{Hold, Limits};
pub use error::{ApiError, ErrorKind};
pub(crate) use http::parse_json;
pub use state::AppState;

use crate::admin::{AdminConfig, AdminHandle};
use crate::proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use crate::proto::lastmile::v1::lastmile_server::LastmileServer;
use crate::registry::Registry;
use crate::scheduler::ComputePool;
use crate::shadow::ShadowSettings;
use metered::{MeteredLayer, Transport};

/// How to serve.
#[derive(Clone)]
pub struct ServerConfig {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub limits: Limits,
    /// Longest wait for in-flight requests once shutdown begins.
    pub drain_timeout: Duration,
    /// Begin shutdown on SIGTERM or SIGINT (the binary does; tests may not).
    pub handle_signals: bool,
    /// The admin API (hot swap) on its own addresses; None: no admin API.
    pub admin: Option<AdminConfig>,
    /// How shadow ensembles run once one is staged (none is at start).
    pub shadow: ShadowSettings,
    /// Test hook: hold admitted requests until released. None in production.
    #[doc(hidden)]
    pub hold: Option<Arc<Hold>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_addr: ([127, 0, 0, 1], 8000).into(),
            grpc_addr: ([127, 0, 0, 1], 8001).into(),
            limits: Limits::default(),
            drain_timeout: Duration::from_secs(30),
            handle_signals: false,
            admin: None,
            shadow: ShadowSettings::default(),
            hold: None,
        }
    }
}

/// How a server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every in-flight request finished.
    Clean,
    /// The drain timeout passed first; what was left was dropped.
    TimedOut,
}

/// A running server.
pub struct Handle {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub state: Arc<AppState>,
    /// The admin API, if configured.
    pub admin: Option<AdminHandle>,
    shutdown_tx: watch::Sender<bool>,
    draining_rx: watch::Receiver<bool>,
    task: JoinHandle<std::io::Result<Drained>>,
}

impl Handle {
    /// Begins a graceful shutdown, as SIGTERM does.
    pub fn shutdown(&self) {
        self.shutdown_tx.send_replace(true);
    }

    /// Waits until shutdown has begun: listeners closed, readiness false.
    pub async fn draining(&self) {
        let mut rx = self.draining_rx.clone();
        let _ = rx.wait_for(|&d| d).await;
    }

    /// Waits for the servers to stop (after a shutdown) and says whether they drained in time.
    /// Call it once.
    pub async fn wait(&mut self) -> std::io::Result<Drained> {
        (&mut self.task)
            .await
            .map_err(|e| std::io::Error::other(format!("the server task failed: {e}")))?
    }
}

/// Binds both servers and starts serving `registry`'s live ensemble on `pool`.
pub async fn start(
    registry: Arc<Registry>,
    pool: Arc<ComputePool>,
    config: ServerConfig,
) -> std::io::Result<Handle> {
    let metrics = crate::telemetry::install();
    registry.announce();
    let http_listener = TcpListener::bind(config.http_addr).await?;
    let grpc_listener = TcpListener::bind(config.grpc_addr).await?;
    let http_addr = http_listener.local_addr()?;
    let grpc_addr = grpc_listener.local_addr()?;
    let state = Arc::new(AppState::new(
        registry,
        pool,
        config.limits,
        config.hold.clone(),
        config.shadow.clone(),
    ));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    if config.handle_signals {
        spawn_signal_task(shutdown_tx.clone())?;
    }
    let mut admin = match config.admin.clone() {
        Some(admin) => {
            Some(crate::admin::start(admin, Arc::clone(&state), shutdown_rx.clone()).await?)
        }
        None => None,
    };
    let admin_served = admin.as_mut().and_then(|a| a.served.take());

    let app = http::router(Arc::clone(&state), metrics);
    let http_shutdown = signalled(shutdown_rx.clone());
    let http_task = tokio::spawn(async move {
        // Answers are written whole: no reason to let Nagle hold their last segment back.
        let listener = http_listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(http_shutdown)
            .await
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<LastmileServer<grpc::LastmileGrpc>>()
        .await;
    health
        .set_serving::<GrpcInferenceServiceServer<v2_grpc::V2Grpc>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().map_err(std::io::Error::other)?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(std::io::Error::other)?;
    let body_limit = config.limits.max_body_bytes;
    let grpc_task = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(MeteredLayer::new(Transport::Grpc { body_limit }))
            .add_service(
                LastmileServer::new(grpc::LastmileGrpc {
                    state: Arc::clone(&state),
                })
                .max_decoding_message_size(body_limit),
            )
            .add_service(
                GrpcInferenceServiceServer::new(v2_grpc::V2Grpc {
                    state: Arc::clone(&state),
                })
                .max_decoding_message_size(body_limit),
            )
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
                signalled(shutdown_rx.clone()),
            ),
    );

    let (draining_tx, draining_rx) = watch::channel(false);
    let drain_state = Arc::clone(&state);
    let drain_timeout = config.drain_timeout;
    let task = tokio::spawn(async move {
        signalled(shutdown_rx).await;
        drain_state.start_draining();
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        health
            .set_not_serving::<LastmileServer<grpc::LastmileGrpc>>()
            .await;
        health
            .set_not_serving::<GrpcInferenceServiceServer<v2_grpc::V2Grpc>>()
            .await;
        draining_tx.send_replace(true);
        tracing::info!(?drain_timeout, "shutting down: draining in-flight requests");
        // The admin servers drain beside the serving ones, under the same timeout: a deploy in
        // flight is refused (nothing swapped) and its caller told so, not cut off.
        let all = async {
            both_served(http_task, grpc_task).await?;
            match admin_served {
                Some(admin) => admin.await.map_err(std::io::Error::other)?,
                None => Ok(()),
            }
        };
        match tokio::time::timeout(drain_timeout, all).await {
            Ok(result) => result.map(|()| Drained::Clean),
            Err(_) => Ok(Drained::TimedOut),
        }
    });

    Ok(Handle {
        http_addr,
        grpc_addr,
        state,
        admin,
        shutdown_tx,
        draining_rx,
        task,
    })
}

/// Waits for an HTTP and a gRPC server task to end; the first failure, if any.
pub(crate) async fn both_served(
    http: JoinHandle<std::io::Result<()>>,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
) -> std::io::Result<()> {
    let http = http.await.map_err(std::io::Error::other)?;
    let grpc = grpc.await.map_err(std::io::Error::other)?;
    http?;
    grpc.map_err(std::io::Error::other)
}

/// Resolves once shutdown is asked for.
async fn signalled(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|&s| s).await;
}

/// Turns SIGTERM and SIGINT into a shutdown. The handlers are installed before this returns, so a
/// signal that arrives once `start` returned is never lost.
fn spawn_signal_task(shutdown_tx: watch::Sender<bool>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name} received");
        shutdown_tx.send_replace(true);
    });
    Ok(())
}
