//! `lastmile bench --overload`: what shedding by queueing delay buys. The ensemble is served in
//! this process with `serve`'s limits; its saturation is measured with closed-loop gRPC clients
//! (the highest `--concurrency`); then requests are offered open-loop, at `--overload-factor`
//! times that rate (a fixed schedule that does not wait for answers, as independent clients
//! would), once with `--max-queue-wait` off and once on. Each request ends answered, shed
//! (RESOURCE_EXHAUSTED) or failed otherwise; latencies are the answered ones', from the moment
//! the schedule sent them. Requests still in flight when the schedule ends are waited for.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lastmile::app::{self, App, AppConfig};
use lastmile::ensemble::Ensemble;
use lastmile::proto::lastmile::v1::lastmile_client::LastmileClient;
use lastmile::registry::Registry;
use lastmile::scheduler::ComputePool;
use lastmile::service::Limits;
use serde_json::{Map, Value};
use tokio::task::JoinSet;

use super::load::{self, Generator, Load, Target, Transport};

/// What to measure.
pub struct Overload {
    /// Offered rate over the saturation rate.
    pub factor: f64,
    /// Closed-loop clients that measure the saturation.
    pub clients: usize,
    pub duration: Duration,
    /// `--max-queue-wait` of the shedding run.
    pub max_queue_wait: Duration,
    /// `serve`'s `--max-items-in-flight`, in both runs.
    pub max_items_in_flight: usize,
}

/// One open-loop run.
pub struct Run {
    pub label: String,
    pub offered: usize,
    pub answered: usize,
    pub shed: usize,
    pub failed: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// The most this process held resident while the run went on.
    pub peak_rss: Option<u64>,
}

/// Connections the schedule spreads its requests over, so that no HTTP/2 stream limit queues
/// them on the client's side.
const CONNECTIONS: usize = 16;

async fn serve(
    ensemble: &Arc<Ensemble>,
    pool: &Arc<ComputePool>,
    overload: &Overload,
    max_queue_wait: Option<Duration>,
) -> App {
    let config = AppConfig {
        http_addr: ([127, 0, 0, 1], 0).into(),
        grpc_addr: ([127, 0, 0, 1], 0).into(),
        limits: Limits {
            max_items_in_flight: overload.max_items_in_flight,
            max_queue_wait,
            ..Limits::default()
        },
        ..AppConfig::default()
    };
    app::start(
        Arc::new(Registry::new(Arc::clone(ensemble))),
        Arc::clone(pool),
        config,
    )
    .await
    .expect("the bench server starts")
}

fn target(app: &App) -> Target {
    Target {
        http: format!("http://{}", app.http_addr),
        grpc: format!("http://{}", app.grpc_addr),
    }
}

/// Measures the saturation, then both open-loop runs; returns the saturation rate and the runs.
pub async fn measure(
    generator: &Generator,
    ensemble: &Arc<Ensemble>,
    pool: &Arc<ComputePool>,
    items: &Arc<Vec<Map<String, Value>>>,
    overload: &Overload,
) -> (f64, Vec<Run>) {
    eprintln!("overload: saturation, gRPC x{}...", overload.clients);
    let server = serve(ensemble, pool, overload, None).await;
    let saturation = generator
        .level(Load {
            target: target(&server),
            transport: Transport::Grpc,
            items: Arc::clone(items),
            clients: overload.clients,
            duration: overload.duration,
        })
        .await
        .items_per_second;
    server.shutdown();
    let rate = saturation * overload.factor;
    let mut runs = Vec::new();
    for (label, wait) in [
        ("--max-queue-wait 0 (off)".to_owned(), None),
        (
            format!("--max-queue-wait {}", overload.max_queue_wait.as_millis()),
            Some(overload.max_queue_wait),
        ),
    ] {
        eprintln!("overload: {rate:.0} requests/s offered, {label}...");
        let server = serve(ensemble, pool, overload, wait).await;
        let grpc = target(&server).grpc;
        let (items, duration) = (Arc::clone(items), overload.duration);
        let mut run = generator
            .on(async move { open_loop(grpc, items, rate, duration).await })
            .await;
        run.label = label;
        server.shutdown();
        runs.push(run);
    }
    (saturation, runs)
}

/// Offers `rate` one-item requests a second for `duration`, whatever the answers do.
async fn open_loop(
    grpc: String,
    items: Arc<Vec<Map<String, Value>>>,
    rate: f64,
    duration: Duration,
) -> Run {
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        clients.push(LastmileClient::new(load::connect_to(&grpc).await));
    }
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn({
        let peak = Arc::clone(&peak);
        async move {
            loop {
                let rss = super::resident_bytes().unwrap_or(0);
                peak.fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let mut schedule = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1.0)));
    // Late ticks are caught up: the offered rate is kept, as independent clients would keep it.
    schedule.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + duration;
    let mut sent = JoinSet::new();
    let mut offered = 0;
    while Instant::now() < end {
        schedule.tick().await;
        let mut client = clients[offered % CONNECTIONS].clone();
        let request = load::grpc_request(&items[offered % items.len()]);
        offered += 1;
        sent.spawn(async move {
            let start = Instant::now();
            let answer = client.predict(request).await;
            (answer.map(|_| ()).map_err(|s| s.code()), start.elapsed())
        });
    }
    let (mut latencies, mut shed, mut failed) = (Vec::new(), 0, 0);
    while let Some(done) = sent.join_next().await {
        match done.expect("a request task panicked") {
            (Ok(()), latency) => latencies.push(latency),
            (Err(tonic::Code::ResourceExhausted), _) => shed += 1,
            (Err(_), _) => failed += 1,
        }
    }
    sampler.abort();
    let peak_rss = Some(peak.load(Ordering::Relaxed)).filter(|&b| b > 0);
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Run {
        label: String::new(),
        offered,
        answered: latencies.len(),
        shed,
        failed,
        p50: pick(0.5),
        p99: pick(0.99),
        max: latencies.last().copied().unwrap_or_default(),
        peak_rss,
    }
}

/// The Markdown table of the runs.
pub fn table(overload: &Overload, saturation: f64, runs: &[Run]) -> String {
    let mut out = format!(
        "\n## Overload: {:.0} requests/s offered open-loop over gRPC ({}× the saturation of {:.0} \
         items/s at {} clients), {:.0} s, --max-items-in-flight {}\n\n\
         | run | offered | answered | shed (429) | failed | answered p50 | answered p99 | max | peak RSS |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        saturation * overload.factor,
        overload.factor,
        saturation,
        overload.clients,
        overload.duration.as_secs_f64(),
        overload.max_items_in_flight,
    );
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    for r in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} ({:.0}/s) | {} ({:.1} %) | {} | {} | {} | {} | {} |",
            r.label,
            r.offered,
            r.answered,
            r.answered as f64 / overload.duration.as_secs_f64(),
            r.shed,
            100.0 * r.shed as f64 / r.offered.max(1) as f64,
            r.failed,
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
            r.peak_rss
                .map_or("-".into(), |b| format!("{:.0} MB", b as f64 / 1e6)),
        );
    }
    out
}
