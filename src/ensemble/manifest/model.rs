//! One `[[model]]` entry: merging `[defaults]` into it, and checking each key, with errors at the
//! line the key is written on (in the entry, else in `[defaults]`).

use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{BatchConfig, LabelSource, ManifestError, ModelKind, ModelSpec, OnnxBinding, Parser};
use crate::ensemble::provenance::flatten_declared;
use crate::ensemble::source::RegistryUri;
use crate::runtime::onnx::{Feed, ScoreKind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    kind: String,
    path: String,
    #[serde(default)]
    fields: Option<Vec<String>>,
    feed: Option<String>,
    input: Option<String>,
    output: Option<String>,
    scores: Option<String>,
    labels_file: Option<String>,
    labels_metadata: Option<String>,
    labels_zipmap: Option<bool>,
    intra_threads: Option<usize>,
    weight: Option<f32>,
    temperature: Option<f32>,
    group: Option<String>,
    max_batch: Option<usize>,
    max_delay_ms: Option<f64>,
    timeout_ms: Option<f64>,
    sha256: Option<String>,
    provenance: Option<toml::Table>,
}

impl Parser<'_> {
    pub(super) fn model(
        &self,
        entry: &Spanned<toml::Table>,
        defaults: &toml::Table,
        defaults_span: Option<&Spanned<toml::Table>>,
    ) -> Result<ModelSpec, ManifestError> {
        let at = Entry::new(self, entry, defaults_span);
        let mut raw = at.merged(defaults)?;
        let (kind, path, registry) = at.common_keys(&raw)?;
        let sha256 = at.pin(raw.sha256.as_deref())?;
        let (fields, feed) = at.fields(raw.fields.take(), raw.feed.as_deref())?;
        let (weight, temperature) = at.vote_keys(&raw)?;
        let batch = at.batching(&raw)?;
        let timeout = at.timeout(&raw)?;
        let (labels, labels_registry, onnx) = match kind {
            ModelKind::FastText => {
                at.no_onnx_keys(&raw, &feed)?;
                (LabelSource::Model, None, None)
            }
            ModelKind::Onnx => {
                let (labels, registry) = at.label_source(&raw)?;
                (labels, registry, Some(at.onnx_binding(&mut raw)?))
            }
        };
        let key_lines = at
            .own
            .keys()
            .chain(defaults.keys())
            .map(|k| (k.clone(), at.field_line(k)))
            .collect();
        Ok(ModelSpec {
            name: raw.name,
            line: at.header,
            key_lines,
            kind,
            path,
            source: raw.path,
            registry,
            sha256,
            labels_source: raw.labels_file,
            labels_registry,
            declared: raw
                .provenance
                .as_ref()
                .map(flatten_declared)
                .unwrap_or_default(),
            fields,
            feed,
            labels,
            onnx,
            weight,
            temperature,
            group: raw.group,
            batch,
            timeout,
        })
    }
}

/// One `[[model]]` entry being read: where it is written, so each phase's errors name their line.
struct Entry<'p> {
    parser: &'p Parser<'p>,
    span: Range<usize>,
    /// Line of the entry's `[[model]]` header.
    header: usize,
    own: &'p toml::Table,
    defaults_span: Option<&'p Spanned<toml::Table>>,
    /// The entry's own `name`, for errors (even those found before it is checked).
    name: Option<String>,
}

impl<'p> Entry<'p> {
    /// Reads where `entry` is written, once, for every phase's errors.
    fn new(
        parser: &'p Parser<'p>,
        entry: &'p Spanned<toml::Table>,
        defaults_span: Option<&'p Spanned<toml::Table>>,
    ) -> Self {
        let own = entry.get_ref();
        Entry {
            parser,
            span: entry.span(),
            header: parser.line(entry.span().start),
            own,
            defaults_span,
            name: own.get("name").and_then(|v| v.as_str()).map(str::to_owned),
        }
    }

    /// Where a field's value was written: in the entry, else in `[defaults]`.
    fn field_line(&self, key: &str) -> usize {
        if self.own.contains_key(key) {
            self.parser.key_line(&self.span, key)
        } else if let Some(d) = self.defaults_span.filter(|d| d.get_ref().contains_key(key)) {
            self.parser.key_line(&d.span(), key)
        } else {
            self.header
        }
    }

    /// An error about `field` (or the whole entry), at the line it is written on.
    fn fail(&self, field: Option<&str>, reason: String) -> ManifestError {
        ManifestError {
            file: self.parser.file.to_owned(),
            line: Some(field.map_or(self.header, |f| self.field_line(f))),
            model: self.name.clone(),
            field: field.map(str::to_owned),
            reason,
        }
    }

    /// `[defaults]` under the entry's own keys, typed: unknown keys and wrong types fail here.
    fn merged(&self, defaults: &toml::Table) -> Result<RawModel, ManifestError> {
        let mut merged = defaults.clone();
        merged.extend(self.own.iter().map(|(k, v)| (k.clone(), v.clone())));
        toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| {
                let message = e.message().trim().to_owned();
                let field = offending_field(&message);
                self.fail(field.as_deref(), message)
            })
    }

    /// The keys every model has: `name`, `kind` and `path` (a file that must exist, or a
    /// registry URI, resolved when the model is loaded).
    fn common_keys(
        &self,
        raw: &RawModel,
    ) -> Result<(ModelKind, PathBuf, Option<RegistryUri>), ManifestError> {
        if raw.name.trim().is_empty() {
            return Err(self.fail(Some("name"), "must not be empty".into()));
        }
        let kind = match raw.kind.as_str() {
            "fasttext" => ModelKind::FastText,
            "onnx" => ModelKind::Onnx,
            other => {
                return Err(self.fail(
                    Some("kind"),
                    format!("unknown kind {other:?} (expected \"fasttext\" or \"onnx\")"),
                ))
            }
        };
        if RegistryUri::looks_like(&raw.path) {
            let uri = RegistryUri::parse(&raw.path).map_err(|e| self.fail(Some("path"), e))?;
            return Ok((kind, PathBuf::new(), Some(uri)));
        }
        let path = self.parser.resolve(&raw.path);
        if !path.is_file() {
            return Err(self.fail(
                Some("path"),
                format!("model file {} does not exist", path.display()),
            ));
        }
        Ok((kind, path, None))
    }

    /// The `sha256` pin, if given: 64 hex digits (a `sha256:` prefix is allowed).
    fn pin(&self, pin: Option<&str>) -> Result<Option<String>, ManifestError> {
        let Some(pin) = pin else {
            return Ok(None);
        };
        let hex = pin
            .strip_prefix("sha256:")
            .unwrap_or(pin)
            .to_ascii_lowercase();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.fail(
                Some("sha256"),
                format!("expected the model file's sha256 as 64 hex digits, got {pin:?}"),
            ));
        }
        Ok(Some(hex))
    }

    /// The request fields the model reads and how it reads them (`feed`).
    fn fields(
        &self,
        fields: Option<Vec<String>>,
        feed: Option<&str>,
    ) -> Result<(Vec<String>, Feed), ManifestError> {
        let fields = fields.unwrap_or_default();
        if fields.is_empty() {
            return Err(self.fail(
                Some("fields"),
                "the model reads no request field (set fields = [\"title\", ...] here or in [defaults])"
                    .into(),
            ));
        }
        let mut unique = HashSet::new();
        if let Some(dup) = fields.iter().find(|f| !unique.insert(f.as_str())) {
            return Err(self.fail(Some("fields"), format!("field {dup:?} is listed twice")));
        }
        let feed = match feed {
            None | Some("text") => Feed::Text,
            Some("features") => Feed::Features,
            Some(other) => {
                return Err(self.fail(
                    Some("feed"),
                    format!("unknown feed {other:?} (expected \"text\" or \"features\")"),
                ))
            }
        };
        if feed == Feed::Features && fields.len() != 1 {
            return Err(self.fail(
                Some("fields"),
                "feed = \"features\" reads exactly one numeric field".into(),
            ));
        }
        Ok((fields, feed))
    }

    /// The model's say in the vote: `weight` and `temperature`.
    fn vote_keys(&self, raw: &RawModel) -> Result<(f32, f32), ManifestError> {
        let weight = raw.weight.unwrap_or(1.0);
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(self.fail(
                Some("weight"),
                format!("must be a number >= 0, got {weight}"),
            ));
        }
        let temperature = raw.temperature.unwrap_or(1.0);
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(self.fail(
                Some("temperature"),
                format!("must be a number > 0, got {temperature}"),
            ));
        }
        Ok((weight, temperature))
    }

    /// How the scheduler batches the model's rows: `max_batch` and `max_delay_ms`.
    fn batching(&self, raw: &RawModel) -> Result<BatchConfig, ManifestError> {
        let batch_defaults = BatchConfig::default();
        let max_batch = raw.max_batch.unwrap_or(batch_defaults.max_batch);
        if max_batch == 0 {
            return Err(self.fail(
                Some("max_batch"),
                "must be at least 1 (1 turns batching off)".into(),
            ));
        }
        let max_delay_ms = raw.max_delay_ms.unwrap_or(0.0);
        if !(max_delay_ms.is_finite() && (0.0..=10_000.0).contains(&max_delay_ms)) {
            return Err(self.fail(
                Some("max_delay_ms"),
                format!("must be between 0 and 10000, got {max_delay_ms}"),
            ));
        }
        Ok(BatchConfig {
            max_batch,
            max_delay: std::time::Duration::from_secs_f64(max_delay_ms / 1000.0),
        })
    }

    /// How long the model may take to answer an item: `timeout_ms`.
    fn timeout(&self, raw: &RawModel) -> Result<Option<std::time::Duration>, ManifestError> {
        let Some(ms) = raw.timeout_ms else {
            return Ok(None);
        };
        if !(ms.is_finite() && ms > 0.0 && ms <= 3_600_000.0) {
            return Err(self.fail(
                Some("timeout_ms"),
                format!("must be a number of milliseconds > 0 and at most 3600000, got {ms}"),
            ));
        }
        Ok(Some(std::time::Duration::from_secs_f64(ms / 1000.0)))
    }

    /// A fastText model reads text and carries its labels: no ONNX binding or label key.
    fn no_onnx_keys(&self, raw: &RawModel, feed: &Feed) -> Result<(), ManifestError> {
        let onnx_only = [
            ("feed", raw.feed.is_some() && *feed != Feed::Text),
            ("input", raw.input.is_some()),
            ("output", raw.output.is_some()),
            ("scores", raw.scores.is_some()),
            ("intra_threads", raw.intra_threads.is_some()),
        ];
        if let Some((key, _)) = onnx_only.iter().chain(&label_keys(raw)).find(|k| k.1) {
            return Err(self.fail(
                Some(key),
                "only ONNX models take this (a fastText model reads text and carries its own labels)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Where an ONNX model's labels come from: exactly one of the label keys (a labels file may
    /// be a registry URI).
    fn label_source(
        &self,
        raw: &RawModel,
    ) -> Result<(LabelSource, Option<RegistryUri>), ManifestError> {
        let label_keys = label_keys(raw);
        let given: Vec<&str> = label_keys.iter().filter(|k| k.1).map(|k| k.0).collect();
        let labels = match given.as_slice() {
            ["labels_file"] => {
                let file = raw.labels_file.as_deref().expect("checked above");
                if RegistryUri::looks_like(file) {
                    let uri =
                        RegistryUri::parse(file).map_err(|e| self.fail(Some("labels_file"), e))?;
                    return Ok((LabelSource::File(PathBuf::new()), Some(uri)));
                }
                LabelSource::File(self.parser.resolve(file))
            }
            ["labels_metadata"] => {
                LabelSource::Metadata(raw.labels_metadata.clone().expect("checked above"))
            }
            ["labels_zipmap"] => LabelSource::ZipMap,
            [] => return Err(self.fail(
                None,
                "an ONNX model needs one of labels_file, labels_metadata or labels_zipmap = true"
                    .into(),
            )),
            many => {
                return Err(self.fail(
                    Some(many[1]),
                    format!("give only one of {}", many.join(", ")),
                ))
            }
        };
        if let LabelSource::File(p) = &labels {
            if !p.is_file() {
                return Err(self.fail(
                    Some("labels_file"),
                    format!("labels file {} does not exist", p.display()),
                ));
            }
        }
        Ok((labels, None))
    }

    /// How an ONNX model runs (input, output, scores, threads); takes the names out of `raw`.
    fn onnx_binding(&self, raw: &mut RawModel) -> Result<OnnxBinding, ManifestError> {
        let scores = match raw.scores.as_deref() {
            None | Some("probabilities") => ScoreKind::Probabilities,
            Some("logits") => ScoreKind::Logits,
            Some(other) => {
                return Err(self.fail(
                    Some("scores"),
                    format!("unknown scores {other:?} (expected \"probabilities\" or \"logits\")"),
                ))
            }
        };
        Ok(OnnxBinding {
            input: raw.input.take(),
            output: raw.output.take(),
            scores,
            intra_threads: raw.intra_threads.unwrap_or(1).max(1),
        })
    }
}

/// The label keys, each with whether the entry gives it (`labels_zipmap = false` gives nothing).
fn label_keys(raw: &RawModel) -> [(&'static str, bool); 3] {
    [
        ("labels_file", raw.labels_file.is_some()),
        ("labels_metadata", raw.labels_metadata.is_some()),
        ("labels_zipmap", raw.labels_zipmap == Some(true)),
    ]
}

/// The field a serde message is about (`unknown field `foo``, `missing field `path``, ...).
fn offending_field(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}
