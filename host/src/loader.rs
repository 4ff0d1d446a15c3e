//! Reads handler components from a directory: `NAME.wasm` serves command `NAME`, in
//! the sandbox its manifest `NAME.toml` (if any) describes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::files;
use crate::manifest::{self, ManifestError};
use crate::report::{Chain, escaped_path};
use crate::runtime::{CompiledHandler, LoadError, Runtime, Sandbox};

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
    /// The file cannot be read, or is not a regular file within the size cap.
    #[error(transparent)]
    Read(#[from] files::ReadError),
    /// The handler's manifest cannot be used.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The file is not a usable handler component.
    #[error("`{}` {source}", escaped_path(path))]
    Load {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: LoadError,
    },
    /// The compile task died (it panicked or the runtime is shutting down).
    #[error("compiling `{}` was cancelled", escaped_path(path))]
    Cancelled {
        /// The file.
        path: PathBuf,
    },
}

/// The command a file serves: its stem, for `*.wasm` files that are not hidden and
/// whose names have no control characters (see [`badly_named`]).
pub fn command_name(path: &Path) -> Option<&str> {
    if path.extension()? != "wasm" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    let usable = !stem.is_empty() && !stem.starts_with('.') && !stem.contains(char::is_control);
    usable.then_some(stem)
}

/// Whether `path` would name a command but for control characters (a newline, an
/// escape sequence) in its name: such a file is refused with a warning, since its
/// name would forge log lines and no client could type it.
pub fn badly_named(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "wasm")
        && path
            .file_stem()
            .is_some_and(|stem| stem.to_string_lossy().contains(char::is_control))
}

/// Logs that `path` is refused for its name (see [`badly_named`]).
pub fn warn_badly_named(path: &Path) {
    tracing::warn!(
        path = %escaped_path(path),
        "handler file ignored: its name has control characters"
    );
}

/// The handler path a changed file stands for: `NAME.wasm` itself, or the
/// `NAME.wasm` beside a manifest `NAME.toml`.
pub fn handler_path(path: &Path) -> Option<PathBuf> {
    if command_name(path).is_some() {
        return Some(path.to_owned());
    }
    let wasm = path.with_extension("wasm");
    (path.extension()? == "toml" && command_name(&wasm).is_some()).then_some(wasm)
}

/// A handler as read from disk: the component's bytes and the sandbox its manifest
/// describes.
#[derive(Debug)]
pub struct Source {
    /// The component.
    pub bytes: Vec<u8>,
    /// What its requests may use.
    pub sandbox: Sandbox,
}

/// Reads a handler file and its manifest.
///
/// # Errors
/// [`FileError::Read`] or [`FileError::Manifest`] naming the file: a FIFO, a device or
/// a file over its cap is refused at once, without waiting or reading it whole.
pub async fn read(runtime: &Runtime, path: &Path) -> Result<Source, FileError> {
    let limits = runtime.limits();
    let bytes = files::read_regular(path, limits.max_component).await?;
    let sandbox = manifest::sandbox_for(path, limits.request, limits.max_manifest).await?;
    Ok(Source { bytes, sandbox })
}

/// Compiles a handler (or loads it from the compile cache) on a blocking thread, so
/// serving never waits on Cranelift.
///
/// # Errors
/// A [`FileError`] naming the file and what is wrong with it.
pub async fn compile(
    runtime: &Arc<Runtime>,
    command: &str,
    path: &Path,
    source: Source,
) -> Result<CompiledHandler, FileError> {
    let runtime = Arc::clone(runtime);
    let command = command.to_owned();
    let task_path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        runtime
            .compile(&command, &source.bytes, source.sandbox)
            .map_err(|source| FileError::Load {
                path: task_path,
                source,
            })
    })
    .await
    .unwrap_or_else(|_| {
        Err(FileError::Cancelled {
            path: path.to_owned(),
        })
    })
}

/// Reads and compiles one handler file.
///
/// # Errors
/// A [`FileError`] naming the file and what is wrong with it.
pub async fn load_file(
    runtime: &Arc<Runtime>,
    command: &str,
    path: &Path,
) -> Result<CompiledHandler, FileError> {
    compile(runtime, command, path, read(runtime, path).await?).await
}

/// What [`load_dir`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The handlers that loaded, by command.
    pub handlers: HashMap<String, Arc<CompiledHandler>>,
    /// How many handler files were refused (each is logged).
    pub rejected: usize,
}

/// Loads every handler in `dir`, several at once. A file that fails to load is logged
/// and skipped, so one bad handler does not keep the others from serving.
///
/// # Errors
/// A [`DirError`] if the directory itself cannot be read.
pub async fn load_dir(runtime: &Arc<Runtime>, dir: &Path) -> Result<Loaded, DirError> {
    let read_error = |source| DirError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        paths.push(entry.map_err(read_error)?.path());
    }
    let mut loaded = Loaded::default();
    for path in paths.iter().filter(|path| badly_named(path)) {
        warn_badly_named(path);
        loaded.rejected += 1;
    }
    let loads = paths.iter().filter_map(|path| {
        let command = command_name(path)?;
        Some(async move {
            let started = std::time::Instant::now();
            let loaded = load_file(runtime, command, path).await;
            (command, path, loaded, started.elapsed())
        })
    });
    for (command, path, result, elapsed) in futures::future::join_all(loads).await {
        match result {
            Ok(handler) => {
                tracing::info!(
                    cmd = command,
                    path = %escaped_path(path),
                    version = %handler.digest().short(),
                    grants = %handler.sandbox().grants(),
                    timeout_ms = handler.sandbox().limits.timeout.as_millis() as u64,
                    from_cache = handler.from_cache(),
                    elapsed_ms = elapsed.as_millis() as u64,
                    "handler loaded"
                );
                loaded.handlers.insert(command.to_owned(), Arc::new(handler));
            }
            Err(error) => {
                tracing::error!(cmd = command, error = %Chain(&error), "handler not loaded");
                loaded.rejected += 1;
            }
        }
    }
    Ok(loaded)
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
        assert_eq!(command_name(Path::new("dir/a\nb.wasm")), None);
        assert!(badly_named(Path::new("dir/a\nb.wasm")));
        assert!(!badly_named(Path::new("dir/ab.wasm")));
    }

    #[test]
    fn a_manifest_stands_for_its_handler() {
        let wasm = Some(PathBuf::from("dir/add.wasm"));
        assert_eq!(handler_path(Path::new("dir/add.wasm")), wasm);
        assert_eq!(handler_path(Path::new("dir/add.toml")), wasm);
        assert_eq!(handler_path(Path::new("dir/.add.toml")), None);
        assert_eq!(handler_path(Path::new("dir/add.json")), None);
    }
}
