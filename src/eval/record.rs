//! An evaluation written down: the table `lastmile eval` prints, and the MLflow run that records
//! it so that experiments can be compared there: the ensemble digest and each model's version as
//! params, top-1 / top-5 / macro-F1 for the ensemble and each model as metrics, the report and
//! the table as artifacts.

use std::path::Path;

use super::{Metrics, Report};
use crate::ensemble::Ensemble;
use crate::mlflow::tracking::RunLog;

impl Report {
    /// The report as a table, models best first.
    pub fn table(&self) -> String {
        let r = self;
        let mut out = format!(
            "{} version {}: {} items, {} compute threads{}\n",
            r.ensemble,
            r.version,
            r.items,
            r.compute_threads,
            if r.unknown_labels > 0 {
                format!(
                    ", {} items with a label the ensemble lacks",
                    r.unknown_labels
                )
            } else {
                String::new()
            }
        );
        out += &format!(
            "{:<32} {:<9} {:>7} {:>7} {:>9} {:>10}\n",
            "model", "kind", "top-1", "top-5", "macro-F1", "items/s"
        );
        let row = |name: &str, kind: &str, m: &Metrics| {
            format!(
                "{:<32} {:<9} {:>7.4} {:>7.4} {:>9.4} {:>10.1}\n",
                name, kind, m.top1, m.top5, m.macro_f1, m.items_per_second
            )
        };
        out += &row("(ensemble)", "", &r.overall);
        let mut models: Vec<_> = r.models.iter().collect();
        models.sort_by(|a, b| b.metrics.top1.total_cmp(&a.metrics.top1));
        for m in models {
            out += &row(&m.name, m.kind, &m.metrics);
        }
        if let Some(c) = &self.cascade {
            out += &format!(
                "\ncascade: top-1 {:.4} ({:+.2} points against the full ensemble), top-5 {:.4}, \
                 {:.1} items/s\n  members run per item {:.2} of {}, compute per item {:.1} % of \
                 the full ensemble's\n  answered per stage: {}\n",
                c.metrics.top1,
                -c.drop_points,
                c.metrics.top5,
                c.metrics.items_per_second,
                c.members_run,
                c.members,
                100.0 * c.compute_share,
                c.answered
                    .iter()
                    .enumerate()
                    .map(|(i, a)| format!("{}: {:.2} %", i + 1, 100.0 * a))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        out
    }
}

/// MLflow keys allow letters, digits, `_ - . / :` and spaces; anything else becomes `_`.
fn key(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            c if c.is_alphanumeric() => c,
            '_' | '-' | '.' | '/' | ':' | ' ' => c,
            _ => '_',
        })
        .collect()
}

fn metrics(out: &mut Vec<(String, f64)>, prefix: &str, m: &Metrics) {
    for (name, value) in [
        ("top1", m.top1),
        ("top5", m.top5),
        ("macro_f1", m.macro_f1),
        ("items_per_second", m.items_per_second),
    ] {
        out.push((format!("{prefix}{name}"), value));
    }
}

/// The run recording `report` of `ensemble` on `data`: `kind` says what measured it (`eval`,
/// `validation`); `extra` params are added as they are (e.g. the gate's decision).
pub fn run_log(
    experiment: &str,
    kind: &str,
    ensemble: &Ensemble,
    report: &Report,
    data: &Path,
    extra: &[(String, String)],
) -> RunLog {
    let mut params = vec![
        ("ensemble.name".to_owned(), ensemble.name.clone()),
        ("ensemble.version".to_owned(), ensemble.version.clone()),
        ("ensemble.digest".to_owned(), ensemble.digest.clone()),
        (
            "manifest_sha256".to_owned(),
            ensemble.manifest_sha256.clone(),
        ),
        ("data".to_owned(), data.display().to_string()),
        ("items".to_owned(), report.items.to_string()),
    ];
    for m in &ensemble.models {
        let p = &m.provenance.model;
        let prefix = format!("model.{}.", key(&m.spec.name));
        let version = p
            .registry
            .as_ref()
            .map(|r| {
                if r.version.is_empty() {
                    format!("run {}", r.run_id)
                } else {
                    r.version.clone()
                }
            })
            .unwrap_or_else(|| "file".into());
        params.push((format!("{prefix}version"), version));
        params.push((format!("{prefix}sha256"), m.sha256.clone()));
        params.push((format!("{prefix}source"), p.source.clone()));
    }
    params.extend(extra.iter().cloned());
    let mut logged = Vec::new();
    metrics(&mut logged, "", &report.overall);
    for m in &report.models {
        metrics(&mut logged, &format!("model.{}.", key(&m.name)), &m.metrics);
    }
    let json = serde_json::to_vec_pretty(report).expect("reports serialise");
    RunLog {
        experiment: experiment.to_owned(),
        run_name: format!("{kind} {} {}", ensemble.name, ensemble.version),
        params,
        metrics: logged,
        tags: vec![
            ("lastmile.kind".into(), kind.into()),
            ("lastmile.ensemble".into(), ensemble.name.clone()),
            ("lastmile.digest".into(), ensemble.digest.clone()),
        ],
        artifacts: vec![
            ("eval.json".into(), json),
            ("eval.txt".into(), report.table().into_bytes()),
        ],
    }
}
