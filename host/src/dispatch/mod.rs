//! From a message to its answer: parse it, find its command, admit it (one permit per
//! instance the pool holds, else `busy`), run it, and account for it: the request's
//! log line and its metrics. Nothing here knows about sockets.

pub mod command;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tcpy_protocol::{ErrorCode, Message, Object, Request, error_response};
use tokio::sync::Semaphore;

pub use command::{Command, Commands, Execution};

use crate::metrics::Outcome;
use crate::report::{MAX_ECHO, escaped};
use crate::runtime::{Conversation, Runtime};
use crate::status::Status;

/// Runs requests: shared by every connection.
pub struct Dispatcher {
    commands: Arc<dyn Commands>,
    runtime: Arc<Runtime>,
    /// One permit per instance the pool holds: a request that finds none gets `busy`
    /// at once instead of waiting.
    in_flight: Arc<Semaphore>,
    status: Arc<Status>,
}

impl Dispatcher {
    /// Runs the commands `commands` finds on `runtime`, as many at once as its limits
    /// allow, counting them in `status`.
    pub fn new(commands: Arc<dyn Commands>, runtime: Arc<Runtime>, status: Arc<Status>) -> Self {
        let max_in_flight = runtime.limits().max_in_flight as usize;
        Self {
            commands,
            runtime,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            status,
        }
    }

    /// Serves the commands `commands` finds instead, from the next request on.
    pub fn with_commands(self, commands: Arc<dyn Commands>) -> Self {
        Self { commands, ..self }
    }

    /// Requests running now.
    pub fn requests_in_flight(&self) -> usize {
        (self.runtime.limits().max_in_flight as usize).saturating_sub(self.in_flight.available_permits())
    }

    /// Answers one message from `peer`. `conversation` carries the handler's `send()`
    /// and `recv()` to that client, if the request runs one.
    pub async fn dispatch(
        &self,
        message: Message,
        peer: SocketAddr,
        conversation: impl FnOnce() -> Box<dyn Conversation>,
    ) -> Object {
        let started = Instant::now();
        let request = match message.decode() {
            Ok(object) => Request::from_object(object).map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        let request = match request {
            Ok(request) => request,
            Err(reason) => {
                tracing::debug!(%peer, %reason, "bad request");
                return self.refuse(ErrorCode::BadRequest, reason);
            }
        };
        let Some(command) = self.commands.get(&request.cmd) else {
            // The name is the client's: a short, escaped prefix of it, in the log and
            // in the answer (echoing all of a 1 MiB name would not fit a response).
            let shown = escaped(&request.cmd, MAX_ECHO);
            tracing::debug!(%peer, cmd = %shown, "unknown command");
            return self.refuse(ErrorCode::UnknownCommand, format!("unknown command `{shown}`"));
        };
        let cmd = command.name();
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::warn!(%peer, cmd, "busy: too many requests in flight");
            self.account(cmd, Outcome::Host(ErrorCode::Busy), started);
            return error_response(ErrorCode::Busy, "too many requests in flight; try again later");
        };
        let _running = self.status.metrics().request_running();
        let result = command
            .execute(&self.runtime, request.params, conversation())
            .await;
        let elapsed_us = started.elapsed().as_micros() as u64;
        match result {
            Ok(response) => {
                let succeeded = response.get("success") == Some(&serde_json::Value::Bool(true));
                let outcome = if succeeded {
                    Outcome::Success
                } else {
                    Outcome::Error
                };
                tracing::debug!(%peer, cmd, elapsed_us, %outcome, "request served");
                self.account(cmd, outcome, started);
                response
            }
            Err(error) => {
                let code = error.code();
                tracing::warn!(%peer, cmd, elapsed_us, outcome = %code, %error, "request failed");
                self.account(cmd, Outcome::Host(code), started);
                error_response(code, error.to_string())
            }
        }
    }

    /// Answers a request the host will not run with `code` and `message`, counting it
    /// (under no command: what it named is the client's, and unbounded).
    pub fn refuse(&self, code: ErrorCode, message: impl Into<String>) -> Object {
        self.status
            .metrics()
            .request_done("", Outcome::Host(code), std::time::Duration::ZERO);
        error_response(code, message)
    }

    fn account(&self, cmd: &str, outcome: Outcome, started: Instant) {
        self.status
            .metrics()
            .request_done(cmd, outcome, started.elapsed());
    }
}
