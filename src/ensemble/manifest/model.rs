//! One `[[model]]` entry: merging `[defaults]` into it, and checking each key, with errors at the
//! line the key is written on (in the entry, else in `[defaults]`).

use std::collections::HashSet;

use serde::Deserialize;
use toml::Spanned;

use super::{BatchConfig, LabelSource, ManifestError, ModelKind, ModelSpec, OnnxBinding, Parser};
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
}

impl Parser<'_> {
    pub(super) fn model(
        &self,
        entry: &Spanned<toml::Table>,
        defaults: &toml::Table,
        defaults_span: Option<&Spanned<toml::Table>>,
    ) -> Result<ModelSpec, ManifestError> {
        let span = entry.span();
        let header = self.line(span.start);
        let own = entry.get_ref();
        let name = own.get("name").and_then(|v| v.as_str()).map(str::to_owned);
        // Where a field's value was written: in the entry, else in [defaults].
        let field_line = |key: &str| {
            if own.contains_key(key) {
                self.key_line(&span, key)
            } else if let Some(d) = defaults_span.filter(|d| d.get_ref().contains_key(key)) {
                self.key_line(&d.span(), key)
            } else {
                header
            }
        };
        let fail = |field: Option<&str>, reason: String| ManifestError {
            file: self.file.to_owned(),
            line: Some(field.map_or(header, &field_line)),
            model: name.clone(),
            field: field.map(str::to_owned),
            reason,
        };

        let mut merged = defaults.clone();
        merged.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        let raw: RawModel =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    let message = e.message().trim().to_owned();
                    let field = offending_field(&message);
                    fail(field.as_deref(), message)
                })?;

        if raw.name.trim().is_empty() {
            return Err(fail(Some("name"), "must not be empty".into()));
        }
        let kind = match raw.kind.as_str() {
            "fasttext" => ModelKind::FastText,
            "onnx" => ModelKind::Onnx,
            other => {
                return Err(fail(
                    Some("kind"),
                    format!("unknown kind {other:?} (expected \"fasttext\" or \"onnx\")"),
                ))
            }
        };
        let path = self.resolve(&raw.path);
        if !path.is_file() {
            return Err(fail(
                Some("path"),
                format!("model file {} does not exist", path.display()),
            ));
        }
        let fields = raw.fields.unwrap_or_default();
        if fields.is_empty() {
            return Err(fail(
                Some("fields"),
                "the model reads no request field (set fields = [\"title\", ...] here or in [defaults])"
                    .into(),
            ));
        }
        let mut unique = HashSet::new();
        if let Some(dup) = fields.iter().find(|f| !unique.insert(f.as_str())) {
            return Err(fail(
                Some("fields"),
                format!("field {dup:?} is listed twice"),
            ));
        }
        let feed = match raw.feed.as_deref() {
            None | Some("text") => Feed::Text,
            Some("features") => Feed::Features,
            Some(other) => {
                return Err(fail(
                    Some("feed"),
                    format!("unknown feed {other:?} (expected \"text\" or \"features\")"),
                ))
            }
        };
        if feed == Feed::Features && fields.len() != 1 {
            return Err(fail(
                Some("fields"),
                "feed = \"features\" reads exactly one numeric field".into(),
            ));
        }
        let weight = raw.weight.unwrap_or(1.0);
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(fail(
                Some("weight"),
                format!("must be a number >= 0, got {weight}"),
            ));
        }
        let temperature = raw.temperature.unwrap_or(1.0);
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(fail(
                Some("temperature"),
                format!("must be a number > 0, got {temperature}"),
            ));
        }

        let batch_defaults = BatchConfig::default();
        let max_batch = raw.max_batch.unwrap_or(batch_defaults.max_batch);
        if max_batch == 0 {
            return Err(fail(
                Some("max_batch"),
                "must be at least 1 (1 turns batching off)".into(),
            ));
        }
        let max_delay_ms = raw.max_delay_ms.unwrap_or(0.0);
        if !(max_delay_ms.is_finite() && (0.0..=10_000.0).contains(&max_delay_ms)) {
            return Err(fail(
                Some("max_delay_ms"),
                format!("must be between 0 and 10000, got {max_delay_ms}"),
            ));
        }
        let batch = BatchConfig {
            max_batch,
            max_delay: std::time::Duration::from_secs_f64(max_delay_ms / 1000.0),
        };

        let label_keys = [
            ("labels_file", raw.labels_file.is_some()),
            ("labels_metadata", raw.labels_metadata.is_some()),
            ("labels_zipmap", raw.labels_zipmap == Some(true)),
        ];
        let given: Vec<&str> = label_keys.iter().filter(|k| k.1).map(|k| k.0).collect();
        let (labels, onnx) = match kind {
            ModelKind::FastText => {
                let onnx_only = [
                    ("feed", raw.feed.is_some() && feed != Feed::Text),
                    ("input", raw.input.is_some()),
                    ("output", raw.output.is_some()),
                    ("scores", raw.scores.is_some()),
                    ("intra_threads", raw.intra_threads.is_some()),
                ];
                if let Some((key, _)) = onnx_only.iter().chain(&label_keys).find(|k| k.1) {
                    return Err(fail(
                        Some(key),
                        "only ONNX models take this (a fastText model reads text and carries its own labels)"
                            .into(),
                    ));
                }
                (LabelSource::Model, None)
            }
            ModelKind::Onnx => {
                let labels = match given.as_slice() {
                    ["labels_file"] => LabelSource::File(
                        self.resolve(raw.labels_file.as_deref().expect("checked above")),
                    ),
                    ["labels_metadata"] => {
                        LabelSource::Metadata(raw.labels_metadata.clone().expect("checked above"))
                    }
                    ["labels_zipmap"] => LabelSource::ZipMap,
                    [] => {
                        return Err(fail(
                            None,
                            "an ONNX model needs one of labels_file, labels_metadata or labels_zipmap = true"
                                .into(),
                        ))
                    }
                    many => {
                        return Err(fail(
                            Some(many[1]),
                            format!("give only one of {}", many.join(", ")),
                        ))
                    }
                };
                if let LabelSource::File(p) = &labels {
                    if !p.is_file() {
                        return Err(fail(
                            Some("labels_file"),
                            format!("labels file {} does not exist", p.display()),
                        ));
                    }
                }
                let scores = match raw.scores.as_deref() {
                    None | Some("probabilities") => ScoreKind::Probabilities,
                    Some("logits") => ScoreKind::Logits,
                    Some(other) => {
                        return Err(fail(
                            Some("scores"),
                            format!(
                            "unknown scores {other:?} (expected \"probabilities\" or \"logits\")"
                        ),
                        ))
                    }
                };
                let binding = OnnxBinding {
                    input: raw.input,
                    output: raw.output,
                    scores,
                    intra_threads: raw.intra_threads.unwrap_or(1).max(1),
                };
                (labels, Some(binding))
            }
        };

        let key_lines = own
            .keys()
            .chain(defaults.keys())
            .map(|k| (k.clone(), field_line(k)))
            .collect();
        Ok(ModelSpec {
            name: raw.name,
            line: header,
            key_lines,
            kind,
            path,
            fields,
            feed,
            labels,
            onnx,
            weight,
            temperature,
            group: raw.group,
            batch,
        })
    }
}

/// The field a serde message is about (`unknown field `foo``, `missing field `path``, ...).
fn offending_field(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}
