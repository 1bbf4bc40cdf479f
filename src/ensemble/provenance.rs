//! Where each model of an ensemble came from, kept with it: the file's content hash and size,
//! its source as the manifest writes it (a path, or a registry URI with the version it resolved
//! to and the run that made it: params, tags, dataset inputs), whether a lock file pinned it,
//! and what the manifest's `[model.provenance]` table declares.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::mlflow::Dataset;

/// Where a file fetched from the MLflow registry came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryOrigin {
    pub tracking_uri: String,
    /// The registered model and the version the URI resolved to (empty for a `runs:/` URI).
    pub model: String,
    pub version: String,
    /// The alias the URI named, if it named one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub alias: String,
    pub run_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub experiment_id: String,
    /// The artifact file that was downloaded.
    pub artifact_uri: String,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub datasets: Vec<Dataset>,
}

/// One file a model is made of (the model file, or an ONNX model's labels file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FileProvenance {
    /// As the manifest writes it: a path (resolved against the manifest) or a registry URI.
    pub source: String,
    /// The file that was read (for a registry source, the cache entry).
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryOrigin>,
}

/// What is known about where one model came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Provenance {
    pub model: FileProvenance,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<FileProvenance>,
    /// Loaded as the lock file beside the manifest pins it.
    pub locked: bool,
    /// The manifest's `[model.provenance]` table (training run, data version, code commit,
    /// parameters, ...), flattened to `key` / `table.key` strings.
    pub declared: BTreeMap<String, String>,
}

impl Provenance {
    /// Every fact as `key = value` strings, for formats that only carry flat string parameters
    /// (the Open Inference Protocol's model metadata): `sha256`, `bytes`, `source`,
    /// `registry.version`, `run.params.lr`, `declared.data_version`, ...
    pub fn flat(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        file_facts(&mut out, "", &self.model);
        if let Some(labels) = &self.labels {
            file_facts(&mut out, "labels.", labels);
        }
        out.push(("locked".into(), self.locked.to_string()));
        for (k, v) in &self.declared {
            out.push((format!("declared.{k}"), v.clone()));
        }
        out
    }
}

fn file_facts(out: &mut Vec<(String, String)>, prefix: &str, f: &FileProvenance) {
    let mut put = |k: &str, v: String| {
        if !v.is_empty() {
            out.push((format!("{prefix}{k}"), v));
        }
    };
    put("source", f.source.clone());
    put("sha256", f.sha256.clone());
    put("bytes", f.bytes.to_string());
    let Some(r) = &f.registry else {
        return;
    };
    put("registry.tracking_uri", r.tracking_uri.clone());
    put("registry.model", r.model.clone());
    put("registry.version", r.version.clone());
    put("registry.alias", r.alias.clone());
    put("registry.artifact_uri", r.artifact_uri.clone());
    put("run.id", r.run_id.clone());
    put("run.name", r.run_name.clone());
    for (k, v) in &r.params {
        put(&format!("run.params.{k}"), v.clone());
    }
    for (k, v) in &r.tags {
        put(&format!("run.tags.{k}"), v.clone());
    }
    for (n, d) in r.datasets.iter().enumerate() {
        let context = if d.context.is_empty() {
            String::new()
        } else {
            format!(" ({})", d.context)
        };
        put(
            &format!("run.datasets.{n}"),
            format!("{} digest {} from {}{context}", d.name, d.digest, d.source),
        );
    }
}

/// A `[model.provenance]` table as flat strings: nested tables' keys joined with dots, other
/// values written as TOML writes them (strings without quotes).
pub fn flatten_declared(table: &toml::Table) -> BTreeMap<String, String> {
    fn walk(out: &mut BTreeMap<String, String>, prefix: &str, table: &toml::Table) {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => walk(out, &key, t),
                toml::Value::String(s) => {
                    out.insert(key, s.clone());
                }
                other => {
                    out.insert(key, other.to_string());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&mut out, "", table);
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::ensemble::source::RegistryUri;
    use crate::ensemble::Manifest;

    fn parse(model: &str) -> Result<Manifest, String> {
        let text = format!(
            "name = \"p\"\nversion = \"1\"\n[defaults]\nfields = [\"title\"]\n\n[[model]]\nname = \"m\"\nkind = \"fasttext\"\n{model}"
        );
        Manifest::parse(Path::new("/nowhere/m.toml"), &text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_registry_path_a_pin_and_a_provenance_table_are_read() {
        let pin = "AB".repeat(32);
        let m = parse(&format!(
            "path = \"models:/cat@champion\"\nsha256 = \"sha256:{pin}\"\n\
             [model.provenance]\ndata_version = \"v14\"\nepochs = 5\nparameters = {{ lr = 0.5 }}\n"
        ))
        .unwrap();
        let spec = &m.models[0];
        assert_eq!(spec.source, "models:/cat@champion");
        assert!(
            matches!(&spec.registry, Some(RegistryUri::Alias { name, alias, .. })
            if name == "cat" && alias == "champion")
        );
        assert_eq!(spec.sha256.as_deref(), Some("ab".repeat(32).as_str()));
        let declared: Vec<(&str, &str)> = spec
            .declared
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            declared,
            [
                ("data_version", "v14"),
                ("epochs", "5"),
                ("parameters.lr", "0.5")
            ]
        );
    }

    #[test]
    fn bad_pins_and_uris_name_their_field() {
        let e = parse("path = \"models:/cat/3\"\nsha256 = \"abc\"\n").unwrap_err();
        assert!(
            e.contains("field `sha256`") && e.contains("64 hex digits"),
            "{e}"
        );
        let e = parse("path = \"models:/cat/three\"\n").unwrap_err();
        assert!(
            e.contains("field `path`") && e.contains("version number"),
            "{e}"
        );
        let text = "name = \"p\"\nversion = \"1\"\n[defaults]\nsha256 = \"x\"\n[[model]]\nname = \"m\"\nkind = \"fasttext\"\npath = \"models:/a/1\"\nfields = [\"t\"]\n";
        let e = Manifest::parse(Path::new("m.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`sha256` cannot have a default"), "{e}");
    }

    #[test]
    fn flat_facts_name_every_part() {
        let mut p = super::Provenance::default();
        p.model.source = "models:/cat/3".into();
        p.model.sha256 = "ab".into();
        p.model.registry = Some(super::RegistryOrigin {
            version: "3".into(),
            run_id: "r1".into(),
            ..Default::default()
        });
        p.model
            .registry
            .as_mut()
            .unwrap()
            .params
            .insert("lr".into(), "0.5".into());
        p.declared.insert("data_version".into(), "v14".into());
        let flat: std::collections::BTreeMap<String, String> = p.flat().into_iter().collect();
        assert_eq!(flat["registry.version"], "3");
        assert_eq!(flat["run.id"], "r1");
        assert_eq!(flat["run.params.lr"], "0.5");
        assert_eq!(flat["declared.data_version"], "v14");
        assert_eq!(flat["locked"], "false");
    }
}
