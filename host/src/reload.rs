//! Reloading the TLS files and the tokens file: on SIGHUP, and when the files change.
//! New ones apply to new connections; files that cannot be used are refused with a log
//! line and the ones before keep serving, as with a bad handler version.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use crate::auth::Tokens;
use crate::metrics::Verdict;
use crate::report::{Chain, escaped_path};
use crate::status::Status;
use crate::tls::Tls;

/// Quiet time after a file event before reloading: a deploy writes cert and key apart.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// What can be reloaded.
pub struct Reloadable {
    /// The TLS files, if the host serves TLS.
    pub tls: Option<Arc<Tls>>,
    /// The tokens file, if the host asks for tokens.
    pub tokens: Option<Arc<Tokens>>,
    /// Where reloads are counted.
    pub status: Arc<Status>,
}

impl Reloadable {
    /// Whether there is anything to reload.
    pub fn is_empty(&self) -> bool {
        self.tls.is_none() && self.tokens.is_none()
    }

    /// Reloads everything, logging and counting what happened.
    pub async fn reload(&self, why: &str) {
        if let Some(tls) = &self.tls {
            let cert = escaped_path(&tls.files().cert).to_string();
            match tls.reload().await {
                Ok(()) => {
                    self.status.metrics().reload("tls", Verdict::Ok);
                    tracing::info!(why, cert, "TLS certificate reloaded: new connections use it");
                }
                Err(error) => {
                    self.status.metrics().reload("tls", Verdict::Failed);
                    tracing::error!(why, error = %Chain(&error), "new TLS files refused; the previous ones keep serving");
                }
            }
        }
        if let Some(tokens) = &self.tokens {
            match tokens.reload().await {
                Ok(()) => {
                    self.status.metrics().reload("tokens", Verdict::Ok);
                    tracing::info!(why, identities = tokens.len(), "tokens reloaded");
                }
                Err(error) => {
                    self.status.metrics().reload("tokens", Verdict::Failed);
                    tracing::error!(why, error = %Chain(&error), "new tokens file refused; the previous tokens stay");
                }
            }
        }
    }

    /// The files reloads read.
    fn files(&self) -> HashSet<PathBuf> {
        let tls = self.tls.iter().flat_map(|tls| {
            tls.files()
                .paths()
                .map(std::path::Path::to_path_buf)
                .collect::<Vec<_>>()
        });
        let tokens = self.tokens.iter().map(|tokens| tokens.path().to_path_buf());
        tls.chain(tokens)
            .map(|path| std::path::absolute(&path).unwrap_or(path))
            .collect()
    }

    /// Reloads whenever one of the files changes (watching their directories, so a
    /// file replaced by a rename is seen). Stops when the returned watcher is dropped.
    ///
    /// # Errors
    /// If the directories cannot be watched.
    pub fn watch(self: Arc<Self>) -> notify::Result<RecommendedWatcher> {
        let files = self.files();
        let (changed, mut changes) = mpsc::unbounded_channel();
        let watched = files.clone();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && crate::watcher::is_change(&event)
                && event.paths.iter().any(|path| watched.contains(path))
            {
                let _ = changed.send(());
            }
        })?;
        let dirs: HashSet<PathBuf> = files
            .iter()
            .filter_map(|path| path.parent().map(Into::into))
            .collect();
        for dir in &dirs {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
        }
        tokio::spawn(async move {
            while changes.recv().await.is_some() {
                // Let a burst of writes settle: one reload for a deploy of cert and key.
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, changes.recv()).await {}
                self.reload("a file changed").await;
            }
        });
        Ok(watcher)
    }
}
