//! What a request runs: a [`Command`], found by name through [`Commands`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tcpy_protocol::Object;

use crate::runtime::{CompiledHandler, Conversation, ExecError, Runtime};

/// A running command's answer, or why it has none.
pub type Execution<'a> = Pin<Box<dyn Future<Output = Result<Object, ExecError>> + Send + 'a>>;

/// Something a request can run.
pub trait Command: Send + Sync {
    /// The command's name: what requests call it, and its label in logs and metrics.
    fn name(&self) -> &str;

    /// Whether a caller known as `identity` (`None`: anonymous) may run it.
    fn admits(&self, identity: Option<&str>) -> bool;

    /// The longest one request of it may run, waits for the client included.
    fn max_request_time(&self) -> Duration;

    /// Runs one request of `caller` with `params`, talking to its client through
    /// `conversation`.
    fn execute<'a>(
        &'a self,
        runtime: &'a Runtime,
        params: Object,
        conversation: Box<dyn Conversation>,
        caller: Option<&'a str>,
    ) -> Execution<'a>;
}

/// Finds the command a request names.
pub trait Commands: Send + Sync {
    /// The command `name` names, if one is served.
    fn get(&self, name: &str) -> Option<Arc<dyn Command>>;
}

impl Command for CompiledHandler {
    fn name(&self) -> &str {
        CompiledHandler::name(self)
    }

    fn admits(&self, identity: Option<&str>) -> bool {
        self.sandbox().access.admits(identity)
    }

    fn max_request_time(&self) -> Duration {
        self.sandbox().limits.max_request_time
    }

    fn execute<'a>(
        &'a self,
        runtime: &'a Runtime,
        params: Object,
        conversation: Box<dyn Conversation>,
        caller: Option<&'a str>,
    ) -> Execution<'a> {
        Box::pin(runtime.execute(self, params, conversation, caller))
    }
}
