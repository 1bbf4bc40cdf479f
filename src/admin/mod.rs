//! Hot swap: replacing the whole live ensemble while traffic flows, gated by a validation set,
//! with rollback. The admin API that drives it (REST and gRPC, on their own addresses, behind one
//! token check), SIGHUP, and an optional watch of the server's manifest.
//!
//! # For operators
//!
//! A swap is **load → warm up → validate → promote**:
//!
//! 1. *load*: the new manifest is parsed and its models loaded beside the live ensemble. A model
//!    whose file content, bindings and labels are unchanged is shared with the live (or previous)
//!    ensemble, not loaded again: a retrain that changes 3 models of 50 loads 3.
//! 2. *warm up*: a few made-up items run through every model on the compute pool.
//! 3. *validate* (when the request or the candidate manifest names a validation set: labelled
//!    JSON Lines, the ensemble's fields plus `label`, as `lastmile eval --data` reads): the
//!    candidate and the live ensemble are evaluated on the same items; the candidate passes if
//!    its top-1 is at least `min_accuracy` and at most `max_drop` below the live one's
//!    (`--min-accuracy`, `--max-drop`, default 0 and 0: at least as good as live; a request may
//!    give its own).
//! 4. *promote*: one atomic store. A request admitted before it finishes on the old ensemble; one
//!    admitted after runs on the new one; none sees both. The old ensemble becomes `previous`
//!    (for rollback) and is freed when released and its last request is done;
//!    `--no-keep-previous` frees it at once instead.
//!
//! A candidate that fails a step is **rejected**: the live ensemble is untouched, and the status
//! keeps the reason (`last_rejection`). Operations run one at a time.
//!
//! Manifest key: `validation = "valid.jsonl"` (relative to the manifest) names the set that gates
//! this ensemble's promotion.
//!
//! ## Addresses and the token
//!
//! REST on `--admin-addr` (default `127.0.0.1:8002`), gRPC `lastmile.v1.Admin` on
//! `--admin-grpc-addr` (default `127.0.0.1:8003`; two ports, like the serving API's). Neither is
//! on the serving ports. With `--admin-token` (env `LASTMILE_ADMIN_TOKEN`) every admin call needs
//! `authorization: Bearer <token>`, else 401 / UNAUTHENTICATED and nothing changes. The server
//! refuses to start when an admin address is not loopback and there is no token.
//!
//! ## REST (bodies and answers: the messages of `proto/lastmile/v1/admin.proto`, as JSON)
//!
//! | call | body | answer |
//! |---|---|---|
//! | `GET /admin/v1/status` | | live, previous, candidate, last rejection, swaps |
//! | `POST /admin/v1/load` | `{"manifest": PATH}` | the candidate (loaded, warmed) |
//! | `POST /admin/v1/validate` | `{"validation"?, "min_accuracy"?, "max_drop"?}` | the validation, `passed` true or false |
//! | `POST /admin/v1/promote` | as validate | `{"outcome": "promoted", live, previous, validation}` |
//! | `POST /admin/v1/deploy` | `{"manifest": PATH, "validation"?, "min_accuracy"?, "max_drop"?}` | as promote; `"unchanged"` when identical to live |
//! | `POST /admin/v1/rollback` | | `{"outcome": "rolled_back", ...}`: swaps live and previous |
//! | `POST /admin/v1/release` | `{"slot": "previous" \| "candidate"}` | the status |
//! | `POST /admin/v1/shadow/stage`, `GET .../shadow/report`, `POST .../shadow/stop`, `POST .../shadow/promote` | see `admin/shadow.rs` | shadow mode |
//!
//! Paths are read by the server (relative ones against its working directory). A rejected
//! candidate answers 422 `{"code": "rejected", "error": REASON}` (gRPC FAILED_PRECONDITION);
//! promote without a candidate or rollback without a previous ensemble 409 `conflict`.
//!
//! ```sh
//! curl -s localhost:8002/admin/v1/status -H "authorization: Bearer $LASTMILE_ADMIN_TOKEN"
//! curl -s localhost:8002/admin/v1/deploy -H "authorization: Bearer $LASTMILE_ADMIN_TOKEN" \
//!      -d '{"manifest": "/srv/models/2026-12-01/manifest.toml"}'
//! curl -s -X POST localhost:8002/admin/v1/rollback -H "authorization: Bearer $LASTMILE_ADMIN_TOKEN"
//! lastmile deploy --server http://127.0.0.1:8002 --manifest models/next/manifest.toml \
//!      --validation data/valid.jsonl --max-drop 0.01
//! grpcurl -plaintext -H "authorization: Bearer $LASTMILE_ADMIN_TOKEN" 127.0.0.1:8003 \
//!      lastmile.v1.Admin/Status
//! kill -HUP $(pidof lastmile)    # reload the manifest the server was started with
//! ```
//!
//! ## Without an admin call
//!
//! SIGHUP deploys the manifest the server was started with (through the same gate);
//! `--watch-manifest SECONDS` polls it and deploys it when its content changes. A manifest
//! identical to the live one (text and every model file) is not swapped (`unchanged`).
//!
//! ## Shutdown
//!
//! The admin servers drain with the serving ones (SIGTERM, same timeout). An operation still
//! running then (a deploy loading or validating its candidate) is stopped where it stands and
//! answered 503 / UNAVAILABLE `shutting_down`: nothing more is swapped, since a restarted server
//! runs its startup manifest again and a late swap would report a version that is not coming back.
//!
//! ## Metrics
//!
//! `lastmile_registry_swaps_total{outcome="promoted"|"rolled_back"|"rejected"}`,
//! `lastmile_registry_load_duration_seconds`, `lastmile_registry_validation_duration_seconds`,
//! and `lastmile_ensemble_info{name,version}` (1 for the live ensemble, 0 for earlier ones).

mod auth;
mod deploy;
mod gate;
mod grpc;
mod http;
mod shadow;
mod triggers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

pub use auth::AdminAuth;
pub use deploy::{DeployConfig, Deployer, GateRequest};
pub use gate::{Decision, Gate};
pub use shadow::ShadowStaging;

use crate::proto::lastmile::v1::admin_server::AdminServer;
use crate::proto::lastmile::v1::shadow_server::ShadowServer;
use crate::server::metered::{MeteredLayer, Transport};
use crate::server::AppState;

/// How the admin side runs.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// REST admin API.
    pub http_addr: SocketAddr,
    /// gRPC admin API (`lastmile.v1.Admin`).
    pub grpc_addr: SocketAddr,
    /// Bearer token every admin call must carry; required when an address is not loopback.
    pub token: Option<String>,
    pub deploy: DeployConfig,
    /// Keep the replaced ensemble for rollback.
    pub keep_previous: bool,
    /// The manifest the server was started with: what SIGHUP and the watch reload.
    pub manifest: Option<PathBuf>,
    /// Reload `manifest` on SIGHUP.
    pub sighup: bool,
    /// Poll `manifest` this often and deploy it when it changes.
    pub watch: Option<Duration>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            http_addr: ([127, 0, 0, 1], 8002).into(),
            grpc_addr: ([127, 0, 0, 1], 8003).into(),
            token: None,
            deploy: DeployConfig::default(),
            keep_previous: true,
            manifest: None,
            sighup: false,
            watch: None,
        }
    }
}

impl AdminConfig {
    /// Refuses an admin API reachable from elsewhere without a token, and an empty token.
    pub fn check(&self) -> Result<(), String> {
        match self.token.as_deref() {
            Some(t) if t.trim().is_empty() => {
                Err("--admin-token is empty; give a secret, or leave it unset".into())
            }
            Some(_) => Ok(()),
            None => {
                let exposed: Vec<String> = [self.http_addr, self.grpc_addr]
                    .iter()
                    .filter(|a| !a.ip().is_loopback())
                    .map(ToString::to_string)
                    .collect();
                if exposed.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "the admin API would listen on {} (not loopback) without a token: set \
                         --admin-token (or LASTMILE_ADMIN_TOKEN), or bind it to 127.0.0.1",
                        exposed.join(" and ")
                    ))
                }
            }
        }
    }
}

/// What every admin handler (REST and gRPC) shares: the deployer, and the serving state (for
/// admin calls about the serving side, such as the shadow ensemble in `AppState::shadow`).
pub struct AdminState {
    pub deployer: Arc<Deployer>,
    pub app: Arc<AppState>,
    /// How the running shadow was loaded (see `admin/shadow.rs`).
    pub shadow: ShadowStaging,
}

/// The running admin side.
pub struct AdminHandle {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub deployer: Arc<Deployer>,
    /// Both admin servers; ends once they have drained after the shutdown signal. The server
    /// takes it into its own drain.
    pub(crate) served: Option<JoinHandle<std::io::Result<()>>>,
}

/// Binds both admin listeners, starts the triggers, and serves until `shutdown_rx` turns true.
pub async fn start(
    config: AdminConfig,
    app: Arc<AppState>,
    shutdown_rx: watch::Receiver<bool>,
) -> std::io::Result<AdminHandle> {
    config
        .check()
        .map_err(|m| std::io::Error::new(std::io::ErrorKind::InvalidInput, m))?;
    app.registry.set_keep_previous(config.keep_previous);
    let deployer = Arc::new(Deployer::new(
        Arc::clone(&app.registry),
        Arc::clone(&app.pool),
        config.deploy.clone(),
        shutdown_rx.clone(),
    ));
    let state = Arc::new(AdminState {
        deployer: Arc::clone(&deployer),
        app,
        shadow: ShadowStaging::default(),
    });
    let auth = AdminAuth::new(config.token.as_deref());

    let http_listener = TcpListener::bind(config.http_addr).await?;
    let grpc_listener = TcpListener::bind(config.grpc_addr).await?;
    let http_addr = http_listener.local_addr()?;
    let grpc_addr = grpc_listener.local_addr()?;

    let router = http::router(Arc::clone(&state), auth.clone());
    let http_shutdown = signalled(shutdown_rx.clone());
    let http_served = tokio::spawn(async move {
        axum::serve(http_listener, router)
            .with_graceful_shutdown(http_shutdown)
            .await
    });

    let shadow_service = ShadowServer::with_interceptor(
        shadow::ShadowGrpc {
            state: Arc::clone(&state),
        },
        auth.grpc(),
    );
    let service = AdminServer::with_interceptor(grpc::AdminGrpc { state }, auth.grpc());
    // Reflection (for grpcurl), behind the same check.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(std::io::Error::other)?;
    let reflection = InterceptedService::new(reflection, auth.grpc());
    let grpc_served = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(MeteredLayer::new(Transport::Grpc {
                body_limit: 4 << 20,
            }))
            .add_service(service)
            .add_service(shadow_service)
            .add_service(reflection)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(grpc_listener),
                signalled(shutdown_rx.clone()),
            ),
    );

    if let Some(manifest) = &config.manifest {
        if config.sighup {
            triggers::spawn_sighup_task(
                Arc::clone(&deployer),
                manifest.clone(),
                shutdown_rx.clone(),
            )?;
        }
        if let Some(every) = config.watch {
            triggers::spawn_watch_task(Arc::clone(&deployer), manifest.clone(), every, shutdown_rx);
        }
    }

    let served = tokio::spawn(crate::server::both_served(http_served, grpc_served));
    Ok(AdminHandle {
        http_addr,
        grpc_addr,
        deployer,
        served: Some(served),
    })
}

async fn signalled(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|&s| s).await;
}
