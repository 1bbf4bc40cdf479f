//! `lastmile bench`: serving throughput and latency against the bare floor, side by side in one
//! run. It measures the ensemble's models directly (the floor), serves the ensemble in this
//! process on loopback, drives it over gRPC and REST at a range of concurrencies, then serves it
//! again with batching off (`max_batch = 1`) and drives that at the highest concurrency. Tables
//! print as Markdown, ready for BENCHMARKS.md.

mod floor;
mod load;

use std::fmt::Write as _;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use lastmile::ensemble::{Ensemble, ItemOptions, Manifest, ValidItem};
use lastmile::registry::Registry;
use lastmile::scheduler::ComputePool;
use lastmile::server::{self, Limits, ServerConfig};
use serde_json::{Map, Value};

use self::load::{Level, Runs, Target, Transport};
use super::{human_bytes, EnsembleArgs, Failure};

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    ensemble: EnsembleArgs,
    /// Items to send, one JSON object per line (fields the ensemble reads; other keys ignored).
    #[arg(long)]
    data: PathBuf,
    /// Seconds each load level runs (after one second of warm-up).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Concurrent clients, one level each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
    concurrency: Vec<usize>,
    /// Transports to drive.
    #[arg(long, value_delimiter = ',', default_value = "grpc,rest")]
    transports: Vec<String>,
    /// Rows per model and batch size when measuring the floor (at least 4 calls of each size).
    #[arg(long, default_value_t = 128)]
    floor_rows: usize,
    /// Skip the comparison with batching off.
    #[arg(long)]
    no_unbatched: bool,
}

pub fn run(args: BenchArgs) -> Result<(), Failure> {
    let fail = |message: String| Failure { message, code: 2 };
    let transports = args
        .transports
        .iter()
        .map(|t| match t.as_str() {
            "grpc" => Ok(Transport::Grpc),
            "rest" => Ok(Transport::Rest),
            other => Err(fail(format!(
                "--transports: unknown {other:?} (grpc, rest)"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !args.duration.is_finite() || args.duration <= 0.0 || args.concurrency.contains(&0) {
        return Err(fail("--duration and --concurrency must be positive".into()));
    }
    let duration = Duration::from_secs_f64(args.duration);

    let manifest = Manifest::load(&args.ensemble.manifest)?;
    let ensemble = Arc::new(Ensemble::from_manifest(
        manifest.clone(),
        args.ensemble.threads,
        &[],
    )?);
    let rss = resident_bytes();
    let (objects, items) = read_items(&ensemble, &args.data)?;
    let pool = Arc::new(ComputePool::new(args.ensemble.threads)?);
    let threads = pool.threads();

    eprintln!("measuring the floor ({} models)...", ensemble.models.len());
    let bare = floor::Bare::new(&ensemble, &items);
    let floor = floor::measure(&bare, args.floor_rows, threads);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lastmile-bench-io")
        .build()?;
    let objects = Arc::new(objects);
    let top = *args.concurrency.iter().max().expect("at least one level");
    let (levels, bracket, saturation) = runtime.block_on(async {
        let handle = start(Arc::clone(&ensemble), Arc::clone(&pool)).await?;
        let target = target(&handle);
        let mut levels = Vec::new();
        let (mut bracket, mut saturation) = (None, None);
        for &transport in &transports {
            for &c in &args.concurrency {
                // Likewise the floor, around the busiest gRPC level.
                let busiest = transport == Transport::Grpc && c == top;
                let floor_before =
                    busiest.then(|| floor::batched_again(&bare, &floor, args.floor_rows));
                // This machine drifts within a minute, so one client's references are measured
                // again right around the gRPC level (on this thread; the server runs on the workers).
                let bracketed = transport == Transport::Grpc && c == 1;
                let before = bracketed.then(|| floor::latency(&bare, args.floor_rows, threads));
                eprintln!("{} x{c}...", transport.as_str());
                let before_runs = run_totals();
                let mut level =
                    load::run(&target, transport, Arc::clone(&objects), c, duration).await;
                level.runs = runs_between(before_runs, run_totals(), ensemble.models.len());
                if let Some(before) = before {
                    bracket = Some([before, floor::latency(&bare, args.floor_rows, threads)]);
                }
                if let Some(before) = floor_before {
                    let after = floor::batched_again(&bare, &floor, args.floor_rows);
                    saturation = Some(Saturation {
                        clients: c,
                        floor: [before, after],
                    });
                }
                levels.push((transport, level));
            }
        }
        handle.shutdown();
        Ok::<_, std::io::Error>((levels, bracket, saturation))
    })?;

    let unbatched = if args.no_unbatched {
        None
    } else {
        let mut off = manifest;
        off.models.iter_mut().for_each(|m| m.batch.max_batch = 1);
        // Shares every model with the batched ensemble: same memory, same runtimes.
        let off = Arc::new(Ensemble::from_manifest(
            off,
            args.ensemble.threads,
            &[&ensemble],
        )?);
        let c = top;
        eprintln!("gRPC x{c}, batching off...");
        Some(runtime.block_on(async {
            let handle = start(off, Arc::clone(&pool)).await?;
            let level = load::run(&target(&handle), Transport::Grpc, objects, c, duration).await;
            handle.shutdown();
            Ok::<_, std::io::Error>(level)
        })?)
    };

    print!(
        "{}",
        report(
            &ensemble,
            &args,
            &Measured {
                threads,
                rss,
                floor,
                levels,
                bracket,
                saturation,
                unbatched,
            }
        )
    );
    Ok(())
}

async fn start(ensemble: Arc<Ensemble>, pool: Arc<ComputePool>) -> std::io::Result<server::Handle> {
    let config = ServerConfig {
        http_addr: ([127, 0, 0, 1], 0).into(),
        grpc_addr: ([127, 0, 0, 1], 0).into(),
        limits: Limits {
            max_items_in_flight: 1 << 16,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    server::start(Arc::new(Registry::new(ensemble)), pool, config).await
}

fn target(handle: &server::Handle) -> Target {
    Target {
        http: format!("http://{}", handle.http_addr),
        grpc: format!("http://{}", handle.grpc_addr),
    }
}

/// The benchmark's items: as JSON objects of the ensemble's fields (to send), and checked (for
/// the floor).
type Items = (Vec<Map<String, Value>>, Vec<ValidItem>);

/// Reads at most 4,096 items from `path`.
fn read_items(ensemble: &Ensemble, path: &PathBuf) -> Result<Items, Failure> {
    let file = std::fs::File::open(path).map_err(|e| Failure {
        message: format!("{}: {e}", path.display()),
        code: 2,
    })?;
    let (mut objects, mut items) = (Vec::new(), Vec::new());
    for (n, line) in std::io::BufReader::new(file).lines().enumerate().take(4096) {
        let bad = |reason: String| Failure {
            message: format!("{}:{}: {reason}", path.display(), n + 1),
            code: 2,
        };
        let line = line.map_err(|e| bad(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(Value::Object(mut object)) = serde_json::from_str(&line) else {
            return Err(bad("expected a JSON object".into()));
        };
        object.retain(|k, _| ensemble.fields.contains(k));
        let item = ensemble
            .item_from_json(&object, ItemOptions::default())
            .map_err(|e| bad(e.to_string()))?;
        objects.push(object);
        items.push(item);
    }
    if items.is_empty() {
        return Err(Failure {
            message: format!("{}: no items", path.display()),
            code: 2,
        });
    }
    Ok((objects, items))
}

/// Totals so far, summed over every model, from the server's own metrics.
#[derive(Clone, Copy)]
struct RunTotals {
    rows: f64,
    runs: f64,
    seconds: f64,
}

fn run_totals() -> Option<RunTotals> {
    let text = lastmile::telemetry::install()?.render();
    let total = |metric: &str, suffix: &str| -> f64 {
        let prefix = format!("{metric}_{suffix}{{");
        text.lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    use lastmile::telemetry::{BATCH_ROWS, MODEL_RUN_DURATION};
    Some(RunTotals {
        rows: total(BATCH_ROWS, "sum"),
        runs: total(BATCH_ROWS, "count"),
        seconds: total(MODEL_RUN_DURATION, "sum"),
    })
}

/// The models' runs between two [`run_totals`] of an ensemble of `models` models.
fn runs_between(
    before: Option<RunTotals>,
    after: Option<RunTotals>,
    models: usize,
) -> Option<Runs> {
    let (b, a) = (before?, after?);
    let (rows, runs) = (a.rows - b.rows, a.runs - b.runs);
    (runs > 0.0 && rows > 0.0).then(|| Runs {
        rows_per_run: rows / runs,
        seconds_per_item: (a.seconds - b.seconds) / (rows / models as f64),
    })
}

/// Resident memory of this process (Linux), if readable.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

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

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// The busiest gRPC level, with the floor measured again just before and just after it.
struct Saturation {
    clients: usize,
    /// Seconds per item at the models' best batch sizes on one thread, before and after.
    floor: [f64; 2],
}

/// Everything one run measured.
struct Measured {
    threads: usize,
    /// Resident memory after loading the ensemble.
    rss: Option<u64>,
    floor: floor::Floor,
    levels: Vec<(Transport, Level)>,
    /// One client's references measured just before and just after the one-client gRPC level.
    bracket: Option<[floor::Latency; 2]>,
    /// The floor measured again around the busiest gRPC level.
    saturation: Option<Saturation>,
    /// The highest concurrency over gRPC with `max_batch = 1`.
    unbatched: Option<Level>,
}

fn report(e: &Ensemble, args: &BenchArgs, m: &Measured) -> String {
    let Measured {
        threads,
        rss,
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
        "| transport | clients | items/s | of floor | p50 ms | p90 ms | p99 ms | rows per model run | model ms per item | threads in models | errors |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (t, l) in levels {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.0} % | {} | {} | {} | {} | {} |",
            t.as_str(),
            l.concurrency,
            l.items_per_second,
            100.0 * l.items_per_second / floor_tput,
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            runs_cells(l, threads),
            l.errors
        );
    }
    let best = levels
        .iter()
        .map(|(_, l)| l.items_per_second)
        .fold(0.0, f64::max);
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
    if let Some(off) = unbatched {
        let on = levels
            .iter()
            .filter(|(t, l)| *t == Transport::Grpc && l.concurrency == off.concurrency)
            .map(|(_, l)| l.items_per_second)
            .next()
            .unwrap_or(best);
        let _ = writeln!(
            out,
            "\n### Server, batching off (max_batch = 1)\n\n| transport | clients | items/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|\n| gRPC | {} | {:.1} | {} | {} | {} |\n\nBatching on / off at {} clients over gRPC: {:.2} x.",
            off.concurrency,
            off.items_per_second,
            ms(off.p50),
            ms(off.p99),
            off.errors,
            off.concurrency,
            on / off.items_per_second.max(f64::MIN_POSITIVE),
        );
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
