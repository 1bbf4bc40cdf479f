//! A small client for an MLflow tracking server's REST API (`/api/2.0/mlflow/...` and the
//! artifact proxy `/api/2.0/mlflow-artifacts/...`): the model registry as a source of model files
//! ([`registry`]) and runs logged from evaluations ([`tracking`]). Blocking (the ensemble loader
//! runs on blocking threads; async callers wrap it in `spawn_blocking`).
//!
//! The tracking URI is `http(s)://host:port`, with an optional path prefix. A token
//! (`MLFLOW_TRACKING_TOKEN`) is sent as `authorization: Bearer`; a user and password
//! (`MLFLOW_TRACKING_USERNAME` / `_PASSWORD`) as basic authentication. Nothing here ever fetches
//! or unpickles a Python model: only files the caller names.

pub mod registry;
pub mod tracking;

use std::io::Write;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

pub use registry::{Dataset, FileInfo, ModelVersion, Run};

/// How to reach a tracking server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackingConfig {
    /// `http(s)://host:port[/prefix]`.
    pub uri: String,
    /// Sent as a bearer token.
    pub token: Option<String>,
    /// Basic authentication, when there is no token.
    pub username: Option<String>,
    pub password: Option<String>,
}

/// What went wrong talking to MLflow; every message names the server.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MlflowError {
    /// No connection, or no answer in time.
    #[error("MLflow at {uri} is unreachable: {reason}")]
    Unreachable { uri: String, reason: String },
    /// The server answered that the thing asked for does not exist.
    #[error("{message} (MLflow at {uri})")]
    NotFound { uri: String, message: String },
    /// Any other refusal or unexpected answer.
    #[error("MLflow at {uri} answered {status} to {what}: {message}")]
    Api {
        uri: String,
        what: String,
        status: u16,
        message: String,
    },
    /// A URI or answer this client cannot use.
    #[error("{0}")]
    Invalid(String),
}

/// MLflow's error body.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    message: String,
}

/// A connection to one tracking server.
#[derive(Clone)]
pub struct Client {
    base: String,
    config: TrackingConfig,
    http: reqwest::blocking::Client,
}

impl Client {
    pub fn new(config: &TrackingConfig) -> Result<Client, MlflowError> {
        let base = config.uri.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(MlflowError::Invalid(format!(
                "MLflow tracking URI {:?} is not an http(s):// address (set it in the manifest's \
                 [mlflow] tracking_uri or MLFLOW_TRACKING_URI)",
                config.uri
            )));
        }
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| MlflowError::Invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(Client {
            base,
            config: config.clone(),
            http,
        })
    }

    /// The tracking URI, as messages name it.
    pub fn uri(&self) -> &str {
        &self.base
    }

    fn authorized(
        &self,
        req: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        match (&self.config.token, &self.config.username) {
            (Some(token), _) => req.bearer_auth(token),
            (None, Some(user)) => req.basic_auth(user, self.config.password.as_ref()),
            (None, None) => req,
        }
    }

    fn unreachable(&self, e: reqwest::Error) -> MlflowError {
        MlflowError::Unreachable {
            uri: self.base.clone(),
            reason: error_chain(&e),
        }
    }

    /// Sends `req` and checks the status; `what` names the call in errors.
    fn send(
        &self,
        req: reqwest::blocking::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::blocking::Response, MlflowError> {
        let response = self
            .authorized(req)
            .send()
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().unwrap_or_default();
        let body: ErrorBody = serde_json::from_str(&text).unwrap_or_default();
        let message = if body.message.is_empty() {
            text.chars().take(300).collect()
        } else {
            body.message
        };
        if status == reqwest::StatusCode::NOT_FOUND
            || body.error_code == "RESOURCE_DOES_NOT_EXIST"
            || (body.error_code == "INVALID_PARAMETER_VALUE" && message.contains("not found"))
        {
            return Err(MlflowError::NotFound {
                uri: self.base.clone(),
                message,
            });
        }
        Err(MlflowError::Api {
            uri: self.base.clone(),
            what: what.to_owned(),
            status: status.as_u16(),
            message,
        })
    }

    /// `GET /api/2.0/mlflow/<path>?<query>`, as JSON.
    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        let response = self.send(self.http.get(url).query(query), path)?;
        self.json(response, path)
    }

    /// `POST /api/2.0/mlflow/<path>` with a JSON body, as JSON.
    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        let response = self.send(self.http.post(url).json(body), path)?;
        self.json(response, path)
    }

    fn json<T: DeserializeOwned>(
        &self,
        response: reqwest::blocking::Response,
        what: &str,
    ) -> Result<T, MlflowError> {
        let text = response.text().map_err(|e| self.unreachable(e))?;
        serde_json::from_str(&text).map_err(|e| MlflowError::Api {
            uri: self.base.clone(),
            what: what.to_owned(),
            status: 200,
            message: format!(
                "unexpected answer ({e}): {}",
                text.chars().take(300).collect::<String>()
            ),
        })
    }

    /// The artifact proxy's path for an artifact URI (`mlflow-artifacts:/<path>` or
    /// `mlflow-artifacts://host:port/<path>`).
    fn artifact_path<'u>(&self, uri: &'u str) -> Result<&'u str, MlflowError> {
        let rest = uri.strip_prefix("mlflow-artifacts:").ok_or_else(|| {
            MlflowError::Invalid(format!(
                "artifact {uri} is not served by the tracking server: only mlflow-artifacts:/ \
                 locations are read (run the server with --artifacts-destination, which \
                 proxies artifacts)"
            ))
        })?;
        let path = match rest.strip_prefix("//") {
            // An authority names the server; the path follows it.
            Some(with_host) => with_host.find('/').map_or("", |i| &with_host[i..]),
            None => rest,
        };
        Ok(path.trim_start_matches('/'))
    }

    /// The files directly under the artifact directory `uri`.
    pub fn list_artifacts(&self, uri: &str) -> Result<Vec<FileInfo>, MlflowError> {
        #[derive(Deserialize)]
        struct Listing {
            #[serde(default)]
            files: Vec<FileInfo>,
        }
        let path = self.artifact_path(uri)?;
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts", self.base);
        let what = format!("listing {uri}");
        let response = self.send(self.http.get(url).query(&[("path", path)]), &what)?;
        let listing: Listing = self.json(response, &what)?;
        Ok(listing.files)
    }

    /// Streams the artifact file `uri` into `out`; returns its size.
    pub fn download(&self, uri: &str, out: &mut dyn Write) -> Result<u64, MlflowError> {
        let path = self.artifact_path(uri)?;
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{path}", self.base);
        let what = format!("downloading {uri}");
        let mut response = self.send(self.http.get(url), &what)?;
        response.copy_to(out).map_err(|e| MlflowError::Unreachable {
            uri: self.base.clone(),
            reason: format!("{what}: {}", error_chain(&e)),
        })
    }

    /// Uploads `bytes` as the artifact file `uri`.
    pub fn upload(&self, uri: &str, bytes: Vec<u8>) -> Result<(), MlflowError> {
        let path = self.artifact_path(uri)?;
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{path}", self.base);
        self.send(self.http.put(url).body(bytes), &format!("uploading {uri}"))?;
        Ok(())
    }
}

/// An error and its causes, on one line (reqwest's own message hides the cause).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out += ": ";
            out += &text;
        }
        source = s.source();
    }
    out
}
