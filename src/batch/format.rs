//! Where a batch reads and writes, and in which format: a file (format from its extension unless
//! given) or standard input/output (`-`, where the format must be given or is JSON Lines).

use std::fmt;
use std::path::{Path, PathBuf};

/// A file format `lastmile batch` reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header naming the columns.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// The Arrow IPC stream format (what Spark's `mapInArrow` hands over, through a pipe).
    Arrow,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
            Format::Arrow => "arrow",
        }
    }

    pub fn parse(name: &str) -> Option<Format> {
        match name.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            "parquet" | "pq" => Some(Format::Parquet),
            "arrow" | "arrows" | "ipc" => Some(Format::Arrow),
            _ => None,
        }
    }

    /// The format a file name's extension says, if it says one.
    pub fn of_path(path: &Path) -> Option<Format> {
        path.extension()
            .and_then(|e| e.to_str())
            .and_then(Format::parse)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A file, or the process's standard input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Stdio,
    File(PathBuf),
}

impl Location {
    /// `-` is standard input or output; anything else a path.
    pub fn parse(s: &str) -> Location {
        if s == "-" {
            Location::Stdio
        } else {
            Location::File(PathBuf::from(s))
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            Location::Stdio => None,
            Location::File(p) => Some(p),
        }
    }

    /// The format of this location: `given`, else the file's extension; standard input and output
    /// default to JSON Lines. `what` names the flag in the error (`--input`, `--output`).
    pub fn format(&self, given: Option<Format>, what: &str) -> Result<Format, String> {
        if let Some(format) = given {
            return Ok(format);
        }
        match self {
            Location::Stdio => Ok(Format::Jsonl),
            Location::File(path) => Format::of_path(path).ok_or_else(|| {
                format!(
                    "{what} {}: cannot tell the format from the extension; give --format \
                     (jsonl, csv, parquet or arrow)",
                    path.display()
                )
            }),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Stdio => f.write_str("-"),
            Location::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_extensions_or_flags() {
        let file = Location::parse("items.PARQUET");
        assert_eq!(file.format(None, "--input"), Ok(Format::Parquet));
        assert_eq!(
            Location::parse("a.jsonl").format(None, "--input"),
            Ok(Format::Jsonl)
        );
        assert_eq!(
            Location::parse("a.txt").format(Some(Format::Csv), "--input"),
            Ok(Format::Csv)
        );
        assert_eq!(
            Location::parse("-").format(None, "--input"),
            Ok(Format::Jsonl)
        );
        let e = Location::parse("a.txt")
            .format(None, "--output")
            .unwrap_err();
        assert!(
            e.contains("--output a.txt") && e.contains("--format"),
            "{e}"
        );
    }
}
