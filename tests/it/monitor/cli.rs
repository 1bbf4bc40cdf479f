//! `lastmile zombies`, `lastmile report` and `lastmile eval --write-reference` as an operator runs
//! them, on the starter ensemble and the departments ensemble.

use serde_json::Value;

use super::departments_manifest;
use crate::cli::{assert_succeeded, lastmile, refused};
use crate::support::{starter, validation_set};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn zombies_prints_every_member_checks_itself_and_writes_a_pruned_manifest_that_serves() {
    let dir = tempfile::tempdir().unwrap();
    let data = validation_set(dir.path());
    let pruned = dir.path().join("pruned.toml");
    let saved = dir.path().join("zombies.json");
    let (m, d, p, s) = (
        starter().display().to_string(),
        data.display().to_string(),
        pruned.display().to_string(),
        saved.display().to_string(),
    );
    let out = lastmile(
        &[
            "zombies",
            "--manifest",
            &m,
            "--data",
            &d,
            "--check",
            "--max-drop",
            "0.05",
            "--write-pruned",
            &p,
            "--save",
            &s,
        ],
        "",
    );
    assert_succeeded(&out);
    let table = stdout(&out);
    for model in [
        "ft-softmax",
        "ft-ova",
        "ft-hs",
        "ft-ngrams-subwords",
        "tfidf-zipmap",
    ] {
        assert!(table.contains(model), "{table}");
    }
    assert!(
        table.contains("check: 0 mismatches in 420 member-items"),
        "{table}"
    );
    assert!(table.contains("pruning proposal"), "{table}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(report["items"], 60);
    assert_eq!(report["members"].as_array().unwrap().len(), 7);
    assert_eq!(report["exactness"]["mismatches"], 0);
    let pruning = &report["pruning"];
    let removed = pruning["removed"].as_array().unwrap();
    assert!(!removed.is_empty(), "{pruning}");
    // Within the tolerance, measured for real; and the search's vote is what the real
    // evaluation of the pruned manifest gives.
    let (full, pruned_top1) = (
        pruning["full"]["top1"].as_f64().unwrap(),
        pruning["pruned"]["top1"].as_f64().unwrap(),
    );
    assert!(pruned_top1 >= full - 0.05 - 1e-9, "{pruning}");
    let searched = pruning["searched"].as_array().unwrap();
    assert_eq!(searched[removed.len() - 1].as_f64().unwrap(), pruned_top1);
    assert!(pruning["pruned"]["items_per_second"].as_f64().unwrap() > 0.0);
    // The pruned manifest loads, without the removed models.
    let check = lastmile(&["check", &p], "");
    assert_succeeded(&check);
    let text = std::fs::read_to_string(&pruned).unwrap();
    for r in removed {
        assert!(!text.contains(&format!("name = {r}")), "{text}");
    }
    // The report of it.
    let html = dir.path().join("zombies.html");
    let out = lastmile(
        &[
            "report",
            "--input",
            &s,
            "--out",
            &html.display().to_string(),
        ],
        "",
    );
    assert_succeeded(&out);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("id=\"plot-loo\"") && page.contains("Pruning proposal"));
}

#[test]
fn eval_writes_a_reference_that_zombies_measures_drift_against() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = departments_manifest(dir.path(), "1", "", "");
    let valid = dir.path().join("valid.jsonl");
    let reference = dir.path().join("reference.json");
    let (m, v, r) = (
        manifest.display().to_string(),
        valid.display().to_string(),
        reference.display().to_string(),
    );
    let out = lastmile(
        &[
            "eval",
            "--manifest",
            &m,
            "--data",
            &v,
            "--write-reference",
            &r,
        ],
        "",
    );
    assert_succeeded(&out);
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&reference).unwrap()).unwrap();
    assert_eq!(written["counts"]["items"], 60);
    assert_eq!(
        written["bucketing"]["depth"], 1,
        "department paths: depth 1"
    );
    let with_reference = departments_manifest(
        dir.path(),
        "2",
        "",
        "\n[monitor]\nreference = \"reference.json\"\n",
    );
    let out = lastmile(
        &[
            "zombies",
            "--manifest",
            &with_reference.display().to_string(),
            "--data",
            &v,
            "--json",
            "--no-prune",
        ],
        "",
    );
    assert_succeeded(&out);
    let z: Value = serde_json::from_str(&stdout(&out)).unwrap();
    // The same items as the reference: no drift at all.
    assert_eq!(z["drift"]["psi"].as_f64(), Some(0.0), "{}", z["drift"]);
    assert_eq!(z["drift"]["crossed"], serde_json::json!([]));
}

#[test]
fn a_bad_monitor_table_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(departments_manifest(dir.path(), "1", "", "")).unwrap();
    let line = refused(&format!("{text}\n[monitor]\njs = 2.0\n"));
    assert!(
        line.contains("`monitor.js`") && line.contains("from 0 to 1"),
        "{line}"
    );
    let line = refused(&format!("{text}\n[monitor]\nthreshold = 0.1\n"));
    assert!(line.contains("threshold"), "{line}");
    let line = refused(&format!(
        "{text}\n[monitor]\nreference = \"nowhere.json\"\n"
    ));
    assert!(
        line.contains("`monitor.reference`") && line.contains("nowhere.json"),
        "{line}"
    );
}

/// Leave-one-out computed, not estimated: each member's "without" top-1 in `lastmile zombies` is
/// exactly `lastmile eval`'s top-1 of the manifest without that member, for every member.
#[test]
fn leave_one_out_accuracy_is_evaluating_the_manifest_without_each_member() {
    let dir = tempfile::tempdir().unwrap();
    let data = validation_set(dir.path());
    let d = data.display().to_string();
    let m = starter().display().to_string();
    let out = lastmile(
        &[
            "zombies",
            "--manifest",
            &m,
            "--data",
            &d,
            "--no-prune",
            "--json",
        ],
        "",
    );
    assert_succeeded(&out);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let members = report["members"].as_array().unwrap();
    assert_eq!(members.len(), 7);
    for (i, member) in members.iter().enumerate() {
        let name = member["name"].as_str().unwrap();
        let without = crate::reliability::starter_without(dir.path(), name, &format!("{}", i + 2));
        let w = without.display().to_string();
        let eval = lastmile(&["eval", "--manifest", &w, "--data", &d, "--json"], "");
        assert_succeeded(&eval);
        let eval: Value = serde_json::from_str(&stdout(&eval)).unwrap();
        assert_eq!(
            member["without_top1"].as_f64().unwrap(),
            eval["overall"]["top1"].as_f64().unwrap(),
            "the ensemble without {name}"
        );
    }
}
