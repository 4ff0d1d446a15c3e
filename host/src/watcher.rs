//! Hot swap: the handlers directory is live.
//!
//! File events are debounced, then each changed `NAME.wasm` (or its manifest
//! `NAME.toml`) is reconciled with the registry: compiled off the async threads (or
//! loaded from the compile cache) and swapped in atomically, or its command removed if
//! the file is gone. A file that does not load never replaces a working version.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::Host;
use crate::loader::{self, command_name, handler_path};
use crate::runtime::Digest;

/// Quiet time after the last file event before changes are applied: long enough
/// for a copy or a rename to finish, short enough to feel instant.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Longest a stream of events may postpone applying changes.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// What the watcher did about one changed file; also logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapEvent {
    /// A new version of `command` serves from now on.
    Loaded {
        /// The command.
        command: String,
        /// The new version's content hash.
        version: Digest,
        /// Whether it came from the compile cache.
        from_cache: bool,
    },
    /// A file was not loaded; the previous version (if any) keeps serving.
    Rejected {
        /// The command.
        command: String,
        /// Why, naming the file.
        reason: String,
    },
    /// The file is gone: `command` is no longer served.
    Removed {
        /// The command.
        command: String,
    },
}

/// Why the handlers directory cannot be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch handlers directory `{}`: {source}", dir.display())]
pub struct WatchError {
    dir: PathBuf,
    source: notify::Error,
}

/// Watches a host's handlers directory while it lives; dropping it stops watching.
pub struct Watcher {
    _watcher: RecommendedWatcher,
    task: JoinHandle<()>,
    events: broadcast::Sender<SwapEvent>,
}

impl Watcher {
    /// Starts following `host`'s handlers directory. Must be called within a tokio runtime.
    ///
    /// # Errors
    /// A [`WatchError`] if the operating system refuses to watch the directory.
    pub fn start(host: Arc<Host>) -> Result<Self, WatchError> {
        let dir = host.handlers_dir().to_owned();
        let watch_error = |source| WatchError {
            dir: dir.clone(),
            source,
        };
        let (changes, changed) = mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // `None` asks for a full rescan: an error may mean events were lost.
            let _ = changes.send(event.ok().map(|event| event.paths));
        })
        .map_err(watch_error)?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(watch_error)?;
        let (events, _) = broadcast::channel(256);
        let task = tokio::spawn(follow(host, changed, events.clone()));
        tracing::info!(dir = %dir.display(), "watching handlers directory");
        Ok(Self {
            _watcher: watcher,
            task,
            events,
        })
    }

    /// Every [`SwapEvent`] from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SwapEvent> {
        self.events.subscribe()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Applies batches of changed paths until the watcher is dropped.
async fn follow(
    host: Arc<Host>,
    mut changed: mpsc::UnboundedReceiver<Option<Vec<PathBuf>>>,
    events: broadcast::Sender<SwapEvent>,
) {
    while let Some(first) = changed.recv().await {
        let mut batch = Batch::default();
        batch.absorb(first);
        let started = Instant::now();
        while started.elapsed() < MAX_DELAY {
            match tokio::time::timeout(DEBOUNCE, changed.recv()).await {
                Ok(Some(more)) => batch.absorb(more),
                Ok(None) => return,
                Err(_quiet) => break,
            }
        }
        for path in batch.paths(&host) {
            if let Some(event) = reconcile(&host, &path).await {
                let _ = events.send(event);
            }
        }
    }
}

/// The paths one debounced burst of events touched.
#[derive(Default)]
struct Batch {
    paths: HashSet<PathBuf>,
    rescan: bool,
}

impl Batch {
    fn absorb(&mut self, change: Option<Vec<PathBuf>>) {
        match change {
            Some(paths) => self.paths.extend(paths),
            None => self.rescan = true,
        }
    }

    /// The handler paths to reconcile; on a rescan, every file in the directory and
    /// every command served.
    fn paths(mut self, host: &Host) -> Vec<PathBuf> {
        if self.rescan {
            let dir = host.handlers_dir();
            if let Ok(entries) = std::fs::read_dir(dir) {
                self.paths.extend(entries.flatten().map(|entry| entry.path()));
            }
            let served = host.registry().commands();
            self.paths
                .extend(served.iter().map(|cmd| dir.join(format!("{cmd}.wasm"))));
        }
        let handlers: HashSet<PathBuf> = self.paths.iter().filter_map(|path| handler_path(path)).collect();
        handlers.into_iter().collect()
    }
}

/// Brings `command`'s entry in the registry in line with the file at `path`.
async fn reconcile(host: &Arc<Host>, path: &Path) -> Option<SwapEvent> {
    let command = command_name(path)?.to_owned();
    let current = host.registry().get(&command);
    let source = match loader::read(host.runtime(), path).await {
        Ok(source) => source,
        Err(_) if !path.exists() => {
            host.registry().remove(&command)?;
            tracing::info!(cmd = %command, path = %path.display(), "handler removed");
            return Some(SwapEvent::Removed { command });
        }
        Err(error) => return Some(rejected(command, &error)),
    };
    if current.as_ref().is_some_and(|handler| {
        *handler.digest() == Digest::of(&source.bytes) && *handler.sandbox() == source.sandbox
    }) {
        return None;
    }
    let started = Instant::now();
    match loader::compile(host.runtime(), &command, path, source).await {
        Ok(handler) => {
            let (version, from_cache) = (*handler.digest(), handler.from_cache());
            let grants = handler.sandbox().grants();
            let previous = host.registry().insert(&command, Arc::new(handler));
            tracing::info!(
                cmd = %command,
                version = %version.short(),
                previous = previous.map(|handler| handler.digest().short()).as_deref().unwrap_or("none"),
                grants,
                from_cache,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "handler swapped in"
            );
            Some(SwapEvent::Loaded {
                command,
                version,
                from_cache,
            })
        }
        Err(error) => Some(rejected(command, &error)),
    }
}

fn rejected(command: String, error: &loader::FileError) -> SwapEvent {
    tracing::warn!(cmd = %command, %error, "new version rejected; the previous one keeps serving");
    SwapEvent::Rejected {
        command,
        reason: error.to_string(),
    }
}
