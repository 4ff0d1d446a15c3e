//! Where the host is in its life, and what it has counted: what the admin port reports.

use std::sync::Arc;

use tokio::sync::watch;

use crate::metrics::Metrics;

/// A stage of the host's life, in the order it goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Loading the handlers directory; the listener is not up yet.
    Loading,
    /// Listening and serving: ready for traffic.
    Serving,
    /// A shutdown was asked for: every request is still served, and the listener still
    /// accepts, for the drain delay, so a balancer can see `/readyz` fail and move away.
    Draining,
    /// The listener is closed; requests in flight finish, and a request that arrives
    /// on an open connection is answered `shutting_down` and its connection closed.
    Closing,
    /// Every connection is closed.
    Stopped,
}

impl Phase {
    /// Whether a balancer should send this host new work.
    pub fn is_ready(self) -> bool {
        self == Self::Serving
    }

    /// The phase as `/readyz` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loading => "loading",
            Self::Serving => "serving",
            Self::Draining => "draining",
            Self::Closing => "closing",
            Self::Stopped => "stopped",
        }
    }

    /// Why the host is or is not ready, in words.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Loading => "loading the handlers directory",
            Self::Serving => "listening, handlers loaded",
            Self::Draining => "shutting down: draining, still serving for the drain delay",
            Self::Closing => "shutting down: no longer accepting; finishing requests in flight",
            Self::Stopped => "shut down",
        }
    }
}

/// The host's phase and metrics, shared by the server (which moves the phase on and
/// counts) and the admin port (which reports them). Made before the handlers load, so
/// the admin port can answer while they do.
pub struct Status {
    phase: watch::Sender<Phase>,
    metrics: Metrics,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            phase: watch::Sender::new(Phase::Loading),
            metrics: Metrics::new(),
        }
    }
}

impl Status {
    /// A status at [`Phase::Loading`] with every metric at zero.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The phase now.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Moves to `phase`, if it is later than the phase now (a host never goes back).
    pub fn advance(&self, phase: Phase) {
        self.phase.send_if_modified(|now| {
            let later = phase > *now;
            if later {
                *now = phase;
            }
            later
        });
    }

    /// Every phase change from now on.
    pub fn watch(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phase_only_moves_forward() {
        let status = Status::new();
        assert_eq!(status.phase(), Phase::Loading);
        assert!(!status.phase().is_ready());
        status.advance(Phase::Serving);
        assert!(status.phase().is_ready());
        status.advance(Phase::Closing);
        status.advance(Phase::Draining);
        assert_eq!(status.phase(), Phase::Closing);
    }
}
