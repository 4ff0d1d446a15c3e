//! A compiled handler: one command's component, ready to instantiate.

use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::{LoadError, state::RequestState};

/// Host bindings generated from `wit/tcpy.wit`.
pub(super) mod bindings {
    wasmtime::component::bindgen!({
        world: "handler",
        path: "../wit",
        imports: {
            // `recv` traps the handler when the client breaks the conversation.
            "tcpy:handler/connection.recv": async | trappable,
            default: async,
        },
        exports: { default: async },
    });
}

/// One command's compiled component, pre-linked so a request only instantiates it.
pub struct Handler {
    name: Arc<str>,
    pre: bindings::HandlerPre<RequestState>,
}

impl Handler {
    pub(super) fn compile(
        engine: &Engine,
        linker: &Linker<RequestState>,
        name: &str,
        bytes: &[u8],
    ) -> Result<Self, LoadError> {
        let component = Component::new(engine, bytes).map_err(LoadError::Compile)?;
        let pre = linker.instantiate_pre(&component).map_err(LoadError::World)?;
        let pre = bindings::HandlerPre::new(pre).map_err(LoadError::World)?;
        Ok(Self {
            name: name.into(),
            pre,
        })
    }

    /// The command this handler serves.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub(super) fn pre(&self) -> &bindings::HandlerPre<RequestState> {
        &self.pre
    }
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
