//! Registry files for a [`Locator`]: resolving a URI through the tracking server (alias →
//! version → artifacts → the file → its run), and fetching a file into the cache, or taking it
//! from there.

use super::cache::{Cached, Lookup};
use super::{origin_of, FileKind, Locator, LockedFile, RegistryUri};
use crate::ensemble::provenance::RegistryOrigin;
use crate::mlflow::{Client, FileInfo, MlflowError};

/// A download's failure: the cache's disk or the server.
enum Fetch {
    Io(std::io::Error),
    Mlflow(MlflowError),
}

impl From<std::io::Error> for Fetch {
    fn from(e: std::io::Error) -> Self {
        Fetch::Io(e)
    }
}

impl Locator<'_> {
    /// The locked content of `uri`: from the cache by hash, else fetched from the locked
    /// artifact and checked against the lock.
    pub(super) fn fetch_locked(&self, uri: &RegistryUri, l: &LockedFile) -> Result<Cached, String> {
        match self.cache.get(&l.sha256) {
            Ok(Lookup::Hit(cached)) => return Ok(cached),
            Ok(Lookup::Miss | Lookup::Corrupt) => {}
            Err(e) => return Err(self.cache_error(e)),
        }
        let origin = l.registry.clone().unwrap_or_default();
        if origin.artifact_uri.is_empty() {
            return Err(format!(
                "{uri}: the lock names no artifact to fetch it from (lock it again)"
            ));
        }
        let client = self.client_or(&origin.tracking_uri).map_err(|e| {
            format!(
                "{uri} (locked sha256 {}) is not in the model cache {} and cannot be fetched: {e}",
                l.sha256,
                self.cache.root().display()
            )
        })?;
        let cached = self.download(&client, uri, &origin.artifact_uri, Some(l.bytes))?;
        if cached.sha256 != l.sha256 {
            return Err(format!(
                "{uri}: {} has sha256 {}, but the lock pins {}: the artifact changed since it was \
                 locked",
                origin.artifact_uri, cached.sha256, l.sha256
            ));
        }
        Ok(cached)
    }

    /// The client for this manifest, or (for a locked file, when none is configured) one for
    /// the server the lock recorded.
    fn client_or(&self, recorded: &str) -> Result<std::borrow::Cow<'_, Client>, String> {
        match self.client() {
            Ok(c) => Ok(std::borrow::Cow::Borrowed(c)),
            Err(e) if recorded.is_empty() => Err(e),
            Err(_) => {
                let mut config = self.tracking();
                config.uri = recorded.to_owned();
                Client::new(&config)
                    .map(std::borrow::Cow::Owned)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Resolves `uri` through the tracking server and fetches its file (once: the cache
    /// remembers each artifact's content).
    pub(super) fn fetch_resolved(
        &self,
        uri: &RegistryUri,
        kind: FileKind,
    ) -> Result<(Cached, RegistryOrigin), String> {
        let client = self.client().map_err(|e| format!("{uri}: {e}"))?;
        let at = |e: MlflowError| format!("{uri}: {e}");
        let mut origin = origin_of(client.uri(), uri);
        let mut run = None;
        let (dir, run_id) = match uri {
            RegistryUri::Version { name, version, .. } => {
                let v = client.model_version(name, version).map_err(at)?;
                self.version_dir(client, uri, v, &mut origin)?
            }
            RegistryUri::Alias { name, alias, .. } => {
                let v = client.alias(name, alias).map_err(at)?;
                self.version_dir(client, uri, v, &mut origin)?
            }
            RegistryUri::Run { run_id, .. } => {
                let r = client.run(run_id).map_err(at)?;
                let dir = r.artifact_uri.clone();
                run = Some(r);
                (dir, run_id.clone())
            }
        };
        let (artifact, size) = pick(client, uri, &dir, uri.file_path(), kind)?;
        if run.is_none() && !run_id.is_empty() {
            run = Some(client.run(&run_id).map_err(at)?);
        }
        if let Some(r) = run {
            origin.run_id = r.run_id;
            origin.run_name = r.run_name;
            origin.experiment_id = r.experiment_id;
            origin.params = r.params;
            origin.tags = r.tags;
            origin.datasets = r.datasets;
        }
        origin.artifact_uri = artifact.clone();
        let key = format!("{}\n{artifact}", client.uri());
        if let Some(sha) = self.cache.recall(&key) {
            match self.cache.get(&sha) {
                Ok(Lookup::Hit(c)) if size.is_none_or(|s| s == c.bytes) => return Ok((c, origin)),
                Ok(_) => {}
                Err(e) => return Err(self.cache_error(e)),
            }
        }
        let cached = self.download(client, uri, &artifact, size)?;
        if let Err(e) = self.cache.remember(&key, &cached.sha256) {
            tracing::warn!(%artifact, "model cache: cannot remember the artifact's hash: {e}");
        }
        Ok((cached, origin))
    }

    /// A model version's artifact directory and run; fills the version in `origin`.
    fn version_dir(
        &self,
        client: &Client,
        uri: &RegistryUri,
        v: crate::mlflow::ModelVersion,
        origin: &mut RegistryOrigin,
    ) -> Result<(String, String), String> {
        if !v.status.is_empty() && v.status != "READY" {
            return Err(format!(
                "{uri}: version {} of {} is {} (not READY)",
                v.version, v.name, v.status
            ));
        }
        let dir = client
            .download_uri(&v.name, &v.version)
            .map_err(|e| format!("{uri}: {e}"))?;
        origin.version = v.version;
        Ok((dir, v.run_id))
    }

    /// Downloads `artifact` into the cache; `size`, when known, is checked.
    fn download(
        &self,
        client: &Client,
        uri: &RegistryUri,
        artifact: &str,
        size: Option<u64>,
    ) -> Result<Cached, String> {
        let cached = self
            .cache
            .put(|w| {
                client
                    .download(artifact, w)
                    .map(drop)
                    .map_err(Fetch::Mlflow)
            })
            .map_err(|e| match e {
                Fetch::Io(e) => self.cache_error(e),
                Fetch::Mlflow(e) => format!("{uri}: {e}"),
            })?;
        if let Some(size) = size.filter(|&s| s != cached.bytes) {
            return Err(format!(
                "{uri}: {artifact} came with {} bytes, {size} expected",
                cached.bytes
            ));
        }
        tracing::info!(%uri, %artifact, sha256 = %cached.sha256, bytes = cached.bytes, "model cache: fetched");
        Ok(cached)
    }

    fn cache_error(&self, e: std::io::Error) -> String {
        format!("model cache {}: {e}", self.cache.root().display())
    }
}

fn base_name(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

fn has_extension(name: &str, kind: FileKind) -> bool {
    name.rsplit_once('.').is_some_and(|(_, ext)| {
        kind.extensions()
            .contains(&ext.to_ascii_lowercase().as_str())
    })
}

fn names(files: &[FileInfo]) -> String {
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            let n = base_name(&f.path);
            if f.is_dir {
                format!("{n}/")
            } else {
                n.to_owned()
            }
        })
        .collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

/// The artifact file `uri` names under `dir` (its `sub` path, or the one file of `kind`), and
/// its size when the listing gives it. Only files of `kind` are ever picked.
fn pick(
    client: &Client,
    uri: &RegistryUri,
    dir: &str,
    sub: Option<&str>,
    kind: FileKind,
) -> Result<(String, Option<u64>), String> {
    let dir = dir.trim_end_matches('/');
    let list = |d: &str| client.list_artifacts(d).map_err(|e| format!("{uri}: {e}"));
    let Some(sub) = sub.map(|s| s.trim_matches('/')).filter(|s| !s.is_empty()) else {
        return choose(uri, dir, &list(dir)?, kind);
    };
    let (parent, name) = match sub.rsplit_once('/') {
        Some((p, n)) => (format!("{dir}/{p}"), n),
        None => (dir.to_owned(), sub),
    };
    let files = list(&parent)?;
    let Some(entry) = files.iter().find(|f| base_name(&f.path) == name) else {
        return Err(format!(
            "{uri}: no artifact {name:?} in {parent} (it has: {})",
            names(&files)
        ));
    };
    let path = format!("{parent}/{name}");
    if entry.is_dir {
        return choose(uri, &path, &list(&path)?, kind);
    }
    if !has_extension(name, kind) {
        return Err(not_a_model_file(uri, kind, name));
    }
    Ok((path, entry.file_size))
}

fn not_a_model_file(uri: &RegistryUri, kind: FileKind, what: &str) -> String {
    format!(
        "{uri}: {what} is not a {} (.{}): only fastText, ONNX and label files are fetched, never a \
         pickled pyfunc model",
        kind.describe(),
        kind.extensions().join(", .")
    )
}

/// The one file of `kind` among `files` (directly under `dir`).
fn choose(
    uri: &RegistryUri,
    dir: &str,
    files: &[FileInfo],
    kind: FileKind,
) -> Result<(String, Option<u64>), String> {
    let fit: Vec<&FileInfo> = files
        .iter()
        .filter(|f| !f.is_dir && has_extension(base_name(&f.path), kind))
        .collect();
    match fit.as_slice() {
        [one] => Ok((format!("{dir}/{}", base_name(&one.path)), one.file_size)),
        [] => Err(not_a_model_file(
            uri,
            kind,
            &format!("nothing among its artifacts ({})", names(files)),
        )),
        many => Err(format!(
            "{uri}: its artifacts hold several {}s ({}): name one, e.g. {uri}/{}",
            kind.describe(),
            many.iter()
                .map(|f| base_name(&f.path))
                .collect::<Vec<_>>()
                .join(", "),
            base_name(&many[0].path)
        )),
    }
}
