//! Command name → compiled handler, as one snapshot that can be swapped atomically.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::dispatch::{Command, Commands};
use crate::runtime::CompiledHandler;
use crate::status::Status;

/// The handlers a host serves.
///
/// Readers take the current snapshot without locking; a request keeps the
/// `Arc<CompiledHandler>` it looked up, so replacing the snapshot never disturbs it.
/// Which version serves each command is kept in the [`Status`] (`/readyz` and the
/// `tcpy_handler_info` metric).
pub struct Registry {
    handlers: ArcSwap<HashMap<String, Arc<CompiledHandler>>>,
    status: Arc<Status>,
}

impl Registry {
    /// A registry serving `handlers`, keyed by command name, reporting its versions
    /// to `status`.
    pub fn new(handlers: HashMap<String, Arc<CompiledHandler>>, status: Arc<Status>) -> Self {
        for (cmd, handler) in &handlers {
            status.serve_version(cmd, Some(handler.digest().short()));
        }
        Self {
            handlers: ArcSwap::from_pointee(handlers),
            status,
        }
    }

    /// The handler serving `cmd`, if any.
    pub fn get(&self, cmd: &str) -> Option<Arc<CompiledHandler>> {
        self.handlers.load().get(cmd).cloned()
    }

    /// Serves `cmd` with `handler` from now on; returns the version it replaces.
    /// Requests already running keep the version they started with.
    pub fn insert(&self, cmd: &str, handler: Arc<CompiledHandler>) -> Option<Arc<CompiledHandler>> {
        let mut previous = None;
        self.handlers.rcu(|current| {
            let mut next = HashMap::clone(current);
            previous = next.insert(cmd.to_owned(), Arc::clone(&handler));
            next
        });
        self.status.serve_version(cmd, Some(handler.digest().short()));
        if let Some(previous) = &previous {
            previous.retire();
        }
        previous
    }

    /// Stops serving `cmd`; returns the version that served it, if any.
    pub fn remove(&self, cmd: &str) -> Option<Arc<CompiledHandler>> {
        let mut previous = None;
        self.handlers.rcu(|current| {
            let mut next = HashMap::clone(current);
            previous = next.remove(cmd);
            next
        });
        if let Some(previous) = &previous {
            self.status.serve_version(cmd, None);
            previous.retire();
        }
        previous
    }

    /// The commands served, sorted.
    pub fn commands(&self) -> Vec<String> {
        let mut commands: Vec<String> = self.handlers.load().keys().cloned().collect();
        commands.sort();
        commands
    }
}

impl Commands for Registry {
    fn get(&self, name: &str) -> Option<Arc<dyn Command>> {
        Registry::get(self, name).map(|handler| handler as Arc<dyn Command>)
    }
}
