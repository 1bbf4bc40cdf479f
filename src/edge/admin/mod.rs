//! The admin API: hot swap and shadow mode over REST and gRPC, the live monitor's report over REST, on their own addresses (never the
//! serving ports), every call behind one token check ([`auth`]). The operations are the
//! [`Deployer`]'s (see [`crate::deploy`] for what a swap does); this module only speaks the wire.
//!
//! ## Addresses and the token
//!
//! REST on `--admin-addr` (default `127.0.0.1:8002`), gRPC `lastmile.v1.Admin` and
//! `lastmile.v1.Shadow` on `--admin-grpc-addr` (default `127.0.0.1:8003`; two ports, like the
//! serving API's). With `--admin-token` (env `LASTMILE_ADMIN_TOKEN`) every admin call needs
//! `authorization: Bearer <token>`, else 401 / UNAUTHENTICATED and nothing changes. The server
//! refuses to start when an admin address is not loopback and there is no token.
//!
//! ## REST (bodies and answers: the messages of `proto/lastmile/v1/admin.proto`, as JSON)
//!
//! | call | body | answer |
//! |---|---|---|
//! | `GET /admin/v1/status` | | live, previous, candidate, shadow, last rejection, swaps |
//! | `POST /admin/v1/load` | `{"manifest": PATH}` | the candidate (loaded, warmed) |
//! | `POST /admin/v1/validate` | `{"validation"?, "min_accuracy"?, "max_drop"?}` | the validation, `passed` true or false |
//! | `POST /admin/v1/promote` | as validate | `{"outcome": "promoted", live, previous, validation}` |
//! | `POST /admin/v1/deploy` | `{"manifest": PATH, "validation"?, "min_accuracy"?, "max_drop"?}` | as promote; `"unchanged"` when identical to live |
//! | `POST /admin/v1/rollback` | | `{"outcome": "rolled_back", ...}`: swaps live and previous |
//! | `POST /admin/v1/release` | `{"slot": "previous" \| "candidate"}` | the status |
//! | `POST /admin/v1/shadow/stage` | `{"manifest": PATH, "fraction"?: 0.1, "seed"?: 0}` | the shadow report (just staged) |
//! | `GET /admin/v1/shadow/report[?top=N]` | | the report (running, or the last stopped shadow's) |
//! | `POST /admin/v1/shadow/stop` | | the final report |
//! | `POST /admin/v1/shadow/promote` | as validate | as `/admin/v1/promote` |
//! | `GET /admin/v1/monitor/report` | | the live monitor's report ([`crate::monitor::live::LiveReport`]): members' influence and drift over the window |
//! | `GET /admin/v1/monitor/report.html` | | the same drawn as one self-contained HTML page |
//! | `POST /v2/repository/models/{name}/load` | `{"parameters": {"manifest": PATH, "validation"?, "min_accuracy"?, "max_drop"?}}` | as deploy (the V2 repository extension, [`repository`]) |
//! | `POST /v2/repository/models/{name}/unload` | | the status (previous or candidate released; the live ensemble: 409) |
//!
//! Paths are read by the server (relative ones against its working directory). A rejected
//! candidate answers 422 `{"code": "rejected", "error": REASON}` (gRPC FAILED_PRECONDITION);
//! promote without a candidate or rollback without a previous ensemble 409 `conflict`; a call
//! during shutdown 503 / UNAVAILABLE `shutting_down`. The shadow report is
//! [`crate::shadow::Report`] as JSON (REST) or `lastmile.v1.ShadowReport` (gRPC), with the same
//! fields.
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

pub mod auth;
mod grpc;
mod http;
mod monitor;
mod repository;
mod shadow;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

pub use auth::AdminAuth;

use super::error::ApiError;
use super::metered::{MeteredLayer, Transport};
use crate::deploy::{Deployer, GateRequest};
use crate::drain::DrainSignal;
use crate::proto::lastmile::v1::admin_server::AdminServer;
use crate::proto::lastmile::v1::shadow_server::ShadowServer;
use crate::registry::Slot;

/// The largest admin request message over gRPC.
const GRPC_BODY_LIMIT: usize = 4 << 20;

/// Serves the admin REST API on `listener` until the drain, then finishes what is in flight.
pub async fn serve_http(
    listener: TcpListener,
    deployer: Arc<Deployer>,
    auth: AdminAuth,
    drain: DrainSignal,
) -> std::io::Result<()> {
    axum::serve(listener, http::router(deployer, auth))
        .with_graceful_shutdown(drain.started())
        .await
}

/// Serves the admin gRPC services (admin, shadow, reflection for grpcurl), every one behind
/// `auth` and the metrics layer, until the drain.
pub async fn serve_grpc(
    listener: TcpListener,
    deployer: Arc<Deployer>,
    auth: AdminAuth,
    drain: DrainSignal,
) -> std::io::Result<()> {
    let shadow = ShadowServer::with_interceptor(
        shadow::ShadowGrpc {
            deployer: Arc::clone(&deployer),
        },
        auth.grpc(),
    );
    let admin = AdminServer::with_interceptor(grpc::AdminGrpc { deployer }, auth.grpc());
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(std::io::Error::other)?;
    let reflection = InterceptedService::new(reflection, auth.grpc());
    tonic::transport::Server::builder()
        .layer(MeteredLayer::new(Transport::Grpc {
            body_limit: GRPC_BODY_LIMIT,
        }))
        .add_service(admin)
        .add_service(shadow)
        .add_service(reflection)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), drain.started())
        .await
        .map_err(std::io::Error::other)
}

/// A path given by a request: empty means none.
fn path(p: &str) -> Option<PathBuf> {
    (!p.is_empty()).then(|| PathBuf::from(p))
}

/// A request's validation set and thresholds.
fn gate(validation: &str, min_accuracy: Option<f64>, max_drop: Option<f64>) -> GateRequest {
    GateRequest {
        validation: path(validation),
        min_accuracy,
        max_drop,
        mlflow_experiment: None,
    }
}

fn manifest(p: &str) -> Result<PathBuf, ApiError> {
    path(p).ok_or_else(|| ApiError::bad_request("`manifest` (a path on the server) is required"))
}

fn slot(name: &str) -> Result<Slot, ApiError> {
    Slot::parse(name).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`slot` must be \"previous\" or \"candidate\", got {name:?}"
        ))
    })
}
