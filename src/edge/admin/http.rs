//! The admin REST API (`/admin/v1/...` on `--admin-addr`). Bodies are the admin proto messages as
//! JSON (`proto/lastmile/v1/admin.proto`); an empty body is `{}`. Failures are [`ApiError`]s, as
//! on the serving port. New admin routes go in [`router`]: the token check and the metrics layer
//! cover them.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::auth::{self, AdminAuth};
use super::{gate, manifest, slot};
use crate::deploy::Deployer;
use crate::edge::body::parse_object;
use crate::edge::error::{ApiError, ErrorKind};
use crate::edge::metered::{MeteredLayer, Transport};
use crate::proto::lastmile::v1 as pb;
use crate::registry::Trigger;

type Reply<T> = Result<Json<T>, ApiError>;
type Deploy = State<Arc<Deployer>>;

pub fn router(deployer: Arc<Deployer>, auth: AdminAuth) -> Router {
    Router::new()
        .route("/admin/v1/status", get(status))
        .route("/admin/v1/load", post(load))
        .route("/admin/v1/validate", post(validate))
        .route("/admin/v1/promote", post(promote))
        .route("/admin/v1/deploy", post(deploy))
        .route("/admin/v1/rollback", post(rollback))
        .route("/admin/v1/release", post(release))
        .merge(super::shadow::routes())
        .merge(super::monitor::routes())
        .merge(super::repository::routes())
        .fallback(|| async { ApiError::not_found("no such admin route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorKind::MethodNotAllowed,
                "this route does not take this method",
            )
        })
        .with_state(deployer)
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
    parse_object(bytes)
}

async fn status(State(d): Deploy) -> Json<pb::RegistryStatus> {
    Json(d.status())
}

async fn load(State(d): Deploy, bytes: Bytes) -> Reply<pb::EnsembleSummary> {
    let req: pb::LoadRequest = body(&bytes)?;
    Ok(Json(
        d.load(&manifest(&req.manifest)?, Trigger::Admin).await?,
    ))
}

async fn validate(State(d): Deploy, bytes: Bytes) -> Reply<pb::Validation> {
    let req: pb::ValidateRequest = body(&bytes)?;
    let gate =
        gate(&req.validation, req.min_accuracy, req.max_drop).logged_to(&req.mlflow_experiment);
    Ok(Json(d.validate(&gate).await?))
}

async fn promote(State(d): Deploy, bytes: Bytes) -> Reply<pb::SwapResult> {
    let req: pb::PromoteRequest = body(&bytes)?;
    let gate =
        gate(&req.validation, req.min_accuracy, req.max_drop).logged_to(&req.mlflow_experiment);
    Ok(Json(d.promote(&gate).await?))
}

async fn deploy(State(d): Deploy, bytes: Bytes) -> Reply<pb::SwapResult> {
    let req: pb::DeployRequest = body(&bytes)?;
    let gate =
        gate(&req.validation, req.min_accuracy, req.max_drop).logged_to(&req.mlflow_experiment);
    Ok(Json(
        d.deploy(&manifest(&req.manifest)?, &gate, Trigger::Admin)
            .await?,
    ))
}

async fn rollback(State(d): Deploy, bytes: Bytes) -> Reply<pb::SwapResult> {
    let _: pb::RollbackRequest = body(&bytes)?;
    Ok(Json(d.rollback().await?))
}

async fn release(State(d): Deploy, bytes: Bytes) -> Reply<pb::RegistryStatus> {
    let req: pb::ReleaseRequest = body(&bytes)?;
    Ok(Json(d.release(slot(&req.slot)?).await))
}
