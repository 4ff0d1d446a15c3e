//! One instance kept for many calls: **not** how tcpy serves requests (each one gets a
//! fresh instance, and nothing survives it), but the floor any per-request sandbox is
//! measured against. Only the benchmarks and the `request_cost` example use it.

use std::time::Instant;

use tcpy_protocol::Object;
use wasmtime::Store;

use super::bindings;
use super::state::RequestState;
use super::{CompiledHandler, Conversation, ExecError, Runtime, error};

/// An instance of a handler that runs call after call in the same store, so its
/// memory and globals carry over from one call to the next.
///
/// For benchmarks only: it shows what calling `execute` costs without instantiating.
pub struct ReusedInstance<'a> {
    runtime: &'a Runtime,
    store: Store<RequestState>,
    instance: bindings::Handler,
}

impl Runtime {
    /// Instantiates `handler` once, for [`ReusedInstance::execute`] to call again and
    /// again. For benchmarks only: a server must use [`Runtime::execute`].
    ///
    /// # Errors
    /// An [`ExecError`] if the instance cannot be made (e.g. the pool is exhausted).
    pub async fn instantiate_reused(
        &self,
        handler: &CompiledHandler,
        conversation: Box<dyn Conversation>,
    ) -> Result<ReusedInstance<'_>, ExecError> {
        let mut store = self.new_store(handler, conversation, None)?;
        let started = Instant::now();
        match handler.pre().instantiate_async(&mut store).await {
            Ok(instance) => Ok(ReusedInstance {
                runtime: self,
                store,
                instance,
            }),
            Err(error) => Err(self.classify(error, store.data(), started)),
        }
    }
}

impl ReusedInstance<'_> {
    /// Calls `execute` with `params` on this instance: the same work as
    /// [`Runtime::execute`] but for making the store and the instance.
    ///
    /// # Errors
    /// As [`Runtime::execute`].
    pub async fn execute(&mut self, params: Object) -> Result<Object, ExecError> {
        let params = serde_json::Value::Object(params).to_string();
        self.store.data_mut().restart();
        let started = Instant::now();
        match self.instance.call_execute(&mut self.store, &params).await {
            Ok(text) => error::parse_response(&text, self.runtime.limits.max_message),
            Err(error) => Err(self.runtime.classify(error, self.store.data(), started)),
        }
    }
}
