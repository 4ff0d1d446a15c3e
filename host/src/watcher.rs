//! Hot swap: the handlers directory is live.
//!
//! File events are debounced, then each changed `NAME.wasm` (or its manifest
//! `NAME.toml`) is reconciled with the registry: compiled off the async threads (or
//! loaded from the compile cache) and swapped in atomically, or its command removed if
//! the file is gone. A file that does not load never replaces a working version.
//! Changed files are reconciled side by side, each read under a time limit, so one
//! slow or hostile file never holds up the others.
//!
//! A `--handlers` path that is a symlink (`current -> v2`, the usual atomic deploy)
//! is followed: when the link is flipped to another directory, the watcher watches the
//! new target and reconciles every handler against it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::Server;
use crate::loader::{self, badly_named, command_name, handler_path, warn_badly_named};
use crate::metrics::LoadResult;
use crate::report::{Chain, escaped_path};
use crate::runtime::Digest;

/// Quiet time after the last file event before changes are applied: long enough
/// for a copy or a rename to finish, short enough to feel instant.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Longest a stream of events may postpone applying changes.
const MAX_DELAY: Duration = Duration::from_secs(1);
/// Longest reading one handler's files may take before it is rejected. Reads do not
/// block on FIFOs or devices (see [`crate::files`]); this bounds a stalled disk.
const READ_LIMIT: Duration = Duration::from_secs(10);

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
    task: JoinHandle<()>,
    events: broadcast::Sender<SwapEvent>,
}

impl Watcher {
    /// Starts following `host`'s handlers directory. Must be called within a tokio runtime.
    ///
    /// # Errors
    /// A [`WatchError`] if the operating system refuses to watch the directory.
    pub fn start(server: Arc<Server>) -> Result<Self, WatchError> {
        let dir = server.handlers_dir().to_owned();
        let watch_error = |source| WatchError {
            dir: dir.clone(),
            source,
        };
        let (changes, changed) = mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // `None` asks for a full rescan: an error may mean events were lost.
            match event {
                Ok(event) if !is_change(&event) => {}
                event => {
                    let _ = changes.send(event.ok().map(|event| event.paths));
                }
            }
        })
        .map_err(watch_error)?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(watch_error)?;
        // A symlinked directory: its parent says when the link itself changes.
        let link = Link::of(&dir);
        if let Some(link) = &link {
            watcher
                .watch(&link.parent, RecursiveMode::NonRecursive)
                .map_err(watch_error)?;
            tracing::info!(dir = %escaped_path(&dir), target = %escaped_path(&link.target), "handlers directory is a symlink; following it");
        }
        let (events, _) = broadcast::channel(256);
        let watching = Watching {
            server,
            watcher: Mutex::new(watcher),
            link,
        };
        let task = tokio::spawn(follow(watching, changed, events.clone()));
        tracing::info!(dir = %escaped_path(&dir), "watching handlers directory");
        Ok(Self { task, events })
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

/// A handlers directory given as a symlink.
struct Link {
    /// The directory holding the link, resolved (what is watched for the flip).
    parent: PathBuf,
    /// The link as events on `parent` name it.
    path: PathBuf,
    /// What the link resolved to when last looked at.
    target: PathBuf,
}

impl Link {
    /// `Some` if `dir` is a symlink (to a directory).
    fn of(dir: &Path) -> Option<Self> {
        let is_link = std::fs::symlink_metadata(dir).is_ok_and(|meta| meta.file_type().is_symlink());
        if !is_link {
            return None;
        }
        // NB: resolved, so that the events on it name the link the same way however
        // `--handlers` was spelt (`current`, `./current`, `/srv/tcpy/current`).
        let parent = dir.parent().filter(|parent| !parent.as_os_str().is_empty());
        let parent = parent.unwrap_or(Path::new(".")).canonicalize().ok()?;
        Some(Self {
            path: parent.join(dir.file_name()?),
            parent,
            target: dir.canonicalize().ok()?,
        })
    }
}

/// What the follow task owns: the host, the OS watcher (to re-watch a flipped
/// symlink) and the link, if the directory is one.
struct Watching {
    server: Arc<Server>,
    watcher: Mutex<RecommendedWatcher>,
    link: Option<Link>,
}

impl Watching {
    /// If the batch touched the symlink itself and it now points elsewhere: watch the
    /// new target and ask for a rescan.
    fn follow_link(&mut self, batch: &mut Batch) {
        let dir = self.server.handlers_dir().to_owned();
        let Some(link) = &mut self.link else { return };
        if !batch.paths.contains(&link.path) {
            return;
        }
        let Ok(target) = dir.canonicalize() else {
            tracing::warn!(dir = %escaped_path(&dir), "handlers symlink points nowhere; still serving what was loaded");
            return;
        };
        if target == link.target {
            return;
        }
        let mut watcher = self
            .watcher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = watcher.unwatch(&dir);
        if let Err(error) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::error!(dir = %escaped_path(&dir), error = %Chain(&error), "cannot watch the new target of the handlers symlink");
        }
        tracing::info!(
            dir = %escaped_path(&dir),
            from = %escaped_path(&link.target),
            to = %escaped_path(&target),
            "handlers symlink flipped; reloading from its new target"
        );
        link.target = target;
        batch.rescan = true;
    }
}

/// Whether `event` may have changed a file. Opening and reading are not changes: the
/// host reads every file it reconciles, and counting those reads as changes would
/// reconcile the same files again and again, forever. Closing a file written is one.
pub(crate) fn is_change(event: &notify::Event) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match event.kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        kind => !kind.is_access(),
    }
}

/// Applies batches of changed paths until the watcher is dropped.
async fn follow(
    mut watching: Watching,
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
        watching.follow_link(&mut batch);
        let (server, events) = (&watching.server, &events);
        let reconciles = batch.paths(server).into_iter().map(|path| async move {
            if let Some(event) = reconcile(server, &path).await {
                match &event {
                    SwapEvent::Loaded { .. } => server.status().metrics().handler_load(LoadResult::Loaded),
                    SwapEvent::Rejected { .. } => {
                        server.status().metrics().handler_load(LoadResult::Rejected)
                    }
                    SwapEvent::Removed { .. } => {}
                }
                let _ = events.send(event);
            }
        });
        futures::future::join_all(reconciles).await;
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
    /// every command served. Paths outside the directory (the parent of a symlinked
    /// one) are not handlers.
    fn paths(mut self, server: &Server) -> Vec<PathBuf> {
        let dir = server.handlers_dir();
        if self.rescan {
            if let Ok(entries) = std::fs::read_dir(dir) {
                self.paths.extend(entries.flatten().map(|entry| entry.path()));
            }
            let served = server.registry().commands();
            self.paths
                .extend(served.iter().map(|cmd| dir.join(format!("{cmd}.wasm"))));
        }
        self.paths.retain(|path| path.parent() == Some(dir));
        for path in self.paths.iter().filter(|path| badly_named(path)) {
            warn_badly_named(path);
        }
        let handlers: HashSet<PathBuf> = self.paths.iter().filter_map(|path| handler_path(path)).collect();
        handlers.into_iter().collect()
    }
}

/// Brings `command`'s entry in the registry in line with the file at `path`.
async fn reconcile(server: &Arc<Server>, path: &Path) -> Option<SwapEvent> {
    let command = command_name(path)?.to_owned();
    let current = server.registry().get(&command);
    let read = tokio::time::timeout(READ_LIMIT, loader::read(server.runtime(), path)).await;
    let source = match read {
        Ok(Ok(source)) => source,
        Ok(Err(loader::FileError::Read(error))) if error.is_not_found() => {
            server.registry().remove(&command)?;
            tracing::info!(cmd = %command, path = %escaped_path(path), "handler removed");
            return Some(SwapEvent::Removed { command });
        }
        Ok(Err(error)) => return Some(rejected(command, &error)),
        Err(_elapsed) => {
            let reason = format!("reading `{}` took over {READ_LIMIT:?}", escaped_path(path));
            tracing::warn!(cmd = %command, reason, "new version rejected; the previous one keeps serving");
            return Some(SwapEvent::Rejected { command, reason });
        }
    };
    if current.as_ref().is_some_and(|handler| {
        *handler.digest() == Digest::of(&source.bytes) && *handler.sandbox() == source.sandbox
    }) {
        return None;
    }
    let started = Instant::now();
    match loader::compile(server.runtime(), &command, path, source).await {
        Ok(handler) => {
            let (version, from_cache) = (*handler.digest(), handler.from_cache());
            let grants = handler.sandbox().grants();
            let previous = server.registry().insert(&command, Arc::new(handler));
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
    let reason = Chain(error).to_string();
    tracing::warn!(cmd = %command, error = %reason, "new version rejected; the previous one keeps serving");
    SwapEvent::Rejected { command, reason }
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, EventKind, ModifyKind, RemoveKind};

    use super::*;

    #[test]
    fn reads_are_not_changes() {
        let event = |kind| notify::Event::new(kind).add_path(PathBuf::from("/h/add.wasm"));
        assert!(!is_change(&event(EventKind::Access(AccessKind::Open(
            AccessMode::Read
        )))));
        assert!(!is_change(&event(EventKind::Access(AccessKind::Close(
            AccessMode::Read
        )))));
        assert!(is_change(&event(EventKind::Access(AccessKind::Close(
            AccessMode::Write
        )))));
        assert!(is_change(&event(EventKind::Create(CreateKind::File))));
        assert!(is_change(&event(EventKind::Modify(ModifyKind::Data(
            DataChange::Content
        )))));
        assert!(is_change(&event(EventKind::Remove(RemoveKind::File))));
    }
}
