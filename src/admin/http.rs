//! The admin REST API (`/admin/v1/...` on `--admin-addr`). Bodies are the admin proto messages as
//! JSON (`proto/lastmile/v1/admin.proto`); an empty body is `{}`. Failures are [`ApiError`]s, as
//! on the serving port. New admin routes go in [`router`]: the token check and the metrics layer
//! cover them.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::auth::{self, AdminAuth};
use super::deploy::GateRequest;
use super::AdminState;
use crate::proto::lastmile::v1 as pb;
use crate::registry::{Slot, Trigger};
use crate::server::metered::{MeteredLayer, Transport};
use crate::server::{ApiError, ErrorKind};

type Reply<T> = Result<Json<T>, ApiError>;

pub fn router(state: Arc<AdminState>, auth: AdminAuth) -> Router {
    Router::new()
        .route("/admin/v1/status", get(status))
        .route("/admin/v1/load", post(load))
        .route("/admin/v1/validate", post(validate))
        .route("/admin/v1/promote", post(promote))
        .route("/admin/v1/deploy", post(deploy))
        .route("/admin/v1/rollback", post(rollback))
        .route("/admin/v1/release", post(release))
        .merge(super::shadow::routes())
        .fallback(|| async { ApiError::not_found("no such admin route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorKind::MethodNotAllowed,
                "this route does not take this method",
            )
        })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(auth, auth::http))
        .layer(MeteredLayer::new(Transport::Http))
}

/// A JSON body (empty: `{}`), or what is wrong with it.
pub(super) fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    crate::server::parse_json(bytes)
}

/// A path given by a request: empty means none.
pub fn path(p: &str) -> Option<PathBuf> {
    (!p.is_empty()).then(|| PathBuf::from(p))
}

/// A request's validation set and thresholds.
pub fn gate(validation: &str, min_accuracy: Option<f64>, max_drop: Option<f64>) -> GateRequest {
    GateRequest {
        validation: path(validation),
        min_accuracy,
        max_drop,
    }
}

pub fn manifest(p: &str) -> Result<PathBuf, ApiError> {
    path(p).ok_or_else(|| ApiError::bad_request("`manifest` (a path on the server) is required"))
}

pub fn slot(name: &str) -> Result<Slot, ApiError> {
    Slot::parse(name).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`slot` must be \"previous\" or \"candidate\", got {name:?}"
        ))
    })
}

async fn status(State(s): State<Arc<AdminState>>) -> Json<pb::RegistryStatus> {
    Json(s.status())
}

async fn load(State(s): State<Arc<AdminState>>, bytes: Bytes) -> Reply<pb::EnsembleSummary> {
    let req: pb::LoadRequest = body(&bytes)?;
    Ok(Json(
        s.deployer
            .load(&manifest(&req.manifest)?, Trigger::Admin)
            .await?,
    ))
}

async fn validate(State(s): State<Arc<AdminState>>, bytes: Bytes) -> Reply<pb::Validation> {
    let req: pb::ValidateRequest = body(&bytes)?;
    let gate = gate(&req.validation, req.min_accuracy, req.max_drop);
    Ok(Json(s.deployer.validate(&gate).await?))
}

async fn promote(State(s): State<Arc<AdminState>>, bytes: Bytes) -> Reply<pb::SwapResult> {
    let req: pb::PromoteRequest = body(&bytes)?;
    let gate = gate(&req.validation, req.min_accuracy, req.max_drop);
    Ok(Json(s.deployer.promote(&gate).await?))
}

async fn deploy(State(s): State<Arc<AdminState>>, bytes: Bytes) -> Reply<pb::SwapResult> {
    let req: pb::DeployRequest = body(&bytes)?;
    let gate = gate(&req.validation, req.min_accuracy, req.max_drop);
    Ok(Json(
        s.deployer
            .deploy(&manifest(&req.manifest)?, &gate, Trigger::Admin)
            .await?,
    ))
}

async fn rollback(State(s): State<Arc<AdminState>>, bytes: Bytes) -> Reply<pb::SwapResult> {
    let _: pb::RollbackRequest = body(&bytes)?;
    Ok(Json(s.deployer.rollback().await?))
}

async fn release(State(s): State<Arc<AdminState>>, bytes: Bytes) -> Reply<pb::RegistryStatus> {
    let req: pb::ReleaseRequest = body(&bytes)?;
    Ok(Json(s.deployer.release(slot(&req.slot)?).await))
}
