//! A validation logged as an MLflow run (`--mlflow-experiment` on serve, or a request's
//! `mlflow_experiment`): the candidate's evaluation as `lastmile eval --mlflow-experiment` logs
//! it, plus the gate's decision and the live ensemble it was compared with. Logging never
//! changes the decision: a failure is reported in the validation (`mlflow_error`).

use std::path::Path;
use std::sync::Arc;

use super::Deployer;
use crate::ensemble::Ensemble;
use crate::eval::record::run_log;
use crate::eval::Report;
use crate::mlflow::Client;
use crate::proto::lastmile::v1 as pb;
use crate::registry::Trigger;

impl Deployer {
    /// Logs `report` (the candidate's) as a run of `experiment`; the run id, or why not.
    pub(super) async fn log_validation(
        &self,
        candidate: &Arc<Ensemble>,
        report: Report,
        data: &Path,
        validation: &pb::Validation,
        trigger: Trigger,
        experiment: String,
    ) -> Result<String, String> {
        let mut tracking = self.config.sources.tracking.clone();
        if let Some(uri) = &candidate.tracking_uri {
            tracking.uri = uri.clone();
        }
        if tracking.uri.is_empty() {
            return Err(
                "no MLflow tracking server to log the validation to: set [mlflow] \
                        tracking_uri in the manifest, or --mlflow-tracking-uri"
                    .into(),
            );
        }
        let live = validation.live.clone().unwrap_or_default();
        let extra = vec![
            ("gate.passed".to_owned(), validation.passed.to_string()),
            ("gate.reason".to_owned(), validation.reason.clone()),
            (
                "gate.min_accuracy".to_owned(),
                validation.min_accuracy.to_string(),
            ),
            ("gate.max_drop".to_owned(), validation.max_drop.to_string()),
            ("live.version".to_owned(), live.version),
            ("live.digest".to_owned(), live.digest),
            (
                "live.top1".to_owned(),
                validation
                    .live_metrics
                    .as_ref()
                    .map_or(0.0, |m| m.top1)
                    .to_string(),
            ),
            ("trigger".to_owned(), trigger.as_str().to_owned()),
        ];
        let log = run_log(&experiment, "validation", candidate, &report, data, &extra);
        let logged = tokio::task::spawn_blocking(move || Client::new(&tracking)?.log_run(&log))
            .await
            .map_err(|e| format!("the MLflow logging thread failed: {e}"))?;
        match logged {
            Ok(run) => {
                tracing::info!(%experiment, run = %run.run_id, "validation logged to MLflow");
                Ok(run.run_id)
            }
            Err(e) => {
                tracing::warn!(%experiment, "validation not logged to MLflow: {e}");
                Err(e.to_string())
            }
        }
    }
}
