//! Every configuration that cannot be served is rejected, with a message naming the manifest place.

use super::*;

fn labels() -> LabelSpace {
    space(&["Home > Kitchen > Knives", "Home > Kitchen > Forks", "Other"])
}

fn models() -> Vec<M> {
    vec![m("m1", 1.0, &[0, 1, 2]), m("m2", 1.0, &[0, 1])]
}

#[track_caller]
fn rejects(toml: &str, models: &[M], message: &str) {
    match try_build(toml, models, &labels()) {
        Ok(_) => panic!("accepted:\n{toml}"),
        Err(e) => assert_eq!(e.to_string(), message),
    }
}

#[test]
fn unknown_strategies() {
    let expected = "(expected one of soft, hard, rank, max, geometric)";
    rejects(
        "vote.strategy = \"foo\"",
        &models(),
        &format!("vote.strategy: unknown strategy \"foo\" {expected}"),
    );
    let grouped: Vec<M> = models().into_iter().map(|m| m.group("onnx")).collect();
    rejects(
        "[vote.groups.onnx]\nstrategy = \"borda\"",
        &grouped,
        &format!("vote.groups.onnx.strategy: unknown strategy \"borda\" {expected}"),
    );
}

#[test]
fn strategy_parameters() {
    rejects(
        "vote.rank_k = 0",
        &models(),
        "vote: rank_k must be at least 1",
    );
    let floor = "must be a probability > 0 and < 1 (at least 1.2e-38)";
    rejects(
        "vote.floor = 0.0",
        &models(),
        &format!("vote: floor {floor}"),
    );
    rejects(
        "vote.floor = 1.0",
        &models(),
        &format!("vote: floor {floor}"),
    );
    rejects(
        "vote.floor = nan",
        &models(),
        &format!("vote: floor {floor}"),
    );
    rejects(
        "vote.agreement_k = 0",
        &models(),
        "vote: agreement_k must be at least 1",
    );
    rejects(
        "vote.label_separator = \"\"",
        &models(),
        "vote: label_separator must be a non-empty string",
    );
}

#[test]
fn model_weights_and_temperatures() {
    for bad in [-1.0, f32::NAN, f32::INFINITY] {
        let mut ms = models();
        ms[0].weight = bad;
        rejects("", &ms, "model \"m1\": weight must be a finite number >= 0");
    }
    for bad in [0.0, -2.0, f32::NAN] {
        let ms = vec![models()[0].clone().temperature(bad)];
        rejects(
            "",
            &ms,
            "model \"m1\": temperature must be a finite number > 0",
        );
    }
    rejects(
        "",
        &[m("m1", 1.0, &[0, 7])],
        "model \"m1\": label id 7 is outside the label space (3 labels)",
    );
    rejects(
        "",
        &[m("m1", 1.0, &[0]), m("m1", 1.0, &[1])],
        "model \"m1\": two models have this name",
    );
    rejects("", &[], "vote: the ensemble has no models");
    rejects(
        "",
        &[m("m1", 0.0, &[0])],
        "vote: no model takes part: every model (or its group) has weight 0",
    );
}

#[test]
fn groups() {
    let ms: Vec<M> = models().into_iter().map(|m| m.group("fasttext")).collect();
    rejects(
        "[vote.groups.fasttext]\n[vote.groups.onnx]",
        &ms,
        "vote.groups.onnx: group has no models",
    );
    let mut ms: Vec<M> = ms
        .into_iter()
        .chain([m("m3", 1.0, &[2]).group("onnx")])
        .collect();
    ms[1].group = Some("gpu".to_owned());
    rejects(
        "[vote.groups.fasttext]\n[vote.groups.onnx]",
        &ms,
        "model \"m2\": group \"gpu\" is not defined in vote.groups (groups: fasttext, onnx)",
    );
    rejects(
        "",
        &ms,
        "model \"m1\": group \"fasttext\" is not defined in vote.groups (groups: none)",
    );
    let ms: Vec<M> = models().into_iter().map(|m| m.group("g")).collect();
    rejects(
        "[vote.groups.g]\nweight = -1.0",
        &ms,
        "vote.groups.g: weight must be a finite number >= 0",
    );
}

#[test]
fn rules_naming_unknown_labels_or_fields() {
    let keyword = "type = \"keyword\"\nfield = \"title\"\nkeywords = [\"x\"]\naction = \"force\"";
    let toml = format!(
        "[[rule]]\ntype = \"min_confidence\"\nthreshold = 0.1\n[[rule]]\ntype = \"deny\"\nlabels = [\"Other\"]\n\
         [[rule]]\n{keyword}\nlabel = \"x\""
    );
    rejects(
        &toml,
        &models(),
        "rule 3 (keyword): label \"x\" is not in the label space",
    );
    rejects(
        "[[rule]]\ntype = \"min_confidence\"\nthreshold = 0.1\nfallback = \"Misc\"",
        &models(),
        "rule 1 (min_confidence): label \"Misc\" is not in the label space",
    );
    rejects(
        "[[rule]]\ntype = \"min_agreement\"\nmodels = 0",
        &models(),
        "rule 1 (min_agreement): models must be at least 1",
    );
    rejects(
        "[[rule]]\ntype = \"deny\"\nlabels = [\"Other\"]\n[[rule]]\ntype = \"regex\"\nfield = \"body\"\npattern = \"x\"\nlabel = \"Other\"\naction = \"exclude\"",
        &models(),
        "rule 2 (regex): field \"body\" is not a request field (fields: title, description)",
    );
    rejects(
        "[[rule]]\ntype = \"allow\"\nlabels = [\"Garden\"]",
        &models(),
        "rule 1 (allow): \"Garden\" matches no label in the label space (neither a name nor a prefix)",
    );
}

#[test]
fn rules_with_bad_patterns_or_actions() {
    let regex = "[[rule]]\ntype = \"regex\"\nfield = \"title\"\nlabel = \"Other\"\naction = \"force\"\npattern = ";
    let err = try_build(&format!("{regex}'(unclosed'"), &models(), &labels())
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.starts_with("rule 1 (regex): pattern does not compile: ")),
        "{err:?}"
    );
    let keyword = "[[rule]]\ntype = \"keyword\"\nfield = \"title\"\nlabel = \"Other\"\n";
    rejects(
        &format!("{keyword}keywords = [\" \"]\naction = \"force\""),
        &models(),
        "rule 1 (keyword): keywords is empty",
    );
    rejects(
        &format!("{keyword}keywords = [\"k\"]\naction = \"multiply\""),
        &models(),
        "rule 1 (keyword): action = \"multiply\" needs a factor",
    );
    rejects(
        &format!("{keyword}keywords = [\"k\"]\naction = \"force\"\nfactor = 2.0"),
        &models(),
        "rule 1 (keyword): factor is only read with action = \"multiply\"",
    );
    rejects(
        &format!("{keyword}keywords = [\"k\"]\naction = \"multiply\"\nfactor = -2.0"),
        &models(),
        "rule 1 (keyword): factor must be a finite number >= 0",
    );
    rejects(
        "[[rule]]\ntype = \"min_confidence\"\nthreshold = nan",
        &models(),
        "rule 1 (min_confidence): threshold must be a finite number >= 0",
    );
}

#[test]
fn taxonomy_backoff_needs_paths() {
    let rule =
        "[[rule]]\ntype = \"taxonomy_backoff\"\nleaf_threshold = 0.4\nparent_threshold = 0.5";
    let flat = space(&["a", "b"]);
    let err = try_build(rule, &[m("m1", 1.0, &[0, 1])], &flat)
        .err()
        .map(|e| e.to_string());
    let want =
        "rule 1 (taxonomy_backoff): no label name is a path (no label contains the separator)";
    assert_eq!(err.as_deref(), Some(want));
    rejects(
        &format!("{rule}\nlevels = 0"),
        &models(),
        "rule 1 (taxonomy_backoff): levels must be at least 1",
    );
    assert!(try_build(&format!("{rule}\nlevels = 2"), &models(), &labels()).is_ok());
}

#[test]
fn unknown_keys_and_rule_types_fail_to_parse() {
    // These are the manifest parser's errors (with its line numbers), from serde.
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Doc {
        vote: Option<VoteConfig>,
        rule: Option<Vec<RuleConfig>>,
    }
    for (text, needle) in [
        ("vote.stratgy = \"soft\"", "stratgy"),
        ("[vote.groups.g]\nwieght = 2.0", "wieght"),
        ("[[rule]]\ntype = \"min_confidence\"\nthreshold = 0.1\nfalback = \"x\"", "falback"),
        ("[[rule]]\ntype = \"popularity\"", "popularity"),
        ("[[rule]]\ntype = \"keyword\"\nfield = \"t\"\nkeywords = []\nlabel = \"x\"\naction = \"boost\"", "boost"),
    ] {
        let err = toml::from_str::<Doc>(text).expect_err(text).to_string();
        assert!(err.contains(needle), "{err}");
    }
}
