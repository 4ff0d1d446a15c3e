//! From a message to its answer: parse it, find its command, admit it (one permit per
//! instance the pool holds, else `busy`), run it, and account for it: the request's
//! log line and its metrics. Nothing here knows about sockets.

pub mod command;
mod session;

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tcpy_protocol::{ErrorCode, Message, Object, Request, error_response};
use tokio::sync::Semaphore;

pub use command::{Command, Commands, Execution};
pub use session::Session;

use crate::auth::Tokens;
use crate::idempotency::{Admission, Ledger};
use crate::metrics::{IdempotencyOutcome, Outcome};
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
    /// If set, a connection's first message must be `auth` with one of these tokens.
    tokens: Option<Arc<Tokens>>,
    /// Where keyed requests are claimed and recorded; without one they are refused.
    ledger: Option<Arc<Ledger>>,
}

/// The command a connection's first message must be when the host asks for tokens.
pub const AUTH: &str = "auth";

/// An answer, and whether the connection must close after it.
#[derive(Debug)]
pub struct Reply {
    /// The answer.
    pub object: Object,
    /// Whether the connection closes once it is written (a failed `auth`).
    pub close: bool,
}

impl From<Object> for Reply {
    fn from(object: Object) -> Self {
        Self { object, close: false }
    }
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
            tokens: None,
            ledger: None,
        }
    }

    /// Runs requests that carry an `idempotency_key` at most once, with `ledger`.
    pub fn with_ledger(self, ledger: Arc<Ledger>) -> Self {
        Self {
            ledger: Some(ledger),
            ..self
        }
    }

    /// Asks every connection for one of `tokens` first (see [`AUTH`]).
    pub fn with_tokens(self, tokens: Arc<Tokens>) -> Self {
        Self {
            tokens: Some(tokens),
            ..self
        }
    }

    /// Whether connections must authenticate with a token first.
    pub fn requires_token(&self) -> bool {
        self.tokens.is_some()
    }

    /// Serves the commands `commands` finds instead, from the next request on.
    pub fn with_commands(self, commands: Arc<dyn Commands>) -> Self {
        Self { commands, ..self }
    }

    /// Requests running now.
    pub fn requests_in_flight(&self) -> usize {
        (self.runtime.limits().max_in_flight as usize).saturating_sub(self.in_flight.available_permits())
    }

    /// Answers one message of `session`'s client. `conversation` carries the handler's
    /// `send()` and `recv()` to that client, if the request runs one.
    pub async fn dispatch(
        &self,
        message: Message,
        session: &mut Session,
        conversation: impl FnOnce() -> Box<dyn Conversation>,
    ) -> Reply {
        let started = Instant::now();
        let request = match message.decode() {
            Ok(object) => Request::from_object(object).map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        if let Some(tokens) = &self.tokens
            && !session.is_authenticated()
        {
            return self.authenticate(request.ok(), tokens, session);
        }
        let request = match request {
            Ok(request) => request,
            Err(reason) => {
                tracing::debug!(%reason, "bad request");
                return self.refuse(ErrorCode::BadRequest, reason).into();
            }
        };
        let Some(command) = self.commands.get(&request.cmd) else {
            // The name is the client's: a short, escaped prefix of it, in the log and
            // in the answer (echoing all of a 1 MiB name would not fit a response).
            let shown = escaped(&request.cmd, MAX_ECHO);
            tracing::debug!(cmd = %shown, "unknown command");
            return self
                .refuse(ErrorCode::UnknownCommand, format!("unknown command `{shown}`"))
                .into();
        };
        let cmd = command.name();
        let identity = session.identity();
        if !command.admits(identity) {
            tracing::warn!(cmd, identity, "forbidden: not on the handler's access list");
            self.account(cmd, Outcome::Host(ErrorCode::Forbidden), started);
            let who = identity.map_or_else(|| "an anonymous caller".to_owned(), |id| format!("`{id}`"));
            return error_response(ErrorCode::Forbidden, format!("{who} may not run `{cmd}`")).into();
        }
        let claim = match &request.idempotency_key {
            None => None,
            Some(key) => {
                let Some(ledger) = &self.ledger else {
                    return self
                        .refuse(ErrorCode::BadRequest, "this host keeps no idempotency keys")
                        .into();
                };
                match ledger
                    .admit(identity, key, cmd, &request.params, command.max_request_time())
                    .await
                {
                    Admission::Run(claim) => Some((ledger, claim)),
                    Admission::Replay(response) => {
                        tracing::debug!(cmd, identity, "replayed: the key's request ran already");
                        self.status.metrics().idempotency(IdempotencyOutcome::Replayed);
                        return response.into();
                    }
                    Admission::Refuse(answer) => {
                        let outcome = IdempotencyOutcome::refused(&answer);
                        tracing::warn!(cmd, identity, %outcome, "keyed request not run");
                        self.status.metrics().idempotency(outcome);
                        self.account_answer(cmd, &answer, started);
                        return answer.into();
                    }
                }
            }
        };
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::warn!(cmd, "busy: too many requests in flight");
            if let Some((ledger, claim)) = claim {
                ledger.release(claim).await;
            }
            self.account(cmd, Outcome::Host(ErrorCode::Busy), started);
            return error_response(ErrorCode::Busy, "too many requests in flight; try again later").into();
        };
        let _running = self.status.metrics().request_running();
        let result = command
            .execute(&self.runtime, request.params, conversation(), identity)
            .await;
        let elapsed_us = started.elapsed().as_micros() as u64;
        let response = match result {
            Ok(response) => {
                let succeeded = response.get("success") == Some(&Value::Bool(true));
                let outcome = if succeeded {
                    Outcome::Success
                } else {
                    Outcome::Error
                };
                tracing::debug!(cmd, identity, elapsed_us, %outcome, "request served");
                self.account(cmd, outcome, started);
                response
            }
            Err(error) => {
                let code = error.code();
                tracing::warn!(cmd, identity, elapsed_us, outcome = %code, %error, "request failed");
                self.account(cmd, Outcome::Host(code), started);
                error_response(code, error.to_string())
            }
        };
        // NB: every answer of a request that ran is recorded, failures too: the handler
        // may have changed the world before it failed, so it must not run again.
        if let Some((ledger, claim)) = claim {
            self.status.metrics().idempotency(IdempotencyOutcome::Ran);
            ledger.record(claim, &response).await;
        }
        response.into()
    }

    /// The answer to the first message of a connection when the host asks for tokens:
    /// `{"cmd": "auth", "token": "…"}` with a good token is answered with the identity
    /// it names; anything else is `unauthorized`, and the connection closes.
    fn authenticate(&self, request: Option<Request>, tokens: &Tokens, session: &mut Session) -> Reply {
        let token = request
            .as_ref()
            .filter(|request| request.cmd == AUTH)
            .and_then(|request| request.params.get("token"))
            .and_then(Value::as_str);
        let Some(token) = token else {
            tracing::warn!("unauthorized: the first message is not `auth` with a token");
            let message = format!("this host needs {{\"cmd\": \"{AUTH}\", \"token\": \"…\"}} first");
            return self.refuse_and_close(ErrorCode::Unauthorized, message);
        };
        match tokens.identify(token) {
            Some(identity) => {
                tracing::debug!(identity = %identity, "authenticated");
                let mut answer = Object::new();
                answer.insert("success".to_owned(), Value::Bool(true));
                answer.insert("identity".to_owned(), Value::String(identity.to_string()));
                session.authenticate(identity);
                answer.into()
            }
            None => {
                tracing::warn!("unauthorized: unknown token");
                self.refuse_and_close(ErrorCode::Unauthorized, "unknown token")
            }
        }
    }

    fn refuse_and_close(&self, code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply {
            object: self.refuse(code, message),
            close: true,
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

    /// Counts a host's error `answer` to a request of `cmd`.
    fn account_answer(&self, cmd: &str, answer: &Object, started: Instant) {
        let code = answer
            .get("code")
            .and_then(Value::as_str)
            .and_then(ErrorCode::parse)
            .unwrap_or(ErrorCode::Unavailable);
        self.account(cmd, Outcome::Host(code), started);
    }

    fn account(&self, cmd: &str, outcome: Outcome, started: Instant) {
        self.status
            .metrics()
            .request_done(cmd, outcome, started.elapsed());
    }
}
