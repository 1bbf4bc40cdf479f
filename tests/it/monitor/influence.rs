//! The influence of every member, computed without voting again, equals voting again without it
//! ([`Analyser::reference`]), on every fixture title, for the starter ensemble and variants of
//! its vote (every strategy across groups and inside them, and rules), scored by the real
//! compute pool. The demo ensemble's run of the same check is `lastmile zombies --check`
//! (BENCHMARKS.md).

use std::sync::Arc;

use lastmile::ensemble::Ensemble;
use lastmile::monitor::influence::Analyser;
use lastmile::scheduler::ComputePool;

use crate::support::{starter, starter_variant, title_item, titles};

fn variants(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let outer = |s: &'static str| {
        move |t: String| {
            t.replace(
                "strategy = \"soft\"\nagreement_k",
                &format!("strategy = \"{s}\"\nagreement_k"),
            )
        }
    };
    vec![
        starter(),
        starter_variant(dir, "rank", outer("rank")),
        starter_variant(dir, "hard", |t| {
            outer("hard")(t).replace(
                "[vote.groups.fasttext]\nstrategy = \"soft\"",
                "[vote.groups.fasttext]\nstrategy = \"geometric\"",
            )
        }),
        starter_variant(dir, "max", |t| {
            outer("max")(t).replace(
                "[vote.groups.departments]\nstrategy = \"soft\"",
                "[vote.groups.departments]\nstrategy = \"hard\"",
            )
        }),
        starter_variant(dir, "geometric", |t| {
            outer("geometric")(t)
                + "\n[[rule]]\ntype = \"min_agreement\"\nmodels = 3\nfallback = \"laptops\"\n\
                   \n[[rule]]\ntype = \"min_confidence\"\nthreshold = 0.3\n"
        }),
    ]
}

#[test]
fn the_influence_equals_voting_again_for_every_member_and_item() {
    let dir = tempfile::tempdir().unwrap();
    let pool = ComputePool::new(2).unwrap();
    let titles = titles(460);
    for manifest in variants(dir.path()) {
        let e = Arc::new(Ensemble::load(&manifest, 2).unwrap());
        let items: Vec<_> = titles.iter().map(|t| title_item(&e, t, 3)).collect();
        let scores = pool.score(&e, items.clone()).wait().unwrap();
        let mut analyser = Analyser::default();
        let (mut pivotal, mut revoted) = (0, 0);
        for (row, item) in items.iter().enumerate() {
            let inf = analyser.influence(&e, &scores, row, item);
            let want = analyser.reference(&e, item);
            let got: Vec<Option<u32>> = inf.members.iter().map(|m| m.without).collect();
            assert_eq!(got, want, "{} item {row}", manifest.display());
            // The influence's answer is the ensemble's.
            let answer = e.combine(row, item, &scores);
            let first = inf
                .answer
                .predictions
                .first()
                .map(|p| e.combiner.label_name(p.label));
            assert_eq!(first, answer.predictions.first().map(|p| p.label.as_str()));
            pivotal += inf.members.iter().filter(|m| m.pivotal).count();
            revoted += inf.work.revoted;
        }
        assert_eq!(inf_members(&e), 7, "every starter model votes");
        eprintln!(
            "{}: {pivotal} pivotal, {revoted} voted again",
            manifest.display()
        );
        assert!(
            pivotal > 0,
            "{}: some member is pivotal",
            manifest.display()
        );
    }
}

fn inf_members(e: &Ensemble) -> usize {
    e.combiner.voters().count()
}
