//! Fail-over: a client of several hosts, and the attempts of a request under a
//! [`RetryPolicy`], which send it again only when that is safe.

#[cfg(test)]
mod tests;

use std::time::Duration;

use serde_json::Value;
use tcpy_protocol::{ErrorCode, Message, Object, is_response};
use tokio::time::Instant;

use super::{Client, Connection, read, request, success, write};
use crate::address::Addresses;
use crate::retry::{Attempts, Failure, has_idempotency_key, not_run, with_idempotency_key};
use crate::{ClientError, RetryPolicy};

impl Client {
    /// A client of several hosts that fails over between them, under the default
    /// [`RetryPolicy`]: `host:port` strings, an IPv6 literal in brackets
    /// (`[::1]:7272`). It starts at a random one, so that clients given the same list
    /// spread over it, keeps to it while it answers, and moves round the list when an
    /// attempt fails.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tcpy_client::ClientError> {
    /// use serde_json::json;
    /// use tcpy_client::Client;
    ///
    /// let mut client = Client::with_addresses(["tcpy-a:7272", "tcpy-b:7272"])?;
    /// let response = client.execute_idempotent("add", json!({"x": 1, "y": 2})).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ClientError::InvalidAddress`] for an entry that is not `host:port`;
    /// [`ClientError::NoAddresses`] for an empty list.
    pub fn with_addresses<I>(addresses: I) -> Result<Self, ClientError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Ok(Self::of(
            Addresses::parse(addresses)?,
            Some(RetryPolicy::default()),
        ))
    }

    /// Retries requests under `policy`: one made by [`Client::new`] then retries its
    /// one host, and one made by [`Client::with_addresses`] its list, with `policy`
    /// instead of the default.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Like [`Client::execute`], for a request that is harmless to run twice (it reads,
    /// or sets a value): under a retry policy it is also sent again when it was written
    /// and no answer came.
    ///
    /// # Errors
    /// As [`Client::execute`], but never [`ClientError::MaybeRan`].
    pub async fn execute_idempotent(
        &mut self,
        cmd: &str,
        params: impl Into<Value>,
    ) -> Result<Object, ClientError> {
        self.execute_as(cmd, params.into(), true).await
    }

    /// Like [`Client::execute`], with `key` as the request's idempotency key (its
    /// `"idempotency_key"` field): a host that records keys runs it at most once,
    /// however often it is sent, and answers a repeat with the first run's answer. So
    /// under a retry policy it is also sent again when it was written and no answer
    /// came, as [`Client::execute_idempotent`] is. Make keys with
    /// [`new_idempotency_key`](crate::new_idempotency_key); keep one to send the same
    /// request again later.
    ///
    /// # Errors
    /// [`ClientError::InvalidParams`] if `key` is not 1 to
    /// [`MAX_IDEMPOTENCY_KEY`](crate::MAX_IDEMPOTENCY_KEY) bytes or `params`
    /// already hold one; otherwise as [`Client::execute_idempotent`].
    pub async fn execute_with_key(
        &mut self,
        cmd: &str,
        params: impl Into<Value>,
        key: impl Into<String>,
    ) -> Result<Object, ClientError> {
        let params = with_idempotency_key(params.into(), key.into())?;
        self.execute_as(cmd, params, false).await
    }

    /// Like [`Client::execute_idempotent`], but an error response is an error.
    ///
    /// # Errors
    /// As [`Client::call`], but never [`ClientError::MaybeRan`].
    pub async fn call_idempotent(
        &mut self,
        cmd: &str,
        params: impl Into<Value>,
    ) -> Result<Object, ClientError> {
        success(self.execute_idempotent(cmd, params).await?)
    }

    /// [`Client::execute`], with `idempotent` saying whether running it twice is harmless.
    pub(super) async fn execute_as(
        &mut self,
        cmd: &str,
        params: Value,
        idempotent: bool,
    ) -> Result<Object, ClientError> {
        let request = request(cmd, params)?;
        let idempotent = idempotent || has_idempotency_key(&request);
        let request = self.encode(&request)?;
        let Some(policy) = self.retry else {
            return self.attempt(&request, None).await.map_err(Failure::into_error);
        };
        // NB: a loop here and in `connect_any`, not one generic over an async closure:
        // rustc cannot prove such a closure's future `Send` for every lifetime, and
        // callers spawn these futures.
        let mut attempts = Attempts::start(policy);
        loop {
            let addr = self.addr();
            match self.attempt(&request, attempts.deadline()).await {
                Ok(response) => return Ok(response),
                Err(failure) => self.back_off(&mut attempts, addr, failure, idempotent).await?,
            }
        }
    }

    /// A new connection, under the retry policy to the first address that takes it.
    pub(super) async fn connect_any(&mut self) -> Result<Connection, ClientError> {
        let Some(policy) = self.retry else {
            return self.open(None).await;
        };
        let mut attempts = Attempts::start(policy);
        loop {
            let addr = self.addr();
            match self.open(attempts.deadline()).await {
                Ok(connection) => return Ok(connection),
                Err(error) => {
                    self.back_off(&mut attempts, addr, Failure::NotRun(error), false)
                        .await?;
                }
            }
        }
    }

    /// After a failed attempt at `addr`: moves on to the next address and waits the
    /// backoff, or returns the error that ends the call.
    async fn back_off(
        &mut self,
        attempts: &mut Attempts,
        addr: String,
        failure: Failure,
        idempotent: bool,
    ) -> Result<(), ClientError> {
        self.addresses.advance();
        let wait = attempts.failed(addr, failure, idempotent)?;
        tokio::time::sleep(wait).await;
        self.retries = self.retries.saturating_add(1);
        Ok(())
    }

    /// One attempt at `request`, on the kept connection or a new one; each step waits no
    /// longer than the client's timeout, nor past `deadline`.
    async fn attempt(&mut self, request: &Message, deadline: Option<Instant>) -> Result<Object, Failure> {
        let (mut connection, reused) = match self.connection.take() {
            Some(connection) => (connection, true),
            None => (self.open(deadline).await.map_err(Failure::NotRun)?, false),
        };
        // NB: the connection stays out of `self` until the response is in, so that an
        // error or a cancelled future drops it instead of leaving the next request to
        // read this one's response.
        let mut response = self.exchange(&mut connection, request, deadline).await?;
        if reused && let Some(code) = closed_unrun(&response) {
            // The host closed the kept connection (idle, or shutting down) before this
            // request ran: send it again on a new connection, which a balancer gives
            // to another host. If the host is going away and there is no other, its
            // `shutting_down` answer stands.
            match self.open(deadline).await {
                Ok(fresh) => {
                    connection = fresh;
                    response = self.exchange(&mut connection, request, deadline).await?;
                }
                Err(_) if code == ErrorCode::ShuttingDown => {}
                Err(error) => return Err(Failure::NotRun(error)),
            }
        }
        if !is_response(&response) {
            return Err(Failure::Final(ClientError::UnexpectedMessage(response)));
        }
        // Without a policy, such answers are returned as they came, as they always were.
        if self.retry.is_some() && not_run(&response) {
            return Err(Failure::NotRun(ClientError::server(response)));
        }
        // A connection the host may have closed after its answer is not kept: the next
        // request would be written into a closed socket.
        if !may_close_after(&response) {
            self.connection = Some(connection);
        }
        Ok(response)
    }

    /// Writes `request` on `connection` and reads its answer.
    async fn exchange(
        &self,
        connection: &mut Connection,
        request: &Message,
        deadline: Option<Instant>,
    ) -> Result<Object, Failure> {
        // NB: a write that failed may still have delivered the request.
        write(connection, request.clone(), self.step(deadline))
            .await
            .map_err(Failure::MaybeRan)?;
        read(connection, self.step(deadline))
            .await
            .map_err(Failure::after_write)
    }

    /// How long the next step may take: the client's timeout, but not past `deadline`.
    pub(super) fn step(&self, deadline: Option<Instant>) -> Duration {
        deadline.map_or(self.timeout, |deadline| {
            self.timeout
                .min(deadline.saturating_duration_since(Instant::now()))
        })
    }
}

/// Whether the host may close the connection after `response`: for some codes it
/// always does (`idle_timeout`, `read_timeout`, `shutting_down`, `unauthorized`), for
/// others in some cases (`busy` past the connection limit, `too_large` for a request).
fn may_close_after(response: &Object) -> bool {
    let code = response
        .get("code")
        .and_then(Value::as_str)
        .and_then(ErrorCode::parse);
    response.get("error") == Some(&Value::Bool(true))
        && matches!(
            code,
            Some(
                ErrorCode::Busy
                    | ErrorCode::TooLarge
                    | ErrorCode::IdleTimeout
                    | ErrorCode::ReadTimeout
                    | ErrorCode::ShuttingDown
                    | ErrorCode::Unauthorized
            )
        )
}

/// The code, if `response` is the host closing the connection without running the
/// request it answers: `idle_timeout` or `shutting_down`.
fn closed_unrun(response: &Object) -> Option<ErrorCode> {
    if response.get("error") != Some(&Value::Bool(true)) {
        return None;
    }
    let code = ErrorCode::parse(response.get("code")?.as_str()?)?;
    matches!(code, ErrorCode::IdleTimeout | ErrorCode::ShuttingDown).then_some(code)
}
