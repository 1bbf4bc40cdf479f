//! `lastmile lock` and the cache: a lock pins what was resolved (an alias moved since changes
//! nothing until `--update-lock`), a locked and cached model loads with MLflow down, a manifest
//! that names another source than its lock is refused, and a corrupted cache entry is detected
//! and fetched again.

use super::*;

#[test]
fn a_lock_pins_what_was_resolved_until_it_is_updated() {
    let m = mlflow();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cache_arg = cache.display().to_string();
    let text = registry_manifest(
        &m.uri,
        "locked",
        &[
            ("ft", "models:/ft-locked@champion"),
            ("local", &fasttext("ova.bin")),
        ],
        "",
    );
    let path = write(dir.path(), "manifest.toml", &text);
    let manifest = path.display().to_string();
    let (code, out, err) = lastmile(&["lock", &manifest, "--model-cache", &cache_arg], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ft-locked version 1"), "{out}");
    let lock = std::fs::read_to_string(dir.path().join("manifest.toml.lock")).unwrap();
    assert!(lock.contains(&sha_of(&fasttext("softmax.bin"))), "{lock}");
    assert!(lock.contains(&sha_of(&fasttext("ova.bin"))), "{lock}");

    // The alias moves: the lock still loads version 1.
    m.move_alias("ft-locked", "champion", 2);
    let (code, out, err) = lastmile(
        &["check", &manifest, "--models", "--model-cache", &cache_arg],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("(2 models as the lock file pins them)"),
        "{out}"
    );
    assert!(out.contains(&sha_of(&fasttext("softmax.bin"))), "{out}");
    let e = load(&path, m.sources(&cache)).unwrap();
    assert!(e.models[0].provenance.locked);
    assert_eq!(e.models[0].sha256, sha_of(&fasttext("softmax.bin")));
    let locked_digest = e.digest.clone();

    // MLflow unreachable: the locked, cached model still loads; without the lock, the load
    // fails naming the server.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let down = write(dir.path(), "down.toml", &text.replace(&m.uri, &dead));
    std::fs::copy(
        dir.path().join("manifest.toml.lock"),
        dir.path().join("down.toml.lock"),
    )
    .unwrap();
    let e = load(&down, m.sources(&cache)).unwrap();
    assert_eq!(e.models[0].sha256, sha_of(&fasttext("softmax.bin")));
    let unlocked = write(dir.path(), "unlocked.toml", &text.replace(&m.uri, &dead));
    let Err(error) = load(&unlocked, m.sources(&cache)) else {
        panic!("an unlocked registry model needs the server");
    };
    for needle in [
        &dead,
        "unreachable",
        "models:/ft-locked@champion",
        "model \"ft\"",
    ] {
        assert!(error.contains(needle), "{needle:?} not in: {error}");
    }

    // A locked file missing from the cache is fetched from the locked artifact.
    let fresh_cache = dir.path().join("fresh");
    let e = load(&path, m.sources(&fresh_cache)).unwrap();
    assert_eq!(e.digest, locked_digest);

    // The manifest now names another source than the lock: refused until locked again.
    let edited = text.replace(&fasttext("ova.bin"), &fasttext("hs.bin"));
    std::fs::write(&path, &edited).unwrap();
    let (code, _, err) = lastmile(&["check", &manifest, "--model-cache", &cache_arg], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("locks it to") && err.contains("lastmile lock"),
        "{err}"
    );
    // `lastmile lock` keeps what still matches (ft at version 1), locks the new file.
    let (code, out, err) = lastmile(&["lock", &manifest, "--model-cache", &cache_arg], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ft-locked version 1"), "{out}");
    // --update-lock re-resolves: the alias now says version 2.
    let (code, out, err) = lastmile(
        &[
            "lock",
            &manifest,
            "--update-lock",
            "--model-cache",
            &cache_arg,
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ft-locked version 2"), "{out}");
    let e = load(&path, m.sources(&cache)).unwrap();
    assert_eq!(e.models[0].sha256, sha_of(&fasttext("hs.bin")));
    assert_ne!(e.digest, locked_digest);
}

#[test]
fn a_corrupted_cache_entry_is_detected_and_fetched_again() {
    let m = mlflow();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let text = registry_manifest(&m.uri, "corrupt", &[("ft", "models:/ft-catalogue/2")], "");
    let path = write(dir.path(), "m.toml", &text);
    let first = load(&path, m.sources(&cache)).unwrap();
    let sha = sha_of(&fasttext("ova.bin"));
    let entry = cache.join("sha256").join(&sha);
    let mut bytes = std::fs::read(&entry).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&entry, &bytes).unwrap();

    let again = load(&path, m.sources(&cache)).unwrap();
    assert_eq!(again.models[0].sha256, sha);
    assert_eq!(again.digest, first.digest);
    assert_eq!(
        sha_of(&entry.display().to_string()),
        sha,
        "the entry is whole again"
    );
}
