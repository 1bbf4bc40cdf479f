//! `lastmile check MANIFEST`: everything that can go wrong before serving, found now; what would
//! be served, to the byte (the ensemble digest, each model's content hash and where it came from).

use std::path::PathBuf;

use clap::Args;
use lastmile::ensemble::{Ensemble, FileProvenance, ModelKind, Provenance};

use super::{human_bytes, load, EnsembleArgs, Failure, SourceArgs};

#[derive(Args)]
pub struct CheckArgs {
    /// The ensemble manifest (TOML).
    manifest: PathBuf,
    /// Compute threads used to load the models (0: one per core).
    #[arg(long, env = "LASTMILE_THREADS", default_value_t = 0)]
    threads: usize,
    /// Also list every model, with its content hash and source.
    #[arg(long)]
    models: bool,
    /// Also list each model's whole provenance: registry version and run (params, tags,
    /// datasets) and the manifest's `[model.provenance]`.
    #[arg(long)]
    provenance: bool,
    /// Print what would be served as JSON, as `GET /v1/ensemble` answers it.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    sources: SourceArgs,
}

pub fn run(args: CheckArgs) -> Result<(), Failure> {
    let (ensemble, _pool) = load(&EnsembleArgs {
        manifest: args.manifest,
        threads: args.threads,
        sources: args.sources,
    })?;
    // The drift reference the manifest names must be readable now, not when traffic comes.
    if let Some(path) = &ensemble.monitor.reference {
        lastmile::monitor::drift::Reference::read(path).map_err(|e| Failure {
            message: format!("{}: `monitor.reference`: {e}", ensemble.manifest.display()),
            code: 2,
        })?;
    }
    if args.json {
        let info = lastmile::edge::ensemble_info(&ensemble);
        println!(
            "{}",
            serde_json::to_string_pretty(&info).expect("descriptions serialise")
        );
        return Ok(());
    }
    print!(
        "{}",
        summary(&ensemble, args.models || args.provenance, args.provenance)
    );
    Ok(())
}

fn summary(e: &Ensemble, list_models: bool, provenance: bool) -> String {
    let count = |k: ModelKind| e.models.iter().filter(|m| m.spec.kind == k).count();
    let mut out = format!(
        "ok: {} version {}: {} models ({} fasttext, {} onnx), {} labels, fields {}, {} on disk, loaded in {:.2} s\n",
        e.name,
        e.version,
        e.models.len(),
        count(ModelKind::FastText),
        count(ModelKind::Onnx),
        e.labels.len(),
        e.fields.join(", "),
        human_bytes(e.bytes()),
        e.load_seconds,
    );
    let locked = e.models.iter().filter(|m| m.provenance.locked).count();
    out += &format!("  digest {}", e.digest);
    if locked > 0 {
        out += &format!(" ({locked} models as the lock file pins them)");
    }
    out += "\n";
    if list_models {
        for m in &e.models {
            out += &format!(
                "  {:<28} {:<8} {:>6} labels  weight {:<5} {:>9}  {}\n",
                m.spec.name,
                m.spec.kind.as_str(),
                m.label_ids.len(),
                m.spec.weight,
                human_bytes(m.bytes),
                m.spec.fields.join("+"),
            );
            out += &describe(&m.provenance, provenance);
        }
    }
    out
}

/// A model's provenance, indented under its line: one line per file, then (in full) the run.
fn describe(p: &Provenance, full: bool) -> String {
    let mut out = file_line("", &p.model);
    if let Some(labels) = &p.labels {
        out += &file_line("labels ", labels);
    }
    if !full {
        return out;
    }
    for f in std::iter::once(&p.model).chain(&p.labels) {
        let Some(r) = &f.registry else { continue };
        let pairs = |m: &std::collections::BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        out += &format!(
            "      run {} {:?} (experiment {}), tracking {}\n",
            r.run_id, r.run_name, r.experiment_id, r.tracking_uri
        );
        if !r.params.is_empty() {
            out += &format!("      params {}\n", pairs(&r.params));
        }
        if !r.tags.is_empty() {
            out += &format!("      tags {}\n", pairs(&r.tags));
        }
        for d in &r.datasets {
            out += &format!(
                "      dataset {} digest {} {} {}\n",
                d.name, d.digest, d.context, d.source
            );
        }
    }
    if !p.declared.is_empty() {
        let declared: Vec<String> = p.declared.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out += &format!("      declared {}\n", declared.join(" "));
    }
    out
}

fn file_line(what: &str, f: &FileProvenance) -> String {
    let resolved = match &f.registry {
        Some(r) if !r.version.is_empty() => {
            format!(" = {} version {}, run {}", r.model, r.version, r.run_id)
        }
        Some(r) => format!(" = run {}", r.run_id),
        None => String::new(),
    };
    format!("      {what}sha256 {} {}{resolved}\n", f.sha256, f.source)
}
