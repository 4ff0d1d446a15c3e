//! The result of a run, as text for people and JSON for machines.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use tcpy_protocol::{Encoding, Framing};

use crate::Plan;
use crate::worker::Outcome;

/// Latency of the right answers, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Slowest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The command run.
    pub cmd: String,
    /// `frame/json`, `frame/msgpack` or `line`.
    pub mode: String,
    /// Connections used.
    pub connections: usize,
    /// Requests in flight per connection.
    pub depth: usize,
    /// Length of the measured window, in seconds (from its start to the last answer).
    pub elapsed_s: f64,
    /// Right answers in the measured window.
    pub right: u64,
    /// Right answers per second.
    pub req_per_s: f64,
    /// Answers that were neither right nor error responses.
    pub wrong: u64,
    /// Error responses, by code (`handler` for a handler's own errors).
    pub errors: BTreeMap<String, u64>,
    /// Requests that got no answer (failed, closed or timed-out connections).
    pub lost: u64,
    /// The first problem seen, if any.
    pub first_problem: Option<String>,
    /// Latency of the right answers; `None` if there were none.
    pub latency: Option<Latency>,
}

impl Report {
    pub(crate) fn new(plan: &Plan, outcome: Outcome, elapsed: Duration) -> Self {
        let histogram = &outcome.latency;
        let right = histogram.len();
        let us = |nanos: u64| nanos as f64 / 1000.0;
        let latency = (right > 0).then(|| Latency {
            p50_us: us(histogram.value_at_quantile(0.50)),
            p90_us: us(histogram.value_at_quantile(0.90)),
            p99_us: us(histogram.value_at_quantile(0.99)),
            max_us: us(histogram.max()),
            mean_us: histogram.mean() / 1000.0,
        });
        let elapsed_s = elapsed.as_secs_f64();
        Self {
            cmd: plan.cmd.clone(),
            mode: match (plan.framing, plan.encoding) {
                (Framing::Line, _) => "line",
                (Framing::Frame, Encoding::Json) => "frame/json",
                (Framing::Frame, Encoding::Msgpack) => "frame/msgpack",
            }
            .to_owned(),
            connections: plan.connections,
            depth: plan.depth,
            elapsed_s,
            right,
            req_per_s: if elapsed_s > 0.0 {
                right as f64 / elapsed_s
            } else {
                0.0
            },
            wrong: outcome.wrong,
            errors: outcome.errors,
            lost: outcome.lost,
            first_problem: outcome.first_problem,
            latency,
        }
    }

    /// Error responses of every code, added up.
    pub fn error_responses(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Whether every request got the expected answer.
    pub fn is_clean(&self) -> bool {
        self.wrong == 0 && self.error_responses() == 0 && self.lost == 0 && self.right > 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} over {} connection(s) x depth {}, {}, {:.2} s",
            self.cmd, self.connections, self.depth, self.mode, self.elapsed_s
        )?;
        writeln!(f, "  throughput  {:.0} req/s", self.req_per_s)?;
        if let Some(latency) = &self.latency {
            writeln!(
                f,
                "  latency     p50 {}  p90 {}  p99 {}  max {}  (mean {})",
                micros(latency.p50_us),
                micros(latency.p90_us),
                micros(latency.p99_us),
                micros(latency.max_us),
                micros(latency.mean_us)
            )?;
        }
        write!(
            f,
            "  answers     {} right, {} wrong, {} error responses, {} lost",
            self.right,
            self.wrong,
            self.error_responses(),
            self.lost
        )?;
        for (code, count) in &self.errors {
            write!(f, "\n    {code}: {count}")?;
        }
        if let Some(problem) = &self.first_problem {
            write!(f, "\n  first problem: {problem}")?;
        }
        Ok(())
    }
}

/// `12.3 µs` or `4.56 ms`.
fn micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}
