//! Every rule, the request's candidates, explanations and scratch reuse. Unless said otherwise one
//! model votes (soft) over a small taxonomy with scores Knives .30, Forks .25, Hoses .20, Lego .15,
//! Other .10, so the vote is those scores.

use super::*;

fn shop() -> LabelSpace {
    space(&[
        "Home > Kitchen > Knives",
        "Home > Kitchen > Forks",
        "Home > Garden > Hoses",
        "Toys > Lego",
        "Other",
    ])
}

const SCORES: &[f32] = &[0.30, 0.25, 0.20, 0.15, 0.10];
const ALL: &[u32] = &[0, 1, 2, 3, 4];

fn one_model(rules: &str) -> Combiner {
    build(rules, &[m("m1", 1.0, ALL)], &shop())
}

fn ask(c: &Combiner, title: Option<&str>, candidates: Option<&[String]>) -> Answer {
    let fields = [title, None];
    let item = ItemView {
        fields: &fields,
        top_k: 100,
        candidates,
        explain: false,
    };
    combine_both(c, &item, &[SCORES])
}

const KNIVES: (&str, f32) = ("Home > Kitchen > Knives", 0.30);
const FORKS: (&str, f32) = ("Home > Kitchen > Forks", 0.25);
const HOSES: (&str, f32) = ("Home > Garden > Hoses", 0.20);
const LEGO: (&str, f32) = ("Toys > Lego", 0.15);
const OTHER: (&str, f32) = ("Other", 0.10);

#[test]
fn min_confidence_abstains_or_falls_back() {
    let c = one_model("[[rule]]\ntype = \"min_confidence\"\nthreshold = 0.5");
    let a = ask(&c, None, None);
    assert!(a.predictions.is_empty());
    let why =
        "rule 1 (min_confidence): top score 0.3000 for \"Home > Kitchen > Knives\" is below 0.5";
    assert_eq!(a.abstained.as_deref(), Some(why));
    assert_eq!(a.rules_fired, vec!["rule 1 (min_confidence)"]);
    assert_eq!(a.agreement, 1, "the refused label is m1's top-1");

    // With a fallback: Other first (with its own score), then the ranking; the rules end there,
    // so the deny rule after it does not run.
    let c = one_model(
        "[[rule]]\ntype = \"min_confidence\"\nthreshold = 0.5\nfallback = \"Other\"\n\
         [[rule]]\ntype = \"deny\"\nlabels = [\"Home\"]",
    );
    let a = ask(&c, None, None);
    expect(&c, &a, &[OTHER, KNIVES, FORKS, HOSES, LEGO]);
    assert_eq!(a.rules_fired, vec!["rule 1 (min_confidence)"]);
    assert_eq!(a.agreement, 0);

    // .30 is not below .30.
    let c = one_model("[[rule]]\ntype = \"min_confidence\"\nthreshold = 0.3");
    assert!(ask(&c, None, None).rules_fired.is_empty());
}

#[test]
fn min_agreement_counts_models_with_the_winner_in_their_top_k() {
    // m1 top Knives, m2 top Forks, m3 top Knives.
    // soft: Knives (.3 + .1 + .4) / 3 = .26667, Forks (.25 + .5 + .1) / 3 = .28333, Hoses .2,
    // Lego (.15 + .1 + .2) / 3 = .15, Other .1. Winner Forks; only m2 has it first.
    let models = [m("m1", 1.0, ALL), m("m2", 1.0, ALL), m("m3", 1.0, ALL)];
    let scores: [&[f32]; 3] = [
        SCORES,
        &[0.1, 0.5, 0.2, 0.1, 0.1],
        &[0.4, 0.1, 0.2, 0.2, 0.1],
    ];
    let c = build(
        "[[rule]]\ntype = \"min_agreement\"\nmodels = 2",
        &models,
        &shop(),
    );
    let a = run(&c, &scores);
    let why =
        "rule 1 (min_agreement): 1 model(s) agree with \"Home > Kitchen > Forks\", fewer than 2";
    assert_eq!(a.abstained.as_deref(), Some(why));
    assert_eq!(a.agreement, 1);

    let c = build(
        "[[rule]]\ntype = \"min_agreement\"\nmodels = 2\nfallback = \"Other\"",
        &models,
        &shop(),
    );
    let a = run(&c, &scores);
    let third = |x: f32| x / 3.0;
    expect(
        &c,
        &a,
        &[
            OTHER,
            ("Home > Kitchen > Forks", third(0.85)),
            ("Home > Kitchen > Knives", third(0.8)),
            HOSES,
            LEGO,
        ],
    );

    // Top-2 agreement: Forks is in the top 2 of m1 (Knives .3, Forks .25) and m2 → 2, enough.
    let c = build(
        "vote.agreement_k = 2\n[[rule]]\ntype = \"min_agreement\"\nmodels = 2",
        &models,
        &shop(),
    );
    let a = run(&c, &scores);
    assert!(a.abstained.is_none() && a.rules_fired.is_empty());
    assert_eq!(a.agreement, 2);
}

#[test]
fn keyword_rules_force_multiply_or_exclude_on_whole_words_in_any_case() {
    let rule = |action: &str| {
        format!(
            "[[rule]]\ntype = \"keyword\"\nfield = \"title\"\nkeywords = [\"fork\", \"spork\"]\n\
             label = \"Home > Kitchen > Forks\"\n{action}"
        )
    };
    // Force: Forks first with score 1.
    let c = one_model(&rule("action = \"force\""));
    let a = ask(&c, Some("Silver FORK, set of 6"), None);
    expect(
        &c,
        &a,
        &[("Home > Kitchen > Forks", 1.0), KNIVES, HOSES, LEGO, OTHER],
    );
    assert_eq!(a.rules_fired, vec!["rule 1 (keyword)"]);
    // Not a whole word, or no such field on the item: nothing happens.
    expect(
        &c,
        &ask(&c, Some("forklift"), None),
        &[KNIVES, FORKS, HOSES, LEGO, OTHER],
    );
    expect(
        &c,
        &ask(&c, None, None),
        &[KNIVES, FORKS, HOSES, LEGO, OTHER],
    );
    // Multiply by 2: Forks .25 → .5.
    let c = one_model(&rule("action = \"multiply\"\nfactor = 2.0"));
    expect(
        &c,
        &ask(&c, Some("spork"), None),
        &[("Home > Kitchen > Forks", 0.5), KNIVES, HOSES, LEGO, OTHER],
    );
    // Exclude.
    let c = one_model(&rule("action = \"exclude\""));
    expect(
        &c,
        &ask(&c, Some("a fork"), None),
        &[KNIVES, HOSES, LEGO, OTHER],
    );
}

#[test]
fn regex_rules_match_their_field() {
    let c = one_model(
        "[[rule]]\ntype = \"regex\"\nname = \"no-lego-knockoffs\"\nfield = \"title\"\n\
         pattern = '(?i)compatible with lego'\nlabel = \"Toys > Lego\"\naction = \"exclude\"\n\
         [[rule]]\ntype = \"regex\"\nfield = \"title\"\npattern = '^Used '\nlabel = \"Other\"\naction = \"force\"",
    );
    let a = ask(&c, Some("Used bricks, Compatible with LEGO"), None);
    expect(&c, &a, &[("Other", 1.0), KNIVES, FORKS, HOSES]);
    assert_eq!(a.rules_fired, vec!["no-lego-knockoffs", "rule 2 (regex)"]);
}

#[test]
fn allow_and_deny_take_names_or_prefixes() {
    // Allow keeps the kitchen; the top (Knives) stays, so the rule does not count as fired.
    let c = one_model("[[rule]]\ntype = \"allow\"\nlabels = [\"Home > Kitchen\"]");
    let a = ask(&c, None, None);
    expect(&c, &a, &[KNIVES, FORKS]);
    assert!(a.rules_fired.is_empty());
    // Deny removes the kitchen, including the top: fired.
    let c = one_model("[[rule]]\ntype = \"deny\"\nlabels = [\"Home > Kitchen > \", \"Other\"]");
    let a = ask(&c, None, None);
    expect(&c, &a, &[HOSES, LEGO]);
    assert_eq!(a.rules_fired, vec!["rule 1 (deny)"]);
}

#[test]
fn request_candidates_restrict_every_rule_and_the_answer() {
    let c = one_model("[[rule]]\ntype = \"keyword\"\nfield = \"title\"\nkeywords = [\"knife\"]\nlabel = \"Home > Kitchen > Knives\"\naction = \"force\"");
    let cands = vec!["Toys".to_owned(), "Other".to_owned()];
    // Knives is not a candidate: forcing it does nothing.
    expect(&c, &ask(&c, Some("knife"), Some(&cands)), &[LEGO, OTHER]);
    let a = ask(&c, None, Some(&[]));
    assert!(a.predictions.is_empty());
    assert_eq!(
        a.abstained.as_deref(),
        Some("no label can be answered (all excluded or not covered)")
    );
}

#[test]
fn taxonomy_backoff_answers_the_parent_when_the_leaf_is_weak() {
    // Knives .30 < .4; its parent Home > Kitchen (not a label) sums .30 + .25 = .55 >= .5.
    let c = one_model(
        "[[rule]]\ntype = \"taxonomy_backoff\"\nleaf_threshold = 0.4\nparent_threshold = 0.5",
    );
    let a = ask(&c, None, None);
    expect(
        &c,
        &a,
        &[("Home > Kitchen", 0.55), KNIVES, FORKS, HOSES, LEGO, OTHER],
    );
    assert_eq!(a.agreement, 1, "m1's top-1 lies under Home > Kitchen");
    // Needing .6: Home > Kitchen (.55) fails; one level further up, Home sums .75.
    let rule =
        "[[rule]]\ntype = \"taxonomy_backoff\"\nleaf_threshold = 0.4\nparent_threshold = 0.6";
    expect(
        &one_model(rule),
        &ask(&one_model(rule), None, None),
        &[KNIVES, FORKS, HOSES, LEGO, OTHER],
    );
    let c = one_model(&format!("{rule}\nlevels = 2"));
    expect(
        &c,
        &ask(&c, None, None),
        &[("Home", 0.75), KNIVES, FORKS, HOSES, LEGO, OTHER],
    );
    // A parent the request's candidates do not accept is never answered.
    let c = one_model(
        "[[rule]]\ntype = \"taxonomy_backoff\"\nleaf_threshold = 0.4\nparent_threshold = 0.2",
    );
    let cands = vec!["Home > Kitchen > ".to_owned()];
    expect(&c, &ask(&c, None, Some(&cands)), &[KNIVES, FORKS]);
}

#[test]
fn rules_run_in_order() {
    let force = "[[rule]]\ntype = \"keyword\"\nfield = \"title\"\nkeywords = [\"fork\"]\nlabel = \"Home > Kitchen > Forks\"\naction = \"force\"\n";
    let confidence = "[[rule]]\ntype = \"min_confidence\"\nthreshold = 0.5\nfallback = \"Other\"\n";
    // Fallback first ends the rules: the keyword never runs.
    let c = one_model(&format!("{confidence}{force}"));
    let a = ask(&c, Some("fork"), None);
    expect(&c, &a, &[OTHER, KNIVES, FORKS, HOSES, LEGO]);
    assert_eq!(a.rules_fired, vec!["rule 1 (min_confidence)"]);
    // Forced first, the answer scores 1 and passes the confidence test.
    let c = one_model(&format!("{force}{confidence}"));
    let a = ask(&c, Some("fork"), None);
    expect(
        &c,
        &a,
        &[("Home > Kitchen > Forks", 1.0), KNIVES, HOSES, LEGO, OTHER],
    );
    assert_eq!(a.rules_fired, vec!["rule 1 (keyword)"]);
}

#[test]
fn an_excluded_fallback_abstains_and_an_uncovered_label_can_be_forced() {
    let c = one_model("[[rule]]\ntype = \"deny\"\nlabels = [\"Other\"]\n[[rule]]\ntype = \"min_confidence\"\nthreshold = 0.5\nfallback = \"Other\"");
    let why = "rule 2 (min_confidence): top score 0.3000 for \"Home > Kitchen > Knives\" is below 0.5; fallback \"Other\" is excluded";
    assert_eq!(ask(&c, None, None).abstained.as_deref(), Some(why));
    // No model knows Other: it is never ranked, but a rule may still answer it.
    let rule = "[[rule]]\ntype = \"keyword\"\nfield = \"title\"\nkeywords = [\"misc\"]\nlabel = \"Other\"\naction = \"force\"";
    let c = build(rule, &[m("m1", 1.0, &[0, 1, 2, 3])], &shop());
    expect(&c, &ask(&c, None, None), &[KNIVES, FORKS, HOSES, LEGO]);
    expect(
        &c,
        &ask(&c, Some("misc"), None),
        &[("Other", 1.0), KNIVES, FORKS, HOSES, LEGO],
    );
}

#[test]
fn explanations_show_each_models_part() {
    // As in the soft-vote test: m1 (w 1) a .6 b .3 c .1, m2 (w 3) a .2 b .7 c .1 → b .6, a .3, c .1.
    // Soft terms w·p / Σw: m1 gives b .3/4 = .075, a .6/4 = .15, c .1/4 = .025;
    // m2 gives b 2.1/4 = .525, a .6/4 = .15, c .3/4 = .075. They add up to the scores.
    let labels = space(&["a", "b", "c"]);
    let c = build(
        "",
        &[m("m1", 1.0, &[0, 1, 2]), m("m2", 3.0, &[0, 1, 2])],
        &labels,
    );
    let item = ItemView {
        top_k: 2,
        explain: true,
        ..item()
    };
    let a = combine_both(&c, &item, &[&[0.6, 0.3, 0.1], &[0.2, 0.7, 0.1]]);
    let e = a.explanation.expect("explain was asked");
    let p = |label: u32, score: f32| Prediction { label, score };
    assert_eq!((e[0].model, e[0].weight), (0, 1.0));
    assert_eq!(e[0].top, vec![p(0, 0.6), p(1, 0.3)]);
    assert_eq!((e[1].model, e[1].weight), (1, 3.0));
    let close = |got: &[Prediction], want: &[Prediction]| {
        got.len() == want.len()
            && got
                .iter()
                .zip(want)
                .all(|(g, w)| g.label == w.label && (g.score - w.score).abs() < 1e-6)
    };
    assert!(
        close(&e[0].contribution, &[p(1, 0.075), p(0, 0.15)]),
        "{e:?}"
    );
    assert!(
        close(&e[1].contribution, &[p(1, 0.525), p(0, 0.15)]),
        "{e:?}"
    );
}

#[test]
fn scratch_reuse_never_leaks_between_items_or_ensembles() {
    let big = one_model(
        "[[rule]]\ntype = \"taxonomy_backoff\"\nleaf_threshold = 0.4\nparent_threshold = 0.5",
    );
    let small = build(
        "vote.strategy = \"hard\"",
        &[m("m1", 1.0, &[0, 1]), m("m2", 1.0, &[1, 2])],
        &space(&["a", "b", "c"]),
    );
    let other: &[f32] = &[0.05, 0.05, 0.1, 0.7, 0.1];
    let items: [(&Combiner, Vec<&[f32]>); 4] = [
        (&big, vec![SCORES]),
        (&small, vec![&[0.9, 0.1], &[0.3, 0.7]]),
        (&big, vec![other]),
        (&small, vec![&[0.2, 0.8], &[0.6, 0.4]]),
    ];
    let mut shared = Scratch::default();
    for round in 0..2 {
        for (c, scores) in &items {
            let it = ItemView {
                explain: true,
                ..item()
            };
            let fresh = combine_both(c, &it, scores);
            assert_eq!(c.combine(&it, scores, &mut shared), fresh, "round {round}");
        }
    }
}
