//! `lastmile lock M`: resolves every model of manifest `M` (a registry alias to its version, the
//! version to its run and artifact, every file to its content hash), checks that the ensemble
//! loads, and writes `M.lock` beside it. From then on every load of `M` (check, serve, deploy,
//! SIGHUP) gets exactly those files: a repeatable deploy. Models the lock already pins as the
//! manifest names them are kept; `--update-lock` resolves everything again (e.g. to take what an
//! alias points at now).

use std::path::PathBuf;

use clap::Args;
use lastmile::ensemble::source::LockFile;
use lastmile::ensemble::{Ensemble, Loader, LockMode};

use super::{Failure, SourceArgs};

#[derive(Args)]
pub struct LockArgs {
    /// The ensemble manifest (TOML); the lock is written beside it, as `<manifest>.lock`.
    manifest: PathBuf,
    /// Resolve every model again, ignoring what the lock there pins.
    #[arg(long)]
    update_lock: bool,
    /// Threads loading the models (0: one per core).
    #[arg(long, env = "LASTMILE_THREADS", default_value_t = 0)]
    threads: usize,
    #[command(flatten)]
    sources: SourceArgs,
}

pub fn run(args: LockArgs) -> Result<(), Failure> {
    let mode = if args.update_lock {
        LockMode::Ignore
    } else {
        LockMode::Refresh
    };
    let loader = Loader {
        threads: args.threads,
        sources: args.sources.sources(mode),
    };
    let ensemble = Ensemble::load_with(&args.manifest, &loader, &[])?;
    let lock = LockFile::of(&ensemble);
    let path = lock.write_beside(&args.manifest)?;
    println!(
        "locked: {} version {}: {} models, digest {} -> {}",
        ensemble.name,
        ensemble.version,
        ensemble.models.len(),
        ensemble.digest,
        path.display()
    );
    for m in &lock.models {
        let resolved = match &m.registry {
            Some(r) if !r.version.is_empty() => {
                format!(" = {} version {} (run {})", r.model, r.version, r.run_id)
            }
            Some(r) => format!(" = run {}", r.run_id),
            None => String::new(),
        };
        println!(
            "  {:<28} {}{resolved}  sha256 {}",
            m.name, m.source, m.sha256
        );
    }
    Ok(())
}
