//! lastmile: an ensemble inference server for fastText and ONNX text classifiers.

pub mod admin;
pub mod combine;
pub mod ensemble;
pub mod eval;
pub mod labels;
pub mod proto;
pub mod registry;
pub mod runtime;
pub mod scheduler;
pub mod server;
pub mod shadow;
pub mod telemetry;
mod wide;
