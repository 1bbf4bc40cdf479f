//! The live monitor's report, as the admin API answers it (`GET /admin/v1/monitor/report`, JSON)
//! and draws it (`.../report.html`).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{Monitor, RefState};
use crate::monitor::drift::Drift;
use crate::monitor::influence::MemberFigures;
use crate::monitor::report::Page;
use std::sync::atomic::Ordering;

/// Everything the live monitor knows now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveReport {
    /// `on`, or `off` (fraction 0: nothing is sampled).
    pub state: String,
    pub fraction: f64,
    /// The ensemble the window follows (name, version, digest), once an item was analysed.
    pub ensemble: Option<[String; 3]>,
    pub seconds_running: f64,
    pub sampled: u64,
    pub analysed: u64,
    /// Dropped: the queue was full.
    pub skipped: u64,
    pub failed: u64,
    /// Sampled items whose live answer was degraded (a member missing); analysed, like every
    /// item, as the full ensemble's vote.
    pub degraded: u64,
    pub queue_capacity: usize,
    pub queue_depth: usize,
    pub window_max_items: usize,
    pub window_max_seconds: f64,
    pub window_items: usize,
    pub members: Vec<MemberFigures>,
    /// Label scores recomputed per member and item, and member-items voted again, in the window.
    pub labels_per_member: f64,
    pub revoted: u64,
    pub reference: ReferenceStatus,
    pub drift: Option<Drift>,
    /// The `[monitor]` thresholds the drift is judged by: psi, js, confidence_psi, abstention.
    pub thresholds: Option<[f64; 4]>,
    pub min_items: Option<usize>,
    /// Drift over time, oldest first.
    pub series: Vec<SeriesPoint>,
    /// A statistic is above its threshold.
    pub alert: bool,
    pub last_error: Option<String>,
}

/// Where the followed ensemble's reference stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReferenceStatus {
    /// `ready`, `computing`, `failed`, `missing` (no file, no validation set), `none` (no
    /// ensemble followed yet).
    pub state: String,
    pub source: Option<String>,
    pub items: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesPoint {
    pub seconds_ago: f64,
    pub psi: f64,
    pub js: f64,
    pub confidence_psi: f64,
    pub abstention_change: f64,
}

impl Monitor {
    /// The report as of now.
    pub fn report(&self) -> LiveReport {
        let now = Instant::now();
        let mut state = self.state();
        state.window.expire(now);
        let served = state.served.clone();
        let found = served.as_ref().map(|s| self.references().remove(&s.digest));
        // Drift as of now: the reference may have come after the last item.
        let drift = match (&found, &served) {
            (Some(Some(RefState::Ready(r))), Some(s)) if state.window.items() > 0 => Some(
                crate::monitor::drift::drift(r, state.window.answers(), &s.config),
            ),
            _ => None,
        };
        let reference = match found {
            None => status("none", None, None, None),
            Some(None) | Some(Some(RefState::Missing)) => status(
                "missing",
                None,
                None,
                Some(
                    "no [monitor] reference in the manifest, no validation set, and no validation \
                     by the deploy gate"
                        .into(),
                ),
            ),
            Some(Some(RefState::Ready(r))) => {
                status("ready", Some(r.source.clone()), Some(r.counts.items), None)
            }
            Some(Some(RefState::Computing(source))) => {
                status("computing", Some(source), None, None)
            }
            Some(Some(RefState::Failed(e))) => status("failed", None, None, Some(e)),
        };
        let (labels_per_member, revoted) = state.window.work();
        let alert = drift.as_ref().is_some_and(|d| !d.crossed.is_empty());
        LiveReport {
            state: if self.on { "on" } else { "off" }.into(),
            fraction: self.settings.fraction,
            ensemble: served
                .as_ref()
                .map(|s| [s.name.clone(), s.version.clone(), s.digest.clone()]),
            seconds_running: now.duration_since(self.started).as_secs_f64(),
            sampled: self.sampled.load(Ordering::Relaxed),
            analysed: self.analysed.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            degraded: self.degraded.load(Ordering::Relaxed),
            queue_capacity: self.queue.capacity(),
            queue_depth: self.queue.depth(),
            window_max_items: state.window.max_items,
            window_max_seconds: state.window.max_age.as_secs_f64(),
            window_items: state.window.items(),
            members: state.window.figures(),
            labels_per_member,
            revoted,
            reference,
            drift,
            thresholds: served.as_ref().map(|s| {
                [
                    s.config.psi,
                    s.config.js,
                    s.config.confidence_psi,
                    s.config.abstention,
                ]
            }),
            min_items: served.as_ref().map(|s| s.config.min_items),
            series: state
                .window
                .series()
                .map(|p| SeriesPoint {
                    seconds_ago: now.saturating_duration_since(p.at).as_secs_f64(),
                    psi: p.psi,
                    js: p.js,
                    confidence_psi: p.confidence_psi,
                    abstention_change: p.abstention_change,
                })
                .collect(),
            alert,
            last_error: state.last_error.clone(),
        }
    }
}

fn status(
    state: &str,
    source: Option<String>,
    items: Option<u64>,
    error: Option<String>,
) -> ReferenceStatus {
    ReferenceStatus {
        state: state.into(),
        source,
        items,
        error,
    }
}

impl From<&LiveReport> for Page {
    fn from(r: &LiveReport) -> Self {
        let name = r
            .ensemble
            .as_ref()
            .map_or("(no ensemble analysed yet)".to_owned(), |e| {
                format!("{} {}", e[0], e[1])
            });
        let mut figures = vec![
            ("window".to_owned(), format!("{} items", r.window_items)),
            (
                "sampled".to_owned(),
                format!("{:.2} % of items", 100.0 * r.fraction),
            ),
            ("analysed".to_owned(), r.analysed.to_string()),
            ("dropped".to_owned(), r.skipped.to_string()),
            ("answered degraded".to_owned(), r.degraded.to_string()),
        ];
        let mut notes = Vec::new();
        match &r.drift {
            Some(d) => {
                figures.push(("PSI".into(), format!("{:.4}", d.psi)));
                figures.push(("JS distance".into(), format!("{:.4}", d.js)));
                figures.push((
                    "drift".into(),
                    if d.crossed.is_empty() {
                        "under every threshold".into()
                    } else {
                        format!("crossed: {}", d.crossed.join(", "))
                    },
                ));
            }
            None => notes.push(format!(
                "No drift statistics: the reference is {}{}.",
                r.reference.state,
                r.reference
                    .error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" ({e})"))
            )),
        }
        if r.members.is_empty() {
            notes.push("Nothing analysed yet: no sampled item has come through.".into());
        }
        let drift = (!r.series.is_empty()).then(|| {
            let xs: Vec<f64> = r.series.iter().map(|p| -p.seconds_ago).collect();
            let t = r.thresholds.unwrap_or([0.2, 0.1, 0.2, 0.05]);
            let pick = |f: fn(&SeriesPoint) -> f64| r.series.iter().map(f).collect::<Vec<f64>>();
            (
                xs,
                vec![
                    ("PSI".to_owned(), pick(|p| p.psi), t[0]),
                    ("JS distance".to_owned(), pick(|p| p.js), t[1]),
                    (
                        "confidence PSI".to_owned(),
                        pick(|p| p.confidence_psi),
                        t[2],
                    ),
                ],
            )
        });
        Page {
            title: format!("{name}: live monitor"),
            about: vec![format!(
                "rolling window of the last {} sampled items, none older than {:.0} s; reference: {}",
                r.window_max_items,
                r.window_max_seconds,
                r.reference.source.as_deref().unwrap_or(&r.reference.state)
            )],
            figures,
            members: r.members.clone(),
            without_top1: None,
            verdicts: Vec::new(),
            voters: None,
            member_agreement: None,
            confidence: r.drift.as_ref().map(|d| {
                (d.confidence.clone(), Some(d.reference_confidence.clone()))
            }),
            buckets: r.drift.as_ref().map(|d| d.buckets.clone()),
            drift,
            notes,
            pruning: None,
        }
    }
}
