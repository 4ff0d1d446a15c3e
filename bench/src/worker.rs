//! One connection's loop: keep `depth` requests in flight, check and time each answer.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::Value;
use tcpy_protocol::{Framing, Message, Object, WireCodec};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::progress::Counters;
use crate::{Connector, Stream};

/// Largest answer accepted; the host's own default limit.
const MAX_MESSAGE: usize = tcpy_protocol::DEFAULT_MAX_MESSAGE;

/// What one connection sends and checks.
#[derive(Clone)]
pub(crate) struct Job {
    pub(crate) message: Message,
    pub(crate) framing: Framing,
    pub(crate) depth: usize,
    pub(crate) expect: Object,
    pub(crate) response_timeout: Duration,
    /// Requests sent before this are warm-up: answered and checked, not reported.
    pub(crate) measure_from: Instant,
    pub(crate) budget: Arc<Budget>,
    pub(crate) counters: Arc<Counters>,
    /// Whether the connection sends one request only (see [`churn`]).
    pub(crate) one_request: bool,
}

/// The requests all connections may still send, shared between them.
pub(crate) struct Budget {
    measure_from: Instant,
    until: Instant,
    remaining: Option<AtomicU64>,
}

impl Budget {
    pub(crate) fn new(stop: crate::Stop, measure_from: Instant) -> Self {
        Self {
            measure_from,
            until: measure_from + stop.duration,
            remaining: stop.requests.map(AtomicU64::new),
        }
    }

    /// Whether no request is left at `now`.
    fn is_spent(&self, now: Instant) -> bool {
        now >= self.until
            || self
                .remaining
                .as_ref()
                .is_some_and(|left| now >= self.measure_from && left.load(Ordering::Relaxed) == 0)
    }

    /// Takes one request from the budget, if any is left at `now`. Warm-up requests
    /// are free.
    fn claim(&self, now: Instant) -> bool {
        if now >= self.until {
            return false;
        }
        match &self.remaining {
            Some(remaining) if now >= self.measure_from => remaining
                .try_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(1))
                .is_ok(),
            _ => true,
        }
    }
}

/// What one connection (or, merged, a whole run) saw during the measured window.
pub(crate) struct Outcome {
    /// Latencies of the right answers, in nanoseconds.
    pub(crate) latency: Histogram<u64>,
    /// Answers that were not what `expect` asks for, and are not error responses.
    pub(crate) wrong: u64,
    /// Error responses, by their `code` (`"handler"` for a handler's own errors).
    pub(crate) errors: BTreeMap<String, u64>,
    /// Requests that got no answer: the connection failed, closed or timed out.
    pub(crate) lost: u64,
    /// The first problem seen, to say what went wrong.
    pub(crate) first_problem: Option<String>,
}

impl Default for Outcome {
    fn default() -> Self {
        Self {
            // 3 significant digits, growing as needed: ~100 KiB for latencies up to a second.
            latency: Histogram::new(3).expect("3 significant digits are supported"),
            wrong: 0,
            errors: BTreeMap::new(),
            lost: 0,
            first_problem: None,
        }
    }
}

impl Outcome {
    fn problem(&mut self, description: impl FnOnce() -> String) {
        if self.first_problem.is_none() {
            self.first_problem = Some(description());
        }
    }

    /// Counts `lost` requests that got no answer, for `reason`.
    pub(crate) fn note_failure(&mut self, reason: String, lost: u64) {
        self.lost += lost;
        self.problem(|| reason);
    }

    /// Adds another connection's outcome to this one.
    pub(crate) fn merge(&mut self, other: Outcome) {
        // Both histograms auto-resize, so adding cannot fail on range.
        let _ = self.latency.add(&other.latency);
        self.wrong += other.wrong;
        for (code, count) in other.errors {
            *self.errors.entry(code).or_default() += count;
        }
        self.lost += other.lost;
        if self.first_problem.is_none() {
            self.first_problem = other.first_problem;
        }
    }
}

/// How an answer compares with what was expected.
#[derive(Debug, PartialEq)]
enum Verdict {
    Right,
    /// An error response, with its code.
    Error {
        code: String,
        message: String,
    },
    Wrong(String),
}

/// Checks one answer against `expect`.
fn check(message: &Message, expect: &Object) -> Verdict {
    let answer = match message.decode() {
        Ok(answer) => answer,
        Err(error) => return Verdict::Wrong(format!("undecodable answer: {error}")),
    };
    let is_true = |object: &Object, key: &str| object.get(key) == Some(&Value::Bool(true));
    if is_true(&answer, "error") && !is_true(expect, "error") {
        let text = |key| answer.get(key).and_then(Value::as_str).map(str::to_owned);
        return Verdict::Error {
            code: text("code").unwrap_or_else(|| "handler".to_owned()),
            message: text("message").unwrap_or_default(),
        };
    }
    if expect.iter().all(|(key, value)| answer.get(key) == Some(value)) {
        Verdict::Right
    } else {
        Verdict::Wrong(format!(
            "answer {} does not match {}",
            Value::Object(answer),
            Value::Object(expect.clone())
        ))
    }
}

/// One connection after another, each opened by `connector` (the first is `stream`)
/// and sending one request, while the budget lasts.
pub(crate) async fn churn(stream: Stream, connector: Connector, job: Job) -> Outcome {
    let mut outcome = drive(stream, job.clone()).await;
    while !job.budget.is_spent(Instant::now()) {
        match connector.open().await {
            Ok(stream) => outcome.merge(drive(stream, job.clone()).await),
            Err(error) => {
                outcome.note_failure(error.to_string(), 1);
                break;
            }
        }
    }
    outcome
}

/// Sends requests on `stream` while the budget lasts (one only, for a churning job),
/// then collects the last answers.
pub(crate) async fn drive<S: AsyncRead + AsyncWrite + Unpin>(stream: S, job: Job) -> Outcome {
    let mut framed = Framed::new(stream, WireCodec::new(job.framing, MAX_MESSAGE));
    let mut outcome = Outcome::default();
    // Send times of the requests in flight: answers come back in request order.
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(job.depth);
    let mut sent_here = 0;
    loop {
        let mut fed = false;
        while in_flight.len() < job.depth && !(job.one_request && sent_here == 1) {
            let now = Instant::now();
            if !job.budget.claim(now) {
                break;
            }
            if let Err(error) = framed.feed(job.message.clone()).await {
                outcome.note_failure(format!("cannot send: {error}"), in_flight.len() as u64 + 1);
                return outcome;
            }
            in_flight.push_back(now);
            sent_here += 1;
            fed = true;
        }
        if fed && let Err(error) = framed.flush().await {
            outcome.note_failure(format!("cannot send: {error}"), in_flight.len() as u64);
            return outcome;
        }
        let Some(&sent) = in_flight.front() else {
            return outcome;
        };
        let answer = tokio::time::timeout(job.response_timeout, framed.next()).await;
        let received = Instant::now();
        let message = match answer {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(error))) => {
                outcome.note_failure(format!("connection failed: {error}"), in_flight.len() as u64);
                return outcome;
            }
            Ok(None) => {
                outcome.note_failure(
                    "the host closed the connection".to_owned(),
                    in_flight.len() as u64,
                );
                return outcome;
            }
            Err(_) => {
                let reason = format!("no answer within {:?}", job.response_timeout);
                outcome.note_failure(reason, in_flight.len() as u64);
                return outcome;
            }
        };
        in_flight.pop_front();
        let verdict = check(&message, &job.expect);
        job.counters.count(verdict == Verdict::Right);
        if sent < job.measure_from {
            continue;
        }
        match verdict {
            Verdict::Right => {
                let nanos = u64::try_from(received.duration_since(sent).as_nanos()).unwrap_or(u64::MAX);
                // `record` grows the histogram; `saturating_record` would clamp to its
                // current (initially tiny) range.
                if outcome.latency.record(nanos.max(1)).is_err() {
                    outcome.latency.saturating_record(nanos.max(1));
                }
            }
            Verdict::Error { code, message } => {
                outcome.problem(|| format!("error response ({code}): {message}"));
                *outcome.errors.entry(code).or_default() += 1;
            }
            Verdict::Wrong(description) => {
                outcome.wrong += 1;
                outcome.problem(|| description);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use tcpy_tests::object as expect;

    fn message(value: Value) -> Message {
        Message::encode(&expect(value), tcpy_protocol::Encoding::Json).expect("encodes")
    }

    #[test]
    fn answers_are_right_wrong_or_errors() {
        let expect = expect(json!({"success": true, "solution": 3}));
        assert_eq!(
            check(&message(json!({"success": true, "solution": 3})), &expect),
            Verdict::Right
        );
        assert!(matches!(
            check(&message(json!({"success": true, "solution": 4})), &expect),
            Verdict::Wrong(_)
        ));
        assert_eq!(
            check(
                &message(json!({"error": true, "code": "busy", "message": "later"})),
                &expect
            ),
            Verdict::Error {
                code: "busy".to_owned(),
                message: "later".to_owned()
            }
        );
        let undecodable = Message::from_frame(bytes::Bytes::from_static(b"[1]"));
        assert!(matches!(check(&undecodable, &expect), Verdict::Wrong(_)));
    }

    #[test]
    fn an_expected_error_is_right() {
        let expect = expect(json!({"error": true, "code": "unknown_command"}));
        let answer = message(json!({"error": true, "code": "unknown_command", "message": "no"}));
        assert_eq!(check(&answer, &expect), Verdict::Right);
    }

    #[test]
    fn the_budget_counts_only_measured_requests() {
        let start = Instant::now();
        let measure_from = start + Duration::from_secs(60);
        let stop = crate::Stop {
            duration: Duration::from_secs(60),
            requests: Some(2),
        };
        let budget = Budget::new(stop, measure_from);
        assert!((0..10).all(|_| budget.claim(start)), "warm-up is free");
        assert!(budget.claim(measure_from));
        assert!(budget.claim(measure_from));
        assert!(!budget.claim(measure_from), "two measured requests only");
        assert!(!budget.claim(measure_from + Duration::from_secs(61)));
    }
}
