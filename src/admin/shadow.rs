//! Shadow mode on the admin API: stage a candidate as the shadow, read the comparison report,
//! stop it, promote it. REST under `/admin/v1/shadow/...` on `--admin-addr`, gRPC
//! `lastmile.v1.Shadow` on `--admin-grpc-addr`, behind the admin token check like every admin call.
//!
//! | call | body | answer |
//! |---|---|---|
//! | `POST /admin/v1/shadow/stage` | `{"manifest": PATH, "fraction"?: 0.1, "seed"?: 0}` | the report (just staged) |
//! | `GET /admin/v1/shadow/report[?top=N]` | | the report (running, or the last stopped shadow's) |
//! | `POST /admin/v1/shadow/stop` | | the final report |
//! | `POST /admin/v1/shadow/promote` | `{"validation"?, "min_accuracy"?, "max_drop"?}` | as `/admin/v1/promote` |
//!
//! Staging loads and warms the manifest as a candidate load does, sharing unchanged models
//! ([`Deployer::load_beside`](super::Deployer::load_beside)), but leaves the candidate slot alone;
//! the shadow runs in `AppState::shadow` and shows in the status (`shadow`). Promoting stages it
//! as the candidate and takes it through the same gate and atomic swap as any candidate
//! ([`Deployer::promote_held`](super::Deployer::promote_held)); once live it is no longer
//! mirrored. The report is [`crate::shadow::Report`] as JSON (REST) or `lastmile.v1.ShadowReport`
//! (gRPC), with the same fields.

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use tonic::{Request, Response, Status};

use super::deploy::GateRequest;
use super::http::{body, gate, manifest};
use super::AdminState;
use crate::proto::lastmile::v1 as pb;
use crate::proto::lastmile::v1::shadow_server::Shadow as ShadowService;
use crate::registry::{Held, Trigger};
use crate::server::{ApiError, ErrorKind};
use crate::shadow::{Aggregate, Latency, Report, StageOptions};

/// What the admin side keeps of the staged shadow besides what `AppState::shadow` runs: how it
/// was loaded (for the status and for promotion through the gate).
#[derive(Default)]
pub struct ShadowStaging {
    held: Mutex<Option<Held>>,
    /// Shadow operations run one at a time.
    busy: tokio::sync::Mutex<()>,
}

impl ShadowStaging {
    fn held(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.held.lock().expect("shadow staging lock")
    }
}

impl AdminState {
    /// The registry's status, with the running shadow.
    pub fn status(&self) -> pb::RegistryStatus {
        let mut status = self.deployer.status();
        status.shadow = self
            .running_shadow()
            .map(|held| self.deployer.registry().summary(&held));
        status
    }

    /// The staged shadow as loaded, while it runs.
    fn running_shadow(&self) -> Option<Held> {
        let running = self.app.shadow.running()?;
        self.shadow
            .held()
            .clone()
            .filter(|h| Arc::ptr_eq(&h.ensemble, &running.ensemble))
    }

    /// Loads `manifest` beside the live ensemble and mirrors `options.fraction` of live items
    /// to it, replacing any running shadow.
    pub async fn stage_shadow(
        &self,
        manifest: &Path,
        options: StageOptions,
    ) -> Result<Report, ApiError> {
        if !(options.fraction > 0.0 && options.fraction <= 1.0) {
            return Err(ApiError::bad_request(format!(
                "`fraction` must be in (0, 1], got {}",
                options.fraction
            )));
        }
        let _busy = self.shadow.busy.lock().await;
        let held = self.deployer.load_beside(manifest, Trigger::Admin).await?;
        let shadow = self.app.shadow.stage(
            Arc::clone(&held.ensemble),
            options,
            Arc::clone(&self.app.pool),
        );
        *self.shadow.held() = Some(held);
        Ok(shadow.report())
    }

    /// The running shadow's report, or the last stopped one's.
    pub fn shadow_report(&self, top: Option<usize>) -> Result<Report, ApiError> {
        let shadow = self
            .app
            .shadow
            .latest()
            .ok_or_else(|| ApiError::not_found("no shadow was staged on this server"))?;
        Ok(match top {
            Some(top) if top > 0 => shadow.report_with(top),
            _ => shadow.report(),
        })
    }

    /// Stops mirroring and frees the shadow ensemble (its report stays readable).
    pub async fn stop_shadow(&self) -> Result<Report, ApiError> {
        let _busy = self.shadow.busy.lock().await;
        let shadow = self.app.shadow.stop().ok_or_else(no_shadow)?;
        drop(self.shadow.held().take());
        Ok(shadow.report())
    }

    /// Promotes the running shadow through the gate and the swap every candidate goes
    /// through; once live it is no longer mirrored. Rejected, it stays staged and mirrored.
    pub async fn promote_shadow(&self, req: &GateRequest) -> Result<pb::SwapResult, ApiError> {
        let _busy = self.shadow.busy.lock().await;
        let held = self.running_shadow().ok_or_else(no_shadow)?;
        let result = self
            .deployer
            .promote_held(held.clone(), req, Trigger::Admin)
            .await?;
        if let Some(shadow) = self.app.shadow.running() {
            if Arc::ptr_eq(&shadow.ensemble, &held.ensemble) {
                shadow.stop();
                drop(self.shadow.held().take());
            }
        }
        Ok(result)
    }
}

fn no_shadow() -> ApiError {
    ApiError::new(
        ErrorKind::Conflict,
        "no shadow is running: stage one first (POST /admin/v1/shadow/stage, or lastmile deploy \
         --shadow)",
    )
}

/// The REST routes, merged into the admin router (behind its token check and metrics layer).
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/admin/v1/shadow/stage", post(stage))
        .route("/admin/v1/shadow/report", get(report))
        .route("/admin/v1/shadow/stop", post(stop))
        .route("/admin/v1/shadow/promote", post(promote))
}

type Reply<T> = Result<Json<T>, ApiError>;

fn stage_options(req: &pb::StageShadowRequest) -> StageOptions {
    StageOptions {
        fraction: req.fraction.unwrap_or(StageOptions::default().fraction),
        seed: req.seed,
    }
}

async fn stage(State(s): State<Arc<AdminState>>, bytes: Bytes) -> Reply<Report> {
    let req: pb::StageShadowRequest = body(&bytes)?;
    Ok(Json(
        s.stage_shadow(&manifest(&req.manifest)?, stage_options(&req))
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    top: Option<usize>,
}

async fn report(
    State(s): State<Arc<AdminState>>,
    query: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply<Report> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(s.shadow_report(query.top)?))
}

async fn stop(State(s): State<Arc<AdminState>>, bytes: Bytes) -> Reply<Report> {
    let _: pb::StopShadowRequest = body(&bytes)?;
    Ok(Json(s.stop_shadow().await?))
}

async fn promote(State(s): State<Arc<AdminState>>, bytes: Bytes) -> Reply<pb::SwapResult> {
    let req: pb::PromoteRequest = body(&bytes)?;
    let gate = gate(&req.validation, req.min_accuracy, req.max_drop);
    Ok(Json(s.promote_shadow(&gate).await?))
}

/// `lastmile.v1.Shadow`, the same operations over gRPC.
pub struct ShadowGrpc {
    pub state: Arc<AdminState>,
}

#[tonic::async_trait]
impl ShadowService for ShadowGrpc {
    async fn stage(
        &self,
        req: Request<pb::StageShadowRequest>,
    ) -> Result<Response<pb::ShadowReport>, Status> {
        let req = req.into_inner();
        let report = self
            .state
            .stage_shadow(&manifest(&req.manifest)?, stage_options(&req))
            .await?;
        Ok(Response::new(to_proto(report)))
    }

    async fn report(
        &self,
        req: Request<pb::ShadowReportRequest>,
    ) -> Result<Response<pb::ShadowReport>, Status> {
        let top = req.into_inner().top as usize;
        Ok(Response::new(to_proto(
            self.state.shadow_report(Some(top))?,
        )))
    }

    async fn stop(
        &self,
        _: Request<pb::StopShadowRequest>,
    ) -> Result<Response<pb::ShadowReport>, Status> {
        Ok(Response::new(to_proto(self.state.stop_shadow().await?)))
    }

    async fn promote(
        &self,
        req: Request<pb::PromoteRequest>,
    ) -> Result<Response<pb::SwapResult>, Status> {
        let r = req.into_inner();
        let gate = gate(&r.validation, r.min_accuracy, r.max_drop);
        Ok(Response::new(self.state.promote_shadow(&gate).await?))
    }
}

/// The report as its proto message (the same fields; the queue and window parameters flattened).
pub fn to_proto(r: Report) -> pb::ShadowReport {
    let ensemble = |e: crate::shadow::EnsembleRef| pb::EnsembleRef {
        name: e.name,
        version: e.version,
    };
    pb::ShadowReport {
        state: r.state,
        shadow: Some(ensemble(r.shadow)),
        live: r.live.map(ensemble),
        fraction: r.fraction,
        compare_k: r.compare_k as u32,
        staged_at: r.staged_at,
        seconds_staged: r.seconds_staged,
        counts: Some(pb::ShadowCounts {
            sampled: r.counts.sampled,
            mirrored: r.counts.mirrored,
            skipped: r.counts.skipped,
            compared: r.counts.compared,
            failed: r.counts.failed,
            discarded: r.counts.discarded,
        }),
        queue_capacity: r.queue.capacity as u64,
        queue_depth: r.queue.depth as u64,
        since_staging: Some(aggregate(r.since_staging)),
        window: Some(aggregate(r.window.aggregate)),
        window_max_items: r.window.max_items as u64,
        window_max_seconds: r.window.max_seconds,
        top_disagreements: r
            .top_disagreements
            .into_iter()
            .map(|p| pb::ShadowPair {
                live: p.live,
                shadow: p.shadow,
                count: p.count,
            })
            .collect(),
        labels: r
            .labels
            .into_iter()
            .map(|l| pb::ShadowLabel {
                label: l.label,
                items: l.items,
                agreed: l.agreed,
                agreement: l.agreement,
            })
            .collect(),
        untracked_pairs: r.untracked_pairs,
        untracked_labels: r.untracked_labels,
        last_error: r.last_error.unwrap_or_default(),
        log: r.log.map(|l| pb::ShadowLog {
            path: l.path,
            lines: l.lines,
            rotations: l.rotations,
            errors: l.errors,
        }),
    }
}

fn aggregate(a: Aggregate) -> pb::ShadowAggregate {
    let latency = |l: Latency| pb::ShadowLatency {
        mean: l.mean,
        p50: l.p50,
        p95: l.p95,
        max: l.max,
    };
    pb::ShadowAggregate {
        compared: a.compared,
        failed: a.failed,
        top1_agreed: a.top1_agreed,
        top1_agreement: a.top1_agreement,
        topk_overlap: a.topk_overlap,
        live_winner_in_shadow: a.live_winner_in_shadow,
        shadow_score_for_live_winner: a.shadow_score_for_live_winner,
        failure_ratio: a.failure_ratio,
        live_seconds: Some(latency(a.live_seconds)),
        shadow_seconds: Some(latency(a.shadow_seconds)),
    }
}
