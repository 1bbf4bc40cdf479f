//! Shadow mode on the admin API: REST under `/admin/v1/shadow/...` and gRPC `lastmile.v1.Shadow`,
//! both over the deployer's shadow operations (`deploy::shadow`). The report goes out as
//! [`Report`] in JSON, or as its proto message with the same fields.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use tonic::{Request, Response, Status};

use super::http::body;
use super::{gate, manifest};
use crate::deploy::Deployer;
use crate::edge::error::ApiError;
use crate::proto::lastmile::v1 as pb;
use crate::proto::lastmile::v1::shadow_server::Shadow as ShadowService;
use crate::shadow::{Aggregate, Latency, Report, StageOptions};

/// The REST routes, merged into the admin router (behind its token check and metrics layer).
pub fn routes() -> Router<Arc<Deployer>> {
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

async fn stage(State(d): State<Arc<Deployer>>, bytes: Bytes) -> Reply<Report> {
    let req: pb::StageShadowRequest = body(&bytes)?;
    Ok(Json(
        d.stage_shadow(&manifest(&req.manifest)?, stage_options(&req))
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    top: Option<usize>,
}

async fn report(
    State(d): State<Arc<Deployer>>,
    query: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply<Report> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(d.shadow_report(query.top)?))
}

async fn stop(State(d): State<Arc<Deployer>>, bytes: Bytes) -> Reply<Report> {
    let _: pb::StopShadowRequest = body(&bytes)?;
    Ok(Json(d.stop_shadow().await?))
}

async fn promote(State(d): State<Arc<Deployer>>, bytes: Bytes) -> Reply<pb::SwapResult> {
    let req: pb::PromoteRequest = body(&bytes)?;
    let gate =
        gate(&req.validation, req.min_accuracy, req.max_drop).logged_to(&req.mlflow_experiment);
    Ok(Json(d.promote_shadow(&gate).await?))
}

/// `lastmile.v1.Shadow`, the same operations over gRPC.
pub struct ShadowGrpc {
    pub deployer: Arc<Deployer>,
}

#[tonic::async_trait]
impl ShadowService for ShadowGrpc {
    async fn stage(
        &self,
        req: Request<pb::StageShadowRequest>,
    ) -> Result<Response<pb::ShadowReport>, Status> {
        let req = req.into_inner();
        let report = self
            .deployer
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
            self.deployer.shadow_report(Some(top))?,
        )))
    }

    async fn stop(
        &self,
        _: Request<pb::StopShadowRequest>,
    ) -> Result<Response<pb::ShadowReport>, Status> {
        Ok(Response::new(to_proto(self.deployer.stop_shadow().await?)))
    }

    async fn promote(
        &self,
        req: Request<pb::PromoteRequest>,
    ) -> Result<Response<pb::SwapResult>, Status> {
        let r = req.into_inner();
        let gate = gate(&r.validation, r.min_accuracy, r.max_drop).logged_to(&r.mlflow_experiment);
        Ok(Response::new(self.deployer.promote_shadow(&gate).await?))
    }
}

/// The report as its proto message (the same fields; the queue and window parameters flattened).
pub fn to_proto(r: Report) -> pb::ShadowReport {
    let ensemble = |e: crate::shadow::EnsembleRef| pb::EnsembleRef {
        name: e.name,
        version: e.version,
        digest: e.digest,
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
