//! Prediction drift, end to end on an ensemble whose labels are department paths: traffic drawn
//! like the validation split stays under every threshold; traffic from one department crosses
//! them, with the alert on `/metrics`. The reference comes from the manifest's validation set
//! (scored by the monitor) in one test and from the deploy gate's validation in the other.

use std::time::Duration;

use lastmile::monitor::live::MonitorSettings;
use serde_json::{json, Value};

use super::{departments_manifest, draws, labelled};
use crate::support::{AdminOptions, TestServer, Transport};

const MONITOR: &str = "\n[monitor]\nmin_items = 40\n";

fn settings() -> MonitorSettings {
    MonitorSettings {
        fraction: 1.0,
        window_items: 500,
        window: Duration::from_secs(3600),
        linger: Duration::from_millis(10),
        ..MonitorSettings::default()
    }
}

/// Sends `titles` in requests of 20 and waits until the monitor has analysed them.
async fn traffic(server: &TestServer, titles: &[String]) {
    for chunk in titles.chunks(20) {
        server.send(Transport::Rest, chunk, 1).await.unwrap();
    }
    server.monitor().settled().await;
}

async fn report(server: &TestServer) -> Value {
    let (code, r) = server.admin("GET", "/admin/v1/monitor/report", None).await;
    assert_eq!(code, 200, "{r}");
    r
}

fn titles_of(lines: &[(String, String)], department: Option<&str>) -> Vec<String> {
    lines
        .iter()
        .filter(|(_, label)| department.is_none_or(|d| super::department(label).starts_with(d)))
        .map(|(t, _)| t.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_like_the_validation_split_stays_under_the_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = departments_manifest(dir.path(), "1", "validation = \"valid.jsonl\"", MONITOR);
    let server = TestServer::builder()
        .manifest(&manifest)
        .monitor(settings())
        .admin(AdminOptions::default())
        .start()
        .await;
    let valid = labelled("valid.txt");
    // The first item makes the monitor score the validation set for its reference.
    traffic(&server, &titles_of(&valid, None)[..1]).await;
    server
        .monitor()
        .reference_settled(&server.live().digest)
        .await;
    let drawn = draws(&titles_of(&valid, None), 200, 7);
    traffic(&server, &drawn).await;
    let r = report(&server).await;
    assert_eq!(r["reference"]["state"], "ready", "{}", r["reference"]);
    assert_eq!(r["reference"]["items"], 60);
    let d = &r["drift"];
    assert_eq!(d["items"], 201);
    assert_eq!(d["crossed"], json!([]), "{d}");
    assert!(d["psi"].as_f64().unwrap() < 0.2, "{d}");
    assert!(d["js"].as_f64().unwrap() < 0.1, "{d}");
    let buckets: Vec<&str> = d["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bucket"].as_str().unwrap())
        .collect();
    for department in ["Home", "Outdoor", "Toys", "Electronics", "Baby", "(other)"] {
        assert!(buckets.contains(&department), "{buckets:?}");
    }
    assert_eq!(r["alert"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_departments_traffic_crosses_them_and_raises_the_alert() {
    let dir = tempfile::tempdir().unwrap();
    // No validation set in the manifest: the reference comes from the gate.
    let live = departments_manifest(dir.path(), "1", "", MONITOR);
    let next = departments_manifest(dir.path(), "2", "", MONITOR);
    let server = TestServer::builder()
        .manifest(&live)
        .monitor(settings())
        .admin(AdminOptions::default())
        .exclusive()
        .start()
        .await;
    let validation = dir.path().join("valid.jsonl");
    let body = json!({"manifest": next, "validation": validation});
    let (code, v) = server.deploy(body).await;
    assert_eq!(
        (code, v["outcome"].as_str()),
        (200, Some("promoted")),
        "{v}"
    );
    let valid = labelled("valid.txt");
    let electronics = titles_of(&valid, Some("Electronics"));
    assert!(electronics.len() >= 6, "{electronics:?}");
    traffic(&server, &draws(&electronics, 60, 11)).await;
    let r = report(&server).await;
    assert_eq!(r["ensemble"][1], "2");
    assert_eq!(r["reference"]["state"], "ready");
    assert!(
        r["reference"]["source"]
            .as_str()
            .unwrap()
            .contains("(validation, 60 items)"),
        "{}",
        r["reference"]
    );
    let d = &r["drift"];
    let crossed: Vec<&str> = d["crossed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(crossed.contains(&"psi") && crossed.contains(&"js"), "{d}");
    let share = d["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["bucket"] == "Electronics")
        .unwrap()["window"]
        .as_f64()
        .unwrap();
    assert!(share > 0.8, "{d}");
    assert_eq!(r["alert"], true);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("lastmile_monitor_drift_alert 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lastmile_monitor_drift_alerts_total{statistic=\"psi\"} "),
        "{metrics}"
    );
    let psi: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lastmile_monitor_drift_psi "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(psi > 0.2);
}
