//! Where the host is in its life, and what it has counted: what the admin port reports.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

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
    /// Command → the version serving it.
    versions: Mutex<BTreeMap<String, String>>,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            phase: watch::Sender::new(Phase::Loading),
            metrics: Metrics::new(),
            versions: Mutex::default(),
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

    /// Records that `version` serves `command` from now on (`None`: nothing does), in
    /// `/readyz` and in the `tcpy_handler_info` metric.
    pub fn serve_version(&self, command: &str, version: Option<String>) {
        let mut versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = match &version {
            Some(version) => versions.insert(command.to_owned(), version.clone()),
            None => versions.remove(command),
        };
        self.metrics
            .handler_version(command, version.as_deref(), previous.as_deref());
    }

    /// Every command served and its version, sorted by command.
    pub fn versions(&self) -> BTreeMap<String, String> {
        self.versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_what_serves_each_command() {
        let status = Status::new();
        status.serve_version("add", Some("aaaa".to_owned()));
        status.serve_version("echo", Some("bbbb".to_owned()));
        status.serve_version("add", Some("cccc".to_owned()));
        status.serve_version("echo", None);
        let expected: BTreeMap<String, String> = [("add".to_owned(), "cccc".to_owned())].into();
        assert_eq!(status.versions(), expected);
        let metrics = status.metrics().prometheus_text();
        assert!(
            metrics.contains(r#"tcpy_handler_info{command="add",version="cccc"} 1"#),
            "{metrics}"
        );
        assert!(
            !metrics.contains("aaaa") && !metrics.contains("bbbb"),
            "{metrics}"
        );
    }

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
