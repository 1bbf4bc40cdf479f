//! The model registry and runs, read: a registered model's version (by number or alias), where
//! its artifacts are, and the run that made it (params, tags, dataset inputs).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Client, MlflowError};

/// One version of a registered model.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    /// Where its artifacts are (`mlflow-artifacts:/...`, `runs:/...`, `models:/m-...`).
    pub source: String,
    pub run_id: String,
    /// `READY` once its artifacts are in place.
    pub status: String,
    pub aliases: Vec<String>,
}

/// A run, as far as provenance needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Run {
    pub run_id: String,
    pub experiment_id: String,
    pub run_name: String,
    /// The root of its artifacts.
    pub artifact_uri: String,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// Its logged dataset inputs.
    pub datasets: Vec<Dataset>,
}

/// A dataset a run logged as an input (`mlflow.log_input`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dataset {
    pub name: String,
    pub digest: String,
    pub source_type: String,
    pub source: String,
    /// `mlflow.data.context` (training, validation, ...), if tagged.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub context: String,
}

/// One entry of an artifact directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FileInfo {
    pub path: String,
    pub is_dir: bool,
    pub file_size: Option<u64>,
}

#[derive(Deserialize)]
struct VersionBody {
    model_version: ModelVersion,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeyValue {
    key: String,
    value: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RunBody {
    run: RawRun,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawRun {
    info: RawInfo,
    data: RawData,
    inputs: RawInputs,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawInfo {
    run_id: String,
    run_uuid: String,
    experiment_id: String,
    run_name: String,
    artifact_uri: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawData {
    params: Vec<KeyValue>,
    tags: Vec<KeyValue>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawInputs {
    dataset_inputs: Vec<RawDatasetInput>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawDatasetInput {
    tags: Vec<KeyValue>,
    dataset: Dataset,
}

fn pairs(list: Vec<KeyValue>) -> BTreeMap<String, String> {
    list.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

impl Client {
    /// Version `version` of registered model `name`.
    pub fn model_version(&self, name: &str, version: &str) -> Result<ModelVersion, MlflowError> {
        let body: VersionBody = self.get(
            "model-versions/get",
            &[("name", name), ("version", version)],
        )?;
        Ok(body.model_version)
    }

    /// The version alias `alias` of registered model `name` points at.
    pub fn alias(&self, name: &str, alias: &str) -> Result<ModelVersion, MlflowError> {
        let body: VersionBody = self.get(
            "registered-models/alias",
            &[("name", name), ("alias", alias)],
        )?;
        Ok(body.model_version)
    }

    /// Where a model version's artifacts can be downloaded from.
    pub fn download_uri(&self, name: &str, version: &str) -> Result<String, MlflowError> {
        #[derive(Deserialize)]
        struct Body {
            artifact_uri: String,
        }
        let body: Body = self.get(
            "model-versions/get-download-uri",
            &[("name", name), ("version", version)],
        )?;
        Ok(body.artifact_uri)
    }

    /// A run's params, tags and dataset inputs.
    pub fn run(&self, run_id: &str) -> Result<Run, MlflowError> {
        let body: RunBody = self.get("runs/get", &[("run_id", run_id)])?;
        let RawRun { info, data, inputs } = body.run;
        Ok(Run {
            run_id: if info.run_id.is_empty() {
                info.run_uuid
            } else {
                info.run_id
            },
            experiment_id: info.experiment_id,
            run_name: info.run_name,
            artifact_uri: info.artifact_uri,
            params: pairs(data.params),
            tags: pairs(data.tags),
            datasets: inputs
                .dataset_inputs
                .into_iter()
                .map(|input| {
                    let context = input
                        .tags
                        .into_iter()
                        .find(|t| t.key == "mlflow.data.context")
                        .map(|t| t.value)
                        .unwrap_or_default();
                    Dataset {
                        context,
                        ..input.dataset
                    }
                })
                .collect(),
        })
    }
}
