//! The vote over some of the ensemble's models: what an ensemble answers when a member failed or
//! timed out (a degraded answer), when only a cascade's first stages ran, or without one member
//! (its leave-one-out influence).
//!
//! **Definition.** The vote among a subset is the vote of the same manifest with only those
//! models: the same `[vote]` table, groups, weights, temperatures and rules. A group none of whose
//! models is present drops out of the vote across groups; weights are rescaled among the members
//! present (only ratios count); a label that no present model covers is not answered; agreement
//! counts the present models only; an explanation lists them only.
//!
//! **Exactness.** [`Members`] are seated by the very function that seats the full ensemble at
//! load time, over the present models in the same name order, so a vote among them is, to the bit,
//! the vote of a combiner built from a manifest without the others; among every model it is the
//! full ensemble's vote. Building them costs one pass over the present models' labels; keep them
//! when the same subset comes back (a cascade's stages).

use super::seating::Pools;
use super::{Answer, Combiner, ItemView, Models, Readied, Scratch};

/// The models of one vote, seated: see the module's docs.
#[derive(Debug)]
pub struct Members {
    pub(super) pools: Pools,
    /// Indexed like the models given to [`Combiner::new`].
    present: Vec<bool>,
}

impl Members {
    /// Whether model `model` (indexed like the models given to [`Combiner::new`]) takes part.
    pub fn contains(&self, model: usize) -> bool {
        self.present.get(model).copied().unwrap_or(false)
    }
}

impl Combiner {
    /// The members of a vote among the models for which `present[m]` holds (`present` indexed
    /// like the models given to [`Combiner::new`]; a missing entry counts as absent). None when
    /// no model that votes is among them: such a vote has no answer.
    pub fn members(&self, present: &[bool]) -> Option<Members> {
        let here = |m: usize| present.get(m).copied().unwrap_or(false);
        let pools = self
            .seating
            .pools(&self.models, self.labels, |p| here(self.models[p].index))?;
        Some(Members {
            pools,
            present: (0..self.plan_of.len()).map(here).collect(),
        })
    }

    /// [`Combiner::combine`] among `members`: absent models' scores are not read (give them as
    /// empty slices).
    pub fn combine_among(
        &self,
        members: &Members,
        item: &ItemView<'_>,
        per_model: &[&[f32]],
        scratch: &mut Scratch,
    ) -> Answer {
        self.combine_in(&members.pools, item, Models::Raw(per_model), scratch)
    }

    /// [`Combiner::combine_readied`] among `members`: absent models' scores and readied tops are
    /// not read (give them as empty slices and [`Readied::default`]).
    pub fn combine_readied_among(
        &self,
        members: &Members,
        item: &ItemView<'_>,
        scores: &[&[f32]],
        readied: &[&Readied],
        scratch: &mut Scratch,
    ) -> Answer {
        let models = Models::Readied(scores, readied);
        self.combine_in(&members.pools, item, models, scratch)
    }
}

impl Combiner {
    /// The two best scores of the vote among `members` for `item`, on the request's candidates
    /// and before any rule: what a cascade's stage tests. The second is `-inf` when at most one
    /// label can be answered, and both are when none can.
    pub fn top_two_among(
        &self,
        members: &Members,
        item: &ItemView<'_>,
        scores: &[&[f32]],
        readied: &[&Readied],
        s: &mut Scratch,
    ) -> (f32, f32) {
        let models = Models::Readied(scores, readied);
        self.vote(&members.pools, models, self.depth(item), s);
        if let Some(cands) = item.candidates {
            self.restrict_to_candidates(cands, &mut s.mask, &mut s.scores);
        }
        let (mut first, mut second) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
        for &v in &s.scores[..self.labels] {
            // Labels that cannot be answered carry a negative score (nobody present covers them:
            // UNCOVERED; the candidates exclude them: EXCLUDED).
            if v.is_nan() || v < 0.0 {
                continue;
            }
            if v > first {
                second = first;
                first = v;
            } else if v > second {
                second = v;
            }
        }
        (first, second)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{build, expect, m, space, M};
    use super::*;

    const STRATEGIES: &[&str] = &[
        "strategy = \"soft\"",
        "strategy = \"hard\"",
        "strategy = \"rank\"\nrank_k = 2",
        "strategy = \"max\"",
        "strategy = \"geometric\"\nfloor = 0.01",
    ];

    fn labels() -> crate::labels::LabelSpace {
        space(&["a", "b", "c", "d"])
    }

    /// Four models over partly different labels, two of them in group `g`.
    fn models(groups: bool) -> Vec<M> {
        let g = |x: M| if groups { x.group("g") } else { x };
        vec![
            g(m("m0", 1.0, &[0, 1, 2])),
            g(m("m1", 2.0, &[1, 2, 3]).temperature(1.5)),
            m("m2", 0.5, &[0, 1, 2, 3]),
            m("m3", 3.0, &[3, 0]),
        ]
    }

    fn scores() -> Vec<Vec<f32>> {
        vec![
            vec![0.6, 0.3, 0.1],
            vec![0.2, 0.5, 0.3],
            vec![0.1, 0.2, 0.3, 0.4],
            vec![0.7, 0.3],
        ]
    }

    fn toml(strategy: &str, groups: bool) -> String {
        let rule = "[[rule]]\ntype = \"min_agreement\"\nmodels = 2\nfallback = \"d\"\n";
        let group = if groups {
            format!("[vote.groups.g]\n{strategy}\nweight = 2.0\n")
        } else {
            String::new()
        };
        format!("[vote]\n{strategy}\nagreement_k = 2\n{group}{rule}")
    }

    fn item(explain: bool) -> ItemView<'static> {
        ItemView {
            fields: &[],
            top_k: 4,
            candidates: None,
            explain,
        }
    }

    /// Every subset of every strategy, with and without a group, raw and readied, with and
    /// without explanations: the vote among the subset is, to the bit, the vote of a combiner
    /// built from the present models alone.
    #[test]
    fn a_subset_votes_as_the_manifest_without_the_others() {
        let all = scores();
        for groups in [false, true] {
            for strategy in STRATEGIES {
                let config = toml(strategy, groups);
                let full = build(&config, &models(groups), &labels());
                for mask in 1u32..16 {
                    let present: Vec<bool> = (0..4).map(|i| mask & (1 << i) != 0).collect();
                    let kept: Vec<usize> = (0..4).filter(|&i| present[i]).collect();
                    let alone_models: Vec<M> =
                        kept.iter().map(|&i| models(groups)[i].clone()).collect();
                    let grouped_left = alone_models.iter().any(|x| x.group.is_some());
                    let alone_config = toml(strategy, groups && grouped_left);
                    let alone = build(&alone_config, &alone_models, &labels());
                    let members = full.members(&present).expect("someone votes");
                    for explain in [false, true] {
                        let it = item(explain);
                        let kept_scores: Vec<&[f32]> =
                            kept.iter().map(|&i| all[i].as_slice()).collect();
                        let want = alone.combine(&it, &kept_scores, &mut Scratch::default());
                        let given: Vec<&[f32]> = (0..4)
                            .map(|i| if present[i] { all[i].as_slice() } else { &[] })
                            .collect();
                        let raw =
                            full.combine_among(&members, &it, &given, &mut Scratch::default());
                        let what = format!("{strategy}, groups {groups}, mask {mask:04b}");
                        assert_same(&raw, &want, &kept, &what);

                        let mut scratch = Scratch::default();
                        let mut rows: Vec<Vec<f32>> = given.iter().map(|s| s.to_vec()).collect();
                        let readied: Vec<Readied> = rows
                            .iter_mut()
                            .enumerate()
                            .map(|(i, row)| full.ready(i, &it, row, &mut scratch))
                            .collect();
                        let rows: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
                        let readied: Vec<&Readied> = readied.iter().collect();
                        let ready = full.combine_readied_among(
                            &members,
                            &it,
                            &rows,
                            &readied,
                            &mut scratch,
                        );
                        assert_eq!(ready, raw, "readied, {what}");
                    }
                }
            }
        }
    }

    /// The same answer, explanations mapped from the subset's model numbers to the full ones.
    #[track_caller]
    fn assert_same(got: &Answer, want: &Answer, kept: &[usize], what: &str) {
        let mut want = want.clone();
        if let Some(parts) = want.explanation.as_mut() {
            for p in parts {
                p.model = kept[p.model];
            }
        }
        assert_eq!(*got, want, "{what}");
    }

    #[test]
    fn every_model_present_is_the_full_vote() {
        let all = scores();
        let given: Vec<&[f32]> = all.iter().map(Vec::as_slice).collect();
        for strategy in STRATEGIES {
            let full = build(&toml(strategy, true), &models(true), &labels());
            let members = full.members(&[true; 4]).unwrap();
            let it = item(true);
            let among = full.combine_among(&members, &it, &given, &mut Scratch::default());
            let whole = full.combine(&it, &given, &mut Scratch::default());
            assert_eq!(among, whole, "{strategy}");
        }
    }

    /// Soft vote, weights 1, 2, 0.5, 3, no group, no temperature. Without m3 (the heaviest, over
    /// d and a), label d is covered by m1 and m2 only.
    #[test]
    fn a_soft_vote_without_its_heaviest_member_by_hand() {
        let models = vec![
            m("m0", 1.0, &[0, 1, 2]),
            m("m1", 2.0, &[1, 2, 3]),
            m("m2", 0.5, &[0, 1, 2, 3]),
            m("m3", 3.0, &[3, 0]),
        ];
        let c = build("[vote]\nstrategy = \"soft\"\n", &models, &labels());
        let members = c.members(&[true, true, true, false]).unwrap();
        let all = scores();
        let given: Vec<&[f32]> = vec![&all[0], &all[1], &all[2], &[]];
        let a = c.combine_among(&members, &item(false), &given, &mut Scratch::default());
        // Weighted means over the models covering each label (weights 1, 2, 0.5):
        // a: (1·0.6 + 0.5·0.1) / 1.5 = 0.43333; b: (1·0.3 + 2·0.2 + 0.5·0.2) / 3.5 = 0.22857;
        // c: (1·0.1 + 2·0.5 + 0.5·0.3) / 3.5 = 0.35714; d: (2·0.3 + 0.5·0.4) / 2.5 = 0.32.
        expect(
            &c,
            &a,
            &[
                ("a", 0.433333),
                ("c", 0.357143),
                ("d", 0.32),
                ("b", 0.228571),
            ],
        );
        assert!(!members.contains(3) && members.contains(0));
    }

    /// A group whose models are all absent drops out; a label only absent models cover is not
    /// answered.
    #[test]
    fn an_absent_group_drops_out_and_its_labels_with_it() {
        let models = vec![
            m("m0", 1.0, &[0, 1]).group("g"),
            m("m1", 1.0, &[0, 3]).group("g"),
            m("m2", 1.0, &[1, 2]),
        ];
        let config = "[vote]\nstrategy = \"soft\"\n[vote.groups.g]\nstrategy = \"soft\"\n";
        let c = build(config, &models, &labels());
        let members = c.members(&[false, false, true]).unwrap();
        let s2: &[f32] = &[0.25, 0.75];
        let a = c.combine_among(
            &members,
            &item(false),
            &[&[], &[], s2],
            &mut Scratch::default(),
        );
        // Only m2 votes: c 0.75, b 0.25; a and d are nobody's now.
        expect(&c, &a, &[("c", 0.75), ("b", 0.25)]);
        assert!(c.members(&[false; 3]).is_none());
        assert!(c.members(&[]).is_none());
    }
}
