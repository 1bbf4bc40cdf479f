//! `lastmile bench`: serving throughput and latency against the bare floor, side by side in one
//! run. It measures the ensemble's models directly (the floor), serves the ensemble in this
//! process on loopback (or drives a server already running elsewhere, with `--rest` and `--grpc`),
//! drives it over gRPC and REST at a range of concurrencies, then serves it again with batching off
//! (`max_batch = 1`) and drives that at one client (right after one client with batching on) and
//! at the highest concurrency. Tables print as Markdown, ready for BENCHMARKS.md.

mod against;
mod cores;
mod floor;
mod load;
mod monitor;
mod overload;
mod report;

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use lastmile::app::{self, App, AppConfig};
use lastmile::ensemble::{Ensemble, ItemOptions, Manifest, ValidItem};
use lastmile::registry::Registry;
use lastmile::scheduler::ComputePool;
use lastmile::service::Limits;
use serde_json::{Map, Value};

use self::load::{Load, Runs, Target, Transport};
use self::report::{report, Measured, Saturation, Unbatched};
use super::{EnsembleArgs, Failure};

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
    /// Drive a server already running, serving the ensemble of --manifest, at this REST address
    /// (`http://host:port`) instead of serving it in this process. The floor is still measured
    /// here (give --threads as the server has them); the server's model columns come from its
    /// `/metrics`; batching off is skipped.
    #[arg(long, requires = "grpc", value_name = "URL")]
    rest: Option<String>,
    /// The running server's gRPC address (`http://host:port`), with --rest.
    #[arg(long, requires = "rest", value_name = "URL")]
    grpc: Option<String>,
    /// Instead of the full run: what the live monitor costs. Serves the ensemble with the monitor
    /// off and on (at --monitor-fraction), alternately, --rounds times each, at each
    /// --concurrency over gRPC, and prints the drop in items/s.
    #[arg(long, env = "LASTMILE_BENCH_MONITOR_COST", conflicts_with = "rest")]
    monitor_cost: bool,
    /// The monitor's sampling fraction for --monitor-cost (default: `serve`'s).
    #[arg(long, env = "LASTMILE_BENCH_MONITOR_FRACTION", default_value_t = lastmile::monitor::live::MonitorSettings::default().fraction)]
    monitor_fraction: f64,
    /// Off/on pairs for --monitor-cost.
    #[arg(long, env = "LASTMILE_BENCH_ROUNDS", default_value_t = 3)]
    rounds: usize,
    /// Instead of the full run: this manifest side by side with --manifest (e.g. a cascaded
    /// one against the full one), served alternately --rounds times each at each --concurrency
    /// over gRPC on the same compute pool: items/s, p50 and their ratios.
    #[arg(long, value_name = "MANIFEST", conflicts_with_all = ["rest", "monitor_cost"])]
    against: Option<PathBuf>,
    /// Instead of the full run: what shedding buys under overload. Measures the saturation over
    /// gRPC at the highest --concurrency, then offers --overload-factor times that rate
    /// open-loop for --duration, with --max-queue-wait off and on, and prints answered, shed and
    /// failed requests and the answered ones' latency.
    #[arg(long, conflicts_with_all = ["rest", "monitor_cost"])]
    overload: bool,
    /// Offered rate over the saturation rate, for --overload.
    #[arg(long, default_value_t = 2.0)]
    overload_factor: f64,
    /// `serve --max-queue-wait` of the shedding run of --overload, in milliseconds.
    #[arg(long, default_value_t = 500.0)]
    max_queue_wait: f64,
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
    let running = args
        .rest
        .clone()
        .zip(args.grpc.clone())
        .map(|(http, grpc)| Target {
            http: http.trim_end_matches('/').to_owned(),
            grpc,
        });
    let pool = Arc::new(ComputePool::new(args.ensemble.threads)?);
    let threads = pool.threads();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(cores::SERVER_THREADS)
        .build()?;
    // With the server elsewhere, only the clients' threads are in this process.
    let generator = load::Generator::new(running.is_none())?;
    if let Some(target) = &running {
        runtime.block_on(check_serves(target, &ensemble))?;
    }

    if args.monitor_cost {
        let cost = monitor::Cost {
            fraction: args.monitor_fraction,
            clients: args.concurrency.clone(),
            duration,
            rounds: args.rounds.max(1),
        };
        let items = Arc::new(objects);
        let rounds = runtime.block_on(monitor::measure(
            &generator, &ensemble, &pool, &items, &cost,
        ));
        print!("{}", monitor::table(&cost, &rounds));
        return Ok(());
    }

    if let Some(other) = &args.against {
        let other_ensemble = Arc::new(Ensemble::load_reusing(
            other,
            args.ensemble.threads,
            &[&ensemble],
        )?);
        let (other_objects, _) = read_items(&other_ensemble, &args.data)?;
        let sides = against::Sides {
            base: args.ensemble.manifest.display().to_string(),
            other: other.display().to_string(),
            clients: args.concurrency.clone(),
            duration,
            rounds: args.rounds.max(1),
        };
        let (base_items, other_items) = (Arc::new(objects), Arc::new(other_objects));
        let rounds = runtime.block_on(against::measure(
            &generator,
            (&ensemble, &base_items),
            (&other_ensemble, &other_items),
            &pool,
            &sides,
        ));
        print!("{}", against::table(&sides, &rounds));
        return Ok(());
    }

    if args.overload {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(args.overload_factor) || !positive(args.max_queue_wait) {
            return Err(fail(
                "--overload-factor and --max-queue-wait must be positive".into(),
            ));
        }
        let overload = overload::Overload {
            factor: args.overload_factor,
            clients: *args.concurrency.iter().max().expect("at least one level"),
            duration,
            max_queue_wait: Duration::from_secs_f64(args.max_queue_wait / 1000.0),
            max_items_in_flight: Limits::default().max_items_in_flight,
        };
        let items = Arc::new(objects);
        let (saturation, runs) = runtime.block_on(overload::measure(
            &generator, &ensemble, &pool, &items, &overload,
        ));
        print!("{}", overload::table(&overload, saturation, &runs));
        return Ok(());
    }

    eprintln!("measuring the floor ({} models)...", ensemble.models.len());
    let bare = floor::Bare::new(&ensemble, &items);
    let floor = floor::measure(&bare, args.floor_rows, threads);

    let objects = Arc::new(objects);
    let top = *args.concurrency.iter().max().expect("at least one level");
    let (levels, bracket, saturation) = runtime.block_on(async {
        let (handle, target) = match &running {
            Some(target) => (None, target.clone()),
            None => {
                let handle = start(Arc::clone(&ensemble), Arc::clone(&pool)).await?;
                let target = target(&handle);
                (Some(handle), target)
            }
        };
        // The server's own metrics: in this process, or the running server's /metrics.
        let metrics = running.as_ref().map(|t| format!("{}/metrics", t.http));
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
                let before_runs = run_totals(metrics.as_deref()).await;
                let mut level = generator
                    .level(Load {
                        target: target.clone(),
                        transport,
                        items: Arc::clone(&objects),
                        clients: c,
                        duration,
                    })
                    .await;
                let after_runs = run_totals(metrics.as_deref()).await;
                level.runs = runs_between(before_runs, after_runs, ensemble.models.len());
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
        if let Some(handle) = handle {
            handle.shutdown();
        }
        Ok::<_, Failure>((levels, bracket, saturation))
    })?;

    let unbatched = if args.no_unbatched || running.is_some() {
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
        // One client with batching on and then off, back to back, so that the machine's drift
        // does not decide the comparison; then the busiest level with batching off.
        let one = args.concurrency.contains(&1);
        Some(runtime.block_on(async {
            let generator = &generator;
            let level = |ensemble: &Arc<Ensemble>, clients: usize| {
                let (ensemble, pool, items) = (
                    Arc::clone(ensemble),
                    Arc::clone(&pool),
                    Arc::clone(&objects),
                );
                async move {
                    let handle = start(ensemble, pool).await?;
                    let level = generator
                        .level(Load {
                            target: target(&handle),
                            transport: Transport::Grpc,
                            items,
                            clients,
                            duration,
                        })
                        .await;
                    handle.shutdown();
                    Ok::<_, std::io::Error>(level)
                }
            };
            let one_client = if one {
                eprintln!("gRPC x1, batching on then off...");
                Some([level(&ensemble, 1).await?, level(&off, 1).await?])
            } else {
                None
            };
            eprintln!("gRPC x{top}, batching off...");
            Ok::<_, std::io::Error>(Unbatched {
                busiest: level(&off, top).await?,
                one_client,
            })
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
                running: running
                    .as_ref()
                    .map(|t| format!("{} (REST) and {} (gRPC)", t.http, t.grpc)),
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

async fn start(ensemble: Arc<Ensemble>, pool: Arc<ComputePool>) -> std::io::Result<App> {
    let config = AppConfig {
        http_addr: ([127, 0, 0, 1], 0).into(),
        grpc_addr: ([127, 0, 0, 1], 0).into(),
        limits: Limits {
            max_items_in_flight: 1 << 16,
            ..Limits::default()
        },
        ..AppConfig::default()
    };
    app::start(Arc::new(Registry::new(ensemble)), pool, config)
        .await
        .map_err(std::io::Error::other)
}

fn target(handle: &App) -> Target {
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

/// The totals from the server's metrics: this process's own, or those served at `url`.
async fn run_totals(url: Option<&str>) -> Option<RunTotals> {
    let text = match url {
        None => lastmile::telemetry::install()?.render(),
        Some(url) => reqwest::get(url).await.ok()?.text().await.ok()?,
    };
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

/// Fails unless the server at `target` serves `ensemble` (same name and version): a floor of
/// other models says nothing about it.
async fn check_serves(target: &Target, ensemble: &Ensemble) -> Result<(), Failure> {
    let url = format!("{}/v1/ensemble", target.http);
    let fail = |message: String| Failure { message, code: 2 };
    let served: Value = reqwest::get(&url)
        .await
        .map_err(|e| fail(format!("--rest: cannot reach {url}: {e}")))?
        .json()
        .await
        .map_err(|e| fail(format!("--rest: {url} did not answer JSON: {e}")))?;
    let (name, version) = (served["name"].as_str(), served["version"].as_str());
    if name != Some(ensemble.name.as_str()) || version != Some(ensemble.version.as_str()) {
        return Err(fail(format!(
            "--rest: the server at {} serves ensemble {} version {}, but --manifest is {} \
             version {}",
            target.http,
            name.unwrap_or("?"),
            version.unwrap_or("?"),
            ensemble.name,
            ensemble.version
        )));
    }
    Ok(())
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
