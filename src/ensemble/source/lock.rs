//! The lock file: `M.lock` beside manifest `M`, written by `lastmile lock M`, holding for every
//! model the source it was resolved from, what that resolved to (registry version, run, artifact)
//! and the content hash. A manifest with a lock beside it loads exactly those files: a registry
//! model comes from the cache by hash (no server needed) or is fetched from the locked artifact
//! and checked; a local file must still have the locked hash. A model whose `path` changed since
//! (or a new one) fails the load until the lock is written again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ensemble::provenance::{FileProvenance, RegistryOrigin};
use crate::ensemble::Ensemble;

/// The lock file's format version.
pub const LOCK_VERSION: u32 = 1;

/// One locked file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedFile {
    /// As the manifest writes it.
    pub source: String,
    pub sha256: String,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryOrigin>,
}

/// One locked model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedModel {
    pub name: String,
    pub source: String,
    pub sha256: String,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryOrigin>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<LockedFile>,
}

impl LockedModel {
    pub fn file(&self) -> LockedFile {
        LockedFile {
            source: self.source.clone(),
            sha256: self.sha256.clone(),
            bytes: self.bytes,
            registry: self.registry.clone(),
        }
    }
}

/// A whole lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    pub lock_version: u32,
    /// The ensemble it was written for (for people reading it).
    pub ensemble: String,
    pub version: String,
    #[serde(default, rename = "model")]
    pub models: Vec<LockedModel>,
}

/// `M.lock` for manifest `M`.
pub fn lock_path(manifest: &Path) -> PathBuf {
    let mut name = manifest.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl LockedFile {
    fn of(f: &FileProvenance) -> LockedFile {
        LockedFile {
            source: f.source.clone(),
            sha256: f.sha256.clone(),
            bytes: f.bytes,
            registry: f.registry.clone(),
        }
    }
}

impl LockFile {
    /// What `ensemble` was loaded from, to load it again exactly.
    pub fn of(ensemble: &Ensemble) -> LockFile {
        LockFile {
            lock_version: LOCK_VERSION,
            ensemble: ensemble.name.clone(),
            version: ensemble.version.clone(),
            models: ensemble
                .models
                .iter()
                .map(|m| {
                    let p = &m.provenance;
                    LockedModel {
                        name: m.spec.name.clone(),
                        source: p.model.source.clone(),
                        sha256: p.model.sha256.clone(),
                        bytes: p.model.bytes,
                        registry: p.model.registry.clone(),
                        labels: p.labels.as_ref().map(LockedFile::of),
                    }
                })
                .collect(),
        }
    }

    /// The lock beside `manifest`, if there is one.
    pub fn beside(manifest: &Path) -> Result<Option<LockFile>, String> {
        let path = lock_path(manifest);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let lock: LockFile = toml::from_str(&text)
            .map_err(|e| format!("{}: {}", path.display(), e.message().trim()))?;
        if lock.lock_version != LOCK_VERSION {
            return Err(format!(
                "{}: lock_version {} is not one this lastmile reads ({LOCK_VERSION})",
                path.display(),
                lock.lock_version
            ));
        }
        Ok(Some(lock))
    }

    pub fn model(&self, name: &str) -> Option<&LockedModel> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Writes the lock beside `manifest` (through a temporary file: never half written).
    pub fn write_beside(&self, manifest: &Path) -> std::io::Result<PathBuf> {
        let path = lock_path(manifest);
        let body = toml::to_string(self).map_err(std::io::Error::other)?;
        let text = format!(
            "# Written by `lastmile lock`: every model of {:?} as it was resolved, by content hash.\n\
             # A manifest with this file beside it loads exactly these files; re-resolve with\n\
             # `lastmile lock --update-lock`.\n\n{body}",
            file_name(manifest)
        );
        let part = path.with_extension("lock.part");
        std::fs::write(&part, text)?;
        std::fs::rename(&part, &path)?;
        Ok(path)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("m.toml");
        let mut origin = RegistryOrigin {
            tracking_uri: "http://127.0.0.1:5000".into(),
            model: "catalogue-ft".into(),
            version: "3".into(),
            alias: "champion".into(),
            run_id: "abc".into(),
            artifact_uri: "mlflow-artifacts:/1/abc/artifacts/model/model.bin".into(),
            ..RegistryOrigin::default()
        };
        origin.params.insert("lr".into(), "0.5".into());
        origin
            .tags
            .insert("mlflow.source.name".into(), "train.py".into());
        let lock = LockFile {
            lock_version: LOCK_VERSION,
            ensemble: "e".into(),
            version: "1".into(),
            models: vec![
                LockedModel {
                    name: "ft".into(),
                    source: "models:/catalogue-ft@champion".into(),
                    sha256: "ab".repeat(32),
                    bytes: 10,
                    registry: Some(origin),
                    labels: None,
                },
                LockedModel {
                    name: "local".into(),
                    source: "local.bin".into(),
                    sha256: "cd".repeat(32),
                    bytes: 5,
                    registry: None,
                    labels: Some(LockedFile {
                        source: "labels.txt".into(),
                        sha256: "ef".repeat(32),
                        bytes: 3,
                        registry: None,
                    }),
                },
            ],
        };
        let path = lock.write_beside(&manifest).unwrap();
        assert_eq!(path, dir.path().join("m.toml.lock"));
        assert_eq!(LockFile::beside(&manifest).unwrap(), Some(lock));
        assert_eq!(
            LockFile::beside(&dir.path().join("other.toml")).unwrap(),
            None
        );
    }
}
