//! Load-time checks of an ONNX model against the manifest's bindings: building the session,
//! choosing and checking the input and score output (names, element types, shapes), and reading
//! labels from metadata. Everything here runs once per load; errors name the manifest field.

use std::path::Path;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::{Outlet, TensorElementType, ValueType};

use super::{Feed, InputBinding, OnnxLabels, OnnxSpec, SKLEARN_OUTPUTS};
use crate::runtime::{InputKind, LoadError};

pub(super) fn build_session(env: &Environment, spec: &OnnxSpec) -> Result<Session, String> {
    let threads = spec.intra_threads.max(1);
    let s = |e: ort::Error<_>| e.to_string();
    let mut builder = Session::builder(env)
        .map_err(|e| e.to_string())?
        .with_intra_threads(threads)
        .map_err(s)?
        .with_inter_threads(1)
        .map_err(s)?
        .with_parallel_execution(false)
        .map_err(s)?;
    if threads > 1 {
        // Spinning pools in many sessions side by side burn cores for nothing.
        builder = builder.with_intra_op_spinning(false).map_err(s)?;
    }
    builder
        .commit_from_file(&spec.path)
        .map_err(|e| e.to_string())
}

pub(super) fn session_error(path: &Path, reason: String) -> LoadError {
    if let Some(locale) = missing_locale(&reason) {
        let (lang, charset) = locale.split_once('.').unwrap_or((locale, "UTF-8"));
        return LoadError::Onnx {
            path: path.to_owned(),
            reason: format!(
                "model needs locale {locale}, which is not installed: install it (Debian: apt-get \
                 install locales, then uncomment \"{locale} {charset}\" in /etc/locale.gen and run \
                 locale-gen, or run localedef -i {lang} -f {charset} {locale}) or re-export the \
                 model naming locale \"C\" in its StringNormalizer nodes (skl2onnx: \
                 options={{id(vectorizer): {{'locale': 'C'}}}}); onnxruntime said: {reason}"
            ),
        };
    }
    LoadError::Onnx {
        path: path.to_owned(),
        reason,
    }
}

/// The locale name in onnxruntime's "Failed to construct locale with name:xx_XX.UTF-8:..." error.
pub(super) fn missing_locale(reason: &str) -> Option<&str> {
    const MARK: &str = "Failed to construct locale with name:";
    let rest = &reason[reason.find(MARK)? + MARK.len()..];
    let name = rest.split(':').next()?.trim();
    (!name.is_empty()).then_some(name)
}

pub(super) fn onnx_error(path: &Path, e: ort::Error) -> LoadError {
    LoadError::Onnx {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

pub(super) fn describe(outlets: &[Outlet]) -> String {
    outlets
        .iter()
        .map(|o| format!("'{}' {}", o.name(), o.dtype()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn pick_input<'s>(
    session: &'s Session,
    spec: &OnnxSpec,
) -> Result<&'s Outlet, LoadError> {
    let inputs = session.inputs();
    match &spec.input {
        Some(name) => inputs
            .iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| LoadError::Binding {
                field: "input",
                reason: format!(
                    "model has no input '{name}'; its inputs are: {}",
                    describe(inputs)
                ),
            }),
        None if inputs.len() == 1 => Ok(&inputs[0]),
        None => Err(LoadError::Binding {
            field: "input",
            reason: format!(
                "model has {} inputs, name the one to feed; its inputs are: {}",
                inputs.len(),
                describe(inputs)
            ),
        }),
    }
}

pub(super) fn bind_input(
    outlet: &Outlet,
    feed: &Feed,
) -> Result<(InputBinding, InputKind), LoadError> {
    let name = outlet.name();
    let wrong = |why: &str| LoadError::Binding {
        field: "input",
        reason: format!("input '{name}' is {}: {why}", outlet.dtype()),
    };
    let (ty, shape) = match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => (*ty, shape),
        _ => return Err(wrong("not a tensor")),
    };
    let max_rows = match shape.first() {
        Some(&d) if d == -1 || d == 0 => None,
        Some(1) => Some(1),
        Some(_) => {
            return Err(wrong(
                "its batch dimension is fixed; re-export it with a dynamic first dimension",
            ))
        }
        None => return Err(wrong("a scalar cannot hold a batch")),
    };
    match feed {
        Feed::Text => {
            if ty != TensorElementType::String {
                return Err(wrong("feed = text needs a string tensor [N] or [N,1]"));
            }
            let rank = shape.len();
            if rank > 2 || (rank == 2 && shape[1] != 1 && shape[1] != -1) {
                return Err(wrong("feed = text needs a string tensor [N] or [N,1]"));
            }
            let binding = InputBinding {
                name: name.to_owned(),
                rank,
                max_rows,
            };
            Ok((binding, InputKind::Text))
        }
        Feed::Features => {
            if ty != TensorElementType::Float32 || shape.len() != 2 {
                return Err(wrong("feed = features needs a float tensor [N, width]"));
            }
            if shape[1] <= 0 {
                return Err(wrong(
                    "feed = features needs a fixed width (second dimension)",
                ));
            }
            let binding = InputBinding {
                name: name.to_owned(),
                rank: 2,
                max_rows,
            };
            let width = shape[1] as usize;
            Ok((binding, InputKind::Features { width }))
        }
    }
}

pub(super) fn is_float_matrix(dtype: &ValueType) -> bool {
    matches!(dtype, ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } if shape.len() == 2)
}

pub(super) fn pick_output<'s>(
    session: &'s Session,
    spec: &OnnxSpec,
) -> Result<&'s Outlet, LoadError> {
    let outputs = session.outputs();
    if let Some(name) = &spec.output {
        return outputs
            .iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| LoadError::Binding {
                field: "output",
                reason: format!(
                    "model has no output '{name}'; its outputs are: {}",
                    describe(outputs)
                ),
            });
    }
    let floats: Vec<&Outlet> = outputs
        .iter()
        .filter(|o| is_float_matrix(o.dtype()))
        .collect();
    if let [only] = floats.as_slice() {
        return Ok(only);
    }
    SKLEARN_OUTPUTS
        .iter()
        .find_map(|want| outputs.iter().find(|o| o.name() == *want))
        .ok_or_else(|| LoadError::Binding {
            field: "output",
            reason: format!(
                "cannot tell which output holds the scores (no single float [N, labels] tensor, \
                 no 'probabilities' or 'output_probability'): name one; its outputs are: {}",
                describe(outputs)
            ),
        })
}

/// Checks the score output's type. Returns `(Some(int_keys), None)` for a ZipMap output and
/// `(None, width)` for a float matrix (`width` is `None` when dynamic).
pub(super) fn check_output(
    outlet: &Outlet,
    labels: &OnnxLabels,
) -> Result<(Option<bool>, Option<usize>), LoadError> {
    let name = outlet.name();
    match outlet.dtype() {
        dtype if is_float_matrix(dtype) => {
            if *labels == OnnxLabels::ZipMap {
                return Err(LoadError::Binding {
                    field: "output",
                    reason: format!(
                        "labels = zipmap needs a ZipMap output (sequence of maps), but '{name}' is \
                         {dtype}: give the labels as a file or metadata key"
                    ),
                });
            }
            let width = dtype
                .tensor_shape()
                .and_then(|s| s.get(1).copied())
                .filter(|&w| w > 0)
                .map(|w| w as usize);
            Ok((None, width))
        }
        ValueType::Sequence(inner) => match inner.as_ref() {
            ValueType::Map {
                key: TensorElementType::String,
                value: TensorElementType::Float32,
            } => Ok((Some(false), None)),
            ValueType::Map {
                key: TensorElementType::Int64,
                value: TensorElementType::Float32,
            } => Ok((Some(true), None)),
            other => Err(LoadError::Binding {
                field: "output",
                reason: format!(
                    "output '{name}' is a sequence of {other}; scores must be a float tensor \
                     [N, labels] or a ZipMap (sequence of map<string|int64, float>)"
                ),
            }),
        },
        other => Err(LoadError::Binding {
            field: "output",
            reason: format!(
                "output '{name}' is {other}; scores must be a float tensor [N, labels] or a \
                 ZipMap (sequence of map<string|int64, float>)"
            ),
        }),
    }
}

pub(super) fn metadata_labels(session: &Session, key: &str) -> Result<Vec<String>, LoadError> {
    let meta = session
        .metadata()
        .map_err(|e| LoadError::Labels(format!("cannot read model metadata: {e}")))?;
    let Some(value) = meta.custom(key) else {
        let keys = meta.custom_keys().unwrap_or_default();
        return Err(LoadError::Labels(format!(
            "model metadata has no key '{key}' (its keys: {keys:?})"
        )));
    };
    parse_label_list(&value)
        .map_err(|why| LoadError::Labels(format!("metadata key '{key}': {why}")))
}

/// A JSON array of strings, or one label per line.
pub(super) fn parse_label_list(value: &str) -> Result<Vec<String>, String> {
    let trimmed = value.trim();
    if trimmed.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(trimmed)
            .map_err(|e| format!("not a JSON array of strings: {e}"));
    }
    Ok(trimmed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

pub(super) fn check_labels(labels: &[String], source: &str) -> Result<(), LoadError> {
    if labels.is_empty() {
        return Err(LoadError::Labels(format!("{source} has no labels")));
    }
    let mut seen = std::collections::HashSet::with_capacity(labels.len());
    for label in labels {
        if !seen.insert(label.as_str()) {
            return Err(LoadError::Labels(format!(
                "{source}: label {label:?} appears twice"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_name_is_read_from_the_onnxruntime_error() {
        let msg = "Exception during initialization: string_normalizer.cc:235 Failed to construct \
                   locale with name:en_US.UTF-8:locale::facet::_S_create_c_locale name not valid";
        assert_eq!(missing_locale(msg), Some("en_US.UTF-8"));
        assert_eq!(missing_locale("some other failure"), None);
    }

    #[test]
    fn label_lists_parse_as_json_or_lines() {
        assert_eq!(parse_label_list(r#"["a","b"]"#).unwrap(), vec!["a", "b"]);
        assert_eq!(parse_label_list("a\n b \n\n").unwrap(), vec!["a", "b"]);
        assert!(parse_label_list("[1, 2]").is_err());
    }
}
