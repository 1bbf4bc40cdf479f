//! Why a deploy operation did not do what it was asked: the deployer's own errors, each with the
//! message its caller reads. The edge gives each its wire kind and status once (`edge::error`).

use super::gate::{Decision, MeasureError};
use crate::ensemble::ManifestError;

/// The step at which a candidate was rejected, as the status names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Load,
    Warmup,
    Validate,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Load => "load",
            Stage::Warmup => "warmup",
            Stage::Validate => "validate",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a candidate may not go live.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Reason {
    /// Its manifest or a model did not load.
    #[error("{0}")]
    Load(#[from] ManifestError),
    /// It failed on the warm-up items.
    #[error("{0}")]
    Warmup(String),
    /// The validation set could not be read or scored.
    #[error("{0}")]
    Unmeasured(MeasureError),
    /// It scored under the gate.
    #[error("{}", .0.reason)]
    BelowGate(Decision),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DeployError {
    /// `what` names the candidate (`candidate "name" version "v"`, or just `candidate` when it
    /// did not load); the status keeps the rejection.
    #[error("{what} rejected at {stage}: {reason}{detail}")]
    Rejected {
        what: String,
        stage: Stage,
        /// Boxed: a manifest error is large, and every other variant is small.
        reason: Box<Reason>,
        /// Where the gate measured it (` (on FILE, N items)`), when it was its validation.
        detail: String,
    },
    #[error("no candidate: load one first (POST /admin/v1/load, or deploy)")]
    NoCandidate,
    #[error(
        "no previous ensemble to roll back to (none was replaced yet, it was released, or the \
         server runs with --no-keep-previous)"
    )]
    NoPrevious,
    #[error("the candidate was replaced or released meanwhile")]
    CandidateReplaced,
    #[error(
        "no shadow is running: stage one first (POST /admin/v1/shadow/stage, or lastmile deploy \
         --shadow)"
    )]
    NoShadow,
    #[error("no shadow was staged on this server")]
    NeverStaged,
    /// The request asks for something that cannot be: a threshold out of range, no validation
    /// set to validate on, a shadow fraction out of range.
    #[error("{0}")]
    Invalid(String),
    #[error(
        "the server is shutting down: the operation was stopped where it stood and nothing more \
         was changed (GET /admin/v1/status after the restart says what is live)"
    )]
    ShuttingDown,
    /// A bug, or a thread that died.
    #[error("{0}")]
    Internal(String),
}
