//! Each strategy, temperature, partial coverage and groups, on labels a (0), b (1), c (2).

use super::*;

fn abc() -> LabelSpace {
    space(&["a", "b", "c"])
}

const ALL: &[u32] = &[0, 1, 2];

#[test]
fn empty_vote_table_is_the_weighted_mean() {
    // m1 (w 1): a .6 b .3 c .1      m2 (w 3): a .2 b .7 c .1
    // a = (1·.6 + 3·.2) / 4 = .30   b = (.3 + 2.1) / 4 = .60   c = (.1 + .3) / 4 = .10
    let c = build("", &[m("m1", 1.0, ALL), m("m2", 3.0, ALL)], &abc());
    let a = run(&c, &[&[0.6, 0.3, 0.1], &[0.2, 0.7, 0.1]]);
    expect(&c, &a, &[("b", 0.6), ("a", 0.3), ("c", 0.1)]);
    // Only m2 has b first.
    assert_eq!(a.agreement, 1);
    assert!(a.rules_fired.is_empty() && a.abstained.is_none() && a.explanation.is_none());
}

#[test]
fn hard_vote_counts_top_1_weights_and_breaks_ties_by_summed_probability() {
    // m1 (w 1) votes a, m2 (w 1) votes b, m3 (w 2) votes c. W = 4.
    // c = 2/4 = .5; a and b tie at 1/4. Tiebreak Σ w·p / W:
    // a = (.6 + .1 + 2·.2) / 4 = .275 < b = (.3 + .5 + 2·.3) / 4 = .35, so b ranks before a.
    let c = build(
        r#"vote.strategy = "hard""#,
        &[m("m1", 1.0, ALL), m("m2", 1.0, ALL), m("m3", 2.0, ALL)],
        &abc(),
    );
    let a = run(&c, &[&[0.6, 0.3, 0.1], &[0.1, 0.5, 0.4], &[0.2, 0.3, 0.5]]);
    expect(&c, &a, &[("c", 0.5), ("b", 0.25), ("a", 0.25)]);
    assert_eq!(a.agreement, 1);
}

#[test]
fn rank_vote_is_a_weighted_borda_count() {
    // k = 2: a voter's best label earns 2 points, its second 1.
    // m1: a .5 b .3 c .2 → a 2, b 1     m2: a .1 b .6 c .3 → b 2, c 1     m3: a .4 b .25 c .35 → a 2, c 1
    // a = 4, b = 3, c = 2 points; divided by k·W = 2·3 = 6: a .6667, b .5, c .3333.
    let c = build(
        "vote.strategy = \"rank\"\nvote.rank_k = 2",
        &[m("m1", 1.0, ALL), m("m2", 1.0, ALL), m("m3", 1.0, ALL)],
        &abc(),
    );
    let a = run(
        &c,
        &[&[0.5, 0.3, 0.2], &[0.1, 0.6, 0.3], &[0.4, 0.25, 0.35]],
    );
    expect(&c, &a, &[("a", 4.0 / 6.0), ("b", 0.5), ("c", 2.0 / 6.0)]);
}

#[test]
fn hard_vote_is_rank_vote_with_k_1() {
    let models = [m("m1", 1.0, ALL), m("m2", 2.5, ALL), m("m3", 1.0, ALL)];
    let scores: [&[f32]; 3] = [&[0.5, 0.3, 0.2], &[0.1, 0.6, 0.3], &[0.4, 0.25, 0.35]];
    let hard = run(
        &build(r#"vote.strategy = "hard""#, &models, &abc()),
        &scores,
    );
    let rank = run(
        &build("vote.strategy = \"rank\"\nvote.rank_k = 1", &models, &abc()),
        &scores,
    );
    assert_eq!(hard, rank);
}

#[test]
fn max_takes_the_best_weighted_score_per_label() {
    // Weights are scaled so the heaviest model weighs 1: m1 .5, m2 1.
    // m1: a .5 b .4 c .1    m2: a .3 b .6 c .1
    // a = max(.5·.5, .3) = .3   b = max(.2, .6) = .6   c = max(.05, .1) = .1
    let c = build(
        r#"vote.strategy = "max""#,
        &[m("m1", 1.0, ALL), m("m2", 2.0, ALL)],
        &abc(),
    );
    let a = run(&c, &[&[0.5, 0.4, 0.1], &[0.3, 0.6, 0.1]]);
    expect(&c, &a, &[("b", 0.6), ("a", 0.3), ("c", 0.1)]);
}

#[test]
fn geometric_punishes_disagreement_where_soft_does_not() {
    // m1: a .8 b .15 c .05    m2: a .02 b .5 c .48   (equal weights)
    // soft: a .41, b .325, c .265 — a wins.
    // geometric: a = √(.8·.02) = .12649, b = √(.15·.5) = .27386, c = √(.05·.48) = .15492 — b wins.
    let scores: [&[f32]; 2] = [&[0.8, 0.15, 0.05], &[0.02, 0.5, 0.48]];
    let models = [m("m1", 1.0, ALL), m("m2", 1.0, ALL)];
    let soft = build("", &models, &abc());
    expect(
        &soft,
        &run(&soft, &scores),
        &[("a", 0.41), ("b", 0.325), ("c", 0.265)],
    );
    let geo = build(r#"vote.strategy = "geometric""#, &models, &abc());
    expect(
        &geo,
        &run(&geo, &scores),
        &[("b", 0.273_861_3), ("c", 0.154_919_3), ("a", 0.126_491_1)],
    );
}

#[test]
fn geometric_weights_are_exponents() {
    // m1 (w 3), m2 (w 1): score = p1^(3/4) · p2^(1/4).
    // a = .8^.75 · .02^.25 = .31811   b = .15^.75 · .5^.25 = .20268   c = .05^.75 · .48^.25 = .08801
    let c = build(
        r#"vote.strategy = "geometric""#,
        &[m("m1", 3.0, ALL), m("m2", 1.0, ALL)],
        &abc(),
    );
    let a = run(&c, &[&[0.8, 0.15, 0.05], &[0.02, 0.5, 0.48]]);
    expect(
        &c,
        &a,
        &[("a", 0.318_108_3), ("b", 0.202_68), ("c", 0.088_011_2)],
    );
}

#[test]
fn geometric_uses_the_floor_where_a_model_lacks_a_label() {
    // floor .01. m1 has only a, b: a .9 b .1.   m2 has all three: a .3 b .1 c .4.
    // a = √(.9·.3) = .51962   b = √(.1·.1) = .1   c = √(.01·.4) = .06325 (m1 counts as the floor)
    let c = build(
        "vote.strategy = \"geometric\"\nvote.floor = 0.01",
        &[m("m1", 1.0, &[0, 1]), m("m2", 1.0, ALL)],
        &abc(),
    );
    let a = run(&c, &[&[0.9, 0.1], &[0.3, 0.1, 0.4]]);
    expect(
        &c,
        &a,
        &[("a", 0.519_615_2), ("b", 0.1), ("c", 0.063_245_6)],
    );
}

#[test]
fn temperature_flattens_or_sharpens_a_models_probabilities() {
    // T = 2: a .64 b .36 → √ → .8, .6 → rescaled to total 1: .571429, .428571.
    // T = .5: squared → .4096, .1296 → /.5392: .759644, .240356.
    let labels = space(&["a", "b"]);
    for (t, want) in [
        (2.0, [0.571_428_6, 0.428_571_4]),
        (0.5, [0.759_643_9, 0.240_356_1]),
    ] {
        let c = build("", &[m("m1", 1.0, &[0, 1]).temperature(t)], &labels);
        expect(
            &c,
            &run(&c, &[&[0.64, 0.36]]),
            &[("a", want[0]), ("b", want[1])],
        );
    }
}

#[test]
fn soft_vote_averages_each_label_over_the_models_that_have_it() {
    // Labels a b c d. m1 (w 1) has a, b; m2 (w 1) has b, c; m3 (w 2) has a, b, c; no model has d.
    // m1: a .6 b .4    m2: b .2 c .8    m3: a .1 b .1 c .8
    // a: m1, m3 → (1·.6 + 2·.1) / (1 + 2) = .26667
    // b: all    → (.4 + .2 + 2·.1) / 4     = .2
    // c: m2, m3 → (.8 + 2·.8) / (1 + 2)    = .8
    // d: no model has it, so it is never ranked.
    let labels = space(&["a", "b", "c", "d"]);
    let models = [
        m("m1", 1.0, &[0, 1]),
        m("m2", 1.0, &[1, 2]),
        m("m3", 2.0, &[0, 1, 2]),
    ];
    let c = build("", &models, &labels);
    let a = run(&c, &[&[0.6, 0.4], &[0.2, 0.8], &[0.1, 0.1, 0.8]]);
    expect(&c, &a, &[("c", 0.8), ("a", 0.8 / 3.0), ("b", 0.2)]);
}

#[test]
fn partial_coverage_in_hard_rank_and_max() {
    // m1 has a, b: a .3 b .7 → votes b.   m2 has c only: c .9 → votes c.   m3 has all: a .5 b .2 c .3.
    // hard (equal weights): a 1/3, b 1/3, c 1/3; tiebreak Σp/3: a .8/3, b .9/3, c 1.2/3 → c, b, a.
    // max: a .5, b .7, c .9.
    let models = [m("m1", 1.0, &[0, 1]), m("m2", 1.0, &[2]), m("m3", 1.0, ALL)];
    let scores: [&[f32]; 3] = [&[0.3, 0.7], &[0.9], &[0.5, 0.2, 0.3]];
    let hard = build(r#"vote.strategy = "hard""#, &models, &abc());
    let third = 1.0 / 3.0;
    expect(
        &hard,
        &run(&hard, &scores),
        &[("c", third), ("b", third), ("a", third)],
    );
    let max = build(r#"vote.strategy = "max""#, &models, &abc());
    expect(
        &max,
        &run(&max, &scores),
        &[("c", 0.9), ("b", 0.7), ("a", 0.5)],
    );
}

#[test]
fn groups_vote_inside_then_across() {
    // Labels a b. Group ft (soft, weight 1): m1 a .8 b .2, m2 a .6 b .4 → a .7 b .3.
    // Group onnx (soft, weight 3): m3 a .1 b .9 → a .1 b .9.
    // Across (soft): a = (1·.7 + 3·.1) / 4 = .25, b = (.3 + 2.7) / 4 = .75.
    // (Flat soft with weights 1, 1, 3 would give a = (.8 + .6 + .3) / 5 = .34 instead.)
    let labels = space(&["a", "b"]);
    let toml = "[vote.groups.ft]\n[vote.groups.onnx]\nweight = 3.0";
    let models = [
        m("m1", 1.0, &[0, 1]).group("ft"),
        m("m2", 1.0, &[0, 1]).group("ft"),
        m("m3", 1.0, &[0, 1]).group("onnx"),
    ];
    let c = build(toml, &models, &labels);
    let a = run(&c, &[&[0.8, 0.2], &[0.6, 0.4], &[0.1, 0.9]]);
    expect(&c, &a, &[("b", 0.75), ("a", 0.25)]);
    // Agreement counts models, not groups: only m3 has b first.
    assert_eq!(a.agreement, 1);
}

#[test]
fn groups_can_use_their_own_strategy_and_ungrouped_models_vote_as_themselves() {
    // Group ft votes hard: m1 → a, m2 → a, m3 → b (weights 1, 1, 1): ft = a 2/3, b 1/3.
    // Ungrouped m4 (weight 1) votes across groups as a voter of its own: a .2 b .8.
    // Across groups, soft with ft weight 1 and m4 weight 1: a = (2/3 + .2) / 2 = .43333,
    // b = (1/3 + .8) / 2 = .56667.
    let labels = space(&["a", "b"]);
    let toml = "[vote.groups.ft]\nstrategy = \"hard\"";
    let models = [
        m("m1", 1.0, &[0, 1]).group("ft"),
        m("m2", 1.0, &[0, 1]).group("ft"),
        m("m3", 1.0, &[0, 1]).group("ft"),
        m("m4", 1.0, &[0, 1]),
    ];
    let c = build(toml, &models, &labels);
    let a = run(&c, &[&[0.9, 0.1], &[0.6, 0.4], &[0.4, 0.6], &[0.2, 0.8]]);
    expect(&c, &a, &[("b", 0.566_666_7), ("a", 0.433_333_3)]);
}

#[test]
fn broken_scores_count_as_zero_or_one_and_poison_nothing() {
    // m1: a NaN b .5 c -1 → a 0, b .5, c 0.   m2: a .4 b .4 c .2.
    // soft: a = (0 + .4) / 2 = .2, b = (.5 + .4) / 2 = .45, c = (0 + .2) / 2 = .1.
    // m3 reports +inf for a and 7 for b: both count as 1. Max with m3: a 1, b 1, c .2 (tie: a first).
    let c = build("", &[m("m1", 1.0, ALL), m("m2", 1.0, ALL)], &abc());
    expect(
        &c,
        &run(&c, &[&[f32::NAN, 0.5, -1.0], &[0.4, 0.4, 0.2]]),
        &[("b", 0.45), ("a", 0.2), ("c", 0.1)],
    );
    let scores: [&[f32]; 3] = [
        &[f32::NAN, 0.5, -1.0],
        &[0.4, 0.4, 0.2],
        &[f32::INFINITY, 7.0, f32::NAN],
    ];
    for strategy in ["soft", "hard", "rank", "max", "geometric"] {
        let models = [m("m1", 1.0, ALL), m("m2", 1.0, ALL), m("m3", 1.0, ALL)];
        let c = build(&format!("vote.strategy = \"{strategy}\""), &models, &abc());
        let a = combine_both(
            &c,
            &ItemView {
                explain: true,
                ..item()
            },
            &scores,
        );
        assert_eq!(a.predictions.len(), 3, "{strategy}");
        assert!(
            a.predictions.iter().all(|p| p.score.is_finite()),
            "{strategy}: {a:?}"
        );
        let contributions = a.explanation.iter().flatten().flat_map(|e| &e.contribution);
        assert!(
            contributions.clone().all(|p| p.score.is_finite()),
            "{strategy}"
        );
    }
    let max = build(
        r#"vote.strategy = "max""#,
        &[m("m2", 1.0, ALL), m("m3", 1.0, ALL)],
        &abc(),
    );
    expect(
        &max,
        &run(&max, &scores[1..]),
        &[("a", 1.0), ("b", 1.0), ("c", 0.2)],
    );
}

#[test]
fn missing_or_short_model_outputs_count_as_zeros() {
    // m2 sent only a's score (.4) and m3 sent nothing: b and c count as 0 for them.
    // soft: a = (.6 + .4 + 0) / 3 = .33333, b = (.3) / 3 = .1, c = .1 / 3 = .03333.
    let c = build(
        "",
        &[m("m1", 1.0, ALL), m("m2", 1.0, ALL), m("m3", 1.0, ALL)],
        &abc(),
    );
    let a = run(&c, &[&[0.6, 0.3, 0.1], &[0.4]]);
    expect(&c, &a, &[("a", 1.0 / 3.0), ("b", 0.1), ("c", 0.1 / 3.0)]);
}

#[test]
fn merged_labels_add_up() {
    // A model whose outputs 0 and 2 were both renamed to a (label ids 0, 1, 0): a = .5 + .3.
    let c = build("", &[m("m1", 1.0, &[0, 1, 0])], &abc());
    expect(&c, &run(&c, &[&[0.5, 0.2, 0.3]]), &[("a", 0.8), ("b", 0.2)]);
}

#[test]
fn agreement_counts_models_with_the_winner_in_their_top_k() {
    // Winner a (soft: a .4667, b .3, c .2333). Top-1s: m1 a, m2 b, m3 c → 1 agrees.
    // Top-2s: m1 {a, b}, m2 {b, a}, m3 {c, a} → 3 agree.
    let models = [m("m1", 1.0, ALL), m("m2", 1.0, ALL), m("m3", 1.0, ALL)];
    let scores: [&[f32]; 3] = [&[0.7, 0.2, 0.1], &[0.35, 0.6, 0.05], &[0.35, 0.1, 0.55]];
    assert_eq!(run(&build("", &models, &abc()), &scores).agreement, 1);
    assert_eq!(
        run(&build("vote.agreement_k = 2", &models, &abc()), &scores).agreement,
        3
    );
}

#[test]
fn top_k_limits_the_answer() {
    let c = build("", &[m("m1", 1.0, ALL)], &abc());
    let a = combine_both(&c, &ItemView { top_k: 2, ..item() }, &[&[0.2, 0.5, 0.3]]);
    expect(&c, &a, &[("b", 0.5), ("c", 0.3)]);
    let none = combine_both(&c, &ItemView { top_k: 0, ..item() }, &[&[0.2, 0.5, 0.3]]);
    assert!(none.predictions.is_empty() && none.abstained.is_none());
}
