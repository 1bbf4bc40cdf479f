//! `lastmile bench --against MANIFEST`: two ensembles side by side (the `--manifest` one and
//! this one, e.g. a cascaded manifest against the full one). Each is served in this process on
//! the same compute pool, alternately, `--rounds` times each, at each `--concurrency` over gRPC;
//! the table gives items/s and p50 of both and their ratios per round, and the medians, so that
//! the machine's drift does not decide the comparison.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use lastmile::app::{self, AppConfig};
use lastmile::ensemble::Ensemble;
use lastmile::registry::Registry;
use lastmile::scheduler::ComputePool;
use lastmile::service::Limits;
use serde_json::{Map, Value};

use super::load::{Generator, Load, Target, Transport};

/// One round at one level: (items/s, p50) of the base and of the other ensemble.
pub struct Round {
    pub clients: usize,
    pub base: (f64, Duration),
    pub other: (f64, Duration),
}

pub struct Sides {
    pub base: String,
    pub other: String,
    pub clients: Vec<usize>,
    pub duration: Duration,
    pub rounds: usize,
}

async fn level(
    generator: &Generator,
    ensemble: &Arc<Ensemble>,
    pool: &Arc<ComputePool>,
    items: &Arc<Vec<Map<String, Value>>>,
    clients: usize,
    duration: Duration,
) -> (f64, Duration) {
    let config = AppConfig {
        http_addr: ([127, 0, 0, 1], 0).into(),
        grpc_addr: ([127, 0, 0, 1], 0).into(),
        limits: Limits {
            max_items_in_flight: 1 << 16,
            ..Limits::default()
        },
        ..AppConfig::default()
    };
    let server = app::start(
        Arc::new(Registry::new(Arc::clone(ensemble))),
        Arc::clone(pool),
        config,
    )
    .await
    .expect("the bench server starts");
    let level = generator
        .level(Load {
            target: Target {
                http: format!("http://{}", server.http_addr),
                grpc: format!("http://{}", server.grpc_addr),
            },
            transport: Transport::Grpc,
            items: Arc::clone(items),
            clients,
            duration,
        })
        .await;
    server.shutdown();
    (level.items_per_second, level.p50)
}

/// An ensemble and the items to send it.
type Side<'a> = (&'a Arc<Ensemble>, &'a Arc<Vec<Map<String, Value>>>);

/// Runs the rounds: base then other at each level, `rounds` times.
pub async fn measure(
    generator: &Generator,
    base: Side<'_>,
    other: Side<'_>,
    pool: &Arc<ComputePool>,
    sides: &Sides,
) -> Vec<Round> {
    let mut rounds = Vec::new();
    for &clients in &sides.clients {
        for round in 0..sides.rounds {
            eprintln!(
                "side by side, x{clients} round {}: {}...",
                round + 1,
                sides.base
            );
            let b = level(generator, base.0, pool, base.1, clients, sides.duration).await;
            eprintln!(
                "side by side, x{clients} round {}: {}...",
                round + 1,
                sides.other
            );
            let o = level(generator, other.0, pool, other.1, clients, sides.duration).await;
            rounds.push(Round {
                clients,
                base: b,
                other: o,
            });
        }
    }
    rounds
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The Markdown table of the rounds and the medians at each level.
pub fn table(sides: &Sides, rounds: &[Round]) -> String {
    let mut out = format!(
        "\n## Side by side (gRPC, {:.0} s a level): A = {}, B = {}\n\n\
         | clients | round | A items/s | B items/s | B/A items/s | A p50 ms | B p50 ms | B/A p50 |\n\
         |---|---|---|---|---|---|---|---|\n",
        sides.duration.as_secs_f64(),
        sides.base,
        sides.other
    );
    for (i, r) in rounds.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} | {:.2}x | {:.2} | {:.2} | {:.2}x |",
            r.clients,
            i % sides.rounds + 1,
            r.base.0,
            r.other.0,
            r.other.0 / r.base.0.max(1e-9),
            ms(r.base.1),
            ms(r.other.1),
            ms(r.other.1) / ms(r.base.1).max(1e-9)
        );
    }
    out.push('\n');
    for &clients in &sides.clients {
        let at: Vec<&Round> = rounds.iter().filter(|r| r.clients == clients).collect();
        let _ = writeln!(
            out,
            "Median at {clients} clients: A {:.1} items/s, p50 {:.2} ms; B {:.1} items/s, p50 \
             {:.2} ms; B/A items/s {:.2}x, B/A p50 {:.2}x.",
            median(at.iter().map(|r| r.base.0).collect()),
            median(at.iter().map(|r| ms(r.base.1)).collect()),
            median(at.iter().map(|r| r.other.0).collect()),
            median(at.iter().map(|r| ms(r.other.1)).collect()),
            median(at.iter().map(|r| r.other.0 / r.base.0.max(1e-9)).collect()),
            median(
                at.iter()
                    .map(|r| ms(r.other.1) / ms(r.base.1).max(1e-9))
                    .collect()
            ),
        );
    }
    out
}
