//! Reads handler components from a directory: `NAME.wasm` serves command `NAME`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::runtime::{Handler, LoadError, Runtime};

/// Why a handlers directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// The directory cannot be listed.
    #[error("cannot read handlers directory `{path}`: {source}")]
    Read {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Why one handler file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file cannot be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a usable handler component.
    #[error("`{path}` {source}")]
    Load {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: LoadError,
    },
    /// The compile task died (it panicked or the runtime is shutting down).
    #[error("compiling `{path}` was cancelled")]
    Cancelled {
        /// The file.
        path: PathBuf,
    },
}

/// The command a file serves: its stem, for `*.wasm` files that are not hidden.
pub fn command_name(path: &Path) -> Option<&str> {
    if path.extension()? != "wasm" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    (!stem.is_empty() && !stem.starts_with('.')).then_some(stem)
}

/// Reads and compiles one handler file on a blocking thread, so serving never waits on Cranelift.
///
/// # Errors
/// A [`FileError`] naming the file and what is wrong with it.
pub async fn load_file(runtime: &Arc<Runtime>, command: &str, path: &Path) -> Result<Handler, FileError> {
    let runtime = Arc::clone(runtime);
    let command = command.to_owned();
    let path = path.to_owned();
    let task_path = path.clone();
    tokio::task::spawn_blocking(move || {
        let bytes = std::fs::read(&task_path).map_err(|source| FileError::Read {
            path: task_path.clone(),
            source,
        })?;
        runtime
            .compile(&command, &bytes)
            .map_err(|source| FileError::Load {
                path: task_path,
                source,
            })
    })
    .await
    .unwrap_or(Err(FileError::Cancelled { path }))
}

/// Loads every handler in `dir`. A file that fails to load is logged and skipped, so
/// one bad handler does not keep the others from serving.
///
/// # Errors
/// A [`DirError`] if the directory itself cannot be read.
pub async fn load_dir(runtime: &Arc<Runtime>, dir: &Path) -> Result<HashMap<String, Arc<Handler>>, DirError> {
    let read_error = |source| DirError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut handlers = HashMap::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        let Some(command) = command_name(&path) else {
            continue;
        };
        let started = std::time::Instant::now();
        match load_file(runtime, command, &path).await {
            Ok(handler) => {
                tracing::info!(cmd = command, path = %path.display(), elapsed_ms = started.elapsed().as_millis(), "handler loaded");
                handlers.insert(command.to_owned(), Arc::new(handler));
            }
            Err(error) => tracing::error!(cmd = command, %error, "handler not loaded"),
        }
    }
    Ok(handlers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_visible_wasm_files_name_commands() {
        assert_eq!(command_name(Path::new("dir/add.wasm")), Some("add"));
        assert_eq!(command_name(Path::new("dir/add.wasm.tmp")), None);
        assert_eq!(command_name(Path::new("dir/.add.wasm")), None);
        assert_eq!(command_name(Path::new("dir/README.md")), None);
        assert_eq!(command_name(Path::new("dir/.wasm")), None);
    }
}
