//! The deployer: every way the live ensemble changes goes through here, whatever the trigger
//! (admin REST or gRPC, `lastmile deploy`, SIGHUP, the manifest watch).
//!
//! load → warm up → validate → promote, each step able to reject the candidate with a reason that
//! the status keeps. A rejected candidate never touches the live ensemble. Operations run one at a
//! time (a second waits for the first); loading and evaluating run on blocking threads, the
//! warm-up and the evaluation on the shared compute pool, the evaluation at low priority, behind
//! live traffic.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::watch;

use super::gate::{measure_both, metrics, Gate};
use crate::ensemble::{Ensemble, FieldValue, Manifest, ManifestError, ValidItem};
use crate::proto::lastmile::v1 as pb;
use crate::registry::{ensemble_ref, unix_seconds, Held, Registry, Slot, Trigger};
use crate::runtime::InputKind;
use crate::scheduler::ComputePool;
use crate::server::{ApiError, ErrorKind, Hold};
use crate::telemetry;

/// How candidates are loaded and judged.
#[derive(Debug, Clone)]
pub struct DeployConfig {
    /// Threads loading a candidate's models side by side (0: one per core).
    pub load_threads: usize,
    /// The gate when a request does not give its own thresholds.
    pub gate: Gate,
    /// Items run through a candidate before it may be promoted (0: no warm-up).
    pub warmup_items: usize,
    /// Items scored together while validating.
    pub eval_batch: usize,
    /// Test hook: every operation waits here once its candidate is loaded, until released, so a
    /// test can have a deploy in flight for certain. None in production.
    #[doc(hidden)]
    pub hold: Option<Arc<Hold>>,
}

impl Default for DeployConfig {
    fn default() -> Self {
        DeployConfig {
            load_threads: 0,
            gate: Gate::default(),
            warmup_items: 8,
            eval_batch: 64,
            hold: None,
        }
    }
}

/// What a validate, promote or deploy call asks besides the manifest.
#[derive(Debug, Clone, Default)]
pub struct GateRequest {
    /// Labelled JSON Lines on the server; None: the candidate manifest's `validation`.
    pub validation: Option<PathBuf>,
    pub min_accuracy: Option<f64>,
    pub max_drop: Option<f64>,
}

impl GateRequest {
    fn overrides(&self) -> bool {
        self.validation.is_some() || self.min_accuracy.is_some() || self.max_drop.is_some()
    }
}

/// Stage of a rejection, as the status names it.
#[derive(Debug, Clone, Copy)]
enum Stage {
    Load,
    Warmup,
    Validate,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Load => "load",
            Stage::Warmup => "warmup",
            Stage::Validate => "validate",
        }
    }
}

pub struct Deployer {
    registry: Arc<Registry>,
    pool: Arc<ComputePool>,
    config: DeployConfig,
    /// One operation at a time.
    busy: tokio::sync::Mutex<()>,
    /// Turns true when the server begins shutting down.
    closing: watch::Receiver<bool>,
}

impl Deployer {
    /// `closing` turns true when the server begins shutting down: from then on every operation,
    /// running or new, ends with a `shutting_down` error and changes nothing more.
    pub fn new(
        registry: Arc<Registry>,
        pool: Arc<ComputePool>,
        config: DeployConfig,
        closing: watch::Receiver<bool>,
    ) -> Self {
        Deployer {
            registry,
            pool,
            config,
            busy: tokio::sync::Mutex::new(()),
            closing,
        }
    }

    /// Runs `op` alone (one operation at a time), unless the server is shutting down. A deploy
    /// finishing during shutdown would swap in an ensemble the process is about to drop, and its
    /// caller would believe it live after the restart: so shutdown abandons the operation where it
    /// stands (its validation work is cancelled with it; a swap is never half done) and answers
    /// that nothing more was changed.
    async fn exclusive<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let mut closing = self.closing.clone();
        let closed = async move {
            // A dropped sender means no server to shut down: never.
            if closing.wait_for(|&c| c).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            () = closed => Err(ApiError::new(
                ErrorKind::ShuttingDown,
                "the server is shutting down: the operation was stopped where it stood and \
                 nothing more was changed (GET /admin/v1/status after the restart says what is live)",
            )),
            result = async {
                let _busy = self.busy.lock().await;
                op.await
            } => result,
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn status(&self) -> pb::RegistryStatus {
        self.registry.status()
    }

    /// Loads `manifest` as the candidate and warms it up.
    pub async fn load(
        &self,
        manifest: &Path,
        trigger: Trigger,
    ) -> Result<pb::EnsembleSummary, ApiError> {
        self.exclusive(async {
            let held = self.load_locked(manifest, trigger).await?;
            Ok(self.registry.summary(&held))
        })
        .await
    }

    /// Validates the candidate against the live ensemble. A candidate under the gate is an
    /// answer (`passed: false`, and the rejection kept), not an error.
    pub async fn validate(&self, req: &GateRequest) -> Result<pb::Validation, ApiError> {
        self.exclusive(async {
            let candidate = self.candidate()?;
            self.validate_locked(&candidate, req, Trigger::Admin).await
        })
        .await
    }

    /// Promotes the candidate, validating it first when needed.
    pub async fn promote(&self, req: &GateRequest) -> Result<pb::SwapResult, ApiError> {
        self.exclusive(async {
            let candidate = self.candidate()?;
            self.promote_locked(candidate, req, Trigger::Admin).await
        })
        .await
    }

    /// Load, validate when a validation set is known, promote; a rejected candidate is dropped.
    /// A candidate identical to the live ensemble (manifest text and every model) is not swapped
    /// in: the outcome is `unchanged`.
    pub async fn deploy(
        &self,
        manifest: &Path,
        req: &GateRequest,
        trigger: Trigger,
    ) -> Result<pb::SwapResult, ApiError> {
        self.exclusive(async {
            let candidate = self.load_locked(manifest, trigger).await?;
            let (live, _, _) = self.registry.held();
            if candidate.same_content(&live) {
                drop(self.registry.release(Slot::Candidate));
                tracing::info!(
                    trigger = trigger.as_str(),
                    version = %live.ensemble.version,
                    "deploy: the manifest and models are those already live; nothing to swap"
                );
                return Ok(pb::SwapResult {
                    outcome: "unchanged".into(),
                    live: Some(self.registry.summary(&live)),
                    previous: self.registry.held().1.map(|p| self.registry.summary(&p)),
                    validation: None,
                });
            }
            self.promote_or_release(candidate, req, trigger).await
        })
        .await
    }

    /// Stages `held`, an ensemble loaded beside the live one (a shadow), as the candidate and
    /// promotes it as [`Deployer::deploy`] does a freshly loaded one: through the gate, in one
    /// swap; rejected, it leaves the candidate slot.
    pub async fn promote_held(
        &self,
        held: Held,
        req: &GateRequest,
        trigger: Trigger,
    ) -> Result<pb::SwapResult, ApiError> {
        self.exclusive(async {
            drop(self.registry.stage(held.clone()));
            self.promote_or_release(held, req, trigger).await
        })
        .await
    }

    async fn promote_or_release(
        &self,
        candidate: Held,
        req: &GateRequest,
        trigger: Trigger,
    ) -> Result<pb::SwapResult, ApiError> {
        let result = self.promote_locked(candidate.clone(), req, trigger).await;
        if result.is_err() {
            // Rejected: free it (its summary and the reason stay in the status).
            let still = self
                .registry
                .candidate()
                .is_some_and(|c| Arc::ptr_eq(&c.ensemble, &candidate.ensemble));
            if still {
                drop(self.registry.release(Slot::Candidate));
            }
        }
        result
    }

    /// Swaps the live and the previous ensemble.
    pub async fn rollback(&self) -> Result<pb::SwapResult, ApiError> {
        self.exclusive(async {
            let swapped = self.registry.rollback().ok_or_else(|| {
                ApiError::new(
                    ErrorKind::Conflict,
                    "no previous ensemble to roll back to (none was replaced yet, it was released, or \
                     the server runs with --no-keep-previous)",
                )
            })?;
            tracing::info!(
                live = %swapped.live.ensemble.version,
                previous = %swapped.replaced.ensemble.version,
                "rolled back"
            );
            Ok(self.swap_result("rolled_back", None))
        })
        .await
    }

    /// Drops the previous ensemble or the candidate.
    pub async fn release(&self, slot: Slot) -> pb::RegistryStatus {
        let _busy = self.busy.lock().await;
        drop(self.registry.release(slot));
        self.registry.status()
    }

    fn candidate(&self) -> Result<Held, ApiError> {
        self.registry.candidate().ok_or_else(|| {
            ApiError::new(
                ErrorKind::Conflict,
                "no candidate: load one first (POST /admin/v1/load, or deploy)",
            )
        })
    }

    fn swap_result(&self, outcome: &str, validation: Option<pb::Validation>) -> pb::SwapResult {
        let status = self.registry.status();
        pb::SwapResult {
            outcome: outcome.into(),
            live: status.live,
            previous: status.previous,
            validation,
        }
    }

    /// Keeps the rejection and returns the error that says it.
    fn reject(
        &self,
        stage: Stage,
        trigger: Trigger,
        manifest: &Path,
        candidate: Option<&Ensemble>,
        reason: String,
        validation: Option<pb::Validation>,
    ) -> ApiError {
        tracing::warn!(
            stage = stage.as_str(),
            trigger = trigger.as_str(),
            manifest = %manifest.display(),
            %reason,
            "candidate rejected"
        );
        self.registry.reject(pb::Rejection {
            at_unix: unix_seconds(SystemTime::now()),
            trigger: trigger.as_str().into(),
            stage: stage.as_str().into(),
            manifest: manifest.display().to_string(),
            candidate: candidate.map(ensemble_ref),
            reason: reason.clone(),
            validation,
        });
        let what = match candidate {
            Some(e) => format!("candidate {:?} version {:?}", e.name, e.version),
            None => "candidate".to_owned(),
        };
        ApiError::new(
            ErrorKind::Rejected,
            format!("{what} rejected at {}: {reason}", stage.as_str()),
        )
    }

    /// Loads `manifest` beside the ensembles held (sharing their unchanged models) and warms it
    /// up, without staging it as the candidate: for an ensemble that runs beside the live one
    /// without replacing it (a shadow). A failure is kept as the last rejection.
    pub async fn load_beside(&self, manifest: &Path, trigger: Trigger) -> Result<Held, ApiError> {
        self.exclusive(async { self.open(manifest, trigger).await })
            .await
    }

    async fn load_locked(&self, manifest: &Path, trigger: Trigger) -> Result<Held, ApiError> {
        let held = self.open(manifest, trigger).await?;
        drop(self.registry.stage(held.clone()));
        Ok(held)
    }

    async fn open(&self, manifest: &Path, trigger: Trigger) -> Result<Held, ApiError> {
        let started = Instant::now();
        let (live, previous, candidate) = self.registry.held();
        let path = manifest.to_owned();
        let threads = self.config.load_threads;
        let loaded = tokio::task::spawn_blocking(move || {
            let shared: Vec<&Ensemble> = [Some(&live), previous.as_ref(), candidate.as_ref()]
                .into_iter()
                .flatten()
                .map(|h| &*h.ensemble)
                .collect();
            load_candidate(&path, threads, &shared)
        })
        .await
        .map_err(|e| ApiError::internal(format!("the loader thread failed: {e}")))?;
        let (ensemble, sha, validation_set) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                telemetry::candidate_loaded(started.elapsed());
                return Err(self.reject(Stage::Load, trigger, manifest, None, e.to_string(), None));
            }
        };
        let ensemble = Arc::new(ensemble);
        let warmed = self.warm_up(&ensemble).await;
        telemetry::candidate_loaded(started.elapsed());
        if let Err(reason) = warmed {
            return Err(self.reject(
                Stage::Warmup,
                trigger,
                manifest,
                Some(&ensemble),
                reason,
                None,
            ));
        }
        let held = Held::new(ensemble, sha, trigger, validation_set);
        tracing::info!(
            name = %held.ensemble.name,
            version = %held.ensemble.version,
            models = held.ensemble.models.len(),
            reused = held.ensemble.reused,
            seconds = started.elapsed().as_secs_f64(),
            "candidate loaded"
        );
        if let Some(hold) = &self.config.hold {
            hold.pass().await;
        }
        Ok(held)
    }

    /// Runs a few made-up items through every model, on the compute pool.
    async fn warm_up(&self, ensemble: &Arc<Ensemble>) -> Result<(), String> {
        if self.config.warmup_items == 0 {
            return Ok(());
        }
        let items = warmup_items(ensemble, self.config.warmup_items)?;
        self.pool
            .predict(ensemble, items)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    async fn validate_locked(
        &self,
        candidate: &Held,
        req: &GateRequest,
        trigger: Trigger,
    ) -> Result<pb::Validation, ApiError> {
        let gate = self
            .config
            .gate
            .with(req.min_accuracy, req.max_drop)
            .map_err(ApiError::bad_request)?;
        let Some(data) = req
            .validation
            .clone()
            .or_else(|| candidate.validation_set.clone())
        else {
            return Err(ApiError::bad_request(
                "no validation set: name one in the request (validation) or in the candidate's \
                 manifest (validation = \"valid.jsonl\")",
            ));
        };
        let started = Instant::now();
        let live = self.registry.snapshot();
        let measured = measure_both(
            &candidate.ensemble,
            &live,
            Arc::clone(&self.pool),
            data.clone(),
            self.config.eval_batch,
        )
        .await?;
        telemetry::candidate_validated(started.elapsed());
        let manifest = candidate.ensemble.manifest.clone();
        let ((cand_metrics, items), (live_metrics, _)) = match measured {
            Ok(m) => m,
            Err(reason) => {
                return Err(self.reject(
                    Stage::Validate,
                    trigger,
                    &manifest,
                    Some(&candidate.ensemble),
                    reason,
                    None,
                ))
            }
        };
        let decision = gate.decide(cand_metrics.top1, live_metrics.top1);
        let validation = pb::Validation {
            data: data.display().to_string(),
            items: items as u32,
            candidate: Some(ensemble_ref(&candidate.ensemble)),
            candidate_metrics: Some(metrics(&cand_metrics)),
            live: Some(ensemble_ref(&live)),
            live_metrics: Some(metrics(&live_metrics)),
            min_accuracy: gate.min_accuracy,
            max_drop: gate.max_drop,
            passed: decision.passed,
            reason: decision.reason.clone(),
            seconds: started.elapsed().as_secs_f64(),
        };
        self.registry
            .set_validation(&candidate.ensemble, validation.clone(), &live);
        if decision.passed {
            tracing::info!(reason = %decision.reason, "candidate validated");
        } else {
            // Kept as the last rejection; the candidate stays staged (promote refuses it).
            let _ = self.reject(
                Stage::Validate,
                trigger,
                &manifest,
                Some(&candidate.ensemble),
                decision.reason,
                Some(validation.clone()),
            );
        }
        Ok(validation)
    }

    async fn promote_locked(
        &self,
        candidate: Held,
        req: &GateRequest,
        trigger: Trigger,
    ) -> Result<pb::SwapResult, ApiError> {
        let live = self.registry.snapshot();
        let current = candidate
            .validation
            .as_ref()
            .filter(|(_, against)| std::ptr::eq(against.as_ptr(), Arc::as_ptr(&live)))
            .map(|(v, _)| v.clone());
        let validation = match current {
            Some(v) if !req.overrides() => Some(v),
            _ if req.overrides() || candidate.validation_set.is_some() => {
                Some(self.validate_locked(&candidate, req, trigger).await?)
            }
            _ => None,
        };
        if let Some(v) = validation.as_ref().filter(|v| !v.passed) {
            return Err(ApiError::new(
                ErrorKind::Rejected,
                format!(
                    "candidate {:?} version {:?} rejected at validate: {} (on {}, {} items)",
                    candidate.ensemble.name, candidate.ensemble.version, v.reason, v.data, v.items
                ),
            ));
        }
        let swapped = self.registry.promote(&candidate.ensemble).ok_or_else(|| {
            ApiError::new(
                ErrorKind::Conflict,
                "the candidate was replaced or released meanwhile",
            )
        })?;
        tracing::info!(
            trigger = trigger.as_str(),
            name = %swapped.live.ensemble.name,
            version = %swapped.live.ensemble.version,
            replaced = %swapped.replaced.ensemble.version,
            "promoted"
        );
        Ok(self.swap_result("promoted", validation))
    }
}

/// Reads and loads a manifest, sharing unchanged models with `shared`; the hash is the one
/// `Manifest::load` took of the text it parsed.
fn load_candidate(
    path: &Path,
    threads: usize,
    shared: &[&Ensemble],
) -> Result<(Ensemble, String, Option<PathBuf>), ManifestError> {
    let manifest = Manifest::load(path)?;
    let validation_set = manifest.validation.clone();
    let ensemble = Ensemble::from_manifest(manifest, threads, shared)?;
    let sha = ensemble.manifest_sha256.clone();
    Ok((ensemble, sha, validation_set))
}

/// `n` items with every field set: text fields to a few product-like words, numeric fields to
/// zeros of the width their models read.
fn warmup_items(e: &Ensemble, n: usize) -> Result<Vec<ValidItem>, String> {
    const WORDS: [&str; 4] = [
        "steel chef knife",
        "lightweight running shoes",
        "garden hose with nozzle",
        "wireless headphones",
    ];
    (0..n)
        .map(|i| {
            let fields = (0..e.fields.len())
                .map(|f| {
                    let width = e
                        .models
                        .iter()
                        .filter(|m| m.field_ids.contains(&f))
                        .find_map(|m| match m.runtime.input_kind() {
                            InputKind::Features { width } => Some(width),
                            InputKind::Text => None,
                        });
                    Some(match width {
                        Some(width) => FieldValue::Numbers(vec![0.0; width]),
                        None => FieldValue::Text(WORDS[i % WORDS.len()].to_owned()),
                    })
                })
                .collect();
            e.validate(ValidItem {
                fields,
                options: Default::default(),
            })
            .map_err(|err| format!("cannot make a warm-up item: {err}"))
        })
        .collect()
}
