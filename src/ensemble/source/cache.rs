//! The local, content-addressed cache of fetched model files: `DIR/sha256/<hex>` holds the file
//! whose sha256 is `<hex>`, so one file is stored once whatever names it, and a load that knows
//! the hash it wants (a lock, a pin) needs no server. `DIR/refs/<key>` remembers which content a
//! registry artifact had, so it is downloaded once. Every read checks the content against its
//! name: a corrupted entry is removed and fetched again. Files are written beside their place and
//! renamed into it, so a reader never sees half a file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::ensemble::{hex, sha256_hex};

/// A file in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

/// What a read of the cache found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Hit(Cached),
    Miss,
    /// The entry's content did not match its name: it was removed.
    Corrupt,
}

/// The cache at one directory.
#[derive(Debug, Clone)]
pub struct ModelCache {
    root: PathBuf,
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Size and sha256 (hex) of the file at `path`.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hashing = Hashing {
        inner: std::io::sink(),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hashing.write_all(&buf[..n])?;
    }
    Ok((hashing.bytes, hex(&hashing.hasher.finalize())))
}

impl ModelCache {
    pub fn new(root: impl Into<PathBuf>) -> ModelCache {
        ModelCache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the file with content `sha256` is kept.
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    fn ref_path(&self, key: &str) -> PathBuf {
        self.root.join("refs").join(sha256_hex(key.as_bytes()))
    }

    /// The file with content `sha256`, checked against its name.
    pub fn get(&self, sha256: &str) -> std::io::Result<Lookup> {
        let path = self.path_of(sha256);
        if !path.is_file() {
            return Ok(Lookup::Miss);
        }
        let (bytes, found) = hash_file(&path)?;
        if found != sha256 {
            tracing::warn!(
                path = %path.display(),
                expected = sha256,
                found = %found,
                "model cache: corrupted entry removed; it will be fetched again"
            );
            std::fs::remove_file(&path)?;
            return Ok(Lookup::Corrupt);
        }
        Ok(Lookup::Hit(Cached {
            path,
            bytes,
            sha256: found,
        }))
    }

    /// Stores what `fill` writes under its content hash. `fill`'s own error comes back as it is.
    pub fn put<E: From<std::io::Error>>(
        &self,
        fill: impl FnOnce(&mut dyn Write) -> Result<(), E>,
    ) -> Result<Cached, E> {
        let dir = self.root.join("sha256");
        std::fs::create_dir_all(&dir)?;
        let part = dir.join(format!(
            ".part-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let file = std::fs::File::create(&part)?;
        let mut hashing = Hashing {
            inner: std::io::BufWriter::new(file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let filled = fill(&mut hashing).and_then(|()| Ok(hashing.flush()?));
        if let Err(e) = filled {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
        let sha256 = hex(&hashing.hasher.finalize());
        let path = self.path_of(&sha256);
        std::fs::rename(&part, &path)?;
        Ok(Cached {
            path,
            bytes: hashing.bytes,
            sha256,
        })
    }

    /// The content hash last stored for `key` (a registry artifact), if any.
    pub fn recall(&self, key: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.ref_path(key)).ok()?;
        let sha = text.trim();
        (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then(|| sha.to_owned())
    }

    /// Remembers that `key` had content `sha256`.
    pub fn remember(&self, key: &str, sha256: &str) -> std::io::Result<()> {
        let path = self.ref_path(key);
        let dir = path.parent().expect("refs have a directory: this is a bug");
        std::fs::create_dir_all(dir)?;
        let part = path.with_extension(format!("part-{}", std::process::id()));
        std::fs::write(&part, format!("{sha256}\n"))?;
        std::fs::rename(&part, &path)
    }
}

/// The default cache directory: `$XDG_CACHE_HOME/lastmile/models`, else
/// `$HOME/.cache/lastmile/models`, else under the system's temporary directory.
pub fn default_cache_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("lastmile")
        .join("models")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_file_is_found_by_hash_and_a_corrupted_one_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(dir.path());
        let stored = cache
            .put(|w| -> std::io::Result<()> { w.write_all(b"model bytes") })
            .unwrap();
        assert_eq!(stored.sha256, sha256_hex(b"model bytes"));
        assert_eq!(stored.bytes, 11);
        assert_eq!(
            cache.get(&stored.sha256).unwrap(),
            Lookup::Hit(stored.clone())
        );
        std::fs::write(&stored.path, b"model bytez").unwrap();
        assert_eq!(cache.get(&stored.sha256).unwrap(), Lookup::Corrupt);
        assert_eq!(cache.get(&stored.sha256).unwrap(), Lookup::Miss);
        cache
            .remember("mlflow-artifacts:/1/x/model.bin", &stored.sha256)
            .unwrap();
        assert_eq!(
            cache.recall("mlflow-artifacts:/1/x/model.bin").as_deref(),
            Some(stored.sha256.as_str())
        );
        assert_eq!(cache.recall("elsewhere"), None);
    }

    #[test]
    fn a_failed_fill_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(dir.path());
        let failed = cache.put(|w| -> std::io::Result<()> {
            w.write_all(b"half")?;
            Err(std::io::Error::other("connection reset"))
        });
        assert!(failed.is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("sha256"))
            .unwrap()
            .collect();
        assert!(left.is_empty());
    }
}
