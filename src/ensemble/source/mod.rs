//! Where a model's files come from, before the runtime opens them: a local path, or the MLflow
//! model registry (`models:/NAME/VERSION`, `models:/NAME@ALIAS`, `runs:/RUN_ID/PATH`, see
//! [`crate::ensemble::manifest`]) through a local content-addressed [`cache`], with a lock file
//! beside the manifest ([`lock`]) and `sha256` pins checked. Every file comes back with its
//! content hash and its [`Provenance`].
//!
//! # Resolving a registry URI
//!
//! alias → version (`registered-models/alias`, `model-versions/get`) → the version's artifacts
//! (`model-versions/get-download-uri`; a `runs:/` URI: the run's artifact root) → the one file
//! of the model's kind among them (or the file the URI names) → the run that made it
//! (`runs/get`: params, tags, dataset inputs). The file is downloaded through the server's
//! artifact proxy once: the cache remembers which content each artifact had, and a later load
//! takes it from there (checking its hash; a corrupted entry is fetched again).
//!
//! With a lock beside the manifest, nothing is resolved: each model is the locked content,
//! taken from the cache by hash (the server is not even asked) or fetched from the locked
//! artifact and checked. A failure anywhere is the model's [`ManifestError`], naming the URI and
//! what failed, so a deploy rejects the candidate and the live ensemble keeps serving.

pub mod cache;
pub mod lock;
mod registry;
mod uri;

use std::path::PathBuf;
use std::sync::OnceLock;

pub use cache::{default_cache_dir, hash_file, ModelCache};
pub use lock::{lock_path, LockFile, LockedFile, LockedModel};
pub use uri::RegistryUri;

use super::manifest::{LabelSource, Manifest, ManifestError};
use super::provenance::{FileProvenance, Provenance, RegistryOrigin};
use crate::mlflow::{Client, TrackingConfig};

/// What a lock file beside the manifest means to a load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LockMode {
    /// Load exactly what it pins; a model it does not pin as the manifest writes it fails.
    #[default]
    Obey,
    /// Keep what it pins where the manifest still names the same source; resolve the others
    /// (`lastmile lock`).
    Refresh,
    /// Resolve everything again (`lastmile lock --update-lock`).
    Ignore,
}

/// How model files are found: the cache, the tracking server when a manifest names none, the
/// credentials, the lock.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The cache directory; None: [`default_cache_dir`].
    pub cache: Option<PathBuf>,
    /// The tracking server for manifests without `[mlflow] tracking_uri` (`MLFLOW_TRACKING_URI`)
    /// and the credentials for any (`MLFLOW_TRACKING_TOKEN`, or user and password).
    pub tracking: TrackingConfig,
    pub lock: LockMode,
}

impl Sources {
    pub fn cache(&self) -> ModelCache {
        ModelCache::new(self.cache.clone().unwrap_or_else(default_cache_dir))
    }
}

/// A model's files, found and hashed.
pub struct Located {
    /// The model file to open.
    pub path: PathBuf,
    /// The labels file to read, for `labels_file`.
    pub labels: Option<PathBuf>,
    pub provenance: Provenance,
}

/// Finding one manifest's files: the lock read once, one MLflow client made when first needed.
pub struct Locator<'a> {
    manifest: &'a Manifest,
    sources: &'a Sources,
    cache: ModelCache,
    lock: Option<LockFile>,
    client: OnceLock<Result<Client, String>>,
}

/// Which file of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    FastText,
    Onnx,
    Labels,
}

impl FileKind {
    pub(crate) fn extensions(self) -> &'static [&'static str] {
        match self {
            FileKind::FastText => &["bin", "ftz"],
            FileKind::Onnx => &["onnx"],
            FileKind::Labels => &["txt", "labels"],
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            FileKind::FastText => "fastText model file",
            FileKind::Onnx => "ONNX model file",
            FileKind::Labels => "labels file",
        }
    }
}

/// One file, found: where it is now, its content, where it came from.
struct Found {
    path: PathBuf,
    provenance: FileProvenance,
}

impl<'a> Locator<'a> {
    /// Reads the lock beside `manifest` (unless `sources` ignore it).
    pub fn new(manifest: &'a Manifest, sources: &'a Sources) -> Result<Self, ManifestError> {
        let lock = match sources.lock {
            LockMode::Ignore => None,
            _ => LockFile::beside(&manifest.path).map_err(|reason| ManifestError {
                file: manifest.path.clone(),
                line: None,
                model: None,
                field: None,
                reason,
            })?,
        };
        Ok(Locator {
            manifest,
            sources,
            cache: sources.cache(),
            lock,
            client: OnceLock::new(),
        })
    }

    /// Whether a lock file pins this load.
    pub fn locked(&self) -> bool {
        self.lock.is_some()
    }

    /// The tracking server: the manifest's, else the default one.
    fn tracking(&self) -> TrackingConfig {
        let mut config = self.sources.tracking.clone();
        if let Some(uri) = &self.manifest.tracking_uri {
            config.uri = uri.clone();
        }
        config
    }

    fn client(&self) -> Result<&Client, String> {
        self.client
            .get_or_init(|| {
                let config = self.tracking();
                if config.uri.trim().is_empty() {
                    return Err(
                        "no MLflow tracking server to resolve it with: set [mlflow] \
                                tracking_uri in the manifest or MLFLOW_TRACKING_URI"
                            .into(),
                    );
                }
                Client::new(&config).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Model `i`'s files, found, hashed and checked against its pin and the lock.
    pub fn locate(&self, i: usize) -> Result<Located, ManifestError> {
        let spec = &self.manifest.models[i];
        let fail = |field: &str, reason: String| self.manifest.model_error(i, Some(field), reason);
        let locked = self.locked_entry(i)?;
        let kind = match spec.kind {
            super::ModelKind::FastText => FileKind::FastText,
            super::ModelKind::Onnx => FileKind::Onnx,
        };
        let model = self
            .find(
                &spec.source,
                &spec.path,
                spec.registry.as_ref(),
                kind,
                locked.map(LockedModel::file).as_ref(),
            )
            .map_err(|reason| fail("path", reason))?;
        if let Some(pin) = &spec.sha256 {
            if *pin != model.provenance.sha256 {
                return Err(fail(
                    "sha256",
                    format!(
                        "the model file does not match its pin: expected sha256 {pin}, found {} \
                         ({})",
                        model.provenance.sha256, model.provenance.source
                    ),
                ));
            }
        }
        let labels = match (&spec.labels, &spec.labels_source) {
            (LabelSource::File(path), Some(source)) => Some(
                self.find(
                    source,
                    path,
                    spec.labels_registry.as_ref(),
                    FileKind::Labels,
                    locked.and_then(|l| l.labels.as_ref()),
                )
                .map_err(|reason| fail("labels_file", reason))?,
            ),
            _ => None,
        };
        Ok(Located {
            path: model.path,
            labels: labels.as_ref().map(|l| l.path.clone()),
            provenance: Provenance {
                model: model.provenance,
                labels: labels.map(|l| l.provenance),
                locked: locked.is_some(),
                declared: spec.declared.clone(),
            },
        })
    }

    /// The lock's entry for model `i`, if the load follows the lock; a stale or missing entry
    /// fails an obeyed lock.
    fn locked_entry(&self, i: usize) -> Result<Option<&LockedModel>, ManifestError> {
        let Some(lock) = &self.lock else {
            return Ok(None);
        };
        let spec = &self.manifest.models[i];
        let lock_file = lock_path(&self.manifest.path);
        let entry = lock.model(&spec.name);
        let labels_match =
            |e: &LockedModel| e.labels.as_ref().map(|l| &l.source) == spec.labels_source.as_ref();
        match entry {
            Some(e) if e.source == spec.source && labels_match(e) => Ok(Some(e)),
            _ if self.sources.lock == LockMode::Refresh => Ok(None),
            Some(e) => Err(self.manifest.model_error(
                i,
                Some("path"),
                format!(
                    "{} locks it to {:?}, but the manifest now names {:?}: run `lastmile lock {}` \
                     to lock what the manifest names",
                    lock_file.display(),
                    e.source,
                    spec.source,
                    self.manifest.path.display()
                ),
            )),
            None => Err(self.manifest.model_error(
                i,
                None,
                format!(
                    "not in {}: run `lastmile lock {}` to lock it",
                    lock_file.display(),
                    self.manifest.path.display()
                ),
            )),
        }
    }

    /// One file: a local path (hashed, checked against the lock) or a registry artifact.
    fn find(
        &self,
        source: &str,
        path: &std::path::Path,
        registry: Option<&RegistryUri>,
        kind: FileKind,
        locked: Option<&LockedFile>,
    ) -> Result<Found, String> {
        let Some(uri) = registry else {
            let (bytes, sha256) =
                hash_file(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if let Some(l) = locked {
                if l.sha256 != sha256 {
                    return Err(format!(
                        "{} changed since it was locked: the lock has sha256 {}, the file has {sha256} \
                         (run `lastmile lock {} --update-lock` to lock the new file)",
                        path.display(),
                        l.sha256,
                        self.manifest.path.display()
                    ));
                }
            }
            return Ok(Found {
                path: path.to_owned(),
                provenance: FileProvenance {
                    source: source.to_owned(),
                    file: path.display().to_string(),
                    sha256,
                    bytes,
                    registry: None,
                },
            });
        };
        let (cached, origin) = match locked {
            Some(l) => (
                self.fetch_locked(uri, l)?,
                l.registry.clone().unwrap_or_default(),
            ),
            None => self.fetch_resolved(uri, kind)?,
        };
        Ok(Found {
            path: cached.path.clone(),
            provenance: FileProvenance {
                source: source.to_owned(),
                file: cached.path.display().to_string(),
                sha256: cached.sha256,
                bytes: cached.bytes,
                registry: Some(origin),
            },
        })
    }
}

/// Folds `[model.provenance]`'s flat facts and the tracking URI into a registry origin.
fn origin_of(tracking_uri: &str, uri: &RegistryUri) -> RegistryOrigin {
    let mut origin = RegistryOrigin {
        tracking_uri: tracking_uri.to_owned(),
        ..RegistryOrigin::default()
    };
    match uri {
        RegistryUri::Version { name, version, .. } => {
            origin.model = name.clone();
            origin.version = version.clone();
        }
        RegistryUri::Alias { name, alias, .. } => {
            origin.model = name.clone();
            origin.alias = alias.clone();
        }
        RegistryUri::Run { run_id, .. } => origin.run_id = run_id.clone(),
    }
    origin
}
