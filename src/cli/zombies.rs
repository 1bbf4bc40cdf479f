//! `lastmile zombies`: which members of the ensemble still change its answers on labelled data,
//! what the ensemble's accuracy is without each (computed, not estimated), and a pruning proposal
//! verified by evaluating the pruned ensemble for real, accuracy and items/s beside the full one.
//! `--json` prints everything (what `lastmile report` draws); `--write-pruned FILE` writes the
//! pruned manifest. See `lastmile::monitor::zombies` and `lastmile::monitor::prune`.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lastmile::ensemble::Ensemble;
use lastmile::eval::{evaluate, read_labelled, LabelledItem, Metrics};
use lastmile::monitor::prune::{self, Goal, Pruning};
use lastmile::monitor::zombies::{analyse, Settings, ZombieReport};
use lastmile::scheduler::{ComputePool, Priority};

use super::{load, EnsembleArgs, Failure};

#[derive(Args)]
pub struct ZombiesArgs {
    #[command(flatten)]
    ensemble: EnsembleArgs,
    /// Labelled items, one JSON object per line: the ensemble's fields and the right label (use
    /// the validation set).
    #[arg(long, env = "LASTMILE_ZOMBIES_DATA")]
    data: PathBuf,
    /// The key holding the right label.
    #[arg(long, env = "LASTMILE_ZOMBIES_LABEL_FIELD", default_value = "label")]
    label_field: String,
    /// Use only the first N items.
    #[arg(long, env = "LASTMILE_ZOMBIES_LIMIT")]
    limit: Option<usize>,
    /// Items scored together.
    #[arg(long, env = "LASTMILE_ZOMBIES_BATCH", default_value_t = 64)]
    batch: usize,
    /// Top-1 accuracy the pruned ensemble may lose against the full one, as a fraction (0.001 is
    /// 0.1 point).
    #[arg(long, env = "LASTMILE_ZOMBIES_MAX_DROP", default_value_t = 0.001)]
    max_drop: f64,
    /// Evaluate the full and the pruned ensemble on these labelled items instead of --data
    /// (held-out items: the proposal was searched on --data).
    #[arg(long, env = "LASTMILE_ZOMBIES_VERIFY_DATA")]
    verify_data: Option<PathBuf>,
    /// Write the pruned manifest here (paths are made to resolve from its directory).
    #[arg(long, env = "LASTMILE_ZOMBIES_WRITE_PRUNED")]
    write_pruned: Option<PathBuf>,
    /// Skip the pruning proposal.
    #[arg(long, env = "LASTMILE_ZOMBIES_NO_PRUNE")]
    no_prune: bool,
    /// Also vote again without each member on every item and count where that differs from the
    /// influence computed without voting again (it never should); reports both costs.
    #[arg(long, env = "LASTMILE_ZOMBIES_CHECK")]
    check: bool,
    /// Print the report as JSON (what `lastmile report` reads).
    #[arg(long, env = "LASTMILE_ZOMBIES_JSON")]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, env = "LASTMILE_ZOMBIES_SAVE")]
    save: Option<PathBuf>,
}

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure {
        message: e.to_string(),
        code: 1,
    }
}

pub fn run(args: ZombiesArgs) -> Result<(), Failure> {
    if !(args.max_drop.is_finite() && (0.0..=1.0).contains(&args.max_drop)) {
        return Err(Failure {
            message: format!("--max-drop must be between 0 and 1, got {}", args.max_drop),
            code: 2,
        });
    }
    let (ensemble, pool) = load(&args.ensemble)?;
    let data =
        read_labelled(&args.data, &ensemble, &args.label_field, args.limit).map_err(|e| {
            Failure {
                message: e.to_string(),
                code: 2,
            }
        })?;
    let settings = Settings {
        batch: args.batch,
        check: args.check,
    };
    let bar = bar(args.json, data.len(), "members' influence");
    let mut report =
        analyse(&ensemble, &pool, &data, &settings, |n| bar.inc(n as u64)).map_err(failed)?;
    bar.finish_and_clear();
    report.data = args.data.display().to_string();
    if !args.no_prune {
        report.pruning = propose(&args, &ensemble, &pool, &data, &report)?;
    }
    let json = serde_json::to_string_pretty(&report).expect("reports serialise");
    if let Some(path) = &args.save {
        std::fs::write(path, &json).map_err(|e| failed(format!("{}: {e}", path.display())))?;
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

fn bar(hidden: bool, len: usize, what: &str) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    ProgressBar::new(len as u64).with_style(
        ProgressStyle::with_template(&format!(
            "{what:<20} {{bar:40}} {{pos}}/{{len}} items  {{per_sec}}  eta {{eta}}"
        ))
        .expect("a valid template"),
    )
}

/// Searches the proposal, writes the pruned manifest, and evaluates both ensembles for real.
fn propose(
    args: &ZombiesArgs,
    ensemble: &Arc<Ensemble>,
    pool: &ComputePool,
    data: &[LabelledItem],
    report: &ZombieReport,
) -> Result<Option<Pruning>, Failure> {
    let order = prune::order(ensemble, report);
    let goal = Goal {
        full_top1: report.top1,
        max_drop: args.max_drop,
        batch: args.batch,
    };
    let bar = bar(args.json, data.len(), "pruning search");
    let found =
        prune::search(ensemble, pool, data, &order, goal, |n| bar.inc(n as u64)).map_err(failed)?;
    bar.finish_and_clear();
    if found.removed.is_empty() {
        return Ok(None);
    }
    let names: Vec<String> = found
        .removed
        .iter()
        .map(|&m| ensemble.models[m].spec.name.clone())
        .collect();
    let text = std::fs::read_to_string(&ensemble.manifest)
        .map_err(|e| failed(format!("{}: {e}", ensemble.manifest.display())))?;
    let temp = tempdir()?;
    let out = match &args.write_pruned {
        Some(p) => p.clone(),
        None => temp.join("pruned.toml"),
    };
    let pruned_text =
        prune::pruned_manifest(&text, &ensemble.manifest, &names, &out).map_err(failed)?;
    std::fs::write(&out, pruned_text).map_err(|e| failed(format!("{}: {e}", out.display())))?;
    let pruned = Ensemble::load_reusing(&out, args.ensemble.threads, &[ensemble])?;
    let pruned = Arc::new(pruned);
    let verify = args.verify_data.as_ref().unwrap_or(&args.data);
    let read = |e: &Ensemble| {
        read_labelled(verify, e, &args.label_field, args.limit).map_err(|e| Failure {
            message: e.to_string(),
            code: 2,
        })
    };
    let (full_data, pruned_data) = (read(ensemble)?, read(&pruned)?);
    let full = measure(args, ensemble, pool, &full_data, "full ensemble")?;
    let pruned_metrics = measure(args, &pruned, pool, &pruned_data, "pruned ensemble")?;
    let _ = std::fs::remove_dir_all(&temp);
    let removed: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    let compute_saved = report
        .members
        .iter()
        .filter(|m| removed.contains(m.figures.name.as_str()))
        .map(|m| m.figures.compute_share)
        .sum();
    Ok(Some(Pruning {
        max_drop: args.max_drop,
        removed: names,
        compute_saved,
        searched: found.top1,
        full,
        pruned: pruned_metrics,
        verified_on: verify.display().to_string(),
        manifest: args.write_pruned.as_ref().map(|p| p.display().to_string()),
    }))
}

fn tempdir() -> Result<PathBuf, Failure> {
    let dir = std::env::temp_dir().join(format!("lastmile-zombies-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

/// `lastmile eval`'s measure of one ensemble.
fn measure(
    args: &ZombiesArgs,
    ensemble: &Arc<Ensemble>,
    pool: &ComputePool,
    data: &[LabelledItem],
    what: &str,
) -> Result<Metrics, Failure> {
    let bar = bar(args.json, data.len(), what);
    let report = evaluate(ensemble, pool, Priority::Normal, data, args.batch, |n| {
        bar.inc(n as u64);
        ControlFlow::Continue(())
    })
    .map_err(failed)?;
    bar.finish_and_clear();
    Ok(report.overall)
}

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

fn table(r: &ZombieReport) -> String {
    let mut out = format!(
        "{} version {}: {} items of {}, {} compute threads\n",
        r.ensemble, r.version, r.items, r.data, r.compute_threads
    );
    out += &format!(
        "ensemble top-1 {:.4}, abstained {} %\n",
        r.top1,
        pct(r.abstention)
    );
    out += &format!(
        "influence: {:.1} label scores recomputed per member and item, {} member-items voted \
         again, {:.3} ms per item\n",
        r.work.labels_per_member,
        r.work.revoted,
        r.work.influence_seconds_per_item * 1e3
    );
    if let Some(x) = &r.exactness {
        out += &format!(
            "check: {} mismatches in {} member-items against voting again without each member \
             ({:.3} ms per item)\n",
            x.mismatches,
            x.member_items,
            x.revote_seconds_per_item * 1e3
        );
    }
    out += "\n(pivotal, agree, win share, compute: % of items; without: the ensemble's top-1 \
            without the member; change: in points)\n";
    out += &format!(
        "{:<32} {:<8} {:<12} {:>6} {:>7} {:>8} {:>7} {:>9} {:>8} {:>7} {:>8}  {}\n",
        "model",
        "kind",
        "group",
        "weight",
        "top-1",
        "pivotal",
        "agree",
        "win share",
        "without",
        "change",
        "compute",
        "verdict"
    );
    let mut rows: Vec<_> = r.members.iter().collect();
    rows.sort_by(|a, b| {
        a.figures
            .pivotal_rate
            .total_cmp(&b.figures.pivotal_rate)
            .then(b.figures.compute_share.total_cmp(&a.figures.compute_share))
    });
    for m in rows {
        let f = &m.figures;
        out += &format!(
            "{:<32} {:<8} {:<12} {:>6} {:>7.4} {:>8} {:>7} {:>9} {:>8.4} {:>+7.2} {:>8}  {}\n",
            f.name,
            f.kind,
            f.group.as_deref().unwrap_or("-"),
            f.weight,
            m.top1,
            pct(f.pivotal_rate),
            pct(f.agreement),
            pct(f.winner_share),
            m.without_top1,
            100.0 * m.without_change,
            pct(f.compute_share),
            m.verdict
        );
    }
    if let Some(e) = &r.reference_error {
        out += &format!("\nno drift: {e}\n");
    }
    if let Some(d) = &r.drift {
        out += &format!(
            "\ndrift from the [monitor] reference: PSI {:.4}, JS {:.4}, confidence PSI {:.4}, \
             abstention {:+.2} points{}\n",
            d.psi,
            d.js,
            d.confidence_psi,
            100.0 * d.abstention_change,
            if d.crossed.is_empty() {
                String::new()
            } else {
                format!(" (crossed: {})", d.crossed.join(", "))
            }
        );
    }
    out += &pruning_table(r);
    out
}

fn pruning_table(r: &ZombieReport) -> String {
    let Some(p) = &r.pruning else {
        return "\npruning proposal: no member can be removed within the tolerance\n".into();
    };
    let mut out = format!(
        "\npruning proposal (max drop {:.2} points): remove {} of {} members, {} % of the \
         compute\n  removed: {}\n",
        100.0 * p.max_drop,
        p.removed.len(),
        r.members.len(),
        pct(p.compute_saved),
        p.removed.join(", ")
    );
    out += &format!(
        "  evaluated on {}:\n  {:<18} {:>7} {:>7} {:>9} {:>10}\n",
        p.verified_on, "", "top-1", "top-5", "macro-F1", "items/s"
    );
    let row = |name: &str, m: &Metrics| {
        format!(
            "  {:<18} {:>7.4} {:>7.4} {:>9.4} {:>10.1}",
            name, m.top1, m.top5, m.macro_f1, m.items_per_second
        )
    };
    out += &row("full ensemble", &p.full);
    out += "\n";
    out += &row("pruned ensemble", &p.pruned);
    out += &format!(
        "   ({:+.2} points, {:.2}x items/s)\n",
        100.0 * (p.pruned.top1 - p.full.top1),
        p.pruned.items_per_second / p.full.items_per_second.max(1e-9)
    );
    if let Some(path) = &p.manifest {
        out += &format!("  pruned manifest: {path}\n");
    }
    out
}
