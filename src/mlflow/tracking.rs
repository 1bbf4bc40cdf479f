//! Logging a run: an experiment found or created by name, a run with params, metrics and tags
//! (in batches within MLflow's limits), artifact files uploaded through the artifact proxy, and
//! the run finished (or marked failed when a step fails).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Value};

use super::{Client, MlflowError};

/// Everything one run records.
#[derive(Debug, Clone, Default)]
pub struct RunLog {
    pub experiment: String,
    pub run_name: String,
    pub params: Vec<(String, String)>,
    pub metrics: Vec<(String, f64)>,
    pub tags: Vec<(String, String)>,
    /// File name under the run's artifact root, and its content.
    pub artifacts: Vec<(String, Vec<u8>)>,
}

/// Where a logged run is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRun {
    pub experiment_id: String,
    pub run_id: String,
}

/// MLflow's `log-batch` limits.
const PARAMS_PER_BATCH: usize = 100;
const ENTRIES_PER_BATCH: usize = 1000;
/// Longest param value MLflow keeps.
const PARAM_VALUE_MAX: usize = 6000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn key_values(list: &[(String, String)]) -> Vec<Value> {
    list.iter()
        .map(|(k, v)| {
            let v: String = v.chars().take(PARAM_VALUE_MAX).collect();
            json!({"key": k, "value": v})
        })
        .collect()
}

impl Client {
    /// The id of experiment `name`, created if it does not exist.
    pub fn experiment_id(&self, name: &str) -> Result<String, MlflowError> {
        #[derive(Deserialize)]
        struct Experiment {
            experiment_id: String,
        }
        #[derive(Deserialize)]
        struct Found {
            experiment: Experiment,
        }
        match self.get::<Found>("experiments/get-by-name", &[("experiment_name", name)]) {
            Ok(found) => Ok(found.experiment.experiment_id),
            Err(MlflowError::NotFound { .. }) => {
                let created: Experiment =
                    self.post("experiments/create", &json!({"name": name}))?;
                Ok(created.experiment_id)
            }
            Err(e) => Err(e),
        }
    }

    /// Logs `log` as one finished run.
    pub fn log_run(&self, log: &RunLog) -> Result<LoggedRun, MlflowError> {
        #[derive(Deserialize)]
        struct Info {
            run_id: String,
            artifact_uri: String,
        }
        #[derive(Deserialize)]
        struct Created {
            run: CreatedRun,
        }
        #[derive(Deserialize)]
        struct CreatedRun {
            info: Info,
        }
        let experiment_id = self.experiment_id(&log.experiment)?;
        let created: Created = self.post(
            "runs/create",
            &json!({
                "experiment_id": experiment_id,
                "run_name": log.run_name,
                "start_time": now_ms(),
                "tags": key_values(&log.tags),
            }),
        )?;
        let info = created.run.info;
        let logged = self.fill_run(&info.run_id, &info.artifact_uri, log);
        let status = if logged.is_ok() { "FINISHED" } else { "FAILED" };
        let ended = self.post::<Value>(
            "runs/update",
            &json!({"run_id": info.run_id, "status": status, "end_time": now_ms()}),
        );
        logged?;
        ended?;
        Ok(LoggedRun {
            experiment_id,
            run_id: info.run_id,
        })
    }

    fn fill_run(&self, run_id: &str, artifact_uri: &str, log: &RunLog) -> Result<(), MlflowError> {
        let timestamp = now_ms();
        for params in log.params.chunks(PARAMS_PER_BATCH) {
            self.post::<Value>(
                "runs/log-batch",
                &json!({"run_id": run_id, "params": key_values(params)}),
            )?;
        }
        for metrics in log.metrics.chunks(ENTRIES_PER_BATCH) {
            let metrics: Vec<Value> = metrics
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v, "timestamp": timestamp, "step": 0}))
                .collect();
            self.post::<Value>(
                "runs/log-batch",
                &json!({"run_id": run_id, "metrics": metrics}),
            )?;
        }
        for (name, bytes) in &log.artifacts {
            let uri = format!("{}/{name}", artifact_uri.trim_end_matches('/'));
            self.upload(&uri, bytes.clone())?;
        }
        Ok(())
    }
}
