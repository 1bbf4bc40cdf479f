//! The pruning proposal of `lastmile zombies`: the members whose removal keeps the ensemble's
//! top-1 within `max_drop` of the full ensemble's while saving the most compute.
//!
//! **Search.** Members are ordered by compute share per point of leave-one-out accuracy lost
//! (zombies and harmful members first, the most expensive first); the nested sets "the first j of
//! them" are each voted exactly on every item ([`Combiner::members`]: the vote of the manifest
//! without them, to the bit) in one pass over the data, and the largest set within the tolerance
//! is the proposal (at least one member always stays). **Verification** is the caller's: the
//! pruned manifest ([`pruned_manifest`]) is loaded and evaluated for real, accuracy and items/s
//! side by side with the full ensemble.
//!
//! [`Combiner::members`]: crate::combine::Combiner::members

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::influence::Analyser;
use super::zombies::ZombieReport;
use crate::combine::Members;
use crate::ensemble::{Ensemble, PredictError};
use crate::eval::{LabelledItem, Metrics};
use crate::scheduler::{ComputePool, Priority};

/// The proposal, verified.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pruning {
    /// Fraction of top-1 accuracy the pruned ensemble may lose (0.001: 0.1 point).
    pub max_drop: f64,
    /// Members removed, in the order they were tried.
    pub removed: Vec<String>,
    /// Their summed compute share.
    pub compute_saved: f64,
    /// The top-1 of each nested set tried (the first j members removed), as the search voted it.
    pub searched: Vec<f64>,
    /// The full and the pruned ensemble evaluated for real on the same items: those of
    /// `verified_on`.
    pub full: Metrics,
    pub pruned: Metrics,
    pub verified_on: String,
    /// The pruned manifest, if written.
    pub manifest: Option<String>,
}

/// Voting members (model indices) in the order the search removes them.
pub fn order(ensemble: &Ensemble, report: &ZombieReport) -> Vec<usize> {
    let eps = 0.5 / report.items.max(1) as f64;
    let mut order: Vec<(usize, f64)> = ensemble
        .combiner
        .voters()
        .zip(&report.members)
        .map(|(m, row)| {
            let lost = (-row.without_change).max(0.0);
            (m, row.figures.compute_share / (lost + eps))
        })
        .collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    order.into_iter().map(|(m, _)| m).collect()
}

/// What the search found: how many of `order` to remove, and the top-1 of every nested set.
#[derive(Debug, Clone)]
pub struct Search {
    pub removed: Vec<usize>,
    pub top1: Vec<f64>,
}

/// What the search must keep: the full ensemble's top-1 on the data, less at most `max_drop`;
/// items are scored `batch` at a time.
#[derive(Debug, Clone, Copy)]
pub struct Goal {
    pub full_top1: f64,
    pub max_drop: f64,
    pub batch: usize,
}

/// Votes each nested set of `order` on every item of `data` and picks the largest whose top-1 is
/// at least the goal's.
pub fn search(
    ensemble: &Arc<Ensemble>,
    pool: &ComputePool,
    data: &[LabelledItem],
    order: &[usize],
    goal: Goal,
    mut progress: impl FnMut(usize),
) -> Result<Search, PredictError> {
    let Goal {
        full_top1,
        max_drop,
        batch,
    } = goal;
    let models = ensemble.models.len();
    // Nested sets: without order[..=j]; the last member always stays.
    let nested: Vec<Members> = (0..order.len().saturating_sub(1))
        .map_while(|j| {
            let present: Vec<bool> = (0..models).map(|m| !order[..=j].contains(&m)).collect();
            ensemble.combiner.members(&present)
        })
        .collect();
    let mut correct = vec![0u64; nested.len()];
    let mut analyser = Analyser::default();
    for chunk in data.chunks(batch.max(1)) {
        let items: Vec<_> = chunk.iter().map(|l| l.item.clone()).collect();
        let scores = pool
            .score_at(Priority::Normal, ensemble, items.clone())
            .wait()?;
        for (row, (item, truth)) in items.iter().zip(chunk).enumerate() {
            let truth = ensemble.labels.id(&truth.label);
            analyser.ready(ensemble, &scores, row, item);
            for (j, members) in nested.iter().enumerate() {
                let top1 = analyser.among(ensemble, members, item);
                correct[j] += (truth.is_some() && top1 == truth) as u64;
            }
        }
        progress(chunk.len());
    }
    let n = data.len().max(1) as f64;
    let top1: Vec<f64> = correct.iter().map(|&c| c as f64 / n).collect();
    let floor = full_top1 - max_drop - 1e-12;
    let keep = top1.iter().rposition(|&t| t >= floor).map_or(0, |j| j + 1);
    Ok(Search {
        removed: order[..keep].to_vec(),
        top1,
    })
}

/// The text of `manifest` (at `path`) without the models named in `removed`, as a manifest
/// written at `out`: `[vote.groups.*]` tables no model names any more are dropped, the version
/// gets `-pruned`, and every path is made to resolve from `out`'s directory (kept as written when
/// it is the same directory, made absolute otherwise). Comments are not kept.
pub fn pruned_manifest(
    text: &str,
    path: &Path,
    removed: &[String],
    out: &Path,
) -> Result<String, String> {
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    let dir = absolute(path.parent().unwrap_or(Path::new("")));
    let out_dir = absolute(out.parent().unwrap_or(Path::new("")));
    let moved = dir != out_dir;
    let fix = |v: &mut toml::Value| {
        if let (true, Some(p)) = (moved, v.as_str()) {
            let joined = dir.join(p);
            let clean = std::fs::canonicalize(&joined).unwrap_or(joined);
            *v = toml::Value::String(clean.display().to_string());
        }
    };
    for key in ["label_file", "rename_file", "validation"] {
        if let Some(v) = doc.get_mut(key) {
            fix(v);
        }
    }
    if let Some(v) = doc
        .get_mut("monitor")
        .and_then(|m| m.as_table_mut())
        .and_then(|m| m.get_mut("reference"))
    {
        fix(v);
    }
    if let Some(v) = doc
        .get_mut("defaults")
        .and_then(|d| d.as_table_mut())
        .and_then(|d| d.get_mut("labels_file"))
    {
        fix(v);
    }
    let models = doc
        .get_mut("model")
        .and_then(|m| m.as_array_mut())
        .ok_or("the manifest has no [[model]] entries")?;
    models.retain(|m| {
        let name = m.get("name").and_then(|n| n.as_str()).unwrap_or("");
        !removed.iter().any(|r| r == name)
    });
    if models.is_empty() {
        return Err("every model would be removed".into());
    }
    let mut groups_left = Vec::new();
    for m in models.iter_mut() {
        let Some(t) = m.as_table_mut() else { continue };
        if let Some(g) = t.get("group").and_then(|g| g.as_str()) {
            groups_left.push(g.to_owned());
        }
        for key in ["path", "labels_file"] {
            if let Some(v) = t.get_mut(key) {
                fix(v);
            }
        }
    }
    // A `[defaults] group` names a group for every model that does not set its own.
    if let Some(g) = doc
        .get("defaults")
        .and_then(|d| d.get("group"))
        .and_then(|g| g.as_str())
    {
        groups_left.push(g.to_owned());
    }
    if let Some(groups) = doc
        .get_mut("vote")
        .and_then(|v| v.as_table_mut())
        .and_then(|v| v.get_mut("groups"))
        .and_then(|g| g.as_table_mut())
    {
        groups.retain(|name, _| groups_left.iter().any(|g| g == name));
    }
    if let Some(v) = doc.get_mut("version") {
        let version = match &*v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        *v = toml::Value::String(format!("{version}-pruned"));
    }
    let body = toml::to_string(&doc).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Written by `lastmile zombies`: {} without {} of its models ({}).\n\n{body}",
        path.display(),
        removed.len(),
        removed.join(", ")
    ))
}

fn absolute(p: &Path) -> PathBuf {
    let p = if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    };
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_drops_models_and_empty_groups_and_moves_paths() {
        let text = r#"
name = "e"
version = "3"
label_file = "labels.txt"
[[model]]
name = "a"
kind = "fasttext"
path = "a.bin"
group = "g"
[[model]]
name = "b"
kind = "fasttext"
path = "b.bin"
group = "h"
[vote]
strategy = "soft"
[vote.groups.g]
strategy = "soft"
[vote.groups.h]
strategy = "hard"
"#;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("m.toml");
        let same = pruned_manifest(text, &src, &["b".into()], &dir.path().join("p.toml")).unwrap();
        let doc: toml::Table = toml::from_str(&same).unwrap();
        assert_eq!(doc["version"].as_str(), Some("3-pruned"));
        let models = doc["model"].as_array().unwrap();
        assert_eq!(models.len(), 1);
        assert_eq!(
            models[0]["path"].as_str(),
            Some("a.bin"),
            "same directory: kept"
        );
        let groups = doc["vote"]["groups"].as_table().unwrap();
        assert!(groups.contains_key("g") && !groups.contains_key("h"));
        let other = tempfile::tempdir().unwrap();
        let moved =
            pruned_manifest(text, &src, &["b".into()], &other.path().join("p.toml")).unwrap();
        let doc: toml::Table = toml::from_str(&moved).unwrap();
        let path = doc["model"][0]["path"].as_str().unwrap();
        assert!(
            Path::new(path).is_absolute() && path.ends_with("a.bin"),
            "{path}"
        );
        assert!(doc["label_file"].as_str().unwrap().ends_with("labels.txt"));
        assert!(pruned_manifest(text, &src, &["a".into(), "b".into()], &src).is_err());
    }
}
