//! The manifest file: parsing the TOML, filling `[defaults]`, resolving paths against the manifest's
//! directory, and checking everything that can be checked without opening a model. Every error names
//! the file, the line, the model and the field.
//!
//! ```toml
//! name = "catalogue"
//! version = "2026-11-27"
//! label_file = "labels.txt"        # optional: the label space, one label per line, in this order
//! rename_file = "renames.tsv"      # optional: `old<TAB>new` per line, applied to every model's labels
//! fields = ["title", "description", "brand"]  # optional: the request fields; default: those the
//!                                  # models read. Rules may name only these.
//! validation = "valid.jsonl"       # optional: labelled JSON Lines (fields + `label`) that gates
//!                                  # this ensemble's promotion in a hot swap (see `crate::deploy`)
//!
//! [rename]                         # optional: inline renames, applied after rename_file
//! "Kitchen > Knifes" = "Kitchen > Knives"
//!
//! [defaults]                       # any [[model]] key except name and path
//! fields = ["title", "description"]
//!
//! [[model]]
//! name = "ft-title"                # unique
//! kind = "fasttext"                # fasttext | onnx
//! path = "models/ft-title.bin"     # .bin or .ftz; labels come from the model
//! fields = ["title"]               # request text fields, joined with a space in this order
//!
//! [[model]]
//! name = "mlp"
//! kind = "onnx"
//! path = "models/mlp.onnx"
//! feed = "text"                    # text (default): a string tensor [N] or [N,1] of the joined fields
//!                                  # features: a float tensor [N, width] from one numeric field
//! input = "text"                   # input tensor (default: the model's only input)
//! output = "probabilities"         # score tensor (default: the only float output, or sklearn's)
//! scores = "probabilities"         # probabilities (default) | logits (softmax applied here)
//! labels_file = "models/mlp.txt"   # labels, one per line in output column order; or
//!                                  # labels_metadata = "<key>" (custom metadata), or
//!                                  # labels_zipmap = true (sklearn-onnx ZipMap keys)
//! intra_threads = 1                # onnxruntime threads per run (default 1)
//!
//! [[model]]                        # any model, or [defaults]:
//! max_batch = 32                   # most rows in one run (default 32; 1 turns batching off)
//! max_delay_ms = 0                 # longest a row waits for others while a thread is free
//!                                  # (default 0: never wait; batches form under load)
//! timeout_ms = 200                 # optional: past this, counted from the request's admission,
//!                                  # an item is answered without the model (ONNX runs this long
//!                                  # are stopped); see `failure` for what a missing member does
//! sha256 = "9f86d0..."             # optional pin: the file must have this content, else the
//!                                  # load fails (naming the expected and the found hash)
//!
//! [model.provenance]               # optional, any keys: shown with the model wherever it is
//! training_run = "2026-11-27-a"    # described (GET /v1/ensemble, V2 metadata, check, status)
//! data_version = "catalogue-v14"
//! code_commit = "4f1c2e9"
//! parameters = { dim = 64, epochs = 5 }
//! ```
//!
//! ## Models from the MLflow model registry
//!
//! `path` (and an ONNX model's `labels_file`) may be a registry URI instead of a file:
//! `models:/NAME/VERSION`, `models:/NAME@ALIAS` or `runs:/RUN_ID/PATH`, optionally followed by the
//! file inside the model's artifacts (`models:/catalogue-ft/3/model.bin`; without one, the
//! artifacts must hold exactly one file of the model's kind: `.bin`/`.ftz` for fastText, `.onnx`).
//! Only such files (and `.txt` label files) are ever fetched; a pickled pyfunc never is.
//!
//! ```toml
//! [mlflow]
//! tracking_uri = "http://mlflow.internal:5000"   # else MLFLOW_TRACKING_URI
//! ```
//!
//! Each load resolves the URI through the tracking server (alias → version → run → artifact)
//! and keeps the file in a local content-addressed cache (`--model-cache`), downloaded once. A
//! lock file beside the manifest (`M.lock`, written by `lastmile lock M`) pins every model to the
//! version and content it resolved to then: see [`crate::ensemble::source`].
//!
//! `weight`, `temperature` and `group`, the `[vote]` table and the `[[rule]]` list belong to the
//! combiner: see [`crate::combine`]. The `[monitor]` table (drift thresholds) is documented in
//! `monitor.rs` here ([`MonitorConfig`]), the `[cascade]` table (early exit) in `cascade.rs`
//! ([`CascadeConfig`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::combine::{RuleConfig, VoteConfig};
mod cascade;
mod failure;
mod model;
mod monitor;

pub use cascade::{CascadeConfig, StageConfig, StageTest};
pub use monitor::MonitorConfig;

pub use failure::FailurePolicy;

use crate::ensemble::sha256_hex;
use crate::ensemble::source::RegistryUri;
use crate::runtime::onnx::{Feed, OnnxLabels, ScoreKind};

/// A manifest that cannot be served: where, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ManifestError {
    pub file: PathBuf,
    /// 1-based line in `file`, when known.
    pub line: Option<usize>,
    pub model: Option<String>,
    pub field: Option<String>,
    pub reason: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        match (&self.model, &self.field) {
            (Some(m), Some(k)) => write!(f, "model {m:?}, field `{k}`: ")?,
            (Some(m), None) => write!(f, "model {m:?}: ")?,
            (None, Some(k)) => write!(f, "`{k}`: ")?,
            (None, None) => {}
        }
        f.write_str(&self.reason)
    }
}

/// Which runtime serves a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    FastText,
    Onnx,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::FastText => "fasttext",
            ModelKind::Onnx => "onnx",
        }
    }
}

/// Where an ONNX model's labels come from, with the labels file's path resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelSource {
    /// The fastText model's own dictionary.
    Model,
    File(PathBuf),
    Metadata(String),
    ZipMap,
}

/// How to read an ONNX model: its bindings as the manifest gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxBinding {
    pub input: Option<String>,
    pub output: Option<String>,
    pub scores: ScoreKind,
    pub intra_threads: usize,
}

/// How a model batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most rows in one run; 1 turns batching off.
    pub max_batch: usize,
    /// Longest a row waits for more rows to join it while a thread is free.
    pub max_delay: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch: 32,
            max_delay: Duration::ZERO,
        }
    }
}

/// One `[[model]]` entry, defaults filled and paths resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    /// Line of the entry's `[[model]]` header.
    pub line: usize,
    /// Line of each key the entry (or `[defaults]`) sets.
    pub key_lines: BTreeMap<String, usize>,
    pub kind: ModelKind,
    /// The model file (for a registry source, empty until the load fetches it).
    pub path: PathBuf,
    /// `path` as the manifest writes it.
    pub source: String,
    /// The registry URI `path` is, if it is one.
    pub registry: Option<RegistryUri>,
    /// The `sha256` pin: the model file must have this content.
    pub sha256: Option<String>,
    /// `labels_file` as the manifest writes it, and the registry URI it is, if it is one.
    pub labels_source: Option<String>,
    pub labels_registry: Option<RegistryUri>,
    /// The `[model.provenance]` table, flattened.
    pub declared: BTreeMap<String, String>,
    /// Request fields the model reads (for `Feed::Features`, exactly one).
    pub fields: Vec<String>,
    pub feed: Feed,
    pub labels: LabelSource,
    /// ONNX only.
    pub onnx: Option<OnnxBinding>,
    pub weight: f32,
    pub temperature: f32,
    pub group: Option<String>,
    pub batch: BatchConfig,
    /// How long the model may take to answer an item once its request is admitted (queueing
    /// included); past it the item is answered without it (see [`FailurePolicy`]).
    pub timeout: Option<Duration>,
}

/// A parsed and checked manifest. Models are not loaded yet.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    /// The MLflow tracking server registry URIs are resolved against (`[mlflow] tracking_uri`).
    pub tracking_uri: Option<String>,
    /// sha256 of the manifest text that was parsed (hex): what a deploy compares, never a
    /// second read of a file that may have changed since.
    pub sha256: String,
    pub name: String,
    pub version: String,
    pub label_file: Option<PathBuf>,
    /// The declared request fields, if the manifest declares them.
    pub fields: Option<Vec<String>>,
    /// The validation set that gates a hot swap to this ensemble, if named. Not opened here.
    pub validation: Option<PathBuf>,
    /// Old label name → new, from `rename_file` then `[rename]`.
    pub renames: HashMap<String, String>,
    pub models: Vec<ModelSpec>,
    pub vote: VoteConfig,
    pub rules: Vec<RuleConfig>,
    /// `[monitor]`: how prediction drift is judged.
    pub monitor: MonitorConfig,
    /// What an item's answer does when a member fails or runs out of time.
    pub failure: FailurePolicy,
    /// `[cascade]`: the stages that answer most items with a few members.
    pub cascade: Option<CascadeConfig>,
    /// Line of the `[vote]` table and of each `[[rule]]`, for the combiner's errors.
    pub vote_line: Option<usize>,
    pub rule_lines: Vec<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    version: Spanned<toml::Value>,
    label_file: Option<Spanned<String>>,
    rename_file: Option<Spanned<String>>,
    fields: Option<Vec<String>>,
    validation: Option<String>,
    #[serde(default)]
    rename: BTreeMap<String, String>,
    #[serde(default)]
    defaults: Option<Spanned<toml::Table>>,
    #[serde(default, rename = "model")]
    models: Vec<Spanned<toml::Table>>,
    // Not `Spanned`: toml 0.8 cannot deserialise a `Spanned` table written only as dotted
    // sub-tables (`[vote.groups.x]` without `[vote]`); `header_line` finds it instead.
    #[serde(default)]
    vote: VoteConfig,
    #[serde(default, rename = "rule")]
    rules: Vec<Spanned<RuleConfig>>,
    #[serde(default)]
    monitor: monitor::RawMonitor,
    on_member_failure: Option<Spanned<String>>,
    min_members: Option<Spanned<i64>>,
    quorum: Option<Spanned<BTreeMap<String, i64>>>,
    mlflow: Option<MlflowTable>,
    cascade: Option<Spanned<cascade::RawCascade>>,
}

/// `[mlflow]`: where registry URIs are resolved.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MlflowTable {
    tracking_uri: Option<String>,
}

/// Keys `[defaults]` may not set: they identify one model.
const PER_MODEL_ONLY: [&str; 3] = ["name", "path", "sha256"];

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let unreadable = |reason: String| ManifestError {
            file: path.to_owned(),
            line: None,
            model: None,
            field: None,
            reason,
        };
        let bytes = std::fs::read(path)
            .map_err(|e| unreadable(format!("cannot read the manifest: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| unreadable("the manifest is not valid UTF-8".into()))?;
        Self::parse(path, &text)
    }

    /// Checks `text` as the manifest at `path` (relative paths resolve against its directory).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManifestError> {
        Parser {
            file: path,
            dir: path.parent().unwrap_or(Path::new("")),
            text,
        }
        .parse()
    }

    /// The line of a combiner error's `place` (`vote…`, `rule N (…)`, `model "x"`).
    pub fn line_of_place(&self, place: &str) -> Option<usize> {
        if let Some(rest) = place.strip_prefix("rule ") {
            let n: usize = rest.split(' ').next()?.parse().ok()?;
            return self.rule_lines.get(n.checked_sub(1)?).copied();
        }
        if place.starts_with("vote") {
            return self.vote_line;
        }
        let name = place.strip_prefix("model ")?.trim_matches('"');
        self.models.iter().find(|m| m.name == name).map(|m| m.line)
    }

    /// An error about model `index`'s `field`, at the field's line when the entry spells it out.
    pub fn model_error(&self, index: usize, field: Option<&str>, reason: String) -> ManifestError {
        let m = &self.models[index];
        let line = field
            .and_then(|f| m.key_lines.get(f))
            .copied()
            .unwrap_or(m.line);
        ManifestError {
            file: self.path.clone(),
            line: Some(line),
            model: Some(m.name.clone()),
            field: field.map(str::to_owned),
            reason,
        }
    }
}

struct Parser<'a> {
    file: &'a Path,
    dir: &'a Path,
    text: &'a str,
}

impl Parser<'_> {
    fn error(&self, span: Option<Range<usize>>, reason: impl Into<String>) -> ManifestError {
        ManifestError {
            file: self.file.to_owned(),
            line: span.map(|s| self.line(s.start)),
            model: None,
            field: None,
            reason: reason.into(),
        }
    }

    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    /// The line where `key = ...` is written inside `span`, else the span's first line.
    fn key_line(&self, span: &Range<usize>, key: &str) -> usize {
        let body = &self.text[span.clone()];
        let mut offset = span.start;
        for l in body.split_inclusive('\n') {
            let t = l.trim_start();
            if t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
            {
                return self.line(offset);
            }
            offset += l.len();
        }
        // A table's span starts at its header.
        self.line(span.start)
    }

    /// The first line that starts with `prefix` (a table header).
    fn header_line(&self, prefix: &str) -> Option<usize> {
        self.text
            .lines()
            .position(|l| l.trim_start().starts_with(prefix))
            .map(|n| n + 1)
    }

    fn resolve(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    fn parse(&self) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(self.text).map_err(|e| {
            let reason = e.message().trim().to_owned();
            self.error(e.span(), reason)
        })?;
        let version = match raw.version.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            _ => {
                return Err(self.error(
                    Some(raw.version.span()),
                    "`version` must be a string (e.g. version = \"2026-11-27\")",
                ))
            }
        };
        if raw.name.trim().is_empty() {
            return Err(self.error(None, "`name` must not be empty"));
        }
        if raw.models.is_empty() {
            return Err(self.error(None, "the manifest has no [[model]] entries"));
        }

        let defaults = match &raw.defaults {
            Some(d) => {
                for key in PER_MODEL_ONLY {
                    if d.get_ref().contains_key(key) {
                        let line = self.key_line(&d.span(), key);
                        return Err(ManifestError {
                            line: Some(line),
                            field: Some(format!("defaults.{key}")),
                            ..self.error(
                                None,
                                format!("`{key}` cannot have a default: it names one model"),
                            )
                        });
                    }
                }
                d.get_ref().clone()
            }
            None => toml::Table::new(),
        };

        let mut models = Vec::with_capacity(raw.models.len());
        let mut seen = HashMap::new();
        for entry in &raw.models {
            let model = self.model(entry, &defaults, raw.defaults.as_ref())?;
            if let Some(first) = seen.insert(model.name.clone(), model.line) {
                return Err(ManifestError {
                    model: Some(model.name.clone()),
                    field: Some("name".into()),
                    ..self.error(
                        Some(entry.span()),
                        format!("duplicate model name (first used on line {first})"),
                    )
                });
            }
            models.push(model);
        }

        let mut renames = HashMap::new();
        if let Some(file) = &raw.rename_file {
            let path = self.resolve(file.get_ref());
            let lines = read_lines(&path).map_err(|reason| ManifestError {
                field: Some("rename_file".into()),
                ..self.error(Some(file.span()), reason)
            })?;
            for (n, line) in lines.iter().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let Some((old, new)) = line.split_once('\t') else {
                    return Err(ManifestError {
                        field: Some("rename_file".into()),
                        ..self.error(
                            Some(file.span()),
                            format!("{} line {}: expected `old<TAB>new`", path.display(), n + 1),
                        )
                    });
                };
                renames.insert(old.to_owned(), new.to_owned());
            }
        }
        renames.extend(raw.rename);
        let monitor = raw
            .monitor
            .check(self.dir)
            .map_err(|(key, reason)| ManifestError {
                line: self.header_line("[monitor]"),
                field: Some(format!("monitor.{key}")),
                ..self.error(None, reason)
            })?;
        let failure = self.failure_policy(
            failure::RawFailure {
                on_member_failure: raw.on_member_failure,
                min_members: raw.min_members,
                quorum: raw.quorum,
            },
            &models,
        )?;
        let cascade = self.cascade(raw.cascade, &models)?;

        Ok(Manifest {
            path: self.file.to_owned(),
            tracking_uri: raw
                .mlflow
                .and_then(|m| m.tracking_uri)
                .filter(|u| !u.trim().is_empty()),
            sha256: sha256_hex(self.text.as_bytes()),
            name: raw.name,
            version,
            label_file: raw.label_file.map(|f| self.resolve(f.get_ref())),
            fields: raw.fields,
            validation: raw.validation.map(|v| self.resolve(&v)),
            renames,
            models,
            vote_line: self.header_line("[vote"),
            vote: raw.vote,
            rule_lines: raw
                .rules
                .iter()
                .map(|r| self.key_line(&r.span(), "type"))
                .collect(),
            rules: raw.rules.into_iter().map(Spanned::into_inner).collect(),
            monitor,
            failure,
            cascade,
        })
    }
}

/// The lines of a UTF-8 text file; a line that is not UTF-8 is reported by number.
pub fn read_lines(path: &Path) -> Result<Vec<String>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut lines = Vec::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = std::str::from_utf8(line)
            .map_err(|_| format!("{} line {}: not valid UTF-8", path.display(), n + 1))?;
        lines.push(line.to_owned());
    }
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    Ok(lines)
}

/// The labels of a labels file: one per line, no blank lines.
pub fn read_label_file(path: &Path) -> Result<Vec<String>, String> {
    let lines = read_lines(path)?;
    if let Some(n) = lines.iter().position(|l| l.trim().is_empty()) {
        return Err(format!("{} line {}: empty label", path.display(), n + 1));
    }
    if lines.is_empty() {
        return Err(format!("{} has no labels", path.display()));
    }
    Ok(lines)
}

impl LabelSource {
    /// The runtime's view of the source, reading a labels file now.
    pub fn to_onnx(&self) -> Result<OnnxLabels, String> {
        Ok(match self {
            LabelSource::File(p) => OnnxLabels::List(read_label_file(p)?),
            LabelSource::Metadata(key) => OnnxLabels::Metadata { key: key.clone() },
            LabelSource::ZipMap => OnnxLabels::ZipMap,
            LabelSource::Model => {
                unreachable!("fastText labels come from the model: this is a bug")
            }
        })
    }
}
