//! lastmile: an ensemble inference server for fastText and ONNX text classifiers.
//!
//! # The path of a request
//!
//! 1. **Edge** ([`edge`]): a transport (own REST [`edge::router`], own gRPC, the Open Inference
//!    Protocol over either, [`edge::v2`]) turns its wire format into a transport-neutral
//!    [`service::Request`]: which model it addresses and its items in an [`service::Items`] form.
//! 2. **Snapshot** ([`service::Service::predict`]): ONE snapshot of the live ensemble is taken
//!    from the [`registry::Registry`] and kept to the end, so no request sees two versions; the
//!    items are read and checked against it; admission control takes places among the items in
//!    flight or refuses at once; a staged shadow picks the items it mirrors
//!    ([`shadow::ShadowSlot`]), and the live monitor those it analyses
//!    ([`monitor::live::Monitor`]).
//! 3. **Scheduler** ([`scheduler::ComputePool`]): each model's rows wait in that model's lane and
//!    run batched with other requests' rows on a fixed pool of compute threads, never on tokio's.
//! 4. **Runtime** ([`runtime::Runtime`]): fastText ([`runtime::fasttext`]) or ONNX Runtime
//!    ([`runtime::onnx`]) scores a batch; each model's scores are readied for the vote on the
//!    thread that ran it.
//! 5. **Combine** ([`combine::Combiner`]): the scores, aligned on one label space
//!    ([`labels::LabelSpace`]), are voted, the rules run, and the answer is ranked
//!    ([`ensemble::ItemAnswer`]).
//! 6. **Reply** ([`service::Reply`]): back up the same way; the shadow gets its items with their
//!    live answers, and the monitor its own, without being waited for; the transport writes its
//!    wire format. A failure anywhere is the layer's own error, mapped to a wire status once
//!    ([`edge::error`]).
//!
//! Before it: [`ensemble`] loads a manifest's models, from files or the MLflow model registry
//! ([`ensemble::source`], through [`mlflow`]), each with its provenance, and names the whole by
//! a digest that every answer carries.
//!
//! Beside the request path: [`batch`] scores files and pipes of rows through the same
//! [`service::Service`] with no listener (`lastmile batch`); [`monitor`] knows the members (each
//! one's influence on the answers, computed exactly; zombies; prediction drift; the HTML report),
//! offline and on sampled live traffic; [`deploy`] changes what is live (hot swap through the
//! validation gate, rollback, the shadow's operations, SIGHUP and the manifest watch); [`eval`]
//! measures an ensemble on labelled data; [`app`] wires the process together and is the only
//! module that knows every other; [`telemetry`] names every metric; [`hooks`] is where tests step in;
//! [`drain`] is the one shutdown signal.

pub mod app;
pub mod batch;
pub mod combine;
pub mod deploy;
pub mod drain;
pub mod edge;
pub mod ensemble;
pub mod eval;
pub mod hooks;
pub mod labels;
pub mod mlflow;
pub mod monitor;
pub mod proto;
pub mod registry;
pub mod runtime;
pub mod scheduler;
pub mod service;
pub mod shadow;
pub mod telemetry;
mod wide;
