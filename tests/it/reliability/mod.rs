//! Reliability under faults: a member that fails, panics or hangs is left out of the vote
//! (`degraded`); a request's deadline drops its queued work, and so does a client that goes away
//! (`deadlines`); work that would wait too long for the compute threads is refused at once
//! (`shedding`); a model file or the ONNX Runtime gone or corrupt at a reload (`faults`); an ONNX
//! run nobody waits for is stopped (`stopped`). Members are made to fail or hang by wrapping their runtimes
//! (`support::runtimes`); gates hold compute threads where a test needs them held, so nothing
//! here depends on timing.

mod cascade;
mod deadlines;
mod degraded;
mod faults;
mod shedding;
mod soak;
mod stopped;

use std::path::{Path, PathBuf};

use crate::support::starter_variant;

/// The starter manifest without model `name` (its whole `[[model]]` entry), as version `version`.
pub(crate) fn starter_without(dir: &Path, name: &str, version: &str) -> PathBuf {
    starter_variant(dir, version, |text| {
        let mut parts: Vec<String> = text.split("\n[[model]]\n").map(str::to_owned).collect();
        let at = parts
            .iter()
            .position(|p| p.starts_with(&format!("name = \"{name}\"")))
            .unwrap_or_else(|| panic!("the starter has a model {name:?}"));
        // The entry ends at the next table (the last model's is followed by `[vote]`).
        let rest = parts[at].find("\n[").map(|i| parts[at][i..].to_owned());
        parts.remove(at);
        let mut text = parts.join("\n[[model]]\n");
        text += &rest.unwrap_or_default();
        text
    })
}

/// The starter manifest with `lines` added to model `name`'s entry.
pub(crate) fn starter_with(dir: &Path, name: &str, lines: &str) -> PathBuf {
    starter_variant(dir, "1", |text| {
        let header = format!("\n[[model]]\nname = \"{name}\"\n");
        assert!(text.contains(&header), "the starter has a model {name:?}");
        text.replace(&header, &format!("{header}{lines}\n"))
    })
}

/// The starter manifest with top-level `keys` first and `tables` at the end.
pub(crate) fn starter_keys(dir: &Path, keys: &str, tables: &str) -> PathBuf {
    starter_variant(dir, "1", |text| format!("{keys}\n{text}\n{tables}\n"))
}
