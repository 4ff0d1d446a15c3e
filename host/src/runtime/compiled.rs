//! A compiled handler: one command's component, ready to instantiate.

use std::sync::Arc;

use wasmtime::component::{Component, Linker};

use super::bindings;
use super::{Digest, LoadError, Sandbox, state::RequestState};

/// One command's compiled component, pre-linked so a request only instantiates it.
pub struct CompiledHandler {
    name: Arc<str>,
    digest: Digest,
    from_cache: bool,
    sandbox: Sandbox,
    pre: bindings::HandlerPre<RequestState>,
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
            sandbox,
            pre,
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
}

impl std::fmt::Debug for CompiledHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledHandler")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
