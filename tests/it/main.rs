//! lastmile's integration tests, one binary: the real server started in this process on free
//! ports (or the real binary as a child process) and talked to with real clients.
//!
//! - `serve`: the serving API over every transport, operations, shutdown, Triton's client;
//! - `hotswap`: deploys through the validation gate, rollback, auth, reuse, signals, under load;
//! - `shadow`: a candidate answering mirrored live traffic, compared;
//! - `monitor`: members' influence, the live monitor, prediction drift, the HTML report;
//! - `cli`: the `lastmile` subcommands as an operator runs them;
//! - `reliability`: degraded answers, deadlines, cancellation, shedding;
//! - `provenance`: models from a real MLflow registry, lock files, the digest on every path,
//!   runs logged to MLflow;
//! - `batch`: `lastmile batch` in every format, resumed after SIGKILL, and the Spark helpers;
//! - `fuzz`: manifests, both JSON APIs, V2 binary tensors, both protobuf services and model
//!   files, mutated from a seed corpus and built from the parsers' vocabulary;
//! - `deploy`: the Kubernetes and KServe manifests against their schemas and the server;
//! - `exact`: parity with official fastText and onnxruntime, and what batching must not change;
//! - `container`: the Dockerfile, linted, built with podman and run as the binary runs.
//!
//! Every test builds its server with [`support::TestServer::builder`].

mod batch;
mod cli;
mod container;
mod deploy;
mod exact;
mod fuzz;
mod hotswap;
mod monitor;
mod provenance;
mod reliability;
mod serve;
mod shadow;
mod support;
