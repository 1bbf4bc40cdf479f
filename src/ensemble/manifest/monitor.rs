//! The manifest's `[monitor]` table: how the served ensemble's prediction drift is judged (see
//! `crate::monitor::drift` for the statistics). Every key is optional.
//!
//! ```toml
//! [monitor]
//! reference = "reference.json"  # the drift reference (`lastmile eval --write-reference`); without
//!                               # it, the answers on `validation` when the ensemble is validated
//! label_depth = 1               # answers are counted by their label's first N path components
//!                               # (default 1 when labels are paths, else 0: whole labels)
//! top_labels = 20               # the reference's most frequent buckets tracked; the rest: "other"
//! psi = 0.2                     # thresholds: population stability index of the label buckets,
//! js = 0.1                      # their Jensen-Shannon distance (0 to 1),
//! confidence_psi = 0.2          # the PSI of the first-label score histogram,
//! abstention = 0.05             # the rise of the abstention rate over the reference's;
//! min_items = 200               # judged once the window holds this many items
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[monitor]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMonitor {
    reference: Option<String>,
    label_depth: Option<usize>,
    top_labels: Option<usize>,
    psi: Option<f64>,
    js: Option<f64>,
    confidence_psi: Option<f64>,
    abstention: Option<f64>,
    min_items: Option<usize>,
}

/// `[monitor]`, defaults filled and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// The drift reference file, resolved against the manifest's directory.
    pub reference: Option<PathBuf>,
    /// None: 1 when label names are paths, else 0.
    pub label_depth: Option<usize>,
    pub top_labels: usize,
    pub psi: f64,
    pub js: f64,
    pub confidence_psi: f64,
    pub abstention: f64,
    pub min_items: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            reference: None,
            label_depth: None,
            top_labels: 20,
            psi: 0.2,
            js: 0.1,
            confidence_psi: 0.2,
            abstention: 0.05,
            min_items: 200,
        }
    }
}

impl RawMonitor {
    /// Checked: `Err((key, reason))` names the key at fault.
    pub(super) fn check(self, dir: &Path) -> Result<MonitorConfig, (&'static str, String)> {
        let d = MonitorConfig::default();
        let threshold = |key: &'static str, v: Option<f64>, default: f64, max: f64| match v {
            None => Ok(default),
            Some(x) if x.is_finite() && (0.0..=max).contains(&x) => Ok(x),
            Some(x) => Err((key, format!("must be a number from 0 to {max}, got {x}"))),
        };
        let top_labels = match self.top_labels {
            Some(0) => return Err(("top_labels", "must be at least 1".into())),
            Some(n) => n,
            None => d.top_labels,
        };
        Ok(MonitorConfig {
            reference: self.reference.map(|r| dir.join(r)),
            label_depth: self.label_depth,
            top_labels,
            psi: threshold("psi", self.psi, d.psi, f64::MAX)?,
            js: threshold("js", self.js, d.js, 1.0)?,
            confidence_psi: threshold(
                "confidence_psi",
                self.confidence_psi,
                d.confidence_psi,
                f64::MAX,
            )?,
            abstention: threshold("abstention", self.abstention, d.abstention, 1.0)?,
            min_items: self.min_items.unwrap_or(d.min_items),
        })
    }
}
