//! Registry URIs as a manifest writes them, MLflow's own forms: `models:/NAME/VERSION`,
//! `models:/NAME@ALIAS` and `runs:/RUN_ID/PATH`, each optionally followed by a path to one file
//! inside the model's artifacts (`models:/catalogue-ft/3/model.bin`).

use std::fmt;

/// A model file (or labels file) in the MLflow registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegistryUri {
    /// A registered model's version, by number.
    Version {
        name: String,
        version: String,
        path: Option<String>,
    },
    /// The version an alias points at when the manifest is loaded.
    Alias {
        name: String,
        alias: String,
        path: Option<String>,
    },
    /// A run's artifact.
    Run { run_id: String, path: String },
}

impl RegistryUri {
    /// Whether `text` is written as a registry URI (then it must parse as one).
    pub fn looks_like(text: &str) -> bool {
        text.starts_with("models:/") || text.starts_with("runs:/")
    }

    pub fn parse(text: &str) -> Result<RegistryUri, String> {
        let path_of = |parts: &[&str]| {
            let p = parts.join("/");
            (!p.is_empty()).then_some(p)
        };
        if let Some(rest) = text.strip_prefix("models:/") {
            let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
            let Some(first) = parts.first() else {
                return Err(format!(
                    "{text:?}: expected models:/NAME/VERSION or models:/NAME@ALIAS"
                ));
            };
            if let Some((name, alias)) = first.split_once('@') {
                if name.is_empty() || alias.is_empty() {
                    return Err(format!("{text:?}: expected models:/NAME@ALIAS"));
                }
                return Ok(RegistryUri::Alias {
                    name: name.into(),
                    alias: alias.into(),
                    path: path_of(&parts[1..]),
                });
            }
            let version = parts.get(1).copied().unwrap_or_default();
            if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "{text:?}: expected models:/NAME/VERSION (a version number) or models:/NAME@ALIAS"
                ));
            }
            return Ok(RegistryUri::Version {
                name: (*first).into(),
                version: version.into(),
                path: path_of(&parts[2..]),
            });
        }
        if let Some(rest) = text.strip_prefix("runs:/") {
            let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
            if parts.len() < 2 {
                return Err(format!("{text:?}: expected runs:/RUN_ID/PATH"));
            }
            return Ok(RegistryUri::Run {
                run_id: parts[0].into(),
                path: parts[1..].join("/"),
            });
        }
        Err(format!(
            "{text:?} is not a registry URI (models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH)"
        ))
    }

    /// The path inside the artifacts the URI names, if any.
    pub fn file_path(&self) -> Option<&str> {
        match self {
            RegistryUri::Version { path, .. } | RegistryUri::Alias { path, .. } => path.as_deref(),
            RegistryUri::Run { path, .. } => Some(path),
        }
    }
}

impl fmt::Display for RegistryUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (head, path) = match self {
            RegistryUri::Version {
                name,
                version,
                path,
            } => (format!("models:/{name}/{version}"), path.as_deref()),
            RegistryUri::Alias { name, alias, path } => {
                (format!("models:/{name}@{alias}"), path.as_deref())
            }
            RegistryUri::Run { run_id, path } => (format!("runs:/{run_id}"), Some(path.as_str())),
        };
        f.write_str(&head)?;
        if let Some(p) = path {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_prints_back() {
        for text in [
            "models:/catalogue-ft/3",
            "models:/catalogue-ft@champion",
            "models:/catalogue-ft/3/model.bin",
            "models:/catalogue-ft@champion/labels.txt",
            "runs:/0123abcd/model/model.onnx",
        ] {
            let uri = RegistryUri::parse(text).unwrap();
            assert_eq!(uri.to_string(), text);
        }
        assert_eq!(
            RegistryUri::parse("models:/m@prod").unwrap(),
            RegistryUri::Alias {
                name: "m".into(),
                alias: "prod".into(),
                path: None
            }
        );
    }

    #[test]
    fn malformed_uris_say_what_is_expected() {
        for text in [
            "models:/",
            "models:/m",
            "models:/m/three",
            "models:/@a",
            "runs:/abc",
        ] {
            let e = RegistryUri::parse(text).unwrap_err();
            assert!(e.contains("expected"), "{text}: {e}");
        }
    }
}
