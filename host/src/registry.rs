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

    /// The commands served, sorted.
    pub fn commands(&self) -> Vec<String> {
        let mut commands: Vec<String> = self.handlers.load().keys().cloned().collect();
        commands.sort();
        commands
    }
}
