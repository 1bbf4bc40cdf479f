//! ONNX models through ONNX Runtime (`ort`, loaded dynamically; see [`super::ort_env`]). Owns
//! loading one model file into a session, checking at load time that the manifest's bindings fit the
//! model (input and output names, types, shapes, label count), and scoring batches: one input tensor
//! per batch, one run, scores copied into the caller's buffer.

use std::borrow::Cow;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use ort::environment::Environment;
use ort::session::{OutputSelector, RunOptions, Session, SessionOutputs};
use ort::value::{DynValue, MapValueType, Tensor, TensorRef};

mod bind;
mod watch;

use bind::{
    bind_input, build_session, check_labels, check_output, metadata_labels, onnx_error, pick_input,
    pick_output, session_error,
};

use super::stop::{self, Abandoned};
use super::{ort_env, InputKind, Inputs, LoadError, RunError, Runtime, Scores};
use crate::wide::softmax;
use watch::{SharedOptions, Watch};

/// What a model's input tensor is fed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feed {
    /// A string tensor (`[N]` or `[N,1]`, as the model declares) of the joined text fields.
    Text,
    /// A float tensor `[N, width]` from one numeric field of the request.
    Features,
}

/// Whether the score tensor holds probabilities or logits (softmax applied on our side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreKind {
    Probabilities,
    Logits,
}

/// Where the model's class labels come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnnxLabels {
    /// Read by the manifest layer from a labels file, one per line, in output column order.
    List(Vec<String>),
    /// A key of the model's custom metadata holding the labels (JSON array or one per line).
    Metadata { key: String },
    /// The keys of sklearn-onnx's ZipMap output (sequence of maps).
    ZipMap,
}

/// Everything needed to load one ONNX model, already validated by the manifest layer.
#[derive(Debug, Clone)]
pub struct OnnxSpec {
    pub path: PathBuf,
    /// Input tensor name; `None` means the model's only input.
    pub input: Option<String>,
    pub feed: Feed,
    /// Score tensor name; `None` means: the only float output, else sklearn-onnx's probability
    /// tensor or ZipMap output.
    pub output: Option<String>,
    pub scores: ScoreKind,
    pub labels: OnnxLabels,
    /// Intra-op threads per run (1 by default: parallelism comes from running models side by side).
    /// 0 is read as 1, never as onnxruntime's "one thread per core".
    pub intra_threads: usize,
}

/// Output names sklearn-onnx gives its probability tensor / ZipMap, tried when none is named.
const SKLEARN_OUTPUTS: [&str; 2] = ["probabilities", "output_probability"];

/// A loaded ONNX model.
pub struct OnnxModel {
    path: PathBuf,
    labels: Vec<String>,
    input_kind: InputKind,
    input: InputBinding,
    output: OutputBinding,
    scores: ScoreKind,
    /// `Session::run` takes `&mut`: one session behind a lock (a pool of sessions can replace it).
    slot: Mutex<Slot>,
}

struct Slot {
    session: Session,
    /// Asks for the score output only; shared with the watchdog, which may set its terminate
    /// flag while a run is on (see [`crate::runtime::stop`]).
    options: Arc<SharedOptions>,
}

struct InputBinding {
    name: String,
    /// Declared rank: 1 (`[N]`, text only) or 2 (`[N,1]` text, `[N,W]` features).
    rank: usize,
    /// Rows per run when the model's batch dimension is fixed to 1 (exporters without dynamic axes).
    max_rows: Option<usize>,
}

enum OutputBinding {
    /// A float tensor `[N, labels]`; our column c is its column `source_of[c]` (None: the same).
    Tensor {
        name: String,
        source_of: Option<Vec<usize>>,
    },
    /// sklearn-onnx's ZipMap: one map per row, label → score.
    ZipMap { name: String, keys: ZipKeys },
}

/// How ZipMap keys map onto columns.
struct ZipKeys {
    int_keys: bool,
    /// Column of each key, by key.
    column: HashMap<String, usize>,
    /// The keys in the order onnxruntime returned them at warm-up, with their columns: rows are
    /// matched against this first, so the hash map is only consulted if the order ever changes.
    order: Vec<(String, usize)>,
}

impl OnnxModel {
    /// Loads the file, builds a session, checks the bindings and runs one warm-up row.
    pub fn load(spec: &OnnxSpec) -> Result<Self, LoadError> {
        let env = ort_env::environment()?;
        std::fs::metadata(&spec.path).map_err(|source| LoadError::Io {
            path: spec.path.clone(),
            source,
        })?;
        // `ort` has asserts and `unreachable!`s on exotic type information: a panic while loading a
        // user's model must not take the server down.
        catch_unwind(AssertUnwindSafe(|| Self::load_inner(env, spec))).unwrap_or_else(|_| {
            Err(LoadError::Onnx {
                path: spec.path.clone(),
                reason: "onnxruntime bindings panicked while loading this model".into(),
            })
        })
    }

    fn load_inner(env: &Environment, spec: &OnnxSpec) -> Result<Self, LoadError> {
        let session =
            build_session(env, spec).map_err(|reason| session_error(&spec.path, reason))?;

        let input_outlet = pick_input(&session, spec)?;
        let (input, input_kind) = bind_input(input_outlet, &spec.feed)?;

        let output_outlet = pick_output(&session, spec)?;
        let output_name = output_outlet.name().to_owned();
        let (zipmap_int_keys, width) = check_output(output_outlet, &spec.labels)?;

        let labels = match &spec.labels {
            OnnxLabels::List(list) => Some((list.clone(), "labels file")),
            OnnxLabels::Metadata { key } => Some((metadata_labels(&session, key)?, "metadata")),
            OnnxLabels::ZipMap => None,
        };
        if let Some((labels, source)) = &labels {
            check_labels(labels, source)?;
            if let Some(width) = width {
                if width != labels.len() {
                    return Err(LoadError::Labels(format!(
                        "{source} has {} labels but output '{output_name}' has width {width}",
                        labels.len()
                    )));
                }
            }
        }

        let options = RunOptions::new()
            .map_err(|e| onnx_error(&spec.path, e))?
            .with_outputs(OutputSelector::no_default().with(output_name.clone()));
        let mut model = OnnxModel {
            path: spec.path.clone(),
            labels: labels.as_ref().map(|(l, _)| l.clone()).unwrap_or_default(),
            input_kind,
            input,
            output: match zipmap_int_keys {
                None => OutputBinding::Tensor {
                    name: output_name,
                    source_of: None,
                },
                Some(int_keys) => OutputBinding::ZipMap {
                    name: output_name,
                    keys: ZipKeys {
                        int_keys,
                        column: HashMap::new(),
                        order: Vec::new(),
                    },
                },
            },
            scores: spec.scores,
            slot: Mutex::new(Slot {
                session,
                options: Arc::new(SharedOptions(options)),
            }),
        };
        model.warm_up(labels.map(|(_, source)| source))?;
        Ok(model)
    }

    /// Runs one row: proves the model runs, fixes ZipMap key order, checks a dynamic output width.
    fn warm_up(&mut self, labels_source: Option<&str>) -> Result<(), LoadError> {
        let path = self.path.clone();
        let fail = |reason: String| LoadError::Onnx {
            path: path.clone(),
            reason: format!("warm-up run failed: {reason}"),
        };
        let zeros;
        let inputs = match self.input_kind {
            InputKind::Text => Inputs::Text(&["warm up"]),
            InputKind::Features { width } => {
                zeros = vec![0.0f32; width];
                Inputs::Features {
                    data: &zeros,
                    width,
                }
            }
        };
        let source = labels_source.unwrap_or("ZipMap keys");
        let slot = self.slot.get_mut().unwrap_or_else(PoisonError::into_inner);
        let outputs =
            run_session(slot, &self.input, &inputs, 0, 1).map_err(|e| fail(e.to_string()))?;
        match &mut self.output {
            OutputBinding::Tensor { name, .. } => {
                let value = outputs
                    .get(name.as_str())
                    .ok_or_else(|| fail(format!("no output '{name}'")))?;
                let (shape, _) = value
                    .try_extract_tensor::<f32>()
                    .map_err(|e| fail(e.to_string()))?;
                let width = shape.get(1).copied().unwrap_or(0);
                if shape.len() != 2 || shape[0] != 1 {
                    return Err(fail(format!(
                        "output '{name}' has shape {shape:?} for one row, expected [1, labels]"
                    )));
                }
                if width as usize != self.labels.len() {
                    return Err(LoadError::Labels(format!(
                        "{source} has {} labels but output '{name}' has width {width}",
                        self.labels.len()
                    )));
                }
            }
            OutputBinding::ZipMap { name, keys } => {
                let value = outputs
                    .get(name.as_str())
                    .ok_or_else(|| fail(format!("no output '{name}'")))?;
                let mut rows = zipmap_rows(value, keys.int_keys).map_err(fail)?;
                let first = rows
                    .pop()
                    .ok_or_else(|| fail("empty ZipMap output".into()))?;
                let found: Vec<String> = first.into_iter().map(|(k, _)| k).collect();
                if self.labels.is_empty() {
                    self.labels = found.clone();
                    check_labels(&self.labels, source)?;
                } else {
                    let mut want = self.labels.clone();
                    let mut have = found.clone();
                    want.sort();
                    have.sort();
                    if want != have {
                        return Err(LoadError::Labels(format!(
                            "{source} has labels {:?} but output '{name}' has keys {found:?}",
                            self.labels
                        )));
                    }
                }
                let column: HashMap<String, usize> = self
                    .labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (l.clone(), i))
                    .collect();
                keys.order = found.iter().map(|k| (k.clone(), column[k])).collect();
                keys.column = column;
            }
        }
        Ok(())
    }

    /// [`Runtime::run`], watched for being abandoned when `abandoned` is given: the session's
    /// run is then stopped through its terminate flag, which is cleared again before the slot
    /// is let go (whatever way the run ends), so the next run starts unflagged.
    fn run_watched(
        &self,
        inputs: &Inputs<'_>,
        out: &mut Scores,
        abandoned: Option<Abandoned>,
    ) -> Result<(), RunError> {
        self.check_inputs(inputs)?;
        if inputs.rows() == 0 {
            out.reset(0, self.labels.len());
            return Ok(());
        }
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let watch = abandoned.map(|a| Watch {
            watched: Some(stop::watch(
                a,
                Arc::clone(&slot.options) as Arc<dyn stop::Stop>,
            )),
            options: Arc::clone(&slot.options),
        });
        // The bindings have asserts on their way (map extraction); a panic must become an error.
        let ran = catch_unwind(AssertUnwindSafe(|| self.run_batch(&mut slot, inputs, out)))
            .unwrap_or_else(|_| {
                Err(RunError::Runtime(
                    "onnxruntime bindings panicked while running".into(),
                ))
            });
        let stopped = watch.is_some_and(Watch::end);
        // The next run may start while this one's scores are normalised.
        drop(slot);
        if stopped {
            return Err(RunError::Stopped);
        }
        ran?;
        if self.scores == ScoreKind::Logits {
            for chunk in out.data.chunks_mut(self.labels.len().max(1)) {
                softmax(chunk, 0.0);
            }
        }
        Ok(())
    }

    fn run_batch(
        &self,
        slot: &mut Slot,
        inputs: &Inputs<'_>,
        out: &mut Scores,
    ) -> Result<(), RunError> {
        let rows = inputs.rows();
        let cols = self.labels.len();
        out.rows = rows;
        out.cols = cols;
        out.data.clear();
        out.data.reserve(rows * cols);
        let step = self.input.max_rows.unwrap_or(rows).max(1);
        let mut start = 0;
        while start < rows {
            let end = (start + step).min(rows);
            let outputs = run_session(slot, &self.input, inputs, start, end)?;
            match &self.output {
                OutputBinding::Tensor { name, source_of } => {
                    let value = outputs
                        .get(name.as_str())
                        .ok_or_else(|| RunError::Runtime(format!("no output '{name}'")))?;
                    let (shape, data) = value
                        .try_extract_tensor::<f32>()
                        .map_err(|e| RunError::Runtime(e.to_string()))?;
                    let n = end - start;
                    if shape.len() != 2 || shape[0] as usize != n || shape[1] as usize != cols {
                        return Err(RunError::Runtime(format!(
                            "output '{name}' has shape {shape:?}, expected [{n}, {cols}]"
                        )));
                    }
                    match source_of {
                        None => out.data.extend_from_slice(data),
                        // Gathered in our column order: the writes stream into `out` (often
                        // cold memory) instead of zeroing it and then scattering into it.
                        Some(source_of) => {
                            for src in data.chunks_exact(cols) {
                                out.data.extend(source_of.iter().map(|&s| src[s]));
                            }
                        }
                    }
                }
                OutputBinding::ZipMap { name, keys } => {
                    let value = outputs
                        .get(name.as_str())
                        .ok_or_else(|| RunError::Runtime(format!("no output '{name}'")))?;
                    let maps = zipmap_rows(value, keys.int_keys).map_err(RunError::Runtime)?;
                    if maps.len() != end - start {
                        return Err(RunError::Runtime(format!(
                            "output '{name}' has {} rows for {} inputs",
                            maps.len(),
                            end - start
                        )));
                    }
                    for map in maps {
                        let base = out.data.len();
                        out.data.resize(base + cols, 0.0);
                        let row = &mut out.data[base..];
                        fill_zipmap_row(row, map, keys, name)?;
                    }
                }
            }
            start = end;
        }
        Ok(())
    }

    fn check_inputs(&self, inputs: &Inputs<'_>) -> Result<(), RunError> {
        match (self.input_kind, inputs) {
            (InputKind::Text, Inputs::Text(_)) => Ok(()),
            (InputKind::Features { width }, Inputs::Features { data, width: w }) => {
                if *w != width {
                    Err(RunError::BadInput(format!(
                        "model takes {width} features per row, got {w}"
                    )))
                } else if data.len() % width != 0 {
                    Err(RunError::BadInput(format!(
                        "{} floats is not a whole number of rows of {width}",
                        data.len()
                    )))
                } else {
                    Ok(())
                }
            }
            (InputKind::Text, Inputs::Features { .. }) => {
                Err(RunError::BadInput("model takes text, got features".into()))
            }
            (InputKind::Features { .. }, Inputs::Text(_)) => {
                Err(RunError::BadInput("model takes features, got text".into()))
            }
        }
    }
}

impl Runtime for OnnxModel {
    fn reorder_columns(&mut self, order: &[usize]) {
        self.labels = order.iter().map(|&c| self.labels[c].clone()).collect();
        match &mut self.output {
            OutputBinding::Tensor { source_of, .. } => {
                // Compose with an earlier reordering: new column j is old column order[j], which
                // is source column old[order[j]].
                let old: Vec<usize> = source_of
                    .take()
                    .unwrap_or_else(|| (0..order.len()).collect());
                *source_of = Some(order.iter().map(|&c| old[c]).collect());
            }
            OutputBinding::ZipMap { keys, .. } => {
                let inverse = super::inverse_order(order);
                keys.column.values_mut().for_each(|c| *c = inverse[*c]);
                keys.order.iter_mut().for_each(|(_, c)| *c = inverse[*c]);
            }
        }
    }

    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn input_kind(&self) -> InputKind {
        self.input_kind
    }

    fn run(&self, inputs: &Inputs<'_>, out: &mut Scores) -> Result<(), RunError> {
        self.run_watched(inputs, out, None)
    }

    fn stoppable(&self) -> bool {
        true
    }

    fn run_stoppable(
        &self,
        inputs: &Inputs<'_>,
        out: &mut Scores,
        abandoned: Abandoned,
    ) -> Result<(), RunError> {
        self.run_watched(inputs, out, Some(abandoned))
    }
}

// ------------------------------------------------------------------------------------- running

/// Builds the input tensor for rows `start..end` and runs the session.
fn run_session<'s>(
    slot: &'s mut Slot,
    input: &InputBinding,
    inputs: &Inputs<'_>,
    start: usize,
    end: usize,
) -> Result<SessionOutputs<'s>, RunError> {
    let n = end - start;
    let err = |e: ort::Error| RunError::Runtime(e.to_string());
    let value: ort::session::SessionInputValue<'_> = match inputs {
        Inputs::Text(rows) => {
            // `from_string_array` wants `'static` elements, so borrowed `&str` rows will not do: one
            // owned copy per row (it copies each into a C string anyway). ONNX strings are C
            // strings: a NUL inside one row would fail the whole batch, so it becomes a space.
            let texts: Vec<String> = rows[start..end]
                .iter()
                .map(|t| {
                    if t.contains('\0') {
                        t.replace('\0', " ")
                    } else {
                        (*t).to_owned()
                    }
                })
                .collect();
            let tensor = if input.rank == 1 {
                Tensor::from_string_array(([n], texts.as_slice()))
            } else {
                Tensor::from_string_array(([n, 1], texts.as_slice()))
            };
            tensor.map_err(err)?.into()
        }
        Inputs::Features { data, width } => {
            let rows = &data[start * width..end * width];
            TensorRef::from_array_view(([n, *width], rows))
                .map_err(err)?
                .into()
        }
    };
    let Slot { session, options } = slot;
    session
        .run_with_options(vec![(Cow::from(input.name.as_str()), value)], &options.0)
        .map_err(err)
}

/// Reads a ZipMap output (sequence of maps) into one `(label, score)` list per row.
fn zipmap_rows(value: &DynValue, int_keys: bool) -> Result<Vec<Vec<(String, f32)>>, String> {
    let e = |e: ort::Error| e.to_string();
    if int_keys {
        let maps = value
            .try_extract_sequence::<MapValueType<i64, f32>>()
            .map_err(e)?;
        maps.iter()
            .map(|m| {
                m.try_extract_key_values::<i64, f32>()
                    .map(|kv| kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                    .map_err(e)
            })
            .collect()
    } else {
        let maps = value
            .try_extract_sequence::<MapValueType<String, f32>>()
            .map_err(e)?;
        maps.iter()
            .map(|m| m.try_extract_key_values::<String, f32>().map_err(e))
            .collect()
    }
}

fn fill_zipmap_row(
    row: &mut [f32],
    map: Vec<(String, f32)>,
    keys: &ZipKeys,
    name: &str,
) -> Result<(), RunError> {
    if map.len() != row.len() {
        return Err(RunError::Runtime(format!(
            "output '{name}' has {} keys in a row, expected {}",
            map.len(),
            row.len()
        )));
    }
    for (i, (key, score)) in map.into_iter().enumerate() {
        let col = match keys.order.get(i) {
            Some((k, col)) if *k == key => *col,
            _ => *keys.column.get(&key).ok_or_else(|| {
                RunError::Runtime(format!("output '{name}' has unknown key {key:?}"))
            })?,
        };
        row[col] = score;
    }
    Ok(())
}
