//! The model repository extension's load and unload, on the admin listener only (behind its
//! token), mapped to the deploy path:
//!
//! - `POST /v2/repository/models/{name}/load` with `{"parameters": {"manifest": PATH,
//!   "validation"?: PATH, "min_accuracy"?: X, "max_drop"?: X}}` deploys that manifest as
//!   `POST /admin/v1/deploy` does (loaded beside live, warmed, validated by the gate, swapped in
//!   one store, or rejected with nothing changed) and answers the deploy's result. `name` must be
//!   the ensemble the manifest declares; V2's repository is lastmile's manifests, so a load
//!   without `manifest` is refused, saying so.
//! - `POST /v2/repository/models/{name}/unload`: lastmile always serves exactly one live
//!   ensemble, so unloading it is refused (409, naming what to do instead); unloading the
//!   previous ensemble or the candidate releases that slot (as `POST /admin/v1/release`).

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::http::body;
use crate::deploy::{Deployer, GateRequest};
use crate::edge::error::{ApiError, ErrorKind};
use crate::ensemble::Manifest;
use crate::proto::lastmile::v1 as pb;
use crate::registry::{Slot, Trigger};

pub fn routes() -> Router<Arc<Deployer>> {
    Router::new()
        .route("/v2/repository/models/{name}/load", post(load))
        .route("/v2/repository/models/{name}/unload", post(unload))
}

#[derive(Deserialize, Default)]
struct RepositoryRequest {
    #[serde(default)]
    parameters: Map<String, Value>,
}

fn text(parameters: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match parameters.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!(
            "parameter {key} must be a string"
        ))),
    }
}

fn number(parameters: &Map<String, Value>, key: &str) -> Result<Option<f64>, ApiError> {
    let bad = || ApiError::bad_request(format!("parameter {key} must be a number"));
    match parameters.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or_else(bad),
        // Triton's clients send parameters as strings.
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

async fn load(
    State(d): State<Arc<Deployer>>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Json<pb::SwapResult>, ApiError> {
    let req: RepositoryRequest = body(&bytes)?;
    let p = &req.parameters;
    let Some(manifest) = text(p, "manifest")? else {
        return Err(ApiError::bad_request(format!(
            "loading {name:?} needs parameters.manifest: the path (on the server) of the \
             manifest to deploy"
        )));
    };
    let manifest = PathBuf::from(manifest);
    let declared = Manifest::load(&manifest)
        .map_err(|e| ApiError::new(ErrorKind::Rejected, e.to_string()))?
        .name;
    if declared != name {
        return Err(ApiError::bad_request(format!(
            "{} declares the ensemble {declared:?}, not {name:?}",
            manifest.display()
        )));
    }
    let gate = GateRequest {
        validation: text(p, "validation")?.map(PathBuf::from),
        min_accuracy: number(p, "min_accuracy")?,
        max_drop: number(p, "max_drop")?,
        mlflow_experiment: None,
    };
    Ok(Json(d.deploy(&manifest, &gate, Trigger::Admin).await?))
}

async fn unload(
    State(d): State<Arc<Deployer>>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Json<pb::RegistryStatus>, ApiError> {
    let _: RepositoryRequest = body(&bytes)?;
    let status = d.status();
    let named = |s: &Option<pb::EnsembleSummary>| s.as_ref().is_some_and(|s| s.name == name);
    if named(&status.live) {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!(
                "{name:?} is live and lastmile always serves one ensemble: load another in its \
                 place (POST /v2/repository/models/{{name}}/load or /admin/v1/deploy), or roll \
                 back (/admin/v1/rollback)"
            ),
        ));
    }
    for (slot, summary) in [
        (Slot::Candidate, &status.candidate),
        (Slot::Previous, &status.previous),
    ] {
        if named(summary) {
            return Ok(Json(d.release(slot).await));
        }
    }
    Err(ApiError::not_found(format!("no model {name:?} is held")))
}
