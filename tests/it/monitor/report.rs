//! The HTML report opened in a real browser: Debian's headless Chromium (installed by
//! `scripts/setup.d/60-chromium.sh`) loads the offline report (`lastmile zombies` then `lastmile
//! report`) and the live one (the admin API's page, with drift), from files; each must run its
//! script to the end (`data-ready="1"` in the DOM) with no console message at all (an error, a
//! failed load of anything), hold its plots, and a screenshot is taken into the test's directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lastmile::monitor::live::MonitorSettings;

use super::{departments_manifest, draws, labelled};
use crate::cli::{assert_succeeded, lastmile};
use crate::support::{root, validation_set, AdminOptions, TestServer, Transport};

/// The chromium the set-up part installed.
fn chromium() -> PathBuf {
    let marker = root().join(".runtime/chromium/path");
    let path = std::fs::read_to_string(&marker)
        .unwrap_or_else(|_| panic!("{} is missing: run scripts/setup.sh", marker.display()));
    PathBuf::from(path.trim())
}

/// Runs headless Chromium on `page` with its own fresh profile: (DOM, console lines).
fn open(dir: &Path, page: &Path, extra: &[String]) -> (String, Vec<String>) {
    let profile = tempfile::tempdir_in(dir).unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .map(str::to_owned)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// The page renders cleanly with `plots`, and a screenshot of it is taken as `name`.png.
fn renders(dir: &Path, page: &Path, plots: &[&str], name: &str) {
    let (dom, console) = open(dir, page, &["--dump-dom".to_owned()]);
    assert!(console.is_empty(), "console messages: {console:#?}");
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page's script ran to its end"
    );
    for plot in plots {
        assert!(
            dom.contains(&format!("<svg id=\"{plot}\"")),
            "plot {plot} is drawn"
        );
    }
    assert!(
        dom.matches("<circle").count() >= 4,
        "the members are plotted"
    );
    assert!(
        !dom.contains("src=\"http") && !dom.contains("href=\"http"),
        "no external asset"
    );
    let shot = dir.join(format!("{name}.png"));
    let (_, console) = open(
        dir,
        page,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,2400".to_owned(),
        ],
    );
    assert!(console.is_empty(), "console messages: {console:#?}");
    let bytes = std::fs::read(&shot).expect("a screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "{} bytes",
        bytes.len()
    );
    // To look at them: LASTMILE_TEST_SCREENSHOTS=DIR keeps a copy there.
    if let Some(keep) = std::env::var_os("LASTMILE_TEST_SCREENSHOTS") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::write(keep.join(format!("{name}.png")), &bytes).unwrap();
    }
}

#[test]
fn the_offline_report_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let data = validation_set(dir.path());
    let saved = dir.path().join("zombies.json");
    let out = lastmile(
        &[
            "zombies",
            "--manifest",
            &crate::support::starter().display().to_string(),
            "--data",
            &data.display().to_string(),
            "--save",
            &saved.display().to_string(),
            "--max-drop",
            "0.05",
        ],
        "",
    );
    assert_succeeded(&out);
    let html = dir.path().join("zombies.html");
    let out = lastmile(
        &[
            "report",
            "--input",
            &saved.display().to_string(),
            "--out",
            &html.display().to_string(),
        ],
        "",
    );
    assert_succeeded(&out);
    let plots = [
        "plot-influence",
        "plot-loo",
        "plot-voters",
        "plot-members",
        "plot-confidence",
    ];
    renders(dir.path(), &html, &plots, "offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_report_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = departments_manifest(
        dir.path(),
        "1",
        "validation = \"valid.jsonl\"",
        "\n[monitor]\nmin_items = 10\n",
    );
    let server = TestServer::builder()
        .manifest(&manifest)
        .monitor(MonitorSettings {
            fraction: 1.0,
            window: Duration::from_secs(3600),
            linger: Duration::from_millis(10),
            ..MonitorSettings::default()
        })
        .admin(AdminOptions::default())
        .start()
        .await;
    let titles: Vec<String> = labelled("valid.txt").into_iter().map(|(t, _)| t).collect();
    server.send(Transport::Rest, &titles[..1], 1).await.unwrap();
    server.monitor().settled().await;
    server
        .monitor()
        .reference_settled(&server.live().digest)
        .await;
    // Each batch analysed with the reference there updates the drift (and its series).
    for chunk in draws(&titles, 60, 3).chunks(20) {
        server.send(Transport::Rest, chunk, 1).await.unwrap();
        server.monitor().settled().await;
    }
    let url = format!("{}/admin/v1/monitor/report.html", server.admin_http);
    let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let html = dir.path().join("live.html");
    std::fs::write(&html, page).unwrap();
    let path = html.clone();
    let dir_path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let plots = [
            "plot-influence",
            "plot-loo",
            "plot-confidence",
            "plot-buckets",
            "plot-drift",
        ];
        renders(&dir_path, &path, &plots, "live");
    })
    .await
    .unwrap();
}
