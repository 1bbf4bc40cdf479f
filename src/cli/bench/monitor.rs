//! `lastmile bench --monitor-cost`: what the live monitor costs. The ensemble is served in this
//! process with the monitor off and on (at `--monitor-fraction`), alternately, `--rounds` times
//! each, at each `--concurrency` over gRPC; the cost is the drop of items/s from one to the
//! other (median over the rounds, so that the machine's drift does not decide it). Each "on"
//! server's monitor says how many items it sampled, analysed and dropped: its re-scoring runs at
//! low priority, so at saturation it waits behind live work (and its queue fills and drops), while
//! below saturation it runs and costs about its fraction of the models' work.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use lastmile::app::{self, App, AppConfig};
use lastmile::ensemble::Ensemble;
use lastmile::monitor::live::MonitorSettings;
use lastmile::registry::Registry;
use lastmile::scheduler::ComputePool;
use lastmile::service::Limits;
use serde_json::{Map, Value};

use super::load::{Generator, Load, Target, Transport};

/// One round: items/s off, items/s on, and the on server's monitor counts.
pub struct Round {
    pub clients: usize,
    pub off: f64,
    pub on: f64,
    pub sampled: u64,
    pub analysed: u64,
    pub dropped: u64,
}

/// What to measure.
pub struct Cost {
    pub fraction: f64,
    pub clients: Vec<usize>,
    pub duration: Duration,
    pub rounds: usize,
}

async fn serve(ensemble: &Arc<Ensemble>, pool: &Arc<ComputePool>, fraction: f64) -> App {
    let config = AppConfig {
        http_addr: ([127, 0, 0, 1], 0).into(),
        grpc_addr: ([127, 0, 0, 1], 0).into(),
        limits: Limits {
            max_items_in_flight: 1 << 16,
            ..Limits::default()
        },
        monitor: MonitorSettings {
            fraction,
            ..MonitorSettings::default()
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

/// Runs the rounds.
pub async fn measure(
    generator: &Generator,
    ensemble: &Arc<Ensemble>,
    pool: &Arc<ComputePool>,
    items: &Arc<Vec<Map<String, Value>>>,
    cost: &Cost,
) -> Vec<Round> {
    let mut rounds = Vec::new();
    for (clients, round) in cost
        .clients
        .iter()
        .flat_map(|&c| (0..cost.rounds).map(move |r| (c, r)))
    {
        let level = |fraction: f64| async move {
            let server = serve(ensemble, pool, fraction).await;
            let level = generator
                .level(Load {
                    target: Target {
                        http: format!("http://{}", server.http_addr),
                        grpc: format!("http://{}", server.grpc_addr),
                    },
                    transport: Transport::Grpc,
                    items: Arc::clone(items),
                    clients,
                    duration: cost.duration,
                })
                .await;
            let report = server.service.monitor().report();
            server.shutdown();
            (level.items_per_second, report)
        };
        eprintln!("monitor cost, x{clients} round {}: off...", round + 1);
        let (off, _) = level(0.0).await;
        eprintln!(
            "monitor cost, x{clients} round {}: on ({})...",
            round + 1,
            cost.fraction
        );
        let (on, report) = level(cost.fraction).await;
        rounds.push(Round {
            clients,
            off,
            on,
            sampled: report.sampled,
            analysed: report.analysed,
            dropped: report.skipped,
        });
    }
    rounds
}

/// The Markdown table of the rounds and the median cost at each level.
pub fn table(cost: &Cost, rounds: &[Round]) -> String {
    let mut out = format!(
        "\n## Live monitor cost (gRPC, {:.0} s a level, fraction {})\n\n\
         | clients | round | monitor off, items/s | monitor on, items/s | cost | sampled | analysed | dropped |\n\
         |---|---|---|---|---|---|---|---|\n",
        cost.duration.as_secs_f64(),
        cost.fraction
    );
    for (i, r) in rounds.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} | {:+.2} % | {} | {} | {} |",
            r.clients,
            i % cost.rounds + 1,
            r.off,
            r.on,
            100.0 * (1.0 - r.on / r.off.max(1e-9)),
            r.sampled,
            r.analysed,
            r.dropped
        );
    }
    out.push('\n');
    for &clients in &cost.clients {
        let mut costs: Vec<f64> = rounds
            .iter()
            .filter(|r| r.clients == clients)
            .map(|r| 1.0 - r.on / r.off.max(1e-9))
            .collect();
        costs.sort_by(f64::total_cmp);
        if let Some(median) = costs.get(costs.len() / 2) {
            let _ = writeln!(
                out,
                "Median cost at {clients} clients: {:.2} % of throughput (the bar at saturation: 3 %).",
                100.0 * median
            );
        }
    }
    out
}
