//! Command name → compiled handler, as one snapshot that can be swapped atomically.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::runtime::Handler;

/// The handlers a host serves.
///
/// Readers take the current snapshot without locking; a request keeps the
/// `Arc<Handler>` it looked up, so replacing the snapshot never disturbs it.
#[derive(Default)]
pub struct Registry {
    handlers: ArcSwap<HashMap<String, Arc<Handler>>>,
}

impl Registry {
    /// A registry serving `handlers`, keyed by command name.
    pub fn new(handlers: HashMap<String, Arc<Handler>>) -> Self {
        Self {
            handlers: ArcSwap::from_pointee(handlers),
        }
    }

    /// The handler serving `cmd`, if any.
    pub fn get(&self, cmd: &str) -> Option<Arc<Handler>> {
        self.handlers.load().get(cmd).cloned()
    }

    /// Serves `cmd` with `handler` from now on; returns the version it replaces.
    /// Requests already running keep the version they started with.
    pub fn insert(&self, cmd: &str, handler: Arc<Handler>) -> Option<Arc<Handler>> {
        let mut previous = None;
        self.handlers.rcu(|current| {
            let mut next = HashMap::clone(current);
            previous = next.insert(cmd.to_owned(), Arc::clone(&handler));
            next
        });
        previous
    }

    /// Stops serving `cmd`; returns the version that served it, if any.
    pub fn remove(&self, cmd: &str) -> Option<Arc<Handler>> {
        let mut previous = None;
        self.handlers.rcu(|current| {
            let mut next = HashMap::clone(current);
            previous = next.remove(cmd);
            next
        });
        previous
    }

    /// The commands served, sorted.
    pub fn commands(&self) -> Vec<String> {
        let mut commands: Vec<String> = self.handlers.load().keys().cloned().collect();
        commands.sort();
        commands
    }
}
