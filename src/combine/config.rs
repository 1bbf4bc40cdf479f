//! The manifest's `[vote]` table and `[[rule]]` entries as written, and the error that names
//! the place in the manifest when one of them cannot be served. Defaults live here, next to the
//! fields they fill; the meaning of each field is in the module docs (`combine/mod.rs`).

use std::collections::BTreeMap;

use serde::Deserialize;

/// Default strategy, of the ensemble and of each group.
pub const DEFAULT_STRATEGY: &str = "soft";
/// Default depth of a model's top list that counts as agreeing with the answer.
pub const DEFAULT_AGREEMENT_K: usize = 1;
/// Default Borda depth of the rank strategy.
pub const DEFAULT_RANK_K: usize = 10;
/// Default probability the geometric strategy assumes for a label a voter does not cover.
pub const DEFAULT_FLOOR: f32 = 1e-6;
/// Default taxonomy path separator inside label names.
pub const DEFAULT_SEPARATOR: &str = " > ";

/// The manifest's `[vote]` table. Every field is optional: an empty table is a weighted soft vote.
#[derive(Deserialize, Default, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct VoteConfig {
    /// Strategy across groups (or across models when there are no groups). Default `soft`.
    pub strategy: Option<String>,
    /// Rank strategy: each voter's top `rank_k` labels earn Borda points. Default 10.
    pub rank_k: Option<usize>,
    /// Geometric strategy: probability used where a voter does not cover a label. Default 1e-6.
    pub floor: Option<f32>,
    /// A model agrees with the answer when the answer is in its top `agreement_k`. Default 1.
    pub agreement_k: Option<usize>,
    /// Separator of taxonomy paths inside label names. Default `" > "`.
    pub label_separator: Option<String>,
    /// Named groups; models join one with `group = "..."` in their `[[model]]` entry.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupConfig>,
}

/// One `[vote.groups.<name>]` table: how the group's models are combined, and the group's weight
/// in the vote across groups.
#[derive(Deserialize, Default, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Strategy inside the group. Default `soft`.
    pub strategy: Option<String>,
    /// The group's weight in the vote across groups. Default 1.
    pub weight: Option<f32>,
    /// As `vote.rank_k`, for this group; defaults to `vote.rank_k`.
    pub rank_k: Option<usize>,
    /// As `vote.floor`, for this group; defaults to `vote.floor`.
    pub floor: Option<f32>,
}

/// One `[[rule]]` entry, tagged by `type`. Rules run in manifest order after the vote; `name`
/// (optional on every rule) is what the answer's `rules_fired` reports.
#[derive(Deserialize, Clone, Debug)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleConfig {
    /// The answer's top score is below `threshold`: answer `fallback`, or abstain without one.
    MinConfidence {
        threshold: f32,
        fallback: Option<String>,
        name: Option<String>,
    },
    /// Fewer than `models` models have the answer in their top `vote.agreement_k`: answer
    /// `fallback`, or abstain without one.
    MinAgreement {
        models: u32,
        fallback: Option<String>,
        name: Option<String>,
    },
    /// Request field `field` contains one of `keywords` (whole words, any case): apply `action`
    /// to `label`.
    Keyword {
        field: String,
        keywords: Vec<String>,
        label: String,
        action: Action,
        factor: Option<f32>,
        name: Option<String>,
    },
    /// Request field `field` matches `pattern` (Rust `regex` syntax): apply `action` to `label`.
    Regex {
        field: String,
        pattern: String,
        label: String,
        action: Action,
        factor: Option<f32>,
        name: Option<String>,
    },
    /// Only these labels (names, or name prefixes) may be answered.
    Allow {
        labels: Vec<String>,
        name: Option<String>,
    },
    /// These labels (names, or name prefixes) are never answered.
    Deny {
        labels: Vec<String>,
        name: Option<String>,
    },
    /// The answer scores below `leaf_threshold`: answer the nearest ancestor (at most `levels` up,
    /// default 1) whose labels' scores sum to at least `parent_threshold`.
    TaxonomyBackoff {
        leaf_threshold: f32,
        parent_threshold: f32,
        levels: Option<usize>,
        name: Option<String>,
    },
}

/// What a keyword or regex rule does to its label when it matches.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Answer the label first, with score 1.
    Force,
    /// Multiply the label's score by `factor`.
    Multiply,
    /// Never answer the label.
    Exclude,
}

impl RuleConfig {
    /// The `type` tag as written in the manifest.
    pub fn kind(&self) -> &'static str {
        match self {
            RuleConfig::MinConfidence { .. } => "min_confidence",
            RuleConfig::MinAgreement { .. } => "min_agreement",
            RuleConfig::Keyword { .. } => "keyword",
            RuleConfig::Regex { .. } => "regex",
            RuleConfig::Allow { .. } => "allow",
            RuleConfig::Deny { .. } => "deny",
            RuleConfig::TaxonomyBackoff { .. } => "taxonomy_backoff",
        }
    }

    /// The rule's `name`, if the manifest gave one.
    pub fn name(&self) -> Option<&str> {
        match self {
            RuleConfig::MinConfidence { name, .. }
            | RuleConfig::MinAgreement { name, .. }
            | RuleConfig::Keyword { name, .. }
            | RuleConfig::Regex { name, .. }
            | RuleConfig::Allow { name, .. }
            | RuleConfig::Deny { name, .. }
            | RuleConfig::TaxonomyBackoff { name, .. } => name.as_deref(),
        }
    }
}

/// A `[vote]`, `[[rule]]` or model setting that cannot be served. `place` names where it is in
/// the manifest: `vote.strategy`, `vote.groups.onnx`, `rule 3 (keyword)`, `model "m1"`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{place}: unknown strategy {name:?} (expected one of soft, hard, rank, max, geometric)"
    )]
    UnknownStrategy { place: String, name: String },
    #[error("{place}: label {label:?} is not in the label space")]
    UnknownLabel { place: String, label: String },
    #[error(
        "{place}: {label:?} matches no label in the label space (neither a name nor a prefix)"
    )]
    NoLabelMatches { place: String, label: String },
    #[error("{place}: field {field:?} is not a request field (fields: {fields})")]
    UnknownField {
        place: String,
        field: String,
        fields: String,
    },
    #[error("{place}: pattern does not compile: {reason}")]
    BadPattern { place: String, reason: String },
    #[error("{place}: {what} must be {expected}")]
    BadValue {
        place: String,
        what: &'static str,
        expected: &'static str,
    },
    #[error("{place}: group has no models")]
    EmptyGroup { place: String },
    #[error("{place}: group {group:?} is not defined in vote.groups (groups: {groups})")]
    UnknownGroup {
        place: String,
        group: String,
        groups: String,
    },
    #[error("{place}: {reason}")]
    Invalid { place: String, reason: String },
}

impl ConfigError {
    /// Where in the manifest the error is: `vote`, `vote.groups.onnx`, `rule 3 (keyword)`,
    /// `model "m1"`.
    pub fn place(&self) -> &str {
        match self {
            ConfigError::UnknownStrategy { place, .. }
            | ConfigError::UnknownLabel { place, .. }
            | ConfigError::NoLabelMatches { place, .. }
            | ConfigError::UnknownField { place, .. }
            | ConfigError::BadPattern { place, .. }
            | ConfigError::BadValue { place, .. }
            | ConfigError::EmptyGroup { place }
            | ConfigError::UnknownGroup { place, .. }
            | ConfigError::Invalid { place, .. } => place,
        }
    }
}

/// Checks `value` with `ok`, or reports it as `what` at `place`.
pub(crate) fn check<T: Copy>(
    value: T,
    ok: impl Fn(T) -> bool,
    place: &str,
    what: &'static str,
    expected: &'static str,
) -> Result<T, ConfigError> {
    if ok(value) {
        Ok(value)
    } else {
        Err(ConfigError::BadValue {
            place: place.to_owned(),
            what,
            expected,
        })
    }
}

/// A finite number >= 0 (weights, factors).
pub(crate) fn non_negative(x: f32) -> bool {
    x.is_finite() && x >= 0.0
}

/// Joins names for error messages: `title, description`.
pub(crate) fn list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.into_iter().collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}
