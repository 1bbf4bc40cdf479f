//! Reloading the server's own manifest without an admin call: on SIGHUP, and (optionally) when a
//! poll sees the manifest file change. Both go through [`Deployer::deploy`], so the same gate
//! applies (the manifest's `validation` set and the server's thresholds), and both only log the
//! outcome; the status keeps a rejection's reason.
//!
//! The watch polls the manifest's modification time every interval and hashes the file when it
//! changed; a new hash triggers one deploy (a rejected manifest is not retried until it changes
//! again). It watches the manifest file only: a retrain that rewrites a model file in place
//! without touching the manifest needs SIGHUP or an admin call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::{Deployer, GateRequest};
use crate::drain::DrainSignal;
use crate::registry::Trigger;

/// Reloads `manifest` on every SIGHUP until shutdown. The handler is installed before this
/// returns, so a SIGHUP sent once the server is up is never lost (nor fatal).
pub fn spawn_sighup_task(
    deployer: Arc<Deployer>,
    manifest: PathBuf,
    drain: DrainSignal,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = drain.clone().started() => return,
                got = hangup.recv() => if got.is_none() { return },
            }
            tracing::info!(manifest = %manifest.display(), "SIGHUP: reloading the manifest");
            reload(&deployer, &manifest, Trigger::Sighup).await;
        }
    });
    Ok(())
}

/// Polls `manifest` every `every` until shutdown and deploys it when its content changes. What it
/// compares with is read before this returns: a change made once the server is up is seen.
pub fn spawn_watch_task(
    deployer: Arc<Deployer>,
    manifest: PathBuf,
    every: Duration,
    drain: DrainSignal,
) {
    let mut seen = Fingerprint::read_now(&manifest);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = drain.clone().started() => return,
                _ = ticks.tick() => {}
            }
            let modified = modified(&manifest).await;
            if modified.is_none() || modified == seen.as_ref().and_then(|s| s.modified) {
                // Missing for a moment (being replaced), or untouched.
                continue;
            }
            let Some(now) = Fingerprint::read(&manifest).await else {
                continue;
            };
            let changed = seen.as_ref().is_none_or(|s| s.sha256 != now.sha256);
            seen = Some(now);
            if changed {
                tracing::info!(manifest = %manifest.display(), "the manifest changed: reloading");
                reload(&deployer, &manifest, Trigger::Watch).await;
            }
        }
    });
}

async fn reload(deployer: &Deployer, manifest: &Path, trigger: Trigger) {
    match deployer
        .deploy(manifest, &GateRequest::default(), trigger)
        .await
    {
        Ok(result) => {
            let live = result.live.unwrap_or_default();
            tracing::info!(
                trigger = trigger.as_str(),
                outcome = %result.outcome,
                name = %live.name,
                version = %live.version,
                "reload done"
            );
        }
        // The deployer logged the rejection and the status keeps it.
        Err(e) => tracing::warn!(trigger = trigger.as_str(), "reload refused: {e}"),
    }
}

/// What the watch compares.
struct Fingerprint {
    modified: Option<SystemTime>,
    sha256: Vec<u8>,
}

impl Fingerprint {
    fn read_now(path: &Path) -> Option<Fingerprint> {
        let modified = std::fs::metadata(path).ok()?.modified().ok();
        let bytes = std::fs::read(path).ok()?;
        Some(Fingerprint {
            modified,
            sha256: Sha256::digest(&bytes).to_vec(),
        })
    }

    async fn read(path: &Path) -> Option<Fingerprint> {
        let path = path.to_owned();
        blocking(move || Fingerprint::read_now(&path)).await
    }
}

async fn modified(path: &Path) -> Option<SystemTime> {
    let path = path.to_owned();
    blocking(move || std::fs::metadata(&path).ok()?.modified().ok()).await
}

/// File system calls off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Option<T> + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok().flatten()
}
