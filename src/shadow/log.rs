//! The optional log of disagreeing items for offline review: JSON Lines (input fields, both
//! answers) in `path`, rotated once the file would pass `max_bytes`: `path` becomes `path.1`,
//! `path.1` becomes `path.2`, ... and the oldest beyond `files` is deleted. The log never fails
//! the shadow: a line that cannot be written is counted and warned about.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where and how much to log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub path: PathBuf,
    /// Largest size of one file; a line longer than this gets a file of its own.
    pub max_bytes: u64,
    /// Files kept, the one being written included (at least 1).
    pub files: usize,
}

impl LogConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LogConfig {
            path: path.into(),
            max_bytes: 16 * 1024 * 1024,
            files: 5,
        }
    }
}

/// A size-bounded, rotating JSON Lines file.
#[derive(Debug)]
pub struct DisagreementLog {
    config: LogConfig,
    file: Option<File>,
    size: u64,
    pub lines: u64,
    pub rotations: u64,
    pub errors: u64,
}

impl DisagreementLog {
    /// Nothing is opened until the first line.
    pub fn new(config: LogConfig) -> Self {
        DisagreementLog {
            config,
            file: None,
            size: 0,
            lines: 0,
            rotations: 0,
            errors: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.config.path
    }

    /// Appends one line (a newline is added), rotating first if it would not fit.
    pub fn write(&mut self, line: &str) {
        if let Err(e) = self.try_write(line) {
            if self.errors == 0 {
                tracing::warn!(path = %self.config.path.display(), "shadow disagreement log: {e}");
            }
            self.errors += 1;
            // Reopen on the next line.
            self.file = None;
        }
    }

    fn try_write(&mut self, line: &str) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.file.is_none() {
            self.open()?;
        }
        if self.size > 0 && self.size + len > self.config.max_bytes {
            self.rotate()?;
        }
        let file = self.file.as_mut().expect("opened above: this is a bug");
        let mut buffer = Vec::with_capacity(line.len() + 1);
        buffer.extend_from_slice(line.as_bytes());
        buffer.push(b'\n');
        file.write_all(&buffer)?;
        self.size += len;
        self.lines += 1;
        Ok(())
    }

    fn open(&mut self) -> io::Result<()> {
        if let Some(dir) = self.config.path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let files = self.config.files.max(1);
        let numbered = |i: usize| {
            let mut name = self.config.path.clone().into_os_string();
            name.push(format!(".{i}"));
            PathBuf::from(name)
        };
        if files == 1 {
            std::fs::remove_file(&self.config.path)?;
        } else {
            remove_if_exists(&numbered(files - 1))?;
            for i in (1..files - 1).rev() {
                rename_if_exists(&numbered(i), &numbered(i + 1))?;
            }
            std::fs::rename(&self.config.path, numbered(1))?;
        }
        self.rotations += 1;
        self.open()
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    #[test]
    fn lines_are_appended_and_rotated_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/disagreements.jsonl");
        let mut log = DisagreementLog::new(LogConfig {
            path: path.clone(),
            max_bytes: 20,
            files: 3,
        });
        // Each line is 10 bytes with its newline: two fit in 20 bytes, the third rotates.
        for i in 0..7 {
            log.write(&format!("{{\"i\":{i}}}  "));
        }
        assert_eq!((log.lines, log.rotations, log.errors), (7, 3, 0));
        let name = |s: &str| PathBuf::from(format!("{}{s}", path.display()));
        assert_eq!(read(&path), vec!["{\"i\":6}  "]);
        assert_eq!(read(&name(".1")), vec!["{\"i\":4}  ", "{\"i\":5}  "]);
        assert_eq!(read(&name(".2")), vec!["{\"i\":2}  ", "{\"i\":3}  "]);
        // Lines 0 and 1 went with the oldest file.
        assert!(!name(".3").exists());
        for p in [&path, &name(".1"), &name(".2")] {
            assert!(std::fs::metadata(p).unwrap().len() <= 20);
        }
    }

    #[test]
    fn one_file_is_truncated_on_rotation_and_long_lines_get_their_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let mut log = DisagreementLog::new(LogConfig {
            path: path.clone(),
            max_bytes: 10,
            files: 1,
        });
        log.write("short");
        log.write("a line longer than the limit");
        assert_eq!(read(&path), vec!["a line longer than the limit"]);
        log.write("next");
        assert_eq!(read(&path), vec!["next"]);
        assert_eq!(log.rotations, 2);
    }

    #[test]
    fn an_existing_file_is_appended_to_and_counts_toward_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        std::fs::write(&path, "old line\n").unwrap();
        let mut log = DisagreementLog::new(LogConfig {
            path: path.clone(),
            max_bytes: 13,
            files: 2,
        });
        log.write("new");
        assert_eq!(read(&path), vec!["old line", "new"]);
        log.write("newer");
        assert_eq!(read(&path), vec!["newer"]);
    }

    #[test]
    fn an_unwritable_path_counts_errors_and_does_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let mut log = DisagreementLog::new(LogConfig::new(blocker.join("under-a-file.jsonl")));
        log.write("x");
        log.write("y");
        assert_eq!((log.lines, log.errors), (0, 2));
    }
}
