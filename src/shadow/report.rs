//! The shadow report as the admin API returns it (JSON) and `lastmile deploy` prints it. Plain
//! data: [`super::stats`] fills the numbers, [`super::Shadow::report`] the rest.

use serde::{Deserialize, Serialize};

/// Everything known about a staged (or the last stopped) shadow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `running`, or `stopped` (stopped or promoted: the numbers are final).
    pub state: String,
    pub shadow: EnsembleRef,
    /// The live ensemble of the most recent mirrored request.
    pub live: Option<EnsembleRef>,
    /// Share of live items mirrored.
    pub fraction: f64,
    /// Depth of the top-k overlap and of the shadow's answer.
    pub compare_k: usize,
    /// When the shadow was staged, seconds since the Unix epoch.
    pub staged_at: f64,
    pub seconds_staged: f64,
    pub counts: Counts,
    pub queue: QueueStatus,
    pub since_staging: Aggregate,
    pub window: WindowReport,
    /// The most frequent (live winner → shadow winner) pairs among disagreeing items since
    /// staging, most frequent first; `null` stands for an empty answer.
    pub top_disagreements: Vec<PairCount>,
    /// Top-1 agreement for the most frequent live winners since staging, most frequent first.
    pub labels: Vec<LabelAgreement>,
    /// Distinct pairs (labels) seen after the tally was full: counted in the aggregates, not in
    /// the lists above.
    pub untracked_pairs: u64,
    pub untracked_labels: u64,
    /// Why the shadow last failed an item.
    pub last_error: Option<String>,
    /// The disagreement log, when one is configured.
    pub log: Option<LogStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleRef {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub digest: String,
}

/// Items at each step since staging. `sampled = mirrored + skipped`; once the queue is empty,
/// `mirrored = compared + failed + discarded`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Live items the sampler picked.
    pub sampled: u64,
    /// Picked items handed to the shadow queue.
    pub mirrored: u64,
    /// Picked items dropped because the shadow queue was full.
    pub skipped: u64,
    /// Mirrored items the shadow answered.
    pub compared: u64,
    /// Mirrored items the shadow could not answer (item does not fit it, a model failed).
    pub failed: u64,
    /// Mirrored items still queued when the shadow was stopped.
    pub discarded: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStatus {
    pub capacity: usize,
    /// Items waiting now.
    pub depth: usize,
}

/// Aggregates over a set of mirrored items.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub compared: u64,
    pub failed: u64,
    pub top1_agreed: u64,
    /// `top1_agreed / compared`.
    pub top1_agreement: Option<f64>,
    /// Mean share of the live top-k found in the shadow's top-k (items with a live answer).
    pub topk_overlap: Option<f64>,
    /// Share of items (with a live winner) whose live winner is among the shadow's labels.
    pub live_winner_in_shadow: Option<f64>,
    /// Mean score the shadow gives the live winner, where the shadow answered it.
    pub shadow_score_for_live_winner: Option<f64>,
    /// `failed / (compared + failed)`.
    pub failure_ratio: Option<f64>,
    pub live_seconds: Latency,
    pub shadow_seconds: Latency,
}

/// Latency of compared items (seconds on the compute pool). Quantiles only over the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95: Option<f64>,
    pub max: Option<f64>,
}

/// The rolling window: the last `max_items` mirrored items, none older than `max_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    pub max_items: usize,
    pub max_seconds: f64,
    #[serde(flatten)]
    pub aggregate: Aggregate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairCount {
    pub live: Option<String>,
    pub shadow: Option<String>,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelAgreement {
    /// The live winner (`null`: live answered nothing).
    pub label: Option<String>,
    /// Compared items with this live winner.
    pub items: u64,
    pub agreed: u64,
    pub agreement: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogStatus {
    pub path: String,
    /// Lines written since staging.
    pub lines: u64,
    pub rotations: u64,
    /// Lines that could not be written.
    pub errors: u64,
}
