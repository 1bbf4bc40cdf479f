//! Hand-worked influence: each example's answers without each member are worked out in the
//! comments (scores are binary fractions where a tie matters, so the tie is exact in f32 too), and
//! `influence_of` checks them against the re-vote as well.

use super::super::super::tests::m;
use super::*;

#[track_caller]
fn expect_without(c: &Combiner, models: &[M], inf: &Influence, want: &[(&str, &str)]) {
    let got = without_by_name(c, models, inf);
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(inf.work.revoted, 0, "settled without voting again");
}

fn pivotal(inf: &Influence) -> Vec<bool> {
    inf.members.iter().map(|m| m.pivotal).collect()
}

fn three(w: [f32; 3], ids: &[u32]) -> Vec<M> {
    (0..3).map(|i| m(&format!("m{i}"), w[i], ids)).collect()
}

/// Soft, weights 1: a = 1.25/3, b = 1.125/3, c = 0.625/3: a wins.
/// Without m0: a = (0.25 + 0.5)/2 = 0.375, b = (0.5 + 0.25)/2 = 0.375: a tie, the lower id a.
/// Without m1: a = 0.5, b = 0.3125: a. Without m2: a = 0.375, b = 0.4375: b, so m2 is pivotal.
/// Agreement: m0 and m2 answer a, m1 b. Shares of a: 0.5, 0.25, 0.5 over 1.25.
#[test]
fn soft_by_hand() {
    let models = three([1.0; 3], &[0, 1, 2]);
    let c = combiner("[vote]\nstrategy = \"soft\"\n", &models, &["a", "b", "c"]);
    let scores = vec![
        vec![0.5, 0.375, 0.125],
        vec![0.25, 0.5, 0.25],
        vec![0.5, 0.25, 0.25],
    ];
    let inf = influence_of(&c, &item(), &scores);
    expect_without(&c, &models, &inf, &[("m0", "a"), ("m1", "a"), ("m2", "b")]);
    assert_eq!(pivotal(&inf), vec![false, false, true]);
    let agrees: Vec<bool> = inf.members.iter().map(|m| m.agrees).collect();
    assert_eq!(agrees, vec![true, false, true]);
    let shares: Vec<f32> = inf.members.iter().map(|m| m.share).collect();
    for (got, want) in shares.iter().zip([0.4, 0.2, 0.4]) {
        assert!((got - want).abs() < 1e-6, "{shares:?}");
    }
}

fn four_voters() -> (Vec<M>, Vec<Vec<f32>>) {
    let models = (0..4)
        .map(|i| m(&format!("m{i}"), 1.0, &[0, 1, 2]))
        .collect();
    let scores = vec![
        vec![0.625, 0.25, 0.125],
        vec![0.5, 0.375, 0.125],
        vec![0.25, 0.5, 0.25],
        vec![0.125, 0.5, 0.375],
    ];
    (models, scores)
}

/// Hard: m0 and m1 vote a, m2 and m3 vote b: 2/4 each, the tiebreak (weighted score sums) gives
/// a 1.5/4 and b 1.625/4: b. Without m0 or m1: b 2/3. Without m2 or m3: a 2/3, both pivotal.
#[test]
fn hard_by_hand() {
    let (models, scores) = four_voters();
    let c = combiner("[vote]\nstrategy = \"hard\"\n", &models, &["a", "b", "c"]);
    let inf = influence_of(&c, &item(), &scores);
    expect_without(
        &c,
        &models,
        &inf,
        &[("m0", "b"), ("m1", "b"), ("m2", "a"), ("m3", "a")],
    );
    assert_eq!(pivotal(&inf), vec![false, false, true, true]);
}

/// Rank, k = 2 (2 points for a voter's best, 1 for its second): m0 a2 b1, m1 a2 b1, m2 b2 a1
/// (a and c tie at 0.25: the lower id), m3 b2 c1; a 5, b 6, c 1: b. Without m0: a 3, b 5: b;
/// without m1: b. Without m2: a 4, b 4, tiebreak a 1.25 against b 1.125: a. Without m3: a 5,
/// b 4: a.
#[test]
fn rank_by_hand() {
    let (models, scores) = four_voters();
    let c = combiner(
        "[vote]\nstrategy = \"rank\"\nrank_k = 2\n",
        &models,
        &["a", "b", "c"],
    );
    let inf = influence_of(&c, &item(), &scores);
    expect_without(
        &c,
        &models,
        &inf,
        &[("m0", "b"), ("m1", "b"), ("m2", "a"), ("m3", "a")],
    );
}

/// Max, weights 1 and 2 (0.5 and 1 once the heaviest weighs 1): a = max(0.45, 0.3), b =
/// max(0.05, 0.4): a. Without m0: m1's own best, b. Without m1, m0 weighs 1: a. m0 holds a's
/// score alone: its share is 1, m1's 0.
#[test]
fn max_by_hand() {
    let models = vec![m("m0", 1.0, &[0, 1]), m("m1", 2.0, &[0, 1])];
    let c = combiner("[vote]\nstrategy = \"max\"\n", &models, &["a", "b"]);
    let inf = influence_of(&c, &item(), &[vec![0.9, 0.1], vec![0.3, 0.4]]);
    expect_without(&c, &models, &inf, &[("m0", "b"), ("m1", "a")]);
    let shares: Vec<f32> = inf.members.iter().map(|m| m.share).collect();
    assert_eq!(shares, vec![1.0, 0.0]);
}

/// Geometric: a = (0.8·0.3·0.6)^(1/3) = 0.524, b = (0.2·0.7·0.4)^(1/3) = 0.383: a. Without m0:
/// a = √0.18 = 0.424, b = √0.28 = 0.529: b. Without m1: a = √0.48. Without m2: a = √0.24,
/// b = √0.14: a.
#[test]
fn geometric_by_hand() {
    let models = three([1.0; 3], &[0, 1]);
    let c = combiner(
        "[vote]\nstrategy = \"geometric\"\nfloor = 0.01\n",
        &models,
        &["a", "b"],
    );
    let scores = vec![vec![0.8, 0.2], vec![0.3, 0.7], vec![0.6, 0.4]];
    let inf = influence_of(&c, &item(), &scores);
    expect_without(&c, &models, &inf, &[("m0", "b"), ("m1", "a"), ("m2", "a")]);
}

/// Groups g = {m0, m1} and h = {m2}, soft inside and across: g = (0.625, 0.375), h = (0.25,
/// 0.75); a = (0.625 + 0.25)/2 = 0.4375, b = 0.5625: b. Without m2, h drops out: a = 0.625.
/// Without m0, g = (0.5, 0.5): b. Without m1, g = (0.75, 0.25): a = b = 0.5, the lower id a.
/// Shares of b: g holds 0.375 of 1.125 (1/3), m0 a third of g's and m1 two thirds: 1/9 and 2/9;
/// m2 is all of h: 2/3.
#[test]
fn groups_soft_by_hand() {
    let models = vec![
        m("m0", 1.0, &[0, 1]).group("g"),
        m("m1", 1.0, &[0, 1]).group("g"),
        m("m2", 1.0, &[0, 1]).group("h"),
    ];
    let config = "[vote]\nstrategy = \"soft\"\n[vote.groups.g]\nstrategy = \"soft\"\n\
                  [vote.groups.h]\nstrategy = \"soft\"\n";
    let c = combiner(config, &models, &["a", "b"]);
    let scores = vec![vec![0.75, 0.25], vec![0.5, 0.5], vec![0.25, 0.75]];
    let inf = influence_of(&c, &item(), &scores);
    expect_without(&c, &models, &inf, &[("m0", "b"), ("m1", "a"), ("m2", "a")]);
    let shares: Vec<f32> = inf.members.iter().map(|m| m.share).collect();
    for (got, want) in shares.iter().zip([1.0 / 9.0, 2.0 / 9.0, 2.0 / 3.0]) {
        assert!((got - want).abs() < 1e-6, "{shares:?}");
    }
}

/// Hard across a soft group g = {m0, m1} and two models: g = (0.5, 0.4375, 0.0625) votes a, m2
/// votes b (b and c tie: the lower id), m3 votes a: a 2/3. Without m0, g is m1's (0.25, 0.625,
/// 0.125) and votes b: b 2/3 (b gains through the group's new top label). Without m1: a.
/// Without m2: a. Without m3: a and b 1/2 each, tiebreak a (0.5 + 0)/2, b (0.4375 + 0.5)/2: b.
#[test]
fn hard_across_a_changed_group_by_hand() {
    let models = vec![
        m("m0", 1.0, &[0, 1, 2]).group("g"),
        m("m1", 1.0, &[0, 1, 2]).group("g"),
        m("m2", 1.0, &[0, 1, 2]),
        m("m3", 1.0, &[0, 1, 2]),
    ];
    let config = "[vote]\nstrategy = \"hard\"\n[vote.groups.g]\nstrategy = \"soft\"\n";
    let c = combiner(config, &models, &["a", "b", "c"]);
    let scores = vec![
        vec![0.75, 0.25, 0.0],
        vec![0.25, 0.625, 0.125],
        vec![0.0, 0.5, 0.5],
        vec![0.5, 0.25, 0.25],
    ];
    let inf = influence_of(&c, &item(), &scores);
    expect_without(
        &c,
        &models,
        &inf,
        &[("m0", "b"), ("m1", "a"), ("m2", "a"), ("m3", "b")],
    );
}

const PATHS: [&str; 3] = ["X > a", "X > b", "Y > c"];

/// Soft, weights 1, over X > a, X > b, Y > c: m0 (0.5, 0.25, 0.25), m1 (0.25, 0.5, 0.25), m2
/// (0, 0.25, 0.75). Full: a 0.25, b 1/3, c 0.4167: c. Without m0: b 0.375, c 0.5. Without m1:
/// a 0.25, b 0.125, c 0.5. Without m2: a 0.375, b 0.375, c 0.25: a (the lower id).
fn paths() -> (Vec<M>, Vec<Vec<f32>>) {
    let models = three([1.0; 3], &[0, 1, 2]);
    let scores = vec![
        vec![0.5, 0.25, 0.25],
        vec![0.25, 0.5, 0.25],
        vec![0.0, 0.25, 0.75],
    ];
    (models, scores)
}

/// Backoff (leaf below 0.45, parent at least 0.55): c's 0.4167 backs off to Y, whose 0.4167 is
/// too little: c. Without m0 or m1, c scores 0.5: c. Without m2, a (0.375) backs off to X,
/// 0.75: the answer is the parent X.
#[test]
fn taxonomy_backoff_by_hand() {
    let (models, scores) = paths();
    let config = "[vote]\nstrategy = \"soft\"\n[[rule]]\ntype = \"taxonomy_backoff\"\n\
                  leaf_threshold = 0.45\nparent_threshold = 0.55\n";
    let c = combiner(config, &models, &PATHS);
    let inf = influence_of(&c, &item(), &scores);
    expect_without(
        &c,
        &models,
        &inf,
        &[("m0", "Y > c"), ("m1", "Y > c"), ("m2", "X")],
    );
}

/// min_confidence 0.4 without fallback: c 0.4167 stands; without m2 the top is a at 0.375: no
/// answer.
#[test]
fn min_confidence_by_hand() {
    let (models, scores) = paths();
    let config = "[vote]\n[[rule]]\ntype = \"min_confidence\"\nthreshold = 0.4\n";
    let c = combiner(config, &models, &PATHS);
    let inf = influence_of(&c, &item(), &scores);
    expect_without(
        &c,
        &models,
        &inf,
        &[("m0", "Y > c"), ("m1", "Y > c"), ("m2", "(none)")],
    );
    assert_eq!(pivotal(&inf), vec![false, false, true]);
}

/// min_agreement 2, fallback X > b: c has one model's agreement (m2's): X > b. Without m0 or m1,
/// the top is c, with m2 alone: X > b. Without m2, the top is a, with m0 alone: X > b. Nobody is
/// pivotal: the fallback decides.
#[test]
fn min_agreement_fallback_by_hand() {
    let (models, scores) = paths();
    let config = "[vote]\n[[rule]]\ntype = \"min_agreement\"\nmodels = 2\nfallback = \"X > b\"\n";
    let c = combiner(config, &models, &PATHS);
    let inf = influence_of(&c, &item(), &scores);
    expect_without(
        &c,
        &models,
        &inf,
        &[("m0", "X > b"), ("m1", "X > b"), ("m2", "X > b")],
    );
    assert_eq!(pivotal(&inf), vec![false; 3]);
}

/// A keyword forcing X > a on this title: whoever is left out, X > a.
#[test]
fn a_forced_label_has_no_pivotal_member() {
    let (models, scores) = paths();
    let config = "[vote]\n[[rule]]\ntype = \"keyword\"\nfield = \"title\"\nkeywords = [\"gift\"]\n\
                  label = \"X > a\"\naction = \"force\"\n";
    let c = combiner(config, &models, &PATHS);
    let fields = [Some("a gift"), None];
    let it = ItemView {
        fields: &fields,
        ..item()
    };
    let inf = influence_of(&c, &it, &scores);
    expect_without(
        &c,
        &models,
        &inf,
        &[("m0", "X > a"), ("m1", "X > a"), ("m2", "X > a")],
    );
}

/// Candidates "X > " (or a deny of Y > c): a 0.25, b 1/3: b. Without m0: b 0.375 against a
/// 0.125. Without m1: a 0.25 against b 0.125. Without m2: a and b 0.375: a.
#[test]
fn candidates_and_deny_by_hand() {
    let (models, scores) = paths();
    let want = [("m0", "X > b"), ("m1", "X > a"), ("m2", "X > a")];
    let c = combiner("[vote]\n", &models, &PATHS);
    let candidates = vec!["X > ".to_owned()];
    let it = ItemView {
        candidates: Some(&candidates),
        ..item()
    };
    let inf = influence_of(&c, &it, &scores);
    expect_without(&c, &models, &inf, &want);
    let deny = "[vote]\n[[rule]]\ntype = \"deny\"\nlabels = [\"Y > c\"]\n";
    let c = combiner(deny, &models, &PATHS);
    let inf = influence_of(&c, &item(), &scores);
    expect_without(&c, &models, &inf, &want);
}

/// A multiply rule lifts a label from deep in the ranking: b × 4 (0.3333 → 1.3333) wins; without
/// m1 b scores 0.125 × 4 = 0.5, still first.
#[test]
fn a_multiplied_label_is_looked_at_wherever_it_ranks() {
    let (models, scores) = paths();
    let config = "[vote]\n[[rule]]\ntype = \"keyword\"\nfield = \"title\"\nkeywords = [\"b\"]\n\
                  label = \"X > b\"\naction = \"multiply\"\nfactor = 4.0\n";
    let c = combiner(config, &models, &PATHS);
    let fields = [Some("b"), None];
    let it = ItemView {
        fields: &fields,
        ..item()
    };
    let inf = influence_of(&c, &it, &scores);
    expect_without(
        &c,
        &models,
        &inf,
        &[("m0", "X > b"), ("m1", "X > b"), ("m2", "X > b")],
    );
}

/// The only voter: without it there is no answer.
#[test]
fn the_only_voter_is_pivotal() {
    let models = vec![m("solo", 1.0, &[0, 1]), m("muted", 0.0, &[0, 1])];
    let c = combiner("[vote]\n", &models, &["a", "b"]);
    let inf = influence_of(&c, &item(), &[vec![0.75, 0.25], vec![0.0, 1.0]]);
    // The weight-0 model does not vote: it is not a member.
    expect_without(&c, &models, &inf, &[("solo", "(none)")]);
    assert!(inf.members[0].pivotal);
}
