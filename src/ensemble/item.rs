//! One request item, checked against the ensemble's fields: what every transport (JSON Lines, REST,
//! gRPC, the Open Inference Protocol) turns its input into before anything runs.

use serde_json::{Map, Value};

use super::Ensemble;
use crate::runtime::InputKind;

/// A request field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Text(String),
    /// For models fed with `feed = "features"`.
    Numbers(Vec<f32>),
}

/// What the caller asks of one item besides its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemOptions {
    /// Predictions to return (default 5).
    pub top_k: usize,
    /// Labels, or label-name prefixes, the caller accepts; None accepts all.
    pub candidates: Option<Vec<String>>,
    /// Also return each model's own top labels and its part in the answer.
    pub explain: bool,
    /// Let the ensemble's `[cascade]` stop early (default); false runs every member (audits,
    /// shadow comparisons).
    pub cascade: bool,
}

impl Default for ItemOptions {
    fn default() -> Self {
        ItemOptions {
            top_k: 5,
            candidates: None,
            explain: false,
            cascade: true,
        }
    }
}

/// An item whose fields fit the ensemble: `fields[i]` is the value of `Ensemble::fields()[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidItem {
    pub fields: Vec<Option<FieldValue>>,
    pub options: ItemOptions,
}

impl ValidItem {
    /// The item's text for a model reading `fields` (indices into the ensemble's fields): the
    /// fields joined with a space in that order, absent ones skipped.
    pub fn text(&self, fields: &[usize]) -> String {
        let mut text = String::new();
        for &f in fields {
            if let Some(FieldValue::Text(t)) = &self.fields[f] {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(t);
            }
        }
        text
    }

    /// Appends numeric field `field` to `data` as `width` floats (zeros where it is absent or
    /// misshapen, which validation already refused).
    pub fn push_features(&self, field: usize, width: usize, data: &mut Vec<f32>) {
        match &self.fields[field] {
            Some(FieldValue::Numbers(v)) if v.len() == width => data.extend_from_slice(v),
            _ => data.extend(std::iter::repeat_n(0.0, width)),
        }
    }
}

/// Why an item cannot be scored; `field` names the offending field when there is one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{reason}", field.as_ref().map(|f| format!("field {f:?}: ")).unwrap_or_default())]
pub struct ItemError {
    pub field: Option<String>,
    pub reason: String,
}

impl ItemError {
    fn field(field: &str, reason: impl Into<String>) -> Self {
        ItemError {
            field: Some(field.to_owned()),
            reason: reason.into(),
        }
    }
}

impl Ensemble {
    /// Checks an item given as a JSON object of fields. Keys the ensemble does not read (`id`,
    /// `label`, ...) are ignored.
    pub fn item_from_json(
        &self,
        object: &Map<String, Value>,
        options: ItemOptions,
    ) -> Result<ValidItem, ItemError> {
        let mut fields = Vec::with_capacity(self.fields.len());
        for name in &self.fields {
            let value = match object.get(name) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(FieldValue::Text(s.clone())),
                Some(Value::Array(values)) => {
                    let numbers = values
                        .iter()
                        .map(|v| v.as_f64().map(|x| x as f32))
                        .collect::<Option<Vec<f32>>>()
                        .ok_or_else(|| {
                            ItemError::field(name, "an array field must hold only numbers")
                        })?;
                    Some(FieldValue::Numbers(numbers))
                }
                Some(other) => {
                    return Err(ItemError::field(
                        name,
                        format!(
                            "expected a string (or an array of numbers), got {}",
                            json_kind(other)
                        ),
                    ))
                }
            };
            fields.push(value);
        }
        self.validate(ValidItem { fields, options })
    }

    /// Checks fields already split out by a transport: each value must suit every model reading it.
    pub fn validate(&self, item: ValidItem) -> Result<ValidItem, ItemError> {
        if item.fields.len() != self.fields.len() {
            return Err(ItemError {
                field: None,
                reason: format!(
                    "expected {} fields, got {}: this is a bug",
                    self.fields.len(),
                    item.fields.len()
                ),
            });
        }
        if item.fields.iter().all(Option::is_none) {
            return Err(ItemError {
                field: None,
                reason: format!(
                    "the item has none of the fields this ensemble reads ({})",
                    self.fields.join(", ")
                ),
            });
        }
        for model in &self.models {
            for &f in &model.field_ids {
                let name = &self.fields[f];
                match (model.runtime.input_kind(), &item.fields[f]) {
                    (InputKind::Text, Some(FieldValue::Numbers(_))) => {
                        return Err(ItemError::field(
                            name,
                            format!(
                                "model {:?} reads it as text: expected a string",
                                model.spec.name
                            ),
                        ))
                    }
                    (InputKind::Features { width }, value) => {
                        let got = match value {
                            Some(FieldValue::Numbers(v)) => v.len(),
                            Some(FieldValue::Text(_)) => {
                                return Err(ItemError::field(
                                    name,
                                    format!(
                                    "model {:?} reads {width} numbers from it: expected an array",
                                    model.spec.name
                                ),
                                ))
                            }
                            None => 0,
                        };
                        if got != width {
                            return Err(ItemError::field(
                                name,
                                format!(
                                    "model {:?} reads {width} numbers from it, got {got}",
                                    model.spec.name
                                ),
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(bad) = item
            .options
            .candidates
            .iter()
            .flatten()
            .find(|c| c.is_empty())
        {
            return Err(ItemError::field(
                "candidates",
                format!("empty candidate {bad:?}"),
            ));
        }
        Ok(item)
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
