//! A compiled handler: one command's component, ready to instantiate.

use std::sync::Arc;

use wasmtime::component::{Component, Linker};

use super::bindings;
use super::warm::Shelf;
use super::{Digest, LoadError, Sandbox, state::RequestState};

/// One command's compiled component, pre-linked so a request only instantiates it.
pub struct CompiledHandler {
    name: Arc<str>,
    digest: Digest,
    from_cache: bool,
    sandbox: Arc<Sandbox>,
    pre: bindings::HandlerPre<RequestState>,
    /// Its pre-warmed instances.
    shelf: Arc<Shelf>,
}

impl CompiledHandler {
    /// Links a compiled component, checking that it implements the `handler` world.
    pub(super) fn link(
        linker: &Linker<RequestState>,
        name: &str,
        component: &Component,
        digest: Digest,
        from_cache: bool,
        sandbox: Sandbox,
    ) -> Result<Self, LoadError> {
        let pre = linker.instantiate_pre(component).map_err(LoadError::World)?;
        let pre = bindings::HandlerPre::new(pre).map_err(LoadError::World)?;
        Ok(Self {
            name: name.into(),
            digest,
            from_cache,
            sandbox: Arc::new(sandbox),
            pre,
            shelf: Arc::default(),
        })
    }

    /// The SHA-256 of the component this handler was built from: its version.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Whether it was loaded from the compile cache rather than compiled.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// What its requests may use and see.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The command this handler serves.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub(super) fn pre(&self) -> &bindings::HandlerPre<RequestState> {
        &self.pre
    }

    pub(super) fn shared_sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    pub(super) fn shelf(&self) -> &Arc<Shelf> {
        &self.shelf
    }

    /// Pre-warmed instances ready now.
    pub fn warm_instances(&self) -> usize {
        self.shelf.len()
    }

    /// Drops its pre-warmed instances and makes no more: it no longer serves (a hot
    /// swap replaced or removed it). Requests still running it are not disturbed.
    pub fn retire(&self) {
        let dropped = self.shelf.close();
        if dropped > 0 {
            tracing::debug!(cmd = %self.name, dropped, "pre-warmed instances of a retired version dropped");
        }
    }
}

impl std::fmt::Debug for CompiledHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledHandler")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
