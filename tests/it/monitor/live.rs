//! The live monitor on sampled traffic: with every item sampled, its report over the window
//! holds exactly what analysing the window's items offline gives; its gauges are on `/metrics`;
//! its page on the admin API; degraded live answers are analysed as the full ensemble's vote; and
//! with the fraction at 0 nothing is sampled.

use std::time::Duration;

use std::sync::Arc;

use lastmile::ensemble::ValidItem;
use lastmile::monitor::influence::{figures, members_of, Analyser, MemberCounts, MemberFigures};
use lastmile::monitor::live::MonitorSettings;
use serde_json::Value;

use crate::reliability::starter_with;
use crate::support::runtimes::{Gate, Stuck};
use crate::support::{title_item, titles, AdminOptions, TestServer, Transport};

fn every_item(window_items: usize) -> MonitorSettings {
    MonitorSettings {
        fraction: 1.0,
        window_items,
        window: Duration::from_secs(3600),
        ..MonitorSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_report_is_the_window_analysed_offline() {
    let server = TestServer::builder()
        .monitor(every_item(50))
        .admin(AdminOptions::default())
        .exclusive()
        .start()
        .await;
    let titles = titles(80);
    // One request: the monitor takes its items in order, the window keeps the last 50.
    server.send(Transport::Rest, &titles, 3).await.unwrap();
    server.monitor().settled().await;
    let (code, report) = server.admin("GET", "/admin/v1/monitor/report", None).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["state"], "on");
    assert_eq!(report["sampled"], 80);
    assert_eq!(report["analysed"], 80);
    assert_eq!(report["window_items"], 50);
    assert_eq!(report["ensemble"][0], "starter");
    assert_eq!(
        report["reference"]["state"], "missing",
        "the starter names no validation set"
    );
    assert!(report["drift"].is_null());

    // Offline: the same 50 items, scored and analysed here.
    let e = server.live();
    let items: Vec<_> = titles[30..].iter().map(|t| title_item(&e, t, 3)).collect();
    let want = offline_figures(&server, &items).await;
    let got = report["members"].as_array().unwrap();
    assert_same_figures(got, &want);
    let compute: f64 = got
        .iter()
        .map(|m| m["compute_share"].as_f64().unwrap())
        .sum();
    assert!(
        (compute - 1.0).abs() < 1e-6,
        "compute shares add up: {compute}"
    );

    // Gauges by model, small label sets.
    let metrics = server.metrics().await;
    for m in &want {
        let line = format!(
            "lastmile_monitor_member_pivotal_ratio{{model=\"{}\"}} ",
            m.name
        );
        let value: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line} in\n{metrics}"))
            .parse()
            .unwrap();
        assert_eq!(value, m.pivotal_rate);
    }
    assert!(
        metrics.contains("lastmile_monitor_window_items 50"),
        "{metrics}"
    );
    // Counters add up over every server this test process ran.
    let analysed: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lastmile_monitor_analysed_items_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(analysed >= 80.0, "{analysed}");

    // The page.
    let url = format!("{}/admin/v1/monitor/report.html", server.admin_http);
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.starts_with("text/html"), "{kind}");
    let page = response.text().await.unwrap();
    assert!(page.contains("id=\"plot-influence\"") && page.contains("ft-softmax"));
}

#[tokio::test]
async fn with_the_fraction_at_zero_nothing_is_sampled() {
    let server = TestServer::builder()
        .monitor(MonitorSettings {
            fraction: 0.0,
            ..MonitorSettings::default()
        })
        .admin(AdminOptions::default())
        .start()
        .await;
    server.send(Transport::Grpc, &titles(20), 1).await.unwrap();
    let (_, report): (u16, Value) = server.admin("GET", "/admin/v1/monitor/report", None).await;
    assert_eq!(report["state"], "off");
    assert_eq!(report["sampled"], 0);
    assert_eq!(report["members"].as_array().unwrap().len(), 0);
}

/// Every member's figures over `items`, scored with every member and analysed here.
async fn offline_figures(server: &TestServer, items: &[ValidItem]) -> Vec<MemberFigures> {
    let e = server.live();
    let scores = server.pool().score(&e, items.to_vec()).await.unwrap();
    let mut analyser = Analyser::default();
    let mut counts = vec![MemberCounts::default(); e.models.len()];
    for (row, item) in items.iter().enumerate() {
        let inf = analyser.influence(&e, &scores, row, item);
        let answered = !inf.answer.predictions.is_empty();
        for m in &inf.members {
            counts[m.model].add(answered, m.pivotal, m.agrees, m.share);
        }
    }
    figures(&members_of(&e), &counts, items.len() as u64)
}

/// The report's members are `want`, figure by figure.
#[track_caller]
fn assert_same_figures(got: &[Value], want: &[MemberFigures]) {
    assert_eq!(got.len(), 7);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g["name"], w.name.as_str());
        assert_eq!(
            g["pivotal_rate"].as_f64().unwrap(),
            w.pivotal_rate,
            "{}",
            w.name
        );
        assert_eq!(g["agreement"].as_f64().unwrap(), w.agreement, "{}", w.name);
        let share = g["winner_share"].as_f64().unwrap();
        assert!((share - w.winner_share).abs() < 1e-9, "{}", w.name);
        assert!((0.0..=1.0).contains(&g["compute_share"].as_f64().unwrap()));
    }
}

/// A live answer voted without a member that ran out of its `timeout_ms` is analysed as the
/// full ensemble's vote (the monitor scores every member again): the figures are those of all
/// seven members over the items, and the report counts the degraded answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_live_answers_are_analysed_as_the_full_ensembles_vote() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = starter_with(dir.path(), "ft-hs", "timeout_ms = 300");
    let gate = Gate::new();
    let held = Arc::clone(&gate);
    let server = TestServer::builder()
        .manifest(&manifest)
        .wrap_models(move |name, r| match name {
            "ft-hs" => Arc::new(Stuck(r, Arc::clone(&held))),
            _ => r,
        })
        .monitor(every_item(50))
        .admin(AdminOptions::default())
        .start()
        .await;
    let titles = titles(12);
    let reply = server.send(Transport::Rest, &titles, 3).await.unwrap();
    assert!(
        reply.answers.iter().all(|a| a.degraded.len() == 1),
        "answered without ft-hs: {:?}",
        reply.answers
    );
    gate.holding(1).await;
    gate.open();
    server.monitor().settled().await;
    let (code, report) = server.admin("GET", "/admin/v1/monitor/report", None).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["analysed"], 12, "{report}");
    assert_eq!(report["degraded"], 12, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    let e = server.live();
    let items: Vec<_> = titles.iter().map(|t| title_item(&e, t, 3)).collect();
    let want = offline_figures(&server, &items).await;
    assert!(want.iter().any(|m| m.name == "ft-hs"));
    assert_same_figures(report["members"].as_array().unwrap(), &want);
}
