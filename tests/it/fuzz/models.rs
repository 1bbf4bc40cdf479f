//! Model files: a header that declares more than the file holds is an error before anything is
//! allocated (a fastText dictionary of 2^31 words once aborted the process), for every loader.

use std::sync::Arc;

use lastmile::runtime::fasttext::FastTextModel;
use proptest::prelude::*;

use super::{mutate, run, runner};
use crate::support::fixtures;

/// The fixtures, and the crafted file that once aborted the process: `ova.bin` with its
/// dictionary's size, words and labels (the 12 bytes at 64) set to 2^31-1, 2^31-2 and 1.
fn fasttext_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for f in [
        "softmax.bin",
        "ova.bin",
        "quantized.ftz",
        "quantized_cutoff.ftz",
    ] {
        seeds.push(std::fs::read(fixtures().join("fasttext").join(f)).unwrap());
    }
    let mut crafted = seeds[1].clone();
    for (k, v) in [i32::MAX, i32::MAX - 1, 1].into_iter().enumerate() {
        crafted[64 + 4 * k..68 + 4 * k].copy_from_slice(&v.to_le_bytes());
    }
    seeds.push(crafted);
    seeds
}

#[test]
fn a_corrupt_fasttext_file_is_an_error_never_an_abort() {
    let seeds = fasttext_seeds();
    // The header, the dictionary's counts and its first entries: where the sizes are declared.
    let inputs = prop_oneof![
        mutate::mutated_head(seeds.clone(), 160, 4),
        mutate::mutated(seeds, 4),
    ];
    let _servers = crate::support::server::in_process();
    run(runner("fasttext", 400), "fasttext", inputs, |bytes| {
        // Ok or Err are both fine: what may not happen is a panic or an abort.
        let _ = FastTextModel::from_bytes(&bytes);
        Ok(())
    });
}

#[test]
fn a_corrupt_onnx_file_is_an_error_never_a_crash() {
    let mut seeds = Vec::new();
    for f in ["mlp_float.onnx", "mlp_probs.onnx", "tfidf_lr_nozipmap.onnx"] {
        seeds.push(std::fs::read(fixtures().join("onnx").join(f)).unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let labels = fixtures().join("onnx/tfidf_lr_nozipmap.labels.txt");
    let inputs = prop_oneof![
        mutate::mutated_head(seeds.clone(), 96, 4),
        mutate::mutated(seeds, 4)
    ];
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    run(runner("onnx", 120), "onnx", inputs, |bytes| {
        let n = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.path().join(format!("m{n}.onnx"));
        std::fs::write(&path, &bytes).unwrap();
        let manifest = format!(
            "name = \"fuzz\"\nversion = \"1\"\n[[model]]\nname = \"m\"\nkind = \"onnx\"\n\
             path = \"{}\"\noutput = \"probabilities\"\nlabels_file = \"{}\"\nfields = [\"title\"]\n",
            path.display(),
            labels.display()
        );
        let manifest_path = dir.path().join(format!("m{n}.toml"));
        std::fs::write(&manifest_path, manifest).unwrap();
        // Loading through the manifest reaches the ONNX loader exactly as a deploy does.
        let _ = lastmile::ensemble::Ensemble::load(&manifest_path, 1);
        let _ = std::fs::remove_file(&path);
        Ok(())
    });
}
