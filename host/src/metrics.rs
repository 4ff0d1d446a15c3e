//! What the host counts, for `/metrics`: requests by command and outcome, their
//! durations, connections, handler loads and versions, the build.
//!
//! Every label is bounded: `command` is a command the host serves (or the empty
//! string for a request that named none it serves), `outcome` one of [`Outcome`].

use std::fmt::Write as _;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tcpy_protocol::ErrorCode;

/// How a request ended, as `tcpy_requests_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The handler answered `{"success": true, ...}`.
    Success,
    /// The handler answered `{"error": true, ...}` itself.
    Error,
    /// The host answered with this error code.
    Host(ErrorCode),
}

impl Outcome {
    /// The label value: `success`, `error`, or the host's error code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::Host(code) => code.as_str(),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// What became of a request that carried an idempotency key, as
/// `tcpy_idempotency_keys_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdempotencyOutcome {
    /// Its key was claimed and it ran.
    Ran,
    /// Its key's request had run: the recorded answer was sent again.
    Replayed,
    /// Another request held its key past the wait: `in_progress`.
    InProgress,
    /// Its key was used for another request: `idempotency_conflict`.
    Conflict,
    /// The store did not answer: `unavailable`.
    Unavailable,
}

impl IdempotencyOutcome {
    /// The outcome of a keyed request refused with `answer`.
    pub fn refused(answer: &tcpy_protocol::Object) -> Self {
        match answer.get("code").and_then(serde_json::Value::as_str) {
            Some("in_progress") => Self::InProgress,
            Some("idempotency_conflict") => Self::Conflict,
            _ => Self::Unavailable,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ran => "ran",
            Self::Replayed => "replayed",
            Self::InProgress => "in_progress",
            Self::Conflict => "conflict",
            Self::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for IdempotencyOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for IdempotencyOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// What happened to a handler file the host tried to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadResult {
    /// It compiled and serves its command.
    Loaded,
    /// It was refused (not a component, a bad manifest, unreadable, …).
    Rejected,
}

impl EncodeLabelValue for LoadResult {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::Loaded => "loaded",
            Self::Rejected => "rejected",
        })
    }
}

/// How a TLS handshake ended, or a reload of certificates or tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// It worked.
    Ok,
    /// It failed (the old certificates or tokens, if any, stay).
    Failed,
}

impl EncodeLabelValue for Verdict {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReloadLabels {
    what: &'static str,
    result: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    command: String,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CommandLabels {
    command: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct IdempotencyLabels {
    outcome: IdempotencyOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LoadLabels {
    result: LoadResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabels {
    command: String,
    version: String,
}

/// Request durations from 50 µs to about 100 s, doubling.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(50e-6, 2.0, 22))
}

/// The host's metrics and the registry that exposes them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<CommandLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    connections_open: Gauge,
    connections: Counter,
    loads: Family<LoadLabels, Counter>,
    versions: Family<VersionLabels, Gauge>,
    handshakes: Family<ResultLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    idempotency: Family<IdempotencyLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered under the `tcpy_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tcpy");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by command and outcome (success, error, or the host's error code)",
            requests.clone(),
        );
        let durations = Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its answer, by command",
            durations.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("requests_in_flight", "Requests running now", in_flight.clone());
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open now",
            connections_open.clone(),
        );
        let connections = Counter::default();
        registry.register("connections", "Client connections accepted", connections.clone());
        let loads = Family::<LoadLabels, Counter>::default();
        registry.register(
            "handler_loads",
            "Handler files loaded or rejected, at start-up and by hot swap",
            loads.clone(),
        );
        let versions = Family::<VersionLabels, Gauge>::default();
        registry.register(
            "handler_info",
            "The version (SHA-256 prefix of the component) serving each command; always 1",
            versions.clone(),
        );
        let handshakes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tls_handshakes",
            "TLS handshakes of client connections, by result (failed: plaintext, bad or slow)",
            handshakes.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "reloads",
            "Reloads of the TLS files and the tokens file, by what and result",
            reloads.clone(),
        );
        let idempotency = Family::<IdempotencyLabels, Counter>::default();
        registry.register(
            "idempotency_keys",
            "Requests that carried an idempotency key, by outcome (ran, replayed, in_progress, conflict, unavailable)",
            idempotency.clone(),
        );
        registry.register(
            "build",
            "The tcpy-host build; always 1",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Self {
            registry,
            requests,
            durations,
            in_flight,
            connections_open,
            connections,
            loads,
            versions,
            handshakes,
            reloads,
            idempotency,
        }
    }

    /// Counts one request that carried an idempotency key.
    pub fn idempotency(&self, outcome: IdempotencyOutcome) {
        self.idempotency
            .get_or_create(&IdempotencyLabels { outcome })
            .inc();
    }

    /// Counts one TLS handshake.
    pub fn tls_handshake(&self, result: Verdict) {
        self.handshakes.get_or_create(&ResultLabels { result }).inc();
    }

    /// Counts one reload of `what` (`tls` or `tokens`).
    pub fn reload(&self, what: &'static str, result: Verdict) {
        self.reloads.get_or_create(&ReloadLabels { what, result }).inc();
    }

    /// Counts one answered request of `command` (empty when it named no command
    /// the host serves) that took `elapsed`.
    pub fn request_done(&self, command: &str, outcome: Outcome, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                command: command.to_owned(),
                outcome,
            })
            .inc();
        if !command.is_empty() {
            self.durations
                .get_or_create(&CommandLabels {
                    command: command.to_owned(),
                })
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Counts a request as running until the guard is dropped.
    pub fn request_running(&self) -> Running {
        self.in_flight.inc();
        Running(self.in_flight.clone())
    }

    /// Counts a connection as accepted, and as open until the guard is dropped.
    pub fn connection_opened(&self) -> Running {
        self.connections.inc();
        self.connections_open.inc();
        Running(self.connections_open.clone())
    }

    /// Counts one handler file loaded or rejected.
    pub fn handler_load(&self, result: LoadResult) {
        self.loads.get_or_create(&LoadLabels { result }).inc();
    }

    /// Records that `version` serves `command` from now on, in place of `previous`.
    pub fn handler_version(&self, command: &str, version: Option<&str>, previous: Option<&str>) {
        let labels = |version: &str| VersionLabels {
            command: command.to_owned(),
            version: version.to_owned(),
        };
        if let Some(previous) = previous {
            self.versions.remove(&labels(previous));
        }
        if let Some(version) = version {
            self.versions.get_or_create(&labels(version)).set(1);
        }
    }

    /// The metrics in the Prometheus text format (version 0.0.4), what
    /// `promtool check metrics` and most scrapers read.
    pub fn prometheus_text(&self) -> String {
        let mut text = String::new();
        // NB: writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }

    /// The metrics in the OpenMetrics text format, for scrapers that ask for it.
    pub fn openmetrics_text(&self) -> String {
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// The count of requests of `command` that ended with `outcome` (for tests and
    /// the admin port's readers).
    pub fn requests(&self, command: &str, outcome: Outcome) -> u64 {
        self.requests
            .get(&RequestLabels {
                command: command.to_owned(),
                outcome,
            })
            .map_or(0, |counter| counter.get())
    }
}

/// Keeps a gauge counted up while it lives.
#[derive(Debug)]
pub struct Running(Gauge);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_has_every_family_and_counts_what_happened() {
        let metrics = Metrics::new();
        metrics.request_done("add", Outcome::Success, Duration::from_millis(1));
        metrics.request_done("add", Outcome::Success, Duration::from_millis(2));
        metrics.request_done("", Outcome::Host(ErrorCode::UnknownCommand), Duration::ZERO);
        let running = metrics.request_running();
        metrics.handler_version("add", Some("aaaa"), None);
        metrics.handler_version("add", Some("bbbb"), Some("aaaa"));
        let text = metrics.prometheus_text();
        assert!(
            text.contains("tcpy_requests_total{command=\"add\",outcome=\"success\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("tcpy_requests_total{command=\"\",outcome=\"unknown_command\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tcpy_request_duration_seconds_count{command=\"add\"} 2\n"),
            "{text}"
        );
        assert!(
            !text.contains("tcpy_request_duration_seconds_count{command=\"\"}"),
            "{text}"
        );
        assert!(text.contains("tcpy_requests_in_flight 1\n"), "{text}");
        assert!(
            text.contains("tcpy_handler_info{command=\"add\",version=\"bbbb\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("aaaa"), "the replaced version is gone: {text}");
        assert!(text.contains("tcpy_build_info{version="), "{text}");
        drop(running);
        assert!(metrics.prometheus_text().contains("tcpy_requests_in_flight 0\n"));
        assert_eq!(metrics.requests("add", Outcome::Success), 2);
        assert!(metrics.openmetrics_text().ends_with("# EOF\n"));
    }
}
