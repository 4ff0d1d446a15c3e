//! Fail-over: which failures allow another attempt, how long to wait before it, and
//! idempotency keys.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use serde_json::Value;
use tcpy_protocol::{CodecError, ErrorCode, IDEMPOTENCY_KEY, MAX_IDEMPOTENCY_KEY, Object};
use tokio::time::Instant;

use crate::ClientError;

/// How a client retries a request that failed in a way that allows it (see
/// [`Client::with_addresses`](crate::Client::with_addresses)): after a random wait
/// (exponential backoff with full jitter), at the next address, until the request
/// has taken `total`.
///
/// ```
/// use std::time::Duration;
/// use tcpy_client::RetryPolicy;
///
/// let policy = RetryPolicy { total: Duration::from_secs(5), ..RetryPolicy::default() };
/// assert_eq!(policy.base, Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first backoff step: the wait before retry `n` (0 for the first) is a random
    /// time up to `base × 2ⁿ`, and never more than `cap`. Default 50 ms.
    pub base: Duration,
    /// The longest wait between two attempts. Default 2 s.
    pub cap: Duration,
    /// The longest one request may take, every attempt and wait included: each step of
    /// an attempt waits no longer than what is left, and when the next wait would end
    /// past it the call fails with [`ClientError::GaveUp`]. Default 30 s.
    pub total: Duration,
}

impl Default for RetryPolicy {
    /// 50 ms base, 2 s cap, 30 s in total.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
            total: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `retry` (0 for the first): full jitter, a random time up
    /// to `min(cap, base × 2^retry)`, so that clients failed over together do not come
    /// back together.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(2_u32.saturating_pow(retry))
            .min(self.cap);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(..=nanos))
    }
}

/// Why one attempt failed, which decides whether another may be made.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Nothing ran: the connection failed before the request was written, or the host
    /// answered that it did not run it. Always safe to try again.
    NotRun(ClientError),
    /// The request was written, then the connection failed or timed out before the
    /// answer: it may have run. Safe to try again only if running it twice is.
    MaybeRan(ClientError),
    /// Another attempt would not help: the host answered, or the request cannot go.
    Final(ClientError),
}

impl Failure {
    /// What a failure to read the answer of a written request means: a connection that
    /// failed or timed out may have run it; an answer that cannot be read is final.
    pub(crate) fn after_write(error: ClientError) -> Self {
        match error {
            ClientError::Timeout { .. }
            | ClientError::Closed
            | ClientError::Io(_)
            | ClientError::Codec(CodecError::Truncated) => Self::MaybeRan(error),
            other => Self::Final(other),
        }
    }

    /// The error, for a caller that makes no other attempt.
    pub(crate) fn into_error(self) -> ClientError {
        match self {
            Self::NotRun(error) | Self::MaybeRan(error) | Self::Final(error) => error,
        }
    }
}

/// The attempts of one call under a retry policy: its deadline, how many were made,
/// and where.
#[derive(Debug)]
pub(crate) struct Attempts {
    policy: RetryPolicy,
    deadline: Option<Instant>,
    made: u32,
    tried: Vec<String>,
}

impl Attempts {
    /// The first attempt is about to be made.
    pub(crate) fn start(policy: RetryPolicy) -> Self {
        Self {
            policy,
            // A total too long to add up is no bound at all.
            deadline: Instant::now().checked_add(policy.total),
            made: 0,
            tried: Vec::new(),
        }
    }

    /// When the call must be over.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Records an attempt at `addr` that failed: the wait before the next, or the
    /// error that ends the call, when another is not safe or would come too late.
    pub(crate) fn failed(
        &mut self,
        addr: String,
        failure: Failure,
        idempotent: bool,
    ) -> Result<Duration, ClientError> {
        self.made = self.made.saturating_add(1);
        let error = match failure {
            Failure::Final(error) => return Err(error),
            Failure::MaybeRan(source) if !idempotent => {
                let source = Box::new(source);
                return Err(ClientError::MaybeRan { addr, source });
            }
            Failure::NotRun(error) | Failure::MaybeRan(error) => error,
        };
        if !self.tried.contains(&addr) {
            self.tried.push(addr);
        }
        let wait = self.policy.backoff(self.made - 1);
        let resume = Instant::now().checked_add(wait);
        if self
            .deadline
            .is_some_and(|deadline| resume.is_none_or(|resume| resume >= deadline))
        {
            return Err(ClientError::GaveUp {
                attempts: self.made,
                within: self.policy.total,
                tried: std::mem::take(&mut self.tried),
                source: Box::new(error),
            });
        }
        Ok(wait)
    }
}

/// Whether `response` is the host saying it did not run the request, which may then
/// be sent again, to it later or to another host.
pub(crate) fn not_run(response: &Object) -> bool {
    let code = response
        .get("code")
        .and_then(Value::as_str)
        .and_then(ErrorCode::parse);
    response.get("error") == Some(&Value::Bool(true))
        && matches!(
            code,
            Some(
                ErrorCode::Busy
                    | ErrorCode::ShuttingDown
                    | ErrorCode::IdleTimeout
                    | ErrorCode::Unavailable
                    | ErrorCode::InProgress
            )
        )
}

/// Whether `request` carries an idempotency key, so that the host runs it at most once
/// however often it is sent.
pub(crate) fn has_idempotency_key(request: &Object) -> bool {
    matches!(request.get(IDEMPOTENCY_KEY), Some(Value::String(_)))
}

/// `params` with `key` as their idempotency key.
pub(crate) fn with_idempotency_key(params: Value, key: String) -> Result<Value, ClientError> {
    if !(1..=MAX_IDEMPOTENCY_KEY).contains(&key.len()) {
        return Err(ClientError::InvalidParams {
            reason: format!("an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY} bytes"),
        });
    }
    let mut params = match params {
        Value::Null => Object::new(),
        Value::Object(params) => params,
        // `execute` says what is wrong with them.
        other => return Ok(other),
    };
    if params.contains_key(IDEMPOTENCY_KEY) {
        return Err(ClientError::InvalidParams {
            reason: format!("params already hold \"{IDEMPOTENCY_KEY}\""),
        });
    }
    params.insert(IDEMPOTENCY_KEY.to_owned(), Value::String(key));
    Ok(Value::Object(params))
}

/// A fresh idempotency key: 128 random bits as 32 hex digits.
///
/// Unique in practice, not a secret. Give one to a request with
/// [`Client::execute_with_key`](crate::Client::execute_with_key); sent again with the
/// same key, the request gets the first run's answer instead of running twice.
pub fn new_idempotency_key() -> String {
    // NB: not `fastrand`, whose generator is seeded from the time and the thread id
    // alone: clients started at the same instant could share keys. `RandomState` draws
    // its SipHash keys from the OS once per thread and steps them for each new one.
    let half = || RandomState::new().build_hasher().finish();
    format!("{:016x}{:016x}", half(), half())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tcpy_protocol::test_support::object;

    #[test]
    fn backoff_grows_exponentially_with_full_jitter_up_to_the_cap() {
        let policy = RetryPolicy::default();
        for retry in 0..64 {
            let ceiling = Duration::from_millis(50 * 2_u64.pow(retry.min(10))).min(policy.cap);
            let waits: Vec<_> = (0..200).map(|_| policy.backoff(retry)).collect();
            assert!(
                waits.iter().all(|wait| *wait <= ceiling),
                "retry {retry}: {waits:?}"
            );
            let longest = waits.iter().max().copied().unwrap_or_default();
            assert!(
                longest > ceiling / 2,
                "retry {retry}: jitter spans the range, {longest:?}"
            );
        }
        assert!((0..200).any(|_| policy.backoff(30) < Duration::from_millis(500)));
    }

    #[test]
    fn only_answers_that_mean_not_run_allow_a_retry() {
        for code in [
            "busy",
            "shutting_down",
            "idle_timeout",
            "unavailable",
            "in_progress",
        ] {
            assert!(not_run(&object(json!({"error": true, "code": code}))), "{code}");
        }
        for code in [
            "timeout",
            "handler_failed",
            "bad_request",
            "idempotency_conflict",
            "mine",
        ] {
            assert!(!not_run(&object(json!({"error": true, "code": code}))), "{code}");
        }
        assert!(!not_run(&object(json!({"success": true, "code": "busy"}))));
    }

    #[test]
    fn a_failed_exchange_may_have_run_but_a_bad_answer_is_final() {
        assert!(matches!(
            Failure::after_write(ClientError::Closed),
            Failure::MaybeRan(_)
        ));
        assert!(matches!(
            Failure::after_write(ClientError::Codec(CodecError::Truncated)),
            Failure::MaybeRan(_)
        ));
        assert!(matches!(
            Failure::after_write(ClientError::Codec(CodecError::TooLarge { max: 1 })),
            Failure::Final(_)
        ));
    }

    #[test]
    fn keys_are_attached_once_and_within_bounds() {
        let params = with_idempotency_key(json!({"x": 1}), "k".into()).expect("valid");
        assert_eq!(params, json!({"x": 1, "idempotency_key": "k"}));
        assert!(has_idempotency_key(&object(params.clone())));
        let none = with_idempotency_key(Value::Null, "k".into()).expect("valid");
        assert_eq!(none, json!({"idempotency_key": "k"}));
        for (params, key) in [
            (params, "k".to_owned()),
            (json!({}), String::new()),
            (json!({}), "k".repeat(MAX_IDEMPOTENCY_KEY + 1)),
        ] {
            let error = with_idempotency_key(params, key).expect_err("refused");
            assert!(matches!(error, ClientError::InvalidParams { .. }), "{error:?}");
        }
        assert!(!has_idempotency_key(&object(json!({"idempotency_key": 7}))));
    }

    #[test]
    fn fresh_keys_are_32_hex_digits_and_differ() {
        let (a, b) = (new_idempotency_key(), new_idempotency_key());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
    }
}
