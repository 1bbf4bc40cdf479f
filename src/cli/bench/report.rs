//! The Markdown report of one `lastmile bench` run: the floor, each level against it, and the
//! comparisons the targets ask for.

use std::fmt::Write as _;
use std::time::Duration;

use lastmile::ensemble::Ensemble;

use super::floor;
use super::load::{Level, Transport};
use super::BenchArgs;
use crate::cli::human_bytes;

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The cells of a level's model runs: rows per run, the models' milliseconds per item, and the
/// share of the compute threads' time they ran.
fn runs_cells(l: &Level, threads: usize) -> String {
    l.runs.map_or_else(
        || "- | - | -".to_owned(),
        |r| {
            let busy = r.seconds_per_item * l.items_per_second / threads as f64;
            format!(
                "{:.1} | {:.3} | {:.0} %",
                r.rows_per_run,
                r.seconds_per_item * 1e3,
                100.0 * busy
            )
        },
    )
}

/// The cell of where the cores went: compute threads / server I/O / clients, in % of all cores.
fn cores_cell(l: &Level) -> String {
    l.cores.map_or_else(
        || "-".to_owned(),
        |c| {
            format!(
                "{:.0} / {:.0} / {:.0}",
                100.0 * c.compute,
                100.0 * c.server,
                100.0 * c.clients
            )
        },
    )
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// The busiest gRPC level, with the floor measured again just before and just after it.
pub struct Saturation {
    pub clients: usize,
    /// Seconds per item at the models' best batch sizes on one thread, before and after.
    pub floor: [f64; 2],
}

/// Everything one run measured.
pub struct Measured {
    pub threads: usize,
    /// Resident memory after loading the ensemble.
    pub rss: Option<u64>,
    /// The running server driven (its addresses), when not serving in this process.
    pub running: Option<String>,
    pub floor: floor::Floor,
    pub levels: Vec<(Transport, Level)>,
    /// One client's references measured just before and just after the one-client gRPC level.
    pub bracket: Option<[floor::Latency; 2]>,
    /// The floor measured again around the busiest gRPC level.
    pub saturation: Option<Saturation>,
    /// The server with batching off.
    pub unbatched: Option<Unbatched>,
}

/// The server with `max_batch = 1`, over gRPC.
pub struct Unbatched {
    /// At the highest concurrency.
    pub busiest: Level,
    /// One client with batching on, then off, back to back (when the levels include one
    /// client): batching must not cost latency at low load.
    pub one_client: Option<[Level; 2]>,
}

pub fn report(e: &Ensemble, args: &BenchArgs, m: &Measured) -> String {
    let Measured {
        threads,
        rss,
        ref running,
        ref floor,
        ref levels,
        bracket,
        ref saturation,
        ref unbatched,
    } = *m;
    let unbatched = unbatched.as_ref();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let floor_tput = threads as f64 / floor.batched;
    let latency_floor = floor.unbatched / threads as f64;
    let mut out = String::new();
    let _ = writeln!(out, "## lastmile bench: {} version {}\n", e.name, e.version);
    let _ = writeln!(
        out,
        "- machine: {} ({cores} cores), {threads} compute threads\n\
         - ensemble: {} models, {} labels, {} on disk; resident memory after loading: {}\n\
         - each level: {:.0} s after 1 s warm-up, one item per request, items from {}",
        cpu_model(),
        e.models.len(),
        e.labels.len(),
        human_bytes(e.bytes()),
        rss.map_or("unknown".into(), human_bytes),
        args.duration,
        args.data.display(),
    );
    let _ = writeln!(
        out,
        "- server: {}",
        running.as_ref().map_or_else(
            || "served in this process on loopback, on the same cores as the clients".to_owned(),
            |at| format!(
                "already running at {at}; its model columns from its /metrics, the floor \
                 measured on this machine"
            )
        )
    );
    let _ = writeln!(
        out,
        "\n### Bare floor (models called directly, one thread, no server)\n"
    );
    let _ = writeln!(
        out,
        "| | per item | items/s on {threads} threads |\n|---|---|---|"
    );
    let _ = writeln!(
        out,
        "| batch 1 (every model) | {:.3} ms | {:.1} |",
        floor.unbatched * 1e3,
        threads as f64 / floor.unbatched
    );
    let _ = writeln!(
        out,
        "| best batch size (per model, of {:?}) | {:.3} ms | **{:.1}** (the floor) |",
        floor::SIZES,
        floor.batched * 1e3,
        floor_tput
    );
    let _ = writeln!(
        out,
        "\nLatency floor at one client (batch-1 cost / {threads} threads): {} ms",
        ms(Duration::from_secs_f64(latency_floor))
    );
    let _ = writeln!(
        out,
        "Bare models side by side at batch 1 on {threads} threads (no server; median item): {} ms \
         = {:.2} x the latency floor (the threads share memory bandwidth and cache)",
        ms(Duration::from_secs_f64(floor.side_by_side)),
        floor.side_by_side / latency_floor
    );
    let _ = writeln!(
        out,
        "Bare models side by side at their best batch sizes on {threads} threads (no server): \
         {:.1} items/s = {:.0} % of the floor\n",
        floor.batched_side_by_side,
        100.0 * floor.batched_side_by_side / floor_tput
    );
    let _ = writeln!(out, "### Server, batching on\n");
    let _ = writeln!(
        out,
        "| transport | clients | items/s | of floor | p50 ms | p90 ms | p99 ms | rows per model run | model ms per item | threads in models | cores %: compute / server I/O / clients | errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (t, l) in levels {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.0} % | {} | {} | {} | {} | {} | {} |",
            t.as_str(),
            l.concurrency,
            l.items_per_second,
            100.0 * l.items_per_second / floor_tput,
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            runs_cells(l, threads),
            cores_cell(l),
            l.errors
        );
    }
    let best_level = levels
        .iter()
        .map(|(_, l)| l)
        .max_by(|a, b| a.items_per_second.total_cmp(&b.items_per_second));
    let best = best_level.map_or(0.0, |l| l.items_per_second);
    if let Some((_, one)) = levels
        .iter()
        .find(|(t, l)| *t == Transport::Grpc && l.concurrency == 1)
    {
        let p50 = one.p50.as_secs_f64();
        let _ = writeln!(
            out,
            "\nOne client over gRPC: p50 {} ms = {:.2} x the latency floor, {:.2} x the bare \
             models side by side.",
            ms(one.p50),
            p50 / latency_floor,
            p50 / floor.side_by_side
        );
        if let Some([before, after]) = bracket {
            let cell = |l: &floor::Latency| {
                format!(
                    "{} ms ({:.2} x) | {} ms ({:.2} x)",
                    ms(Duration::from_secs_f64(l.floor)),
                    p50 / l.floor,
                    ms(Duration::from_secs_f64(l.side_by_side)),
                    p50 / l.side_by_side
                )
            };
            let _ = writeln!(
                out,
                "\nThe same references measured again just before and just after that level \
                 (medians over {} items; in brackets, the one-client p50 over each):\n\n\
                 | | latency floor | bare side by side |\n|---|---|---|\n\
                 | just before | {} |\n| just after | {} |\n",
                args.floor_rows,
                cell(&before),
                cell(&after)
            );
        }
    }
    let _ = writeln!(
        out,
        "Best throughput: {best:.1} items/s = {:.0} % of the floor, {:.0} % of the bare models \
         side by side at their best batch sizes.",
        100.0 * best / floor_tput,
        100.0 * best / floor.batched_side_by_side
    );
    if let Some((l, c)) = best_level.and_then(|l| Some((l, l.cores?))) {
        let left = (1.0 - c.clients).max(f64::MIN_POSITIVE);
        let _ = writeln!(
            out,
            "At that level the load generator took {:.1} % of the cores, which a server serving \
             clients elsewhere would have: against the floor on the {:.1} % of the cores left \
             to the server, {:.1} items/s is {:.0} %.",
            100.0 * c.clients,
            100.0 * left,
            l.items_per_second,
            100.0 * l.items_per_second / (floor_tput * left)
        );
    }
    let busiest = saturation.as_ref().and_then(|s| {
        let level = levels
            .iter()
            .find(|(t, l)| *t == Transport::Grpc && l.concurrency == s.clients)?;
        Some((s, level.1.items_per_second))
    });
    if let Some((
        Saturation {
            clients,
            floor: [before, after],
        },
        level,
    )) = busiest
    {
        let share = |seconds: f64| 100.0 * level * seconds / threads as f64;
        let _ = writeln!(
            out,
            "The floor measured again just before and just after the gRPC level at {clients} \
             clients: {:.3} and {:.3} ms per item; that level's {level:.1} items/s is {:.0} % and \
             {:.0} % of them.",
            before * 1e3,
            after * 1e3,
            share(*before),
            share(*after)
        );
    }
    if let Some(Unbatched {
        busiest: off,
        one_client,
    }) = unbatched
    {
        let on = levels
            .iter()
            .filter(|(t, l)| *t == Transport::Grpc && l.concurrency == off.concurrency)
            .map(|(_, l)| l.items_per_second)
            .next()
            .unwrap_or(best);
        let _ = writeln!(
            out,
            "\n### Server, batching off (max_batch = 1)\n\n| transport | clients | items/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|"
        );
        let row = |l: &Level| {
            format!(
                "| gRPC | {} | {:.1} | {} | {} | {} |",
                l.concurrency,
                l.items_per_second,
                ms(l.p50),
                ms(l.p99),
                l.errors
            )
        };
        if let Some([_, one_off]) = one_client {
            let _ = writeln!(out, "{}", row(one_off));
        }
        let _ = writeln!(
            out,
            "{}\n\nBatching on / off at {} clients over gRPC: {:.2} x.",
            row(off),
            off.concurrency,
            on / off.items_per_second.max(f64::MIN_POSITIVE),
        );
        if let Some([one_on, one_off]) = one_client {
            let _ = writeln!(
                out,
                "One client over gRPC, batching on then off, back to back: p50 {} ms and {} ms \
                 ({:.2} x; batching costs no latency at low load when this is about 1).",
                ms(one_on.p50),
                ms(one_off.p50),
                one_on.p50.as_secs_f64() / one_off.p50.as_secs_f64().max(f64::MIN_POSITIVE),
            );
        }
    }
    let _ = writeln!(
        out,
        "\n### Floor per model (ms per row at batch {:?})\n",
        floor::SIZES
    );
    let _ = writeln!(
        out,
        "| model | {} |\n|---|{}",
        floor::SIZES.map(|s| s.to_string()).join(" | "),
        "---|".repeat(floor::SIZES.len())
    );
    for (name, costs) in &floor.models {
        let cells: Vec<String> = costs.iter().map(|c| format!("{:.3}", c * 1e3)).collect();
        let _ = writeln!(out, "| {name} | {} |", cells.join(" | "));
    }
    out
}
