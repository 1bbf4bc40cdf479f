//! Which ensembles the process holds, and which one is live.
//!
//! - **live**: behind one atomic pointer (`ArcSwap`). A request takes ONE snapshot when it is
//!   admitted and keeps it to the end, so its items are never answered by two ensembles.
//!   Replacing the live ensemble is a single atomic store; the old one is dropped with its last
//!   request (unless kept as `previous`).
//! - **previous**: the ensemble live before the last swap, kept for rollback until replaced or
//!   released (never kept with `keep_previous` off).
//! - **candidate**: loaded and warmed beside the live one, waiting for validation and promotion.
//! - the **shadow** ensemble (mirrored traffic) is kept by the [`ShadowSlot`](crate::shadow::ShadowSlot),
//!   not here; the deployer's status adds it ([`Deployer::status`](crate::deploy::Deployer::status)),
//!   and promoting it stages it here as the candidate first.
//!
//! Every slot change happens with the slots locked, and the live pointer is stored with them
//! locked too, so the status is always consistent. The lock is held for pointer moves only; loading
//! and validating happen outside (see [`crate::deploy`]).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::ensemble::{hex, Ensemble, FileProvenance, Provenance};
use crate::proto::lastmile::v1 as pb;
use crate::telemetry;

/// What put an ensemble in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Loaded when the server started.
    Startup,
    /// The admin API (REST or gRPC, `lastmile deploy`).
    Admin,
    /// SIGHUP: the server's own manifest, reloaded.
    Sighup,
    /// The manifest watch saw the server's manifest change.
    Watch,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Admin => "admin",
            Trigger::Sighup => "sighup",
            Trigger::Watch => "watch",
        }
    }
}

/// A slot that can be released to free memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Previous,
    Candidate,
}

impl Slot {
    pub fn parse(name: &str) -> Option<Slot> {
        match name {
            "previous" => Some(Slot::Previous),
            "candidate" => Some(Slot::Candidate),
            _ => None,
        }
    }
}

/// An ensemble the registry holds, and how it got there.
#[derive(Clone)]
pub struct Held {
    pub ensemble: Arc<Ensemble>,
    /// sha256 of the manifest text the ensemble was loaded from, hex (empty if unknown).
    pub manifest_sha256: String,
    pub loaded_at: SystemTime,
    pub trigger: Trigger,
    /// The manifest's `validation` key.
    pub validation_set: Option<PathBuf>,
    /// Its last validation as a candidate, and the live ensemble it was compared with (a
    /// validation against an ensemble no longer live is stale).
    pub validation: Option<(pb::Validation, Weak<Ensemble>)>,
}

impl Held {
    pub fn new(
        ensemble: Arc<Ensemble>,
        manifest_sha256: String,
        trigger: Trigger,
        validation_set: Option<PathBuf>,
    ) -> Held {
        Held {
            ensemble,
            manifest_sha256,
            loaded_at: SystemTime::now(),
            trigger,
            validation_set,
            validation: None,
        }
    }

    /// The same content: manifest text and every model file.
    pub fn same_content(&self, other: &Held) -> bool {
        !self.manifest_sha256.is_empty()
            && self.manifest_sha256 == other.manifest_sha256
            && models_digest(&self.ensemble) == models_digest(&other.ensemble)
    }
}

/// The slots besides the live pointer.
struct Slots {
    /// The same ensemble as `Registry::live`, with what is known about it.
    live: Held,
    previous: Option<Held>,
    candidate: Option<Held>,
    last_rejection: Option<pb::Rejection>,
    swaps: u64,
    keep_previous: bool,
}

impl Slots {
    /// Every ensemble held: live, then previous and candidate when there are.
    fn held(&self) -> Vec<&Held> {
        [
            Some(&self.live),
            self.previous.as_ref(),
            self.candidate.as_ref(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// The live ensemble, swappable while requests read it, and the ensembles held beside it.
pub struct Registry {
    live: ArcSwap<Ensemble>,
    slots: Mutex<Slots>,
}

/// What a swap did: the ensemble now live and the one it replaced.
pub struct Swapped {
    pub live: Held,
    pub replaced: Held,
}

impl Registry {
    /// A registry serving `ensemble`, loaded at startup.
    pub fn new(ensemble: Arc<Ensemble>) -> Self {
        let sha = ensemble.manifest_sha256.clone();
        Self::with(Held::new(ensemble, sha, Trigger::Startup, None))
    }

    /// A registry serving `live`.
    pub fn with(live: Held) -> Self {
        Registry {
            live: ArcSwap::new(Arc::clone(&live.ensemble)),
            slots: Mutex::new(Slots {
                live,
                previous: None,
                candidate: None,
                last_rejection: None,
                swaps: 0,
                keep_previous: true,
            }),
        }
    }

    /// The live ensemble, for one request.
    pub fn snapshot(&self) -> Arc<Ensemble> {
        self.live.load_full()
    }

    /// Records which ensemble is live in the metrics (once a recorder is installed).
    pub fn announce(&self) {
        let live = self.live.load();
        telemetry::ensemble_live(&live.name, &live.version, live.models.len());
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots
            .lock()
            .expect("the registry lock is never held across a panic: this is a bug")
    }

    /// Keep the replaced ensemble for rollback (the default), or drop it at once (it is freed
    /// when its last request finishes). Turning it off releases the previous ensemble now.
    pub fn set_keep_previous(&self, keep: bool) {
        let dropped = {
            let mut slots = self.slots();
            slots.keep_previous = keep;
            if keep {
                None
            } else {
                slots.previous.take()
            }
        };
        drop(dropped);
    }

    /// Live, previous and candidate, as held now.
    pub fn held(&self) -> (Held, Option<Held>, Option<Held>) {
        let slots = self.slots();
        (
            slots.live.clone(),
            slots.previous.clone(),
            slots.candidate.clone(),
        )
    }

    pub fn candidate(&self) -> Option<Held> {
        self.slots().candidate.clone()
    }

    /// Makes `held` the candidate; returns the candidate it replaces (drop it outside any lock).
    pub fn stage(&self, held: Held) -> Option<Held> {
        self.slots().candidate.replace(held)
    }

    /// Records `candidate`'s validation against `live`, if it is still the candidate.
    pub fn set_validation(
        &self,
        candidate: &Arc<Ensemble>,
        validation: pb::Validation,
        live: &Arc<Ensemble>,
    ) {
        let mut slots = self.slots();
        if let Some(c) = slots
            .candidate
            .as_mut()
            .filter(|c| Arc::ptr_eq(&c.ensemble, candidate))
        {
            c.validation = Some((validation, Arc::downgrade(live)));
        }
    }

    /// Keeps why a candidate was not promoted, for the status.
    pub fn reject(&self, rejection: pb::Rejection) {
        telemetry::swap("rejected");
        self.slots().last_rejection = Some(rejection);
    }

    /// Drops a slot's ensemble (freed once no request and no other slot uses it).
    pub fn release(&self, slot: Slot) -> Option<Held> {
        let mut slots = self.slots();
        match slot {
            Slot::Previous => slots.previous.take(),
            Slot::Candidate => slots.candidate.take(),
        }
    }

    /// Makes the candidate live in one store, if it is still `expected`. The live ensemble
    /// becomes the previous one (or is dropped with its last request).
    pub fn promote(&self, expected: &Arc<Ensemble>) -> Option<Swapped> {
        let mut slots = self.slots();
        if !slots
            .candidate
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.ensemble, expected))
        {
            return None;
        }
        let next = slots.candidate.take().expect("checked above");
        let swapped = self.swap_live(&mut slots, next);
        telemetry::swap("promoted");
        Some(swapped)
    }

    /// Swaps the live and the previous ensemble, if there is a previous one.
    pub fn rollback(&self) -> Option<Swapped> {
        let mut slots = self.slots();
        let previous = slots.previous.take()?;
        let swapped = self.swap_live(&mut slots, previous);
        telemetry::swap("rolled_back");
        Some(swapped)
    }

    /// The one place the live pointer changes.
    fn swap_live(&self, slots: &mut Slots, next: Held) -> Swapped {
        self.live.store(Arc::clone(&next.ensemble));
        let replaced = std::mem::replace(&mut slots.live, next);
        if slots.keep_previous {
            slots.previous = Some(replaced.clone());
        }
        slots.swaps += 1;
        telemetry::ensemble_retired(&replaced.ensemble.name, &replaced.ensemble.version);
        let live = &slots.live.ensemble;
        telemetry::ensemble_live(&live.name, &live.version, live.models.len());
        Swapped {
            live: slots.live.clone(),
            replaced,
        }
    }

    /// Every slot, as the admin API shows it.
    pub fn status(&self) -> pb::RegistryStatus {
        let slots = self.slots();
        let held = slots.held();
        let mut seen = HashSet::new();
        let resident_model_bytes = held
            .iter()
            .flat_map(|h| &h.ensemble.models)
            .filter(|m| seen.insert(runtime_address(m)))
            .map(|m| m.bytes)
            .sum();
        let summary = |h: &Held| summary(h, &held);
        pb::RegistryStatus {
            live: Some(summary(&slots.live)),
            previous: slots.previous.as_ref().map(summary),
            candidate: slots.candidate.as_ref().map(summary),
            last_rejection: slots.last_rejection.clone(),
            swaps: slots.swaps,
            keep_previous: slots.keep_previous,
            resident_model_bytes,
            // Added by the admin status, which knows the serving state.
            shadow: None,
        }
    }

    /// One slot's summary, as [`Registry::status`] shows it.
    pub fn summary(&self, held: &Held) -> pb::EnsembleSummary {
        let slots = self.slots();
        summary(held, &slots.held())
    }
}

fn runtime_address(m: &crate::ensemble::Model) -> usize {
    Arc::as_ptr(&m.runtime) as *const () as usize
}

/// `h`'s summary; a model is `shared` when another ensemble of `all` holds the same runtime.
fn summary(h: &Held, all: &[&Held]) -> pb::EnsembleSummary {
    let e = &h.ensemble;
    let others: HashSet<usize> = all
        .iter()
        .filter(|o| !Arc::ptr_eq(&o.ensemble, e))
        .flat_map(|o| &o.ensemble.models)
        .map(runtime_address)
        .collect();
    pb::EnsembleSummary {
        name: e.name.clone(),
        version: e.version.clone(),
        manifest: e.manifest.display().to_string(),
        manifest_sha256: h.manifest_sha256.clone(),
        models_digest: models_digest(e),
        model_count: e.models.len() as u32,
        models: e
            .models
            .iter()
            .map(|m| pb::ModelDigest {
                name: m.spec.name.clone(),
                kind: m.spec.kind.as_str().to_owned(),
                sha256: m.sha256.clone(),
                bytes: m.bytes,
                shared: others.contains(&runtime_address(m)),
                provenance: Some(provenance(&m.provenance)),
            })
            .collect(),
        models_reused: e.reused as u32,
        load_seconds: e.load_seconds,
        bytes: e.bytes(),
        loaded_at_unix: unix_seconds(h.loaded_at),
        trigger: h.trigger.as_str().to_owned(),
        validation_set: h
            .validation_set
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        validation: h.validation.as_ref().map(|(v, _)| v.clone()),
        digest: e.digest.clone(),
    }
}

/// sha256 over every model's name, file sha256 and load identity, in manifest order.
pub fn models_digest(e: &Ensemble) -> String {
    let mut hasher = Sha256::new();
    for m in &e.models {
        hasher.update(m.spec.name.as_bytes());
        hasher.update(b"\t");
        hasher.update(m.identity.as_bytes());
        hasher.update(b"\n");
    }
    hex(&hasher.finalize())
}

pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A name, version and digest, as responses carry them.
pub fn ensemble_ref(e: &Ensemble) -> pb::EnsembleRef {
    pb::EnsembleRef {
        name: e.name.clone(),
        version: e.version.clone(),
        digest: e.digest.clone(),
    }
}

/// A model's provenance as its proto message (the admin status and `GET /v1/ensemble` show it).
pub fn provenance(p: &Provenance) -> pb::Provenance {
    fn file(f: &FileProvenance) -> pb::FileProvenance {
        pb::FileProvenance {
            source: f.source.clone(),
            file: f.file.clone(),
            sha256: f.sha256.clone(),
            bytes: f.bytes,
            registry: f.registry.as_ref().map(|r| pb::RegistryOrigin {
                tracking_uri: r.tracking_uri.clone(),
                model: r.model.clone(),
                version: r.version.clone(),
                alias: r.alias.clone(),
                run_id: r.run_id.clone(),
                run_name: r.run_name.clone(),
                experiment_id: r.experiment_id.clone(),
                artifact_uri: r.artifact_uri.clone(),
                params: r.params.clone(),
                tags: r.tags.clone(),
                datasets: r
                    .datasets
                    .iter()
                    .map(|d| pb::Dataset {
                        name: d.name.clone(),
                        digest: d.digest.clone(),
                        source_type: d.source_type.clone(),
                        source: d.source.clone(),
                        context: d.context.clone(),
                    })
                    .collect(),
            }),
        }
    }
    pb::Provenance {
        model: Some(file(&p.model)),
        labels: p.labels.as_ref().map(file),
        locked: p.locked,
        declared: p.declared.clone(),
    }
}
