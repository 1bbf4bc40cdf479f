//! The checkpoint: a small JSON file beside the output (`OUTPUT.lastmile-checkpoint`) saying how
//! far a run got: where the input stands after the last committed chunk, where the output and the
//! errors file end then ([`Mark`]), the counts so far, the settings that shape the output's
//! bytes, and which input it was (path, size, modification time, a hash of its first MiB).
//!
//! It is replaced atomically (written beside, synced, renamed) after each commit and removed when
//! the run completes. `--resume` continues from it only when the settings and the input are the
//! same; without `--resume`, a run refuses to overwrite an output whose checkpoint says it is
//! unfinished.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::read::Position;
use super::write::{beside, sync_dir, Mark};
use super::BatchError;

/// The checkpoint format's version.
const VERSION: u32 = 1;

/// Bytes of the input hashed to recognise it.
const HEAD_BYTES: u64 = 1 << 20;

/// Which input file a run read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputIdentity {
    pub path: PathBuf,
    pub size: u64,
    pub modified_nanos: u128,
    /// sha256 of its first MiB, hex.
    pub head_sha256: String,
}

impl InputIdentity {
    pub fn of(path: &Path) -> io::Result<InputIdentity> {
        let meta = fs::metadata(path)?;
        let modified_nanos = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let mut head = Vec::new();
        File::open(path)?.take(HEAD_BYTES).read_to_end(&mut head)?;
        Ok(InputIdentity {
            path: fs::canonicalize(path)?,
            size: meta.len(),
            modified_nanos,
            head_sha256: crate::ensemble::sha256_hex(&head),
        })
    }
}

/// How many rows a run has written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Output rows (scored or failed).
    pub rows: u64,
    pub failed: u64,
    pub chunks: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// What shapes the output's bytes (formats, options, the ensemble's digest, ...).
    pub settings: BTreeMap<String, String>,
    pub input: InputIdentity,
    /// Where the input stands after the last committed chunk.
    pub position: Position,
    pub mark: Mark,
    pub counts: Counts,
}

/// The checkpoint file of an output, and what it must agree with.
pub struct CheckpointFile {
    pub path: PathBuf,
    settings: BTreeMap<String, String>,
    input: InputIdentity,
}

impl CheckpointFile {
    pub fn new(
        output: &Path,
        settings: BTreeMap<String, String>,
        input: InputIdentity,
    ) -> CheckpointFile {
        CheckpointFile {
            path: beside(output, ".lastmile-checkpoint"),
            settings,
            input,
        }
    }

    fn load(&self) -> Result<Option<Checkpoint>, BatchError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(BatchError::Usage(format!(
                    "checkpoint {}: {e}",
                    self.path.display()
                )))
            }
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            BatchError::Usage(format!(
                "checkpoint {}: not a lastmile checkpoint ({e}); remove it to start over",
                self.path.display()
            ))
        })
    }

    /// What this run starts from: a checkpoint to resume (with `resume`, when one agrees with
    /// this run), or the start. Refuses to start over an unfinished run without `resume`, and to
    /// resume one made with other settings or from another input.
    pub fn prepare(&self, output: &Path, resume: bool) -> Result<Option<Checkpoint>, BatchError> {
        let found = self.load()?;
        let shown = self.path.display();
        let Some(found) = found else {
            if resume && output.exists() {
                return Err(BatchError::Usage(format!(
                    "--resume: {} has no checkpoint beside it ({shown}): it is complete, or not \
                     lastmile's; remove it to score again",
                    output.display()
                )));
            }
            return Ok(None);
        };
        if !resume {
            return Err(BatchError::Usage(format!(
                "{} is the output of an unfinished run ({} rows done, checkpoint {shown}): add \
                 --resume to continue it, or remove the checkpoint to start over",
                output.display(),
                found.counts.rows
            )));
        }
        if found.version != VERSION {
            return Err(BatchError::Usage(format!(
                "checkpoint {shown} is of version {}, this lastmile writes {VERSION}; remove it \
                 to start over",
                found.version
            )));
        }
        for (key, value) in &self.settings {
            let then = found.settings.get(key).map_or("(none)", String::as_str);
            if then != value {
                return Err(BatchError::Usage(format!(
                    "--resume: the unfinished run had {key} {then}, this one {value}; resume \
                     with the same settings (or remove {shown} to start over)"
                )));
            }
        }
        if found.input != self.input {
            return Err(BatchError::Usage(format!(
                "--resume: the input {} changed since the checkpoint {shown} (size, time or \
                 content); remove the checkpoint to start over",
                self.input.path.display()
            )));
        }
        Ok(Some(found))
    }

    /// Replaces the checkpoint atomically.
    pub fn save(&self, position: Position, mark: Mark, counts: Counts) -> io::Result<()> {
        let checkpoint = Checkpoint {
            version: VERSION,
            settings: self.settings.clone(),
            input: self.input.clone(),
            position,
            mark,
            counts,
        };
        let tmp = beside(&self.path, ".tmp");
        {
            let mut file = File::create(&tmp)?;
            serde_json::to_writer_pretty(&mut file, &checkpoint)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        sync_dir(self.path.parent().unwrap_or(Path::new(".")))
    }

    /// The run is complete.
    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(top_k: &str) -> BTreeMap<String, String> {
        [("top_k".to_owned(), top_k.to_owned())].into()
    }

    #[test]
    fn a_checkpoint_resumes_only_the_same_run() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        fs::write(&input, "{}\n").unwrap();
        let output = dir.path().join("out.jsonl");
        let id = InputIdentity::of(&input).unwrap();
        let file = CheckpointFile::new(&output, settings("5"), id.clone());
        assert_eq!(file.prepare(&output, false).unwrap(), None);
        assert_eq!(file.prepare(&output, true).unwrap(), None);

        let position = Position {
            byte: 3,
            line: 1,
            rows: 1,
        };
        let counts = Counts {
            rows: 1,
            failed: 0,
            chunks: 1,
        };
        file.save(position, Mark::default(), counts).unwrap();
        fs::write(&output, "x").unwrap();
        let e = file.prepare(&output, false).unwrap_err().to_string();
        assert!(e.contains("--resume") && e.contains("1 rows done"), "{e}");
        let found = file.prepare(&output, true).unwrap().unwrap();
        assert_eq!((found.position, found.counts), (position, counts));

        let other = CheckpointFile::new(&output, settings("3"), id);
        let e = other.prepare(&output, true).unwrap_err().to_string();
        assert!(e.contains("top_k 5") && e.contains("this one 3"), "{e}");

        fs::write(&input, "{\"a\": 1}\n").unwrap();
        let changed =
            CheckpointFile::new(&output, settings("5"), InputIdentity::of(&input).unwrap());
        let e = changed.prepare(&output, true).unwrap_err().to_string();
        assert!(e.contains("changed"), "{e}");

        file.remove().unwrap();
        let e = file.prepare(&output, true).unwrap_err().to_string();
        assert!(e.contains("no checkpoint"), "{e}");
    }
}
