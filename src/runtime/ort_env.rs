//! The process's one ONNX Runtime environment: finds and loads `libonnxruntime.so` the first time an
//! ONNX model is loaded, never before (fastText-only ensembles run without the library), and keeps the
//! outcome for the life of the process. ONNX Runtime allows one environment per process, ever, so
//! every session is built from [`environment`].
//!
//! Where the library comes from, in order:
//! 1. `ORT_DYLIB_PATH`, when set (a set but wrong path is an error, not a reason to look elsewhere);
//! 2. `libonnxruntime.so` beside the executable;
//! 3. `libonnxruntime.so` on the dynamic loader's path (`LD_LIBRARY_PATH`, `ldconfig`).

use std::ffi::OsStr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use ort::environment::Environment;
use ort::logging::LogLevel;

use super::LoadError;

/// File name of the library, as `scripts/setup.sh` installs it and the loader looks it up.
pub const LIBRARY_NAME: &str = "libonnxruntime.so";

/// The environment variable naming the library file.
pub const DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// The ONNX Runtime version the fixtures and `scripts/setup.sh` use (ort 2.0.0-rc.15 needs ≥ 1.31).
const WANTED_VERSION: &str = "1.31";

/// A loaded ONNX Runtime: the environment every session is built in, and where it came from.
pub struct OrtRuntime {
    pub env: Environment,
    /// The library file, or just its name when the loader found it.
    pub library: PathBuf,
}

static RUNTIME: LazyLock<Result<OrtRuntime, String>> = LazyLock::new(|| {
    let env_value = std::env::var_os(DYLIB_ENV);
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let choice = find_library(env_value.as_deref(), exe_dir.as_deref())?;
    init(&choice)
});

/// The process-wide runtime, initialised on first use. Every later call returns the same outcome:
/// a missing library stays missing until the process restarts.
pub fn runtime() -> Result<&'static OrtRuntime, LoadError> {
    RUNTIME
        .as_ref()
        .map_err(|message| LoadError::OnnxRuntimeMissing(message.clone()))
}

/// The process-wide environment (see [`runtime`]).
pub fn environment() -> Result<&'static Environment, LoadError> {
    runtime().map(|rt| &rt.env)
}

/// Where the library will be loaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibraryChoice {
    /// A file that exists.
    File(PathBuf),
    /// Nothing found on disk: let the dynamic loader search its path for [`LIBRARY_NAME`].
    LoaderPath,
}

/// Decides where to load the library from, without loading anything. Split out of [`runtime`] so
/// the search and its error message can be tested in a process whose environment is already set.
pub fn find_library(
    env_value: Option<&OsStr>,
    exe_dir: Option<&Path>,
) -> Result<LibraryChoice, String> {
    if let Some(value) = env_value.filter(|v| !v.is_empty()) {
        let path = absolute(PathBuf::from(value));
        return if path.is_file() {
            Ok(LibraryChoice::File(path))
        } else {
            Err(missing_message(&[format!(
                "{DYLIB_ENV}={} (no such file)",
                path.display()
            )]))
        };
    }
    if let Some(dir) = exe_dir {
        let beside = dir.join(LIBRARY_NAME);
        if beside.is_file() {
            return Ok(LibraryChoice::File(beside));
        }
    }
    Ok(LibraryChoice::LoaderPath)
}

/// The error an operator sees when the library cannot be found or loaded.
pub fn missing_message(looked_in: &[String]) -> String {
    format!(
        "ONNX Runtime library not found (looked in {}): run scripts/setup.sh, or set {DYLIB_ENV} to \
         {LIBRARY_NAME} {WANTED_VERSION}",
        looked_in.join(", ")
    )
}

fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    match std::env::current_dir() {
        Ok(cwd) => cwd.join(path),
        Err(_) => path,
    }
}

fn init(choice: &LibraryChoice) -> Result<OrtRuntime, String> {
    let (target, looked_in) = match choice {
        LibraryChoice::File(path) => (path.clone(), vec![path.display().to_string()]),
        LibraryChoice::LoaderPath => {
            let exe_dir = std::env::current_exe()
                .ok()
                .and_then(|exe| {
                    exe.parent()
                        .map(|d| d.join(LIBRARY_NAME).display().to_string())
                })
                .unwrap_or_else(|| "beside the executable".into());
            (
                PathBuf::from(LIBRARY_NAME),
                vec![
                    format!("{DYLIB_ENV} (unset)"),
                    exe_dir,
                    format!("the loader path for {LIBRARY_NAME} (LD_LIBRARY_PATH, ldconfig)"),
                ],
            )
        }
    };
    // `ort` reports load failures as errors, but has `expect`s on its way (current_exe, symbol
    // lookup): a panic here must become an error, never take the server down.
    let built = catch_unwind(AssertUnwindSafe(|| {
        let builder = ort::init_from(&target).map_err(|e| e.to_string())?;
        let env = builder
            .with_name("lastmile")
            .with_telemetry(false)
            .with_logger(Arc::new(forward_log))
            .build()
            .map_err(|e| format!("ONNX Runtime environment could not be created: {e}"))?;
        // A custom logger starts at verbose: only warnings and worse are worth formatting.
        env.set_log_level(LogLevel::Warning);
        Ok::<_, String>(env)
    }));
    match built {
        Ok(Ok(env)) => Ok(OrtRuntime {
            env,
            library: target,
        }),
        Ok(Err(reason)) if reason.starts_with("ONNX Runtime environment") => Err(reason),
        Ok(Err(reason)) => Err(unusable(choice, &looked_in, &reason)),
        Err(_) => Err(unusable(choice, &looked_in, "loading it panicked")),
    }
}

/// A file that is there but will not load (not a library, wrong architecture, too old) is named as
/// such; otherwise the library is simply missing.
fn unusable(choice: &LibraryChoice, looked_in: &[String], reason: &str) -> String {
    match choice {
        LibraryChoice::File(path) => format!(
            "ONNX Runtime library {} could not be loaded ({reason}): run scripts/setup.sh, or set \
             {DYLIB_ENV} to {LIBRARY_NAME} {WANTED_VERSION}",
            path.display()
        ),
        LibraryChoice::LoaderPath => format!("{} ({reason})", missing_message(looked_in)),
    }
}

/// onnxruntime's own log lines, through `tracing` like every other line the server writes (its
/// default logger prints coloured text straight to stderr).
fn forward_log(level: LogLevel, category: &str, id: &str, location: &str, message: &str) {
    match level {
        LogLevel::Fatal | LogLevel::Error => {
            tracing::error!(target: "onnxruntime", category, id, location, "{message}")
        }
        LogLevel::Warning => {
            tracing::warn!(target: "onnxruntime", category, id, location, "{message}")
        }
        LogLevel::Info | LogLevel::Verbose => {
            tracing::debug!(target: "onnxruntime", category, id, location, "{message}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_path_that_does_not_exist_is_an_error_naming_it() {
        let err = find_library(Some(OsStr::new("/nonexistent/libonnxruntime.so")), None)
            .expect_err("missing file must be an error");
        assert!(err.contains("/nonexistent/libonnxruntime.so"), "{err}");
        assert!(err.contains("run scripts/setup.sh"), "{err}");
        assert!(err.contains("ORT_DYLIB_PATH"), "{err}");
    }

    #[test]
    fn empty_variable_counts_as_unset() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            find_library(Some(OsStr::new("")), Some(dir.path())),
            Ok(LibraryChoice::LoaderPath)
        );
    }

    #[test]
    fn library_beside_the_executable_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(LIBRARY_NAME), b"").expect("write");
        assert_eq!(
            find_library(None, Some(dir.path())),
            Ok(LibraryChoice::File(dir.path().join(LIBRARY_NAME)))
        );
    }
}
