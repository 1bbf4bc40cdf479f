//! Two Open Inference Protocol extensions that Triton's clients call every day, independent of
//! transport ([`super::http`] and [`super::grpc`] encode them):
//!
//! - the model repository's **index** ([`repository_index`]): the live ensemble (`READY`), and
//!   the ensembles the registry holds beside it (`UNAVAILABLE`, saying why: kept for rollback, or
//!   loaded and not promoted). Loading and unloading change what is live: they are admin calls,
//!   on the admin listener behind its token (`edge::admin::repository`), through the deploy path
//!   and its gate;
//! - **statistics** ([`statistics`]): per ensemble and per member, the counts and cumulative
//!   times of [`crate::ensemble::stats`]. Asking for the ensemble (or for every model, with no
//!   name) answers the ensemble then each member (named as in the manifest, with the ensemble's
//!   version); asking for a member's name answers that member alone.

use std::sync::Arc;

use crate::edge::error::ApiError;
use crate::ensemble::stats::ModelStats;
use crate::ensemble::Ensemble;
use crate::service::Service;

/// One entry of the repository index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    pub version: String,
    /// `READY` or `UNAVAILABLE`.
    pub state: &'static str,
    /// Why it is not ready (empty when it is).
    pub reason: String,
}

/// The models the server holds: the live ensemble, then the previous and the candidate, if any;
/// with `ready_only`, only those that answer inference.
pub fn repository_index(service: &Service, ready_only: bool) -> Vec<IndexEntry> {
    let (live, previous, candidate) = service.registry().held();
    let entry = |e: &Ensemble, reason: &str| IndexEntry {
        name: e.name.clone(),
        version: e.version.clone(),
        state: if reason.is_empty() {
            "READY"
        } else {
            "UNAVAILABLE"
        },
        reason: reason.to_owned(),
    };
    let live_reason = if service.ready() {
        ""
    } else {
        "the server is shutting down"
    };
    let mut out = vec![entry(&live.ensemble, live_reason)];
    if let Some(p) = previous {
        out.push(entry(&p.ensemble, "kept for rollback, not served"));
    }
    if let Some(c) = candidate {
        out.push(entry(
            &c.ensemble,
            "a candidate, loaded and not yet promoted",
        ));
    }
    if ready_only {
        out.retain(|e| e.state == "READY");
    }
    out
}

/// One model's statistics, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub name: String,
    pub version: String,
    pub stats: ModelStats,
}

/// The statistics asked for: `name` empty for every model of the live ensemble, the ensemble's
/// name (any version the registry holds; empty: the live one) for it and its members, or a
/// member's name for that member.
pub fn statistics(service: &Service, name: &str, version: &str) -> Result<Vec<Named>, ApiError> {
    let (live, previous, candidate) = service.registry().held();
    let held: Vec<Arc<Ensemble>> = std::iter::once(live.ensemble)
        .chain(previous.map(|h| h.ensemble))
        .chain(candidate.map(|h| h.ensemble))
        .collect();
    let live = &held[0];
    let with_members = |e: &Ensemble| {
        let mut out = vec![Named {
            name: e.name.clone(),
            version: e.version.clone(),
            stats: e.stats.ensemble(),
        }];
        for (m, stats) in e.models.iter().zip(e.stats.members()) {
            out.push(Named {
                name: m.spec.name.clone(),
                version: e.version.clone(),
                stats,
            });
        }
        out
    };
    if name.is_empty() {
        return Ok(with_members(live));
    }
    let wanted = |e: &&Arc<Ensemble>| version.is_empty() || e.version == version;
    if name == live.name {
        let e = if version.is_empty() {
            Some(live)
        } else {
            held.iter().find(|e| e.name == name && wanted(e))
        };
        return match e {
            Some(e) => Ok(with_members(e)),
            None => Err(ApiError::not_found(format!(
                "model {name:?} has no version {version:?} held (live: {:?})",
                live.version
            ))),
        };
    }
    if version.is_empty() || version == live.version {
        if let Some(m) = live.models.iter().position(|m| m.spec.name == name) {
            return Ok(vec![Named {
                name: name.to_owned(),
                version: live.version.clone(),
                stats: live.stats.members()[m].clone(),
            }]);
        }
    }
    Err(ApiError::not_found(format!(
        "no model {name:?}: the ensemble {:?} or one of its members",
        live.name
    )))
}
