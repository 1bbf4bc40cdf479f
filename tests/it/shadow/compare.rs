//! Shadow traffic compared for real: the starter ensemble live, a shadow staged beside it, requests
//! over own REST, own gRPC, V2 REST and V2 gRPC. A shadow equal to live agrees on every item; a
//! shadow that differs in a known way reports exactly the agreement, disagreement pairs, per-label
//! agreement and top-k overlap this test computes from the two ensembles' own answers, and logs
//! exactly the disagreeing items; sampling picks the items the seeded sampler says; stopping
//! stops the mirroring.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{answers, send, Server};
use super::{known_variant, ranked, starter, titles, TRANSPORTS};
use lastmile::ensemble::ItemAnswer;
use lastmile::registry::{Held, Trigger};
use lastmile::shadow::{
    Counts, LabelAgreement, LogConfig, PairCount, Sampler, ShadowSettings, StageOptions,
};
use serde_json::Value;

const K: usize = 5;

/// Sends `titles` over every transport in turn, in requests of `chunk` items; the answers.
async fn send_all(server: &Server, titles: &[String], chunk: usize) -> Vec<super::Ranked> {
    let mut got = Vec::new();
    for (i, part) in titles.chunks(chunk).enumerate() {
        got.extend(send(server, TRANSPORTS[i % 4], part, K).await);
    }
    got
}

fn all_mirrored(n: u64) -> Counts {
    Counts {
        sampled: n,
        mirrored: n,
        compared: n,
        ..Counts::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_equal_to_live_agrees_on_every_item_from_every_transport() {
    let server = super::start(ShadowSettings::default()).await;
    let staged = server.stage(Arc::new(server.load(&starter())), 1.0);
    let titles = titles(48);
    let expected = ranked(&answers(&server, &server.live(), &titles, K).await);

    assert_eq!(send_all(&server, &titles, 6).await, expected);
    staged.settled().await;

    let report = staged.report();
    assert_eq!(report.state, "running");
    assert_eq!(report.counts, all_mirrored(48));
    assert_eq!(report.shadow.version, "1");
    assert_eq!(report.live.as_ref().unwrap().name, "starter");
    for aggregate in [&report.since_staging, &report.window.aggregate] {
        assert_eq!(aggregate.compared, 48);
        assert_eq!(aggregate.top1_agreed, 48);
        assert_eq!(aggregate.top1_agreement, Some(1.0));
        assert_eq!(aggregate.topk_overlap, Some(1.0));
        assert_eq!(aggregate.live_winner_in_shadow, Some(1.0));
        assert_eq!(aggregate.failure_ratio, Some(0.0));
        assert!(aggregate.shadow_seconds.mean.unwrap() > 0.0);
    }
    assert!(report.top_disagreements.is_empty());
    assert!(!report.labels.is_empty());
    assert!(report.labels.iter().all(|l| l.agreement == 1.0));
    assert_eq!(report.queue.depth, 0);
}

/// What the report should say, computed from the two ensembles' answers.
struct Expected {
    agreed: u64,
    overlap: f64,
    pairs: Vec<PairCount>,
    labels: Vec<LabelAgreement>,
}

fn expected(live: &[ItemAnswer], shadow: &[ItemAnswer], top: usize) -> Expected {
    let winner = |a: &ItemAnswer| a.predictions.first().map(|p| p.label.clone());
    let mut agreed = 0;
    let mut overlap = 0.0;
    let mut pairs: BTreeMap<(Option<String>, Option<String>), u64> = BTreeMap::new();
    let mut labels: BTreeMap<Option<String>, (u64, u64)> = BTreeMap::new();
    for (l, s) in live.iter().zip(shadow) {
        let same = winner(l) == winner(s);
        agreed += u64::from(same);
        let entry = labels.entry(winner(l)).or_default();
        entry.0 += 1;
        entry.1 += u64::from(same);
        if !same {
            *pairs.entry((winner(l), winner(s))).or_default() += 1;
        }
        let live_k: Vec<&str> = l
            .predictions
            .iter()
            .take(K)
            .map(|p| p.label.as_str())
            .collect();
        let shared = s
            .predictions
            .iter()
            .take(K)
            .filter(|p| live_k.contains(&p.label.as_str()))
            .count();
        overlap += shared as f64 / live_k.len() as f64;
    }
    // Most frequent first, ties by name: BTreeMap order is the tie order, and the sort is stable.
    let mut pairs: Vec<PairCount> = pairs
        .into_iter()
        .map(|((live, shadow), count)| PairCount {
            live,
            shadow,
            count,
        })
        .collect();
    pairs.sort_by_key(|p| std::cmp::Reverse(p.count));
    pairs.truncate(top);
    let mut labels: Vec<LabelAgreement> = labels
        .into_iter()
        .map(|(label, (items, agreed))| LabelAgreement {
            label,
            items,
            agreed,
            agreement: agreed as f64 / items as f64,
        })
        .collect();
    labels.sort_by_key(|l| std::cmp::Reverse(l.items));
    labels.truncate(top);
    Expected {
        agreed,
        overlap: overlap / live.len() as f64,
        pairs,
        labels,
    }
}

/// The lines of a rotated log: `path.N` (oldest) down to `path`.
fn log_lines(path: &std::path::Path) -> Vec<Value> {
    let mut files: Vec<std::path::PathBuf> = (1..100)
        .map(|i| std::path::PathBuf::from(format!("{}.{i}", path.display())))
        .filter(|p| p.exists())
        .collect();
    files.reverse();
    files.push(path.to_owned());
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_that_differs_reports_and_logs_exactly_the_differences() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("log/disagreements.jsonl");
    let server = super::start(ShadowSettings {
        log: Some(LogConfig {
            path: log_path.clone(),
            max_bytes: 4096,
            files: 100,
        }),
        ..ShadowSettings::default()
    })
    .await;
    let manifest = known_variant(dir.path());
    let shadow = Arc::new(server.load(&manifest));
    let titles = titles(120);
    let live_answers = answers(&server, &server.live(), &titles, K).await;
    let shadow_answers = answers(&server, &shadow, &titles, K).await;
    let want = expected(&live_answers, &shadow_answers, 10);
    // The difference is real, and not total.
    assert!(want.agreed > 0 && want.agreed < 120, "{}", want.agreed);
    assert!(want
        .pairs
        .iter()
        .any(|p| p.shadow.as_deref() == Some("board_games")));

    let staged = server.stage(shadow, 1.0);
    // Clients get the live answers, whatever the shadow says.
    assert_eq!(send_all(&server, &titles, 7).await, ranked(&live_answers));
    staged.settled().await;

    let report = staged.report();
    assert_eq!(report.shadow.version, "2");
    assert_eq!(report.counts, all_mirrored(120));
    let since = &report.since_staging;
    assert_eq!(since.top1_agreed, want.agreed);
    assert_eq!(since.top1_agreement, Some(want.agreed as f64 / 120.0));
    assert!((since.topk_overlap.unwrap() - want.overlap).abs() < 1e-9);
    assert_eq!(report.top_disagreements, want.pairs);
    assert_eq!(report.labels, want.labels);
    // The window (1,000 items, 5 minutes) holds all 120.
    assert_eq!(report.window.aggregate.top1_agreed, want.agreed);

    // The log holds exactly the disagreeing items, with their input and both answers, rotated.
    let log = report.log.as_ref().unwrap();
    let disagreements = 120 - want.agreed;
    assert_eq!((log.lines, log.errors), (disagreements, 0));
    assert!(log.rotations > 0, "{log:?}");
    let lines = log_lines(&log_path);
    assert_eq!(lines.len() as u64, disagreements);
    let mut logged: Vec<(String, String, String)> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["shadow_ensemble"]["version"], "2");
            (
                l["fields"]["title"].as_str().unwrap().to_owned(),
                l["live"]["predictions"][0]["label"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                l["shadow"]["predictions"][0]["label"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    let mut want_logged: Vec<(String, String, String)> = titles
        .iter()
        .zip(live_answers.iter().zip(&shadow_answers))
        .filter(|(_, (l, s))| l.predictions[0].label != s.predictions[0].label)
        .map(|(t, (l, s))| {
            (
                t.clone(),
                l.predictions[0].label.clone(),
                s.predictions[0].label.clone(),
            )
        })
        .collect();
    logged.sort();
    want_logged.sort();
    assert_eq!(logged, want_logged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fraction_mirrors_the_items_the_sampler_picks_and_stop_ends_mirroring() {
    let server = super::start(ShadowSettings::default()).await;
    let options = StageOptions {
        fraction: 0.3,
        seed: 7,
    };
    let held = Held::new(
        Arc::new(server.load(&starter())),
        String::new(),
        Trigger::Admin,
        None,
    );
    let staged = server
        .shadow_slot()
        .stage(held, options, Arc::clone(server.pool()));
    let titles = titles(60);
    send_all(&server, &titles, 4).await;
    staged.settled().await;
    // The sampler counts items, whichever request they come in: the same picks as a fresh one.
    let reference = Sampler::new(options.fraction, options.seed);
    let picked = (0..60).filter(|_| reference.pick()).count() as u64;
    assert!(picked > 0 && picked < 60, "{picked}");
    let report = staged.report();
    assert_eq!(report.counts, all_mirrored(picked));
    assert_eq!(report.fraction, 0.3);

    let slot = &server.shadow_slot();
    assert!(slot.stop().is_some());
    assert!(slot.running().is_none());
    send_all(&server, &titles, 4).await;
    let after = slot
        .latest()
        .expect("the stopped shadow is kept for its report")
        .report();
    assert_eq!(after.state, "stopped");
    assert_eq!(after.counts, report.counts);
    assert!(slot.stop().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_for_the_log_costs_the_log_only() {
    let dir = tempfile::tempdir().unwrap();
    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    let log_path = dir.path().join("disagreements.jsonl");
    std::os::unix::fs::symlink("/dev/full", &log_path).unwrap();
    let server = super::start(ShadowSettings {
        log: Some(LogConfig {
            path: log_path,
            max_bytes: 4096,
            files: 3,
        }),
        ..ShadowSettings::default()
    })
    .await;
    let shadow = Arc::new(server.load(&known_variant(dir.path())));
    let titles = titles(60);
    let live_answers = answers(&server, &server.live(), &titles, K).await;
    let staged = server.stage(shadow, 1.0);
    assert_eq!(send_all(&server, &titles, 7).await, ranked(&live_answers));
    staged.settled().await;

    let report = staged.report();
    assert_eq!(report.counts, all_mirrored(60));
    let log = report.log.as_ref().unwrap();
    let disagreements = 60 - report.since_staging.top1_agreed;
    assert!(disagreements > 0);
    assert_eq!((log.lines, log.errors), (0, disagreements), "{log:?}");
}

/// A cascaded candidate in shadow answers through its cascade, as it would serve, while the full
/// live ensemble answers the clients: the report's agreement is exactly what the two ensembles'
/// own answers say (the shadow's stopping after its fastText group on every item).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascaded_shadow_is_compared_with_the_full_live_ensemble_as_it_would_serve() {
    let dir = tempfile::tempdir().unwrap();
    let server = super::start(ShadowSettings::default()).await;
    let manifest = crate::support::starter_variant(dir.path(), "2", |text| {
        format!(
            "{text}\n[cascade]\n\n[[cascade.stage]]\nmembers = [\"fasttext\"]\nthreshold = -1\n\n\
             [[cascade.stage]]\nmembers = [\"departments\"]\n"
        )
    });
    let shadow = Arc::new(server.load(&manifest));
    let titles = titles(48);
    let live_answers = answers(&server, &server.live(), &titles, K).await;
    let shadow_answers = answers(&server, &shadow, &titles, K).await;
    assert!(shadow_answers
        .iter()
        .all(|a| a.cascade.as_ref().is_some_and(|c| c.stage == 1)));
    let want = expected(&live_answers, &shadow_answers, 10);
    assert!(
        want.agreed < 48,
        "the cascade answers differently somewhere"
    );

    let staged = server.stage(shadow, 1.0);
    assert_eq!(
        send_all(&server, &titles, 6).await,
        ranked(&live_answers),
        "clients get the live answers"
    );
    staged.settled().await;
    let report = staged.report();
    assert_eq!(report.counts, all_mirrored(48));
    assert_eq!(report.since_staging.top1_agreed, want.agreed);
}
