//! Heuristic rules: compiled once from `[[rule]]` entries (names resolved to ids, keywords and
//! patterns compiled), then applied in manifest order to each item's [`Ranking`].
//!
//! A rule *fires* when it changes the answer: a keyword or regex rule when its pattern matches,
//! `min_confidence` / `min_agreement` when their test fails, `allow` / `deny` when they remove
//! the label that was on top, `taxonomy_backoff` when it answers a parent. A fallback or an
//! abstention ends the rules; every other rule lets the next one run.

use regex::Regex;

use super::config::{check, list, non_negative, Action, ConfigError, RuleConfig};
use super::ranking::{Outcome, Ranking};
use super::taxonomy::Taxonomy;
use super::Combiner;
use crate::labels::LabelSpace;

/// A rule ready to run; `name` is what `rules_fired` reports.
#[derive(Debug)]
pub(crate) struct Rule {
    pub name: String,
    pub kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    MinConfidence {
        threshold: f32,
        fallback: Option<u32>,
    },
    MinAgreement {
        models: u32,
        fallback: Option<u32>,
    },
    Match {
        field: usize,
        regex: Regex,
        label: u32,
        act: Act,
    },
    /// Allow compiles to the (usually short) list of labels it does not allow.
    Exclude {
        labels: Vec<u32>,
    },
    Backoff {
        leaf: f32,
        parent: f32,
        levels: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Act {
    Force,
    Multiply(f32),
    Exclude,
}

impl Rule {
    /// Compiles rule number `n` (1-based, as `rule n (type)` in messages).
    pub(crate) fn compile(
        n: usize,
        cfg: &RuleConfig,
        space: &LabelSpace,
        taxonomy: &Taxonomy,
        fields: &[String],
    ) -> Result<Rule, ConfigError> {
        let c = Compiling {
            place: format!("rule {n} ({})", cfg.kind()),
            space,
            taxonomy,
            fields,
        };
        let kind = match cfg {
            RuleConfig::MinConfidence {
                threshold,
                fallback,
                ..
            } => c.min_confidence(*threshold, fallback)?,
            RuleConfig::MinAgreement {
                models, fallback, ..
            } => c.min_agreement(*models, fallback)?,
            RuleConfig::Keyword {
                field,
                keywords,
                label,
                action,
                factor,
                ..
            } => c.keyword(field, keywords, label, *action, *factor)?,
            RuleConfig::Regex {
                field,
                pattern,
                label,
                action,
                factor,
                ..
            } => c.regex(field, pattern, label, *action, *factor)?,
            RuleConfig::Allow { labels, .. } => c.allow(labels)?,
            RuleConfig::Deny { labels, .. } => c.deny(labels)?,
            RuleConfig::TaxonomyBackoff {
                leaf_threshold,
                parent_threshold,
                levels,
                ..
            } => c.taxonomy_backoff(*leaf_threshold, *parent_threshold, *levels)?,
        };
        let name = cfg.name().map_or(c.place, str::to_owned);
        Ok(Rule { name, kind })
    }
}

/// One rule being compiled: its place in messages, and what its names resolve against.
struct Compiling<'a> {
    place: String,
    space: &'a LabelSpace,
    taxonomy: &'a Taxonomy,
    fields: &'a [String],
}

impl Compiling<'_> {
    /// `type = "min_confidence"`: a threshold on the top score, and an optional fallback.
    fn min_confidence(
        &self,
        threshold: f32,
        fallback: &Option<String>,
    ) -> Result<Kind, ConfigError> {
        Ok(Kind::MinConfidence {
            threshold: check(
                threshold,
                non_negative,
                &self.place,
                "threshold",
                "a finite number >= 0",
            )?,
            fallback: self.fallback(fallback)?,
        })
    }

    /// `type = "min_agreement"`: how many models must agree, and an optional fallback.
    fn min_agreement(&self, models: u32, fallback: &Option<String>) -> Result<Kind, ConfigError> {
        Ok(Kind::MinAgreement {
            models: check(models, |m| m >= 1, &self.place, "models", "at least 1")?,
            fallback: self.fallback(fallback)?,
        })
    }

    /// `type = "keyword"`: the keywords as one whole-word pattern on a field.
    fn keyword(
        &self,
        field: &str,
        keywords: &[String],
        label: &str,
        action: Action,
        factor: Option<f32>,
    ) -> Result<Kind, ConfigError> {
        Ok(Kind::Match {
            field: self.field(field)?,
            regex: keyword_regex(keywords)
                .ok_or_else(|| invalid(&self.place, "keywords is empty"))?,
            label: self.label(label)?,
            act: self.act(action, factor)?,
        })
    }

    /// `type = "regex"`: the manifest's own pattern on a field.
    fn regex(
        &self,
        field: &str,
        pattern: &str,
        label: &str,
        action: Action,
        factor: Option<f32>,
    ) -> Result<Kind, ConfigError> {
        Ok(Kind::Match {
            field: self.field(field)?,
            regex: Regex::new(pattern).map_err(|e| ConfigError::BadPattern {
                place: self.place.clone(),
                reason: one_line_regex_error(&e),
            })?,
            label: self.label(label)?,
            act: self.act(action, factor)?,
        })
    }

    /// `type = "allow"`: compiled to the labels it does not allow.
    fn allow(&self, labels: &[String]) -> Result<Kind, ConfigError> {
        let allowed = self.matching(labels)?;
        let mut keep = vec![false; self.space.len()];
        allowed.iter().for_each(|&l| keep[l as usize] = true);
        Ok(Kind::Exclude {
            labels: (0..self.space.len() as u32)
                .filter(|&l| !keep[l as usize])
                .collect(),
        })
    }

    /// `type = "deny"`: the labels it names.
    fn deny(&self, labels: &[String]) -> Result<Kind, ConfigError> {
        Ok(Kind::Exclude {
            labels: self.matching(labels)?,
        })
    }

    /// `type = "taxonomy_backoff"`: needs label names that are paths, and two thresholds.
    fn taxonomy_backoff(
        &self,
        leaf_threshold: f32,
        parent_threshold: f32,
        levels: Option<usize>,
    ) -> Result<Kind, ConfigError> {
        if !self.taxonomy.has_paths() {
            return Err(invalid(
                &self.place,
                "no label name is a path (no label contains the separator)",
            ));
        }
        Ok(Kind::Backoff {
            leaf: check(
                leaf_threshold,
                non_negative,
                &self.place,
                "leaf_threshold",
                "a finite number >= 0",
            )?,
            parent: check(
                parent_threshold,
                non_negative,
                &self.place,
                "parent_threshold",
                "a finite number >= 0",
            )?,
            levels: check(
                levels.unwrap_or(1),
                |l| l >= 1,
                &self.place,
                "levels",
                "at least 1",
            )?,
        })
    }

    /// The id of a label the rule names.
    fn label(&self, name: &str) -> Result<u32, ConfigError> {
        self.space
            .id(name)
            .ok_or_else(|| ConfigError::UnknownLabel {
                place: self.place.clone(),
                label: name.to_owned(),
            })
    }

    /// The id of the rule's fallback label, if it has one.
    fn fallback(&self, fallback: &Option<String>) -> Result<Option<u32>, ConfigError> {
        fallback.as_deref().map(|f| self.label(f)).transpose()
    }

    /// The index of a request field the rule reads.
    fn field(&self, name: &str) -> Result<usize, ConfigError> {
        self.fields
            .iter()
            .position(|f| f == name)
            .ok_or_else(|| ConfigError::UnknownField {
                place: self.place.clone(),
                field: name.to_owned(),
                fields: list(self.fields.iter().map(String::as_str)),
            })
    }

    /// What a match does: `factor` goes with `action = "multiply"` and only with it.
    fn act(&self, action: Action, factor: Option<f32>) -> Result<Act, ConfigError> {
        let place = &self.place;
        match (action, factor) {
            (Action::Multiply, Some(f)) => Ok(Act::Multiply(check(
                f,
                non_negative,
                place,
                "factor",
                "a finite number >= 0",
            )?)),
            (Action::Multiply, None) => Err(invalid(place, "action = \"multiply\" needs a factor")),
            (_, Some(_)) => Err(invalid(
                place,
                "factor is only read with action = \"multiply\"",
            )),
            (Action::Force, None) => Ok(Act::Force),
            (Action::Exclude, None) => Ok(Act::Exclude),
        }
    }

    /// The labels `entries` name or prefix, sorted, each once; an entry matching none fails.
    fn matching(&self, entries: &[String]) -> Result<Vec<u32>, ConfigError> {
        let mut ids = Vec::new();
        for e in entries {
            let before = ids.len();
            ids.extend(self.taxonomy.with_prefix(e));
            if ids.len() == before {
                return Err(ConfigError::NoLabelMatches {
                    place: self.place.clone(),
                    label: e.clone(),
                });
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }
}

fn invalid(place: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        place: place.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Any of `keywords` as a whole word (not inside a longer word), in any case.
fn keyword_regex(keywords: &[String]) -> Option<Regex> {
    let alternatives: Vec<String> = keywords
        .iter()
        .filter(|k| !k.trim().is_empty())
        .map(|k| regex::escape(k.trim()))
        .collect();
    if alternatives.is_empty() {
        return None;
    }
    let pattern = format!(r"(?i)(?:^|\W)(?:{})(?:\W|$)", alternatives.join("|"));
    Some(Regex::new(&pattern).expect("escaped keywords always compile; this is a bug"))
}

impl Combiner {
    /// Applies one rule to the item's ranking. `agreement(node)` counts the models agreeing with
    /// `node`; `accepts(node)` says whether the request's candidates admit it.
    pub(crate) fn apply(
        &self,
        rule: &Rule,
        fields: &[Option<&str>],
        ranking: &mut Ranking<'_>,
        agreement: &dyn Fn(u32) -> u32,
        accepts: &dyn Fn(u32) -> bool,
    ) -> Outcome {
        let name = |n: u32| self.taxonomy.name(n);
        match &rule.kind {
            Kind::MinConfidence {
                threshold,
                fallback,
            } => {
                let best = ranking.best();
                let score = best.map_or(0.0, |e| e.score);
                if score >= *threshold {
                    return Outcome::Unchanged;
                }
                let why = match best {
                    Some(e) => format!(
                        "{}: top score {score:.4} for {:?} is below {threshold}",
                        rule.name,
                        name(e.label)
                    ),
                    None => format!("{}: no label left to answer", rule.name),
                };
                ranking.fall_back(*fallback, why, best.map(|e| e.label), name)
            }
            Kind::MinAgreement { models, fallback } => {
                let best = ranking.best();
                let agree = best.map_or(0, |e| agreement(e.label));
                if agree >= *models {
                    return Outcome::Unchanged;
                }
                let why = match best {
                    Some(e) => format!(
                        "{}: {agree} model(s) agree with {:?}, fewer than {models}",
                        rule.name,
                        name(e.label)
                    ),
                    None => format!("{}: no label left to answer", rule.name),
                };
                ranking.fall_back(*fallback, why, best.map(|e| e.label), name)
            }
            Kind::Match {
                field,
                regex,
                label,
                act,
            } => {
                let text = fields.get(*field).copied().flatten();
                if !text.is_some_and(|t| regex.is_match(t)) {
                    return Outcome::Unchanged;
                }
                match act {
                    Act::Force => ranking.force(*label),
                    Act::Multiply(f) => ranking.multiply(*label, *f),
                    Act::Exclude => ranking.exclude(*label),
                }
                Outcome::Fired
            }
            Kind::Exclude { labels } => {
                let top = ranking.best();
                labels.iter().for_each(|&l| ranking.exclude(l));
                match top {
                    Some(e) if ranking.is_excluded(e.label) => Outcome::Fired,
                    _ => Outcome::Unchanged,
                }
            }
            Kind::Backoff {
                leaf,
                parent,
                levels,
            } => {
                let Some(top) = ranking.best().filter(|e| e.score < *leaf) else {
                    return Outcome::Unchanged;
                };
                let mut node = top.label;
                for _ in 0..*levels {
                    let Some(up) = self.taxonomy.parent(node) else {
                        break;
                    };
                    let sum = ranking.sum_under(up, &self.taxonomy);
                    if sum >= *parent && accepts(up) {
                        ranking.pin(up, sum);
                        return Outcome::Fired;
                    }
                    node = up;
                }
                Outcome::Unchanged
            }
        }
    }
}

/// regex's own message draws a caret under the pattern over several lines; an operator reading one
/// line of error needs only its last line (`error: unclosed group`).
fn one_line_regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid pattern");
    last.trim().trim_start_matches("error: ").to_owned()
}
