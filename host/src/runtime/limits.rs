//! The limits requests run under: host-wide defaults, per-handler overrides, and the
//! ceiling no override may pass.

use std::time::Duration;

/// What one request of a handler may use. The host's defaults apply to every handler;
/// a handler's manifest may set its own, up to the host's ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Time a request may spend running, not counting its waits in `recv()`.
    pub timeout: Duration,
    /// Largest linear memory of one instance, in bytes.
    pub max_memory: usize,
    /// Messages a handler may `send()` in one request.
    pub max_sends: u32,
    /// Longest one `recv()` waits for the client's next message.
    pub recv_timeout: Duration,
    /// Longest a whole request may take, waits for the client in `recv()` and host
    /// calls included: no conversation holds an instance past it.
    pub max_request_time: Duration,
}

impl RequestLimits {
    /// The defaults every handler runs under unless its manifest says otherwise.
    pub const DEFAULT: Self = Self {
        timeout: Duration::from_secs(5),
        max_memory: 64 * 1024 * 1024,
        max_sends: 1000,
        recv_timeout: Duration::from_secs(30),
        max_request_time: Duration::from_secs(60),
    };

    /// The default ceiling: the most a manifest may grant.
    pub const CEILING: Self = Self {
        timeout: Duration::from_secs(60),
        max_memory: 256 * 1024 * 1024,
        max_sends: 100_000,
        recv_timeout: Duration::from_secs(300),
        max_request_time: Duration::from_secs(600),
    };

    /// Checks that no limit is above `ceiling`.
    ///
    /// # Errors
    /// An [`AboveCeiling`] naming the first limit that is.
    pub fn check_within(&self, ceiling: &Self) -> Result<(), AboveCeiling> {
        let above = |limit: &'static str, value: String, max: String| Err(AboveCeiling { limit, value, max });
        if self.timeout > ceiling.timeout {
            return above(
                "timeout",
                format!("{:?}", self.timeout),
                format!("{:?}", ceiling.timeout),
            );
        }
        if self.max_memory > ceiling.max_memory {
            return above(
                "max_memory",
                format!("{} bytes", self.max_memory),
                format!("{} bytes", ceiling.max_memory),
            );
        }
        if self.max_sends > ceiling.max_sends {
            return above(
                "max_sends",
                self.max_sends.to_string(),
                ceiling.max_sends.to_string(),
            );
        }
        if self.recv_timeout > ceiling.recv_timeout {
            return above(
                "recv_timeout",
                format!("{:?}", self.recv_timeout),
                format!("{:?}", ceiling.recv_timeout),
            );
        }
        if self.max_request_time > ceiling.max_request_time {
            return above(
                "max_request_time",
                format!("{:?}", self.max_request_time),
                format!("{:?}", ceiling.max_request_time),
            );
        }
        Ok(())
    }
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A limit set above the host's ceiling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit `{limit}` of {value} is above the host's ceiling of {max}")]
pub struct AboveCeiling {
    /// The limit's name, as a manifest spells it.
    pub limit: &'static str,
    /// The value asked for.
    pub value: String,
    /// The ceiling.
    pub max: String,
}

/// Everything the runtime enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Per-request limits of handlers that set none of their own.
    pub request: RequestLimits,
    /// The most any handler's manifest may set each per-request limit to. The instance
    /// pool is sized for `ceiling.max_memory`.
    pub ceiling: RequestLimits,
    /// Largest message either way, in bytes: requests, conversation messages, responses.
    pub max_message: usize,
    /// Requests (instances) that may run at once.
    pub max_in_flight: u32,
    /// Requests that may be in conversation at once (a request is from its first
    /// `recv()` to its end); a first `recv()` past it ends its request with `busy`, so
    /// conversations waiting for their clients never hold the whole instance pool.
    /// [`Limits::default_max_waiting`] of `max_in_flight` by default.
    pub max_waiting: u32,
    /// Instances made ahead of their requests, host-wide (see `runtime::warm`); 0
    /// turns pre-warming off. The pool holds this many beside `max_in_flight`.
    pub prewarm: u32,
    /// Largest handler component file the loader reads, in bytes.
    pub max_component: usize,
    /// Largest handler manifest file the loader reads, in bytes.
    pub max_manifest: usize,
}

impl Limits {
    /// Pre-warmed instances by default: none. Measured (docs/performance.md), they
    /// cut a Python handler's latency by a third when requests come with pauses
    /// between them, but cost more than they save when requests come back to back.
    pub const DEFAULT_PREWARM: u32 = 0;

    /// The default cap on requests waiting in `recv()`: half the instance pool (at
    /// least one), so the other half always serves requests that are running.
    pub const fn default_max_waiting(max_in_flight: u32) -> u32 {
        if max_in_flight / 2 == 0 {
            1
        } else {
            max_in_flight / 2
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request: RequestLimits::DEFAULT,
            ceiling: RequestLimits::CEILING,
            max_message: tcpy_protocol::DEFAULT_MAX_MESSAGE,
            max_in_flight: 256,
            max_waiting: Self::default_max_waiting(256),
            prewarm: Self::DEFAULT_PREWARM,
            max_component: 256 << 20,
            max_manifest: 1 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_within_the_default_ceiling() {
        assert_eq!(
            RequestLimits::DEFAULT.check_within(&RequestLimits::CEILING),
            Ok(())
        );
    }

    #[test]
    fn a_limit_above_the_ceiling_is_named() {
        let limits = RequestLimits {
            max_sends: 10,
            ..RequestLimits::DEFAULT
        };
        let ceiling = RequestLimits {
            max_sends: 5,
            ..RequestLimits::CEILING
        };
        let error = limits.check_within(&ceiling).expect_err("above");
        assert_eq!(error.limit, "max_sends");
        assert_eq!(
            error.to_string(),
            "limit `max_sends` of 10 is above the host's ceiling of 5"
        );
    }
}
