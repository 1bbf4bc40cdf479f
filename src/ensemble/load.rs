//! Turning a checked manifest into a servable [`Ensemble`]: finding every model's files (a path
//! or the registry, see [`super::source`]) and loading them (side by side on `threads` loader
//! threads), mapping their labels onto the label space, and resolving the vote.
//! A failure anywhere is one [`ManifestError`] naming the model and field; nothing is half-loaded.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::manifest::{
    read_label_file, LabelSource, Manifest, ManifestError, ModelKind, ModelSpec,
};
use super::source::{Located, Locator, Sources};
use super::{Ensemble, Model, Provenance};
use crate::combine::{Combiner, ModelView};
use crate::labels::LabelSpace;
use crate::runtime::fasttext::FastTextModel;
use crate::runtime::onnx::{OnnxModel, OnnxSpec};
use crate::runtime::{LoadError, Runtime};

/// How a manifest's models are loaded: on how many threads, and where their files come from.
#[derive(Debug, Clone, Default)]
pub struct Loader {
    /// Models loaded side by side (0: one per core).
    pub threads: usize,
    pub sources: Sources,
}

impl Loader {
    /// `threads` loader threads, files from their paths or the default cache.
    pub fn threads(threads: usize) -> Loader {
        Loader {
            threads,
            sources: Sources::default(),
        }
    }
}

impl Ensemble {
    /// Parses the manifest at `path` and loads every model it names, `threads` at a time (0: one
    /// per core).
    pub fn load(path: &Path, threads: usize) -> Result<Ensemble, ManifestError> {
        Self::load_with(path, &Loader::threads(threads), &[])
    }

    /// As [`Ensemble::load`], but a model identical to one of `previous`'s (same file content,
    /// same bindings and labels) is shared with it instead of loaded again: a retrain that changes
    /// a few models of fifty loads only those.
    pub fn load_reusing(
        path: &Path,
        threads: usize,
        previous: &[&Ensemble],
    ) -> Result<Ensemble, ManifestError> {
        Self::load_with(path, &Loader::threads(threads), previous)
    }

    /// [`Ensemble::load_reusing`] with files found as `loader` says (cache, tracking server,
    /// lock).
    pub fn load_with(
        path: &Path,
        loader: &Loader,
        previous: &[&Ensemble],
    ) -> Result<Ensemble, ManifestError> {
        let manifest = Manifest::load(path)?;
        Self::open(manifest, loader, previous)
    }

    /// [`Ensemble::load_reusing`] of a parsed manifest.
    pub fn from_manifest(
        manifest: Manifest,
        threads: usize,
        previous: &[&Ensemble],
    ) -> Result<Ensemble, ManifestError> {
        Self::open(manifest, &Loader::threads(threads), previous)
    }

    /// Loads a parsed manifest, phase by phase; the first error stops it.
    pub fn open(
        manifest: Manifest,
        loader: &Loader,
        previous: &[&Ensemble],
    ) -> Result<Ensemble, ManifestError> {
        let started = Instant::now();
        let loaded = load_models(&manifest, loader, previous)?;
        let fields = request_fields(&manifest)?;
        let model_labels = renamed_labels(&manifest, &loaded);
        let labels = label_space(&manifest, &model_labels)?;
        let Placed {
            models,
            views,
            reused,
        } = place_models(loaded, &model_labels, &labels, &fields, &manifest)?;
        let combiner = combiner(&manifest, &models, &labels, &fields)?;
        let names: Vec<String> = manifest.models.iter().map(|m| m.name.clone()).collect();
        let cascade = manifest
            .cascade
            .as_ref()
            .map(|c| super::Cascade::new(c, &names, &models, &combiner));
        let stats = super::Stats::new(models.len());
        Ok(Ensemble {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            manifest: manifest.path.clone(),
            digest: super::digest(&manifest.sha256, &models),
            manifest_sha256: manifest.sha256.clone(),
            tracking_uri: manifest.tracking_uri.clone(),
            fields,
            models,
            views,
            labels,
            combiner,
            vote: manifest.vote.clone(),
            rules: manifest.rules.clone(),
            monitor: manifest.monitor.clone(),
            validation: manifest.validation.clone(),
            failure: manifest.failure.clone(),
            cascade,
            load_seconds: started.elapsed().as_secs_f64(),
            reused,
            stats,
        })
    }
}

/// Every model, `loader.threads` at a time, sharing the runtime of an identical one of
/// `previous`.
fn load_models(
    manifest: &Manifest,
    loader: &Loader,
    previous: &[&Ensemble],
) -> Result<Vec<Opened>, ManifestError> {
    let locator = Locator::new(manifest, &loader.sources)?;
    let loaded_before: HashMap<&str, &Arc<dyn Runtime>> = previous
        .iter()
        .flat_map(|e| &e.models)
        .map(|m| (m.identity.as_str(), &m.runtime))
        .collect();
    let loaded = parallel_map(loader.threads, manifest.models.len(), |i| {
        load_model(manifest, i, &locator, &loaded_before)
    });
    loaded.into_iter().collect()
}

/// Each model's labels under the manifest's renames: the names the label space is made of.
fn renamed_labels(manifest: &Manifest, loaded: &[Opened]) -> Vec<Vec<String>> {
    loaded
        .iter()
        .map(|opened| {
            opened
                .runtime
                .get()
                .labels()
                .iter()
                .map(|l| manifest.renames.get(l).unwrap_or(l).clone())
                .collect()
        })
        .collect()
}

/// The models, ready to serve, and what the ensemble keeps about them as a whole.
struct Placed {
    models: Vec<Model>,
    /// The distinct field lists the models read.
    views: Vec<Vec<usize>>,
    /// How many runtimes are shared with an ensemble loaded before.
    reused: usize,
}

/// The models with their labels mapped onto the label space and fields onto the request's.
fn place_models(
    loaded: Vec<Opened>,
    model_labels: &[Vec<String>],
    labels: &LabelSpace,
    fields: &[String],
    manifest: &Manifest,
) -> Result<Placed, ManifestError> {
    let mut views: Vec<Vec<usize>> = Vec::new();
    let mut models = Vec::with_capacity(loaded.len());
    let mut reused = 0;
    for (i, (opened, names)) in loaded.into_iter().zip(model_labels).enumerate() {
        let Opened {
            runtime,
            spec,
            provenance,
            identity,
        } = opened;
        let label_ids = labels.align(names).map_err(|reason| {
            manifest.model_error(i, Some("labels"), format!("{reason} (not in label_file)"))
        })?;
        if matches!(runtime, Loaded::Shared(_)) {
            reused += 1;
        }
        let (runtime, label_ids) = in_label_order(runtime, label_ids);
        let field_ids = field_ids(&spec, fields);
        let view = view_of(&mut views, &field_ids);
        models.push(Model {
            spec,
            bytes: provenance.model.bytes,
            sha256: provenance.model.sha256.clone(),
            provenance,
            identity,
            runtime,
            label_ids,
            field_ids,
            view,
        });
    }
    Ok(Placed {
        models,
        views,
        reused,
    })
}

/// A fresh model's columns put in label-space order once, so voting sweeps instead of scattering.
fn in_label_order(runtime: Loaded, mut label_ids: Vec<u32>) -> (Arc<dyn Runtime>, Vec<u32>) {
    match runtime {
        Loaded::Fresh(mut runtime) => {
            let mut order: Vec<usize> = (0..label_ids.len()).collect();
            order.sort_by_key(|&c| label_ids[c]);
            if order.iter().enumerate().any(|(j, &c)| j != c) {
                runtime.reorder_columns(&order);
                label_ids = order.iter().map(|&c| label_ids[c]).collect();
            }
            (Arc::from(runtime), label_ids)
        }
        // A shared model keeps the order it has (correct, if slower when the label space
        // changed).
        Loaded::Shared(runtime) => (runtime, label_ids),
    }
}

/// Where each of the model's fields is among the request fields.
fn field_ids(spec: &ModelSpec, fields: &[String]) -> Vec<usize> {
    spec.fields
        .iter()
        .map(|f| {
            fields
                .iter()
                .position(|g| g == f)
                .expect("fields hold every model field: this is a bug")
        })
        .collect()
}

/// The view of a model reading `field_ids`: models reading the same fields share one.
fn view_of(views: &mut Vec<Vec<usize>>, field_ids: &[usize]) -> usize {
    match views.iter().position(|v| *v == field_ids) {
        Some(v) => v,
        None => {
            views.push(field_ids.to_vec());
            views.len() - 1
        }
    }
}

/// The vote and rules resolved against the placed models; an error names its manifest line.
fn combiner(
    manifest: &Manifest,
    models: &[Model],
    labels: &LabelSpace,
    fields: &[String],
) -> Result<Combiner, ManifestError> {
    let model_views: Vec<ModelView<'_>> = models
        .iter()
        .map(|m| ModelView {
            name: &m.spec.name,
            weight: m.spec.weight,
            temperature: m.spec.temperature,
            group: m.spec.group.as_deref(),
            label_ids: &m.label_ids,
        })
        .collect();
    Combiner::new(
        &manifest.vote,
        &manifest.rules,
        &model_views,
        labels,
        fields,
    )
    .map_err(|e| {
        let place = e.place();
        ManifestError {
            file: manifest.path.clone(),
            line: manifest.line_of_place(place),
            model: None,
            field: None,
            reason: e.to_string(),
        }
    })
}

/// `f(0..count)` on up to `threads` scoped threads (0: one per core), results in index order.
fn parallel_map<T: Send>(threads: usize, count: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => n,
    }
    .min(count.max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= count {
                            return mine;
                        }
                        mine.push((i, f(i)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a loader thread panicked: this is a bug"))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, t)| t).collect()
}

/// A model file, found, hashed, and loaded or taken from an ensemble loaded before.
struct Opened {
    runtime: Loaded,
    /// The manifest's entry, with the files it reads where they were found.
    spec: ModelSpec,
    provenance: Provenance,
    identity: String,
}

/// A runtime this load made (its columns may still be reordered) or one it shares.
enum Loaded {
    Fresh(Box<dyn Runtime>),
    Shared(Arc<dyn Runtime>),
}

impl Loaded {
    fn get(&self) -> &dyn Runtime {
        match self {
            Loaded::Fresh(r) => r.as_ref(),
            Loaded::Shared(r) => r.as_ref(),
        }
    }
}

/// Finds and hashes model `i`'s files, then shares the runtime of an identical model loaded
/// before, or loads it.
fn load_model(
    manifest: &Manifest,
    i: usize,
    locator: &Locator<'_>,
    loaded_before: &HashMap<&str, &Arc<dyn Runtime>>,
) -> Result<Opened, ManifestError> {
    let Located {
        path,
        labels,
        provenance,
    } = locator.locate(i)?;
    let mut spec = manifest.models[i].clone();
    spec.path = path;
    if let Some(labels) = labels {
        spec.labels = LabelSource::File(labels);
    }
    let labels_sha = provenance.labels.as_ref().map_or("", |l| l.sha256.as_str());
    // Everything that decides what the runtime computes: the file, how it is read, its labels.
    let identity = format!(
        "{}|{}|{:?}|{:?}|{:?}|{labels_sha}",
        spec.kind.as_str(),
        provenance.model.sha256,
        spec.feed,
        spec.onnx,
        spec.labels
    );
    let runtime = match loaded_before.get(identity.as_str()) {
        Some(&shared) => Loaded::Shared(Arc::clone(shared)),
        None => Loaded::Fresh(open(&spec).map_err(|e| {
            let (field, mut reason) = describe(&spec, e);
            if spec.registry.is_some() {
                reason += &format!(" (the file fetched for {})", spec.source);
            }
            manifest.model_error(i, field, reason)
        })?),
    };
    Ok(Opened {
        runtime,
        spec,
        provenance,
        identity,
    })
}

fn open(spec: &ModelSpec) -> Result<Box<dyn Runtime>, LoadError> {
    Ok(match spec.kind {
        ModelKind::FastText => Box::new(FastTextModel::load(&spec.path)?),
        ModelKind::Onnx => {
            let binding = spec
                .onnx
                .as_ref()
                .expect("ONNX models have a binding: this is a bug");
            let labels = spec.labels.to_onnx().map_err(LoadError::Labels)?;
            Box::new(OnnxModel::load(&OnnxSpec {
                path: spec.path.clone(),
                input: binding.input.clone(),
                feed: spec.feed.clone(),
                output: binding.output.clone(),
                scores: binding.scores,
                labels,
                intra_threads: binding.intra_threads,
            })?)
        }
    })
}

/// The manifest field a load error is about, and the error without the repeated path.
fn describe(spec: &ModelSpec, e: LoadError) -> (Option<&'static str>, String) {
    let labels_field = match spec.labels {
        LabelSource::File(_) => "labels_file",
        LabelSource::Metadata(_) => "labels_metadata",
        LabelSource::ZipMap => "labels_zipmap",
        LabelSource::Model => "path",
    };
    match e {
        LoadError::Io { .. } | LoadError::FastText { .. } | LoadError::Onnx { .. } => {
            (Some("path"), e.to_string())
        }
        LoadError::OnnxRuntimeMissing(m) => (None, m),
        LoadError::Labels(reason) => (Some(labels_field), reason),
        LoadError::Binding { field, reason } => (Some(field), reason),
    }
}

/// The request fields: the manifest's top-level `fields` if it declares them (every model's fields
/// must be among them), else every field a model reads, in order of first mention. Rules may only
/// name these, so a misspelt field in a rule is an error rather than a rule that never fires.
fn request_fields(manifest: &Manifest) -> Result<Vec<String>, ManifestError> {
    if let Some(declared) = &manifest.fields {
        for (i, m) in manifest.models.iter().enumerate() {
            if let Some(f) = m.fields.iter().find(|f| !declared.contains(f)) {
                return Err(manifest.model_error(
                    i,
                    Some("fields"),
                    format!(
                        "field {f:?} is not among the manifest's fields ({})",
                        declared.join(", ")
                    ),
                ));
            }
        }
        return Ok(declared.clone());
    }
    let mut fields: Vec<String> = Vec::new();
    for f in manifest.models.iter().flat_map(|m| &m.fields) {
        if !fields.contains(f) {
            fields.push(f.clone());
        }
    }
    Ok(fields)
}

/// The label space: the manifest's `label_file`, or the union of the models' (renamed) labels.
fn label_space(
    manifest: &Manifest,
    model_labels: &[Vec<String>],
) -> Result<LabelSpace, ManifestError> {
    let Some(path) = &manifest.label_file else {
        return Ok(LabelSpace::union(model_labels.iter().map(Vec::as_slice)));
    };
    let fail = |reason: String| ManifestError {
        file: manifest.path.clone(),
        line: None,
        model: None,
        field: Some("label_file".into()),
        reason,
    };
    let names = read_label_file(path).map_err(fail)?;
    LabelSpace::from_names(names).map_err(|e| fail(format!("{}: {e}", path.display())))
}
