//! `lastmile cascade fit`: fits a `[cascade]` for the ensemble on labelled data (see
//! `lastmile::eval::fit`), prints each stage's expected share of items, accuracy and compute,
//! and with `--write FILE` writes the manifest with that `[cascade]` table.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lastmile::ensemble::manifest::StageTest;
use lastmile::eval::read_labelled;
use lastmile::monitor::fit::{fit, Fit, FitSettings};
use lastmile::monitor::prune::pruned_manifest;

use super::{load, EnsembleArgs, Failure};

#[derive(Args)]
pub struct CascadeArgs {
    #[command(subcommand)]
    command: CascadeCommand,
}

#[derive(Subcommand)]
enum CascadeCommand {
    /// Fit stages and thresholds on labelled data (use a calibration split).
    Fit(FitArgs),
}

#[derive(Args)]
struct FitArgs {
    #[command(flatten)]
    ensemble: EnsembleArgs,
    /// Labelled items, one JSON object per line: the ensemble's fields and the right label.
    #[arg(long)]
    data: PathBuf,
    /// The key holding the right label.
    #[arg(long, default_value = "label")]
    label_field: String,
    /// Use only the first N items.
    #[arg(long)]
    limit: Option<usize>,
    /// Items scored together.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Items the cascade may lose on the data (the full ensemble right, the cascade wrong), as a
    /// share of the data: an upper bound on its top-1 drop there (0.002 is 0.2 point).
    #[arg(long, default_value_t = 0.002)]
    max_drop: f64,
    /// The stopping test: margin (top-1 minus top-2 of the vote) or top1.
    #[arg(long, default_value = "margin")]
    test: String,
    /// Items (the first of the data) used to rank the members by agreement with the ensemble.
    #[arg(long, default_value_t = 500)]
    pilot: usize,
    /// Write the manifest with the fitted `[cascade]` here (paths made to resolve from it).
    #[arg(long)]
    write: Option<PathBuf>,
    /// Print the fit as JSON.
    #[arg(long)]
    json: bool,
}

fn failed(code: u8) -> impl Fn(String) -> Failure {
    move |message| Failure { message, code }
}

pub fn run(args: CascadeArgs) -> Result<(), Failure> {
    match args.command {
        CascadeCommand::Fit(args) => run_fit(args),
    }
}

fn run_fit(args: FitArgs) -> Result<(), Failure> {
    if !(args.max_drop.is_finite() && (0.0..=1.0).contains(&args.max_drop)) {
        return Err(failed(2)(format!(
            "--max-drop must be between 0 and 1, got {}",
            args.max_drop
        )));
    }
    let test = match args.test.as_str() {
        "margin" => StageTest::Margin,
        "top1" => StageTest::Top1,
        other => {
            return Err(failed(2)(format!(
                "--test must be margin or top1, got {other:?}"
            )))
        }
    };
    let (ensemble, pool) = load(&args.ensemble)?;
    if ensemble.models.len() < 2 {
        return Err(failed(2)("a cascade needs at least two models".into()));
    }
    let data = read_labelled(&args.data, &ensemble, &args.label_field, args.limit)
        .map_err(|e| failed(2)(e.to_string()))?;
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(data.len() as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} items  {per_sec}  eta {eta}")
                .expect("a valid template"),
        )
    };
    let settings = FitSettings {
        max_drop: args.max_drop,
        batch: args.batch,
        test,
        pilot: args.pilot,
    };
    let found = fit(&ensemble, &pool, &data, &settings, |n| bar.inc(n as u64))
        .map_err(|e| failed(1)(e.to_string()))?;
    bar.finish_and_clear();
    if let Some(out) = &args.write {
        let text = std::fs::read_to_string(&ensemble.manifest)
            .map_err(|e| failed(1)(format!("{}: {e}", ensemble.manifest.display())))?;
        let written = cascaded_manifest(&text, &ensemble.manifest, out, &found)
            .map_err(|e| failed(1)(format!("writing the cascaded manifest: {e}")))?;
        std::fs::write(out, written).map_err(|e| failed(1)(format!("{}: {e}", out.display())))?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&found).expect("fits serialise")
        );
    } else {
        print!("{}", table(&found));
        if let Some(out) = &args.write {
            println!("cascaded manifest: {}", out.display());
        }
    }
    Ok(())
}

/// The manifest at `path` (text `text`) with `[cascade]` set to the fit, as written at `out`:
/// paths made to resolve from `out`'s directory, the version suffixed `-cascade`.
fn cascaded_manifest(text: &str, path: &Path, out: &Path, found: &Fit) -> Result<String, String> {
    let moved = pruned_manifest(text, path, &[], out)?;
    let mut doc: toml::Table = toml::from_str(&moved).map_err(|e| e.message().to_owned())?;
    if let Some(toml::Value::String(v)) = doc.get_mut("version") {
        let base = v.strip_suffix("-pruned").unwrap_or(v).to_owned();
        *v = format!("{base}-cascade");
    }
    let stages: Vec<toml::Value> = found
        .stages
        .iter()
        .map(|s| {
            let mut t = toml::Table::new();
            t.insert(
                "members".into(),
                toml::Value::Array(
                    s.members
                        .iter()
                        .map(|m| toml::Value::String(m.clone()))
                        .collect(),
                ),
            );
            if let Some(th) = s.threshold {
                let th = if th.is_finite() {
                    th as f64
                } else {
                    f64::INFINITY
                };
                t.insert("threshold".into(), toml::Value::Float(th));
            }
            toml::Value::Table(t)
        })
        .collect();
    let mut cascade = toml::Table::new();
    cascade.insert("test".into(), toml::Value::String(found.test.into()));
    cascade.insert("stage".into(), toml::Value::Array(stages));
    doc.insert("cascade".into(), toml::Value::Table(cascade));
    let body = toml::to_string(&doc).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Written by `lastmile cascade fit`: {} with a [cascade] fitted on {} items (expected \
         top-1 {:.4} against {:.4}, {:.1} % of the compute per item).\n\n{body}",
        path.display(),
        found.items,
        found.top1,
        found.full_top1,
        100.0 * found.cost_share
    ))
}

fn table(f: &Fit) -> String {
    let mut out = format!(
        "{} items, test {}, max drop {:.2} points, {} candidate stage sets\n",
        f.items,
        f.test,
        100.0 * f.max_drop,
        f.candidates
    );
    out += &format!(
        "full ensemble: top-1 {:.4}, {:.3} ms of model time per item\n",
        f.full_top1,
        1e3 * f.full_seconds_per_item
    );
    out += &format!(
        "cascade:       top-1 {:.4} ({:+.2} points), {:.1} % of the compute per item, {:.2} \
         members run per item\n\n",
        f.top1,
        100.0 * (f.top1 - f.full_top1),
        100.0 * f.cost_share,
        f.members_run
    );
    out += &format!(
        "{:<6} {:>9} {:>9} {:>8} {:>9} {:>8}  {}\n",
        "stage", "threshold", "answered", "top-1", "compute", "members", "new members"
    );
    for (i, s) in f.stages.iter().enumerate() {
        out += &format!(
            "{:<6} {:>9} {:>8.2}% {:>8.4} {:>8.1}% {:>8}  {}\n",
            i + 1,
            s.threshold
                .map(|t| format!("{t:.4}"))
                .unwrap_or_else(|| "-".into()),
            100.0 * s.answered,
            s.top1,
            100.0 * s.cost_share,
            s.members_run,
            if s.members.len() > 6 {
                format!("{} members", s.members.len())
            } else {
                s.members.join(", ")
            }
        );
    }
    out
}
