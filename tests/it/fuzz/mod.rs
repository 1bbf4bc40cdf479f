//! Fuzzing what the server takes from outside: manifests, the own JSON API, V2 JSON and binary
//! tensors, the protobuf requests of both gRPC services, and model files' headers; and the HTTP
//! API against its own OpenAPI document, with schemathesis (`openapi`).
//!
//! Each target runs its oracle over inputs made two ways: byte-level mutations of a committed
//! seed corpus (`tests/fuzz/corpus/<target>/`), and structure-aware values built from the
//! vocabulary the parsers know (field names, datatypes, shapes), which reach deeper than random
//! bytes. proptest drives both (the stable toolchain has no libFuzzer); the RNG is seeded, so a
//! run is repeatable and CI's short run is the same every time. A longer run:
//!
//! ```sh
//! LASTMILE_FUZZ_CASES=20000 LASTMILE_FUZZ_SEED=7 cargo test --release --test it fuzz:: -- --nocapture
//! ```
//!
//! The oracles: nothing panics or aborts; every refusal is a 4xx (or a gRPC status other than
//! INTERNAL / UNKNOWN) with a message; a model file that cannot be loaded is an error, never a
//! huge allocation.

mod api;
mod manifest;
mod models;
mod mutate;
mod openapi;
mod proto;

use std::path::PathBuf;

use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Cases per target: `LASTMILE_FUZZ_CASES`, else `default` (CI's short run).
fn cases(default: u32) -> u32 {
    std::env::var("LASTMILE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A runner seeded from `LASTMILE_FUZZ_SEED` (default 0) and the target's name, with no
/// persistence files: a failure prints its (shrunk) input, which belongs in the corpus.
fn runner(target: &str, default_cases: u32) -> TestRunner {
    let seed: u64 = std::env::var("LASTMILE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    for (i, b) in target.bytes().take(24).enumerate() {
        bytes[8 + i] = b;
    }
    let config = Config {
        cases: cases(default_cases),
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// The committed seeds of `target`, every file of its corpus directory.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = crate::support::root()
        .join("tests/fuzz/corpus")
        .join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let seeds: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!seeds.is_empty(), "the corpus {} is empty", dir.display());
    seeds
}

/// Runs `runner` over `strategy`, failing the test with the shrunk input if the oracle does.
fn run<S: proptest::strategy::Strategy>(
    mut runner: TestRunner,
    target: &str,
    strategy: S,
    oracle: impl Fn(S::Value) -> Result<(), String>,
) where
    S::Value: std::fmt::Debug,
{
    let cases = runner.config().cases;
    let started = std::time::Instant::now();
    let result = runner.run(&strategy, |v| {
        oracle(v).map_err(proptest::test_runner::TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("fuzz target {target}: {e}");
    }
    let took = started.elapsed().as_secs_f64();
    eprintln!("fuzz target {target}: {cases} cases in {took:.1} s, nothing found");
}
