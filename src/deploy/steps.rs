//! The deployer's steps, each run inside one exclusive operation: open (load and warm up),
//! validate, promote, and the rejection that any of them may end in.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::gate::{measure_both, metrics, Decision, MeasureError};
use super::{DeployError, Deployer, GateRequest, Reason, Stage};
use crate::ensemble::{Ensemble, FieldValue, Loader, Manifest, ManifestError, ValidItem};
use crate::hooks;
use crate::proto::lastmile::v1 as pb;
use crate::registry::{ensemble_ref, unix_seconds, Held, Slot, Trigger};
use crate::runtime::InputKind;
use crate::telemetry;

impl Deployer {
    pub(super) fn candidate(&self) -> Result<Held, DeployError> {
        self.registry.candidate().ok_or(DeployError::NoCandidate)
    }

    pub(super) fn swap_result(
        &self,
        outcome: &str,
        validation: Option<pb::Validation>,
    ) -> pb::SwapResult {
        let status = self.registry.status();
        pb::SwapResult {
            outcome: outcome.into(),
            live: status.live,
            previous: status.previous,
            validation,
        }
    }

    pub(super) async fn promote_or_release(
        &self,
        candidate: Held,
        req: &GateRequest,
        trigger: Trigger,
    ) -> Result<pb::SwapResult, DeployError> {
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

    /// Keeps the rejection in the status and returns the error that says it.
    fn reject(
        &self,
        stage: Stage,
        trigger: Trigger,
        manifest: &Path,
        candidate: Option<&Ensemble>,
        reason: Reason,
        validation: Option<pb::Validation>,
    ) -> DeployError {
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
            reason: reason.to_string(),
            validation,
        });
        DeployError::Rejected {
            what: candidate_name(candidate),
            stage,
            reason: Box::new(reason),
            detail: String::new(),
        }
    }

    pub(super) async fn load_locked(
        &self,
        manifest: &Path,
        trigger: Trigger,
    ) -> Result<Held, DeployError> {
        let held = self.open(manifest, trigger).await?;
        drop(self.registry.stage(held.clone()));
        Ok(held)
    }

    /// Loads `manifest` beside the registry's ensembles (live, previous, candidate), sharing
    /// their unchanged models, and warms it up.
    pub(super) async fn open(
        &self,
        manifest: &Path,
        trigger: Trigger,
    ) -> Result<Held, DeployError> {
        let started = Instant::now();
        let (live, previous, candidate) = self.registry.held();
        let path = manifest.to_owned();
        let loader = Loader {
            threads: self.config.load_threads,
            sources: self.config.sources.clone(),
        };
        let loaded = tokio::task::spawn_blocking(move || {
            let shared: Vec<&Ensemble> = [Some(&live), previous.as_ref(), candidate.as_ref()]
                .into_iter()
                .flatten()
                .map(|h| &*h.ensemble)
                .collect();
            load_candidate(&path, &loader, &shared)
        })
        .await
        .map_err(|e| DeployError::Internal(format!("the loader thread failed: {e}")))?;
        let (ensemble, sha, validation_set) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                telemetry::candidate_loaded(started.elapsed());
                return Err(self.reject(Stage::Load, trigger, manifest, None, e.into(), None));
            }
        };
        let ensemble = Arc::new(ensemble);
        let warmed = self.warm_up(&ensemble).await;
        telemetry::candidate_loaded(started.elapsed());
        if let Err(reason) = warmed {
            let reason = Reason::Warmup(reason);
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
        hooks::pass(self.hooks.candidate_loaded()).await;
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

    pub(super) async fn validate_locked(
        &self,
        candidate: &Held,
        req: &GateRequest,
        trigger: Trigger,
    ) -> Result<pb::Validation, DeployError> {
        let gate = self
            .config
            .gate
            .with(req.min_accuracy, req.max_drop)
            .map_err(DeployError::Invalid)?;
        let Some(data) = req
            .validation
            .clone()
            .or_else(|| candidate.validation_set.clone())
        else {
            return Err(DeployError::Invalid(
                "no validation set: name one in the request (validation) or in the candidate's \
                 manifest (validation = \"valid.jsonl\")"
                    .into(),
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
        .await;
        telemetry::candidate_validated(started.elapsed());
        let manifest = candidate.ensemble.manifest.clone();
        let ((cand_metrics, items, cand_ref), (live_metrics, _, live_ref)) = match measured {
            Ok(m) => m,
            Err(MeasureError::Lost(e)) => return Err(DeployError::Internal(e)),
            Err(e) => {
                let reason = Reason::Unmeasured(e);
                let who = Some(&*candidate.ensemble);
                return Err(self.reject(Stage::Validate, trigger, &manifest, who, reason, None));
            }
        };
        // Their answers on the validation set are their drift references (unless a manifest
        // names a reference file of its own).
        for (e, r) in [(&candidate.ensemble, cand_ref), (&live, live_ref)] {
            if e.monitor.reference.is_none() {
                self.monitor.set_reference(e, r);
            }
        }
        let decision = gate.decide(cand_metrics.served().top1, live_metrics.served().top1);
        let mut validation = pb::Validation {
            data: data.display().to_string(),
            items: items as u32,
            candidate: Some(ensemble_ref(&candidate.ensemble)),
            candidate_metrics: Some(metrics(cand_metrics.served())),
            live: Some(ensemble_ref(&live)),
            live_metrics: Some(metrics(live_metrics.served())),
            min_accuracy: gate.min_accuracy,
            max_drop: gate.max_drop,
            passed: decision.passed,
            reason: decision.reason.clone(),
            seconds: started.elapsed().as_secs_f64(),
            ..pb::Validation::default()
        };
        let experiment = req
            .mlflow_experiment
            .clone()
            .or_else(|| self.config.mlflow_experiment.clone());
        if let Some(experiment) = experiment {
            let logged = self
                .log_validation(
                    &candidate.ensemble,
                    cand_metrics,
                    &data,
                    &validation,
                    trigger,
                    experiment,
                )
                .await;
            match logged {
                Ok(run_id) => validation.mlflow_run_id = run_id,
                Err(e) => validation.mlflow_error = e,
            }
        }
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
                Reason::BelowGate(decision),
                Some(validation.clone()),
            );
        }
        Ok(validation)
    }

    pub(super) async fn promote_locked(
        &self,
        candidate: Held,
        req: &GateRequest,
        trigger: Trigger,
    ) -> Result<pb::SwapResult, DeployError> {
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
            return Err(DeployError::Rejected {
                what: candidate_name(Some(&candidate.ensemble)),
                stage: Stage::Validate,
                reason: Box::new(Reason::BelowGate(Decision {
                    passed: false,
                    reason: v.reason.clone(),
                })),
                detail: format!(" (on {}, {} items)", v.data, v.items),
            });
        }
        let swapped = self
            .registry
            .promote(&candidate.ensemble)
            .ok_or(DeployError::CandidateReplaced)?;
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

/// How a rejection names the candidate.
fn candidate_name(candidate: Option<&Ensemble>) -> String {
    match candidate {
        Some(e) => format!("candidate {:?} version {:?}", e.name, e.version),
        None => "candidate".to_owned(),
    }
}

/// Reads and loads a manifest, sharing unchanged models with `shared`; the hash is the one
/// `Manifest::load` took of the text it parsed.
fn load_candidate(
    path: &Path,
    loader: &Loader,
    shared: &[&Ensemble],
) -> Result<(Ensemble, String, Option<PathBuf>), ManifestError> {
    let manifest = Manifest::load(path)?;
    let validation_set = manifest.validation.clone();
    let ensemble = Ensemble::open(manifest, loader, shared)?;
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
