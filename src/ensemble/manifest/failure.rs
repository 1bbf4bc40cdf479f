//! What an item's answer does when a member fails, panics or runs out of its `timeout_ms`: the
//! manifest's `on_member_failure`, `min_members` and `[quorum]`.
//!
//! ```toml
//! on_member_failure = "degrade"    # degrade (default): the member is left out of that item's
//!                                  # vote, and the answer says so (`degraded`, the members
//!                                  # missing and why); fail: the request fails, as one model's
//!                                  # error always did before
//! min_members = 40                 # degrade only: an item answered by fewer voting members
//!                                  # fails the request instead (default 1)
//! [quorum]                         # degrade only: the fewest members of a [vote.groups.*]
//! onnx = 10                        # group that must answer (default: none)
//! ```

use std::collections::BTreeMap;

use toml::Spanned;

use super::{ManifestError, ModelSpec, Parser};

/// How an item is answered when some of its members have no scores for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Leave failed members out of the vote (true), or fail the request (false).
    pub degrade: bool,
    /// The fewest voting members that must answer an item.
    pub min_members: usize,
    /// Per group name: the fewest of its members that must answer an item.
    pub quorum: BTreeMap<String, usize>,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            degrade: true,
            min_members: 1,
            quorum: BTreeMap::new(),
        }
    }
}

impl FailurePolicy {
    /// One failing member fails the request (what every model failure did before degraded
    /// answers existed).
    pub fn fail() -> Self {
        FailurePolicy {
            degrade: false,
            ..FailurePolicy::default()
        }
    }
}

/// The manifest's keys, as written.
#[derive(Debug, Default)]
pub(super) struct RawFailure {
    pub on_member_failure: Option<Spanned<String>>,
    pub min_members: Option<Spanned<i64>>,
    pub quorum: Option<Spanned<BTreeMap<String, i64>>>,
}

impl Parser<'_> {
    /// Checks the failure keys against the models and their groups.
    pub(super) fn failure_policy(
        &self,
        raw: RawFailure,
        models: &[ModelSpec],
    ) -> Result<FailurePolicy, ManifestError> {
        let at = |span: std::ops::Range<usize>, field: &str, reason: String| ManifestError {
            field: Some(field.to_owned()),
            ..self.error(Some(span), reason)
        };
        let degrade = match raw.on_member_failure {
            None => true,
            Some(v) => match v.get_ref().as_str() {
                "degrade" => true,
                "fail" => false,
                other => {
                    return Err(at(
                        v.span(),
                        "on_member_failure",
                        format!("must be \"degrade\" or \"fail\", got {other:?}"),
                    ))
                }
            },
        };
        let voting = models.iter().filter(|m| m.weight > 0.0).count();
        let min_members = match raw.min_members {
            None => 1,
            Some(v) => {
                let n = *v.get_ref();
                if n < 1 || n as usize > voting {
                    return Err(at(
                        v.span(),
                        "min_members",
                        format!("must be between 1 and the {voting} voting models, got {n}"),
                    ));
                }
                n as usize
            }
        };
        let mut quorum = BTreeMap::new();
        if let Some(q) = raw.quorum {
            for (group, &n) in q.get_ref() {
                let members = models
                    .iter()
                    .filter(|m| m.group.as_deref() == Some(group.as_str()) && m.weight > 0.0)
                    .count();
                if members == 0 {
                    let reason = format!("no voting model is in group {group:?}");
                    return Err(at(q.span(), &format!("quorum.{group}"), reason));
                }
                if n < 1 || n as usize > members {
                    let reason =
                        format!("must be between 1 and the group's {members} members, got {n}");
                    return Err(at(q.span(), &format!("quorum.{group}"), reason));
                }
                quorum.insert(group.clone(), n as usize);
            }
        }
        if !degrade && (min_members != 1 || !quorum.is_empty()) {
            return Err(self.error(
                None,
                "min_members and [quorum] apply to on_member_failure = \"degrade\" only",
            ));
        }
        Ok(FailurePolicy {
            degrade,
            min_members,
            quorum,
        })
    }
}
