//! `lastmile cascade fit` and `lastmile eval` on a cascade: the fit writes a manifest `check`
//! accepts, whose cascade, evaluated on the fitting data, has the accuracy the fit promised
//! (the same code answers both) within `--max-drop` of the full ensemble; eval reports the share
//! of items each stage answered and the members run per item.

use serde_json::Value;

use super::{assert_succeeded, lastmile};
use crate::support::{starter, starter_variant, validation_set};

fn json(out: &std::process::Output) -> Value {
    assert_succeeded(out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `lastmile eval --json` of `manifest` on `data`.
pub(crate) fn eval(manifest: &str, data: &str) -> Value {
    json(&lastmile(
        &["eval", "--manifest", manifest, "--data", data, "--json"],
        "",
    ))
}

#[test]
fn cascade_fit_writes_a_manifest_whose_cascade_keeps_the_accuracy_it_promised() {
    let dir = tempfile::tempdir().unwrap();
    let data = validation_set(dir.path()).display().to_string();
    let written = dir.path().join("cascaded.toml").display().to_string();
    let m = starter().display().to_string();
    let fit = json(&lastmile(
        &[
            "cascade",
            "fit",
            "--manifest",
            &m,
            "--data",
            &data,
            "--max-drop",
            "0.002",
            "--write",
            &written,
            "--json",
        ],
        "",
    ));
    let stages = fit["stages"].as_array().unwrap();
    assert!(stages.len() >= 2, "{fit}");
    assert!(stages.last().unwrap().get("threshold").unwrap().is_null());
    assert!(fit["cost_share"].as_f64().unwrap() <= 1.0, "{fit}");
    let full = fit["full_top1"].as_f64().unwrap();
    assert!(fit["top1"].as_f64().unwrap() >= full - 0.002, "{fit}");
    assert_succeeded(&lastmile(&["check", &written], ""));
    let report = eval(&written, &data);
    let cascade = &report["cascade"];
    assert_eq!(report["overall"]["top1"].as_f64().unwrap(), full);
    let top1 = cascade["top1"].as_f64().unwrap();
    assert!(top1 >= full - 0.002, "{report}");
    // The server's cascade answers what the fit computed, item for item.
    assert_eq!(top1, fit["top1"].as_f64().unwrap(), "{report}\n{fit}");
    let answered: Vec<f64> = cascade["answered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_f64().unwrap())
        .collect();
    let promised: Vec<f64> = stages
        .iter()
        .map(|s| s["answered"].as_f64().unwrap())
        .collect();
    assert_eq!(answered, promised, "{report}\n{fit}");
    assert!(
        (fit["members_run"].as_f64().unwrap() - cascade["members_run"].as_f64().unwrap()).abs()
            < 1e-9
    );
}

#[test]
fn eval_reports_each_stage_and_the_members_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = validation_set(dir.path()).display().to_string();
    let cascaded = |version: &str, threshold: &str| {
        starter_variant(dir.path(), version, |text| {
            format!(
                "{text}\n[cascade]\n\n[[cascade.stage]]\nmembers = [\"fasttext\"]\n\
                 threshold = {threshold}\n\n[[cascade.stage]]\nmembers = [\"departments\"]\n"
            )
        })
        .display()
        .to_string()
    };
    // Never stopping: the full ensemble, every member run.
    let never = eval(&cascaded("n", "inf"), &data);
    let c = &never["cascade"];
    assert_eq!(c["answered"], serde_json::json!([0.0, 1.0]), "{never}");
    assert_eq!(c["members_run"], 7.0);
    assert_eq!(c["members"], 7);
    assert_eq!(c["top1"], never["overall"]["top1"]);
    assert_eq!(c["drop_points"], 0.0);
    assert!((c["compute_share"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    // Always stopping after the fastText group: its five members.
    let always = eval(&cascaded("a", "-1"), &data);
    let c = &always["cascade"];
    assert_eq!(c["answered"], serde_json::json!([1.0, 0.0]), "{always}");
    assert_eq!(c["members_run"], 5.0);
    assert!(c["compute_share"].as_f64().unwrap() < 1.0);
    // Without a cascade, none is reported.
    let plain = eval(&starter().display().to_string(), &data);
    assert!(plain.get("cascade").is_none(), "{plain}");
}
