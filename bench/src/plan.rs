//! What a run does: the request, the connections, and when it stops.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tcpy_protocol::{Encoding, Framing, Object, Request};

/// Longest run allowed: a load generator left running by mistake stops by itself.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most connections one run may open (each keeps a latency histogram of ~100 KiB).
pub const MAX_CONNECTIONS: usize = 1024;
/// Deepest pipeline allowed per connection.
pub const MAX_DEPTH: usize = 1024;

/// When a run stops sending: after `duration` of measuring, or once `requests`
/// measured requests have been sent, whichever comes first. Requests in flight then
/// still get their answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// How long to measure.
    pub duration: Duration,
    /// How many measured requests to send, if limited.
    pub requests: Option<u64>,
}

/// One run: the same request sent over and over on `connections` connections.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The host's address; it must be a loopback address.
    pub addr: SocketAddr,
    /// The command to run.
    pub cmd: String,
    /// Its params.
    pub params: Object,
    /// Connections opened, each sending requests one after another.
    pub connections: usize,
    /// Requests each connection keeps in flight (1: wait for each answer).
    pub depth: usize,
    /// When to stop.
    pub stop: Stop,
    /// Time spent sending before measuring starts; what it sends is not counted.
    pub warmup: Duration,
    /// Frame or line mode.
    pub framing: Framing,
    /// The body encoding (line mode carries JSON only).
    pub encoding: Encoding,
    /// Fields every answer must have, with these values.
    pub expect: Object,
    /// How long to wait for an answer before counting the connection as failed.
    pub response_timeout: Duration,
    /// Whether to print a progress line to stderr every second.
    pub progress: bool,
    /// Connect over TLS, trusting host certificates signed by a CA in this PEM file
    /// (checked as `localhost`).
    pub tls_ca: Option<std::path::PathBuf>,
    /// Each connection sends one request, then closes and a new one is opened: the
    /// run measures connection set-up (with TLS, the handshake rate).
    pub churn: bool,
}

/// Why a plan cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The address is not on this machine.
    #[error("{0} is not a loopback address: tcpy-bench only loads hosts on this machine")]
    NotLoopback(SocketAddr),
    /// A number is out of its range.
    #[error("{what} must be between 1 and {max}")]
    OutOfRange {
        /// Which setting.
        what: &'static str,
        /// Its largest value.
        max: u64,
    },
    /// msgpack was asked for in line mode.
    #[error("line mode carries JSON only: use --framing frame for msgpack")]
    MsgpackInLineMode,
}

impl Plan {
    /// A plan that sends `cmd` with `params` to `addr` on one connection, in frame
    /// mode with JSON bodies, for one second, expecting `"success": true`.
    pub fn new(addr: SocketAddr, cmd: impl Into<String>, params: Object) -> Self {
        Self {
            addr,
            cmd: cmd.into(),
            params,
            connections: 1,
            depth: 1,
            stop: Stop {
                duration: Duration::from_secs(1),
                requests: None,
            },
            warmup: Duration::ZERO,
            framing: Framing::Frame,
            encoding: Encoding::Json,
            expect: success(),
            response_timeout: Duration::from_secs(10),
            progress: false,
            tls_ca: None,
            churn: false,
        }
    }

    /// The request object sent, `cmd` beside the params.
    pub fn request(&self) -> Object {
        Request::new(self.cmd.clone(), self.params.clone()).into_object()
    }

    /// Checks the plan's bounds.
    ///
    /// # Errors
    /// A [`PlanError`] naming the first thing out of bounds.
    pub fn validate(&self) -> Result<(), PlanError> {
        if !self.addr.ip().is_loopback() {
            return Err(PlanError::NotLoopback(self.addr));
        }
        let in_range = |value: u64, max: u64| (1..=max).contains(&value);
        if !in_range(self.connections as u64, MAX_CONNECTIONS as u64) {
            return Err(PlanError::OutOfRange {
                what: "connections",
                max: MAX_CONNECTIONS as u64,
            });
        }
        if !in_range(self.depth as u64, MAX_DEPTH as u64) {
            return Err(PlanError::OutOfRange {
                what: "pipeline depth",
                max: MAX_DEPTH as u64,
            });
        }
        let max_ms = MAX_DURATION.as_millis() as u64;
        for (what, duration) in [
            ("duration (ms)", self.stop.duration),
            ("warm-up (ms)", self.warmup),
        ] {
            if duration > MAX_DURATION || (what.starts_with("duration") && duration.is_zero()) {
                return Err(PlanError::OutOfRange { what, max: max_ms });
            }
        }
        if self.stop.requests == Some(0) {
            return Err(PlanError::OutOfRange {
                what: "requests",
                max: u64::MAX,
            });
        }
        if self.framing == Framing::Line && self.encoding == Encoding::Msgpack {
            return Err(PlanError::MsgpackInLineMode);
        }
        Ok(())
    }
}

/// The default expectation: `{"success": true}`.
pub fn success() -> Object {
    let mut expect = Object::new();
    expect.insert("success".to_owned(), Value::Bool(true));
    expect
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(addr: &str) -> Plan {
        Plan::new(addr.parse().expect("an address"), "add", Object::new())
    }

    #[test]
    fn only_loopback_addresses_are_accepted() {
        assert_eq!(plan("127.0.0.1:7272").validate(), Ok(()));
        assert_eq!(plan("[::1]:7272").validate(), Ok(()));
        let remote = plan("192.0.2.1:7272");
        assert_eq!(remote.validate(), Err(PlanError::NotLoopback(remote.addr)));
    }

    #[test]
    fn runs_are_bounded() {
        let mut endless = plan("127.0.0.1:7272");
        endless.stop.duration = MAX_DURATION * 2;
        assert!(matches!(endless.validate(), Err(PlanError::OutOfRange { .. })));
        let mut none = plan("127.0.0.1:7272");
        none.connections = 0;
        assert!(matches!(none.validate(), Err(PlanError::OutOfRange { .. })));
        let mut msgpack_lines = plan("127.0.0.1:7272");
        msgpack_lines.framing = Framing::Line;
        msgpack_lines.encoding = Encoding::Msgpack;
        assert_eq!(msgpack_lines.validate(), Err(PlanError::MsgpackInLineMode));
    }

    #[test]
    fn the_request_carries_cmd_beside_the_params() {
        let mut params = Object::new();
        params.insert("x".to_owned(), Value::from(1));
        let plan = Plan::new("127.0.0.1:1".parse().expect("an address"), "add", params);
        assert_eq!(
            Value::Object(plan.request()),
            serde_json::json!({"cmd": "add", "x": 1})
        );
    }
}
