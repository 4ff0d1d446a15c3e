//! tcpy-bench: a load generator for tcpy hosts, in the spirit of `wrk` and
//! `redis-benchmark`.
//!
//! A [`Plan`] says what to send (one request, over and over), over how many
//! connections, how deep each connection pipelines, and for how long or how many
//! requests. [`run`] carries it out against a host on this machine and returns a
//! [`Report`]: requests per second and a latency histogram of the answers that were
//! right. Every answer is checked against [`Plan::expect`]; a wrong answer, an error
//! response or a broken connection is counted on its own and never timed as a success.
//!
//! Loopback only: a plan whose address is not on this machine is refused.
#![deny(missing_docs)]

pub mod cli;
mod plan;
mod progress;
mod report;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

pub use plan::{Plan, PlanError, Stop};
pub use report::{Latency, Report};

use progress::Counters;
use worker::{Budget, Outcome};

/// How long connecting may take, per connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a run could not be carried out at all (problems with single requests are
/// counted in the [`Report`] instead).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The plan is not valid.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A connection could not be opened.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where it tried to connect.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The request cannot be encoded.
    #[error("cannot encode the request: {0}")]
    Encode(#[from] tcpy_protocol::EncodeError),
    /// The TLS CA file cannot be used, or a handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
}

/// A connection to the host: TCP, or TLS over it.
pub(crate) type Stream = Either<TcpStream, TlsStream<TcpStream>>;

/// How connections are opened.
#[derive(Clone)]
pub(crate) struct Connector {
    addr: SocketAddr,
    /// The TLS connector and the name the host's certificate must carry.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl Connector {
    fn new(plan: &Plan) -> Result<Self, BenchError> {
        let tls = match plan.tls_ca.as_deref() {
            None => None,
            Some(ca) => {
                let tls_error = |error: tcpy_client::ClientError| BenchError::Tls(error.to_string());
                let config = tcpy_client::TlsConfig::from_pem_files(ca, None).map_err(tls_error)?;
                Some(config.connector("localhost").map_err(tls_error)?)
            }
        };
        Ok(Self { addr: plan.addr, tls })
    }

    /// Opens one connection, with its TLS handshake if any.
    pub(crate) async fn open(&self) -> Result<Stream, BenchError> {
        let addr = self.addr;
        let tcp = connect(addr).await?;
        let Some((tls, name)) = &self.tls else {
            return Ok(Either::Left(tcp));
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(name.clone(), tcp)).await {
            Ok(Ok(stream)) => Ok(Either::Right(stream)),
            Ok(Err(error)) => Err(BenchError::Tls(format!("handshake with {addr}: {error}"))),
            Err(_) => Err(BenchError::Tls(format!("handshake with {addr} timed out"))),
        }
    }
}

/// Opens the plan's connections, sends its requests and reports what came back.
///
/// # Errors
/// A [`BenchError`] if the plan is invalid, the request cannot be encoded or a
/// connection cannot be opened; problems with single requests go into the report.
pub async fn run(plan: &Plan) -> Result<Report, BenchError> {
    plan.validate()?;
    let message = tcpy_protocol::Message::encode(&plan.request(), plan.encoding)?;
    let connector = Connector::new(plan)?;
    let mut streams = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        streams.push(connector.open().await?);
    }
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let measure_from = started + plan.warmup;
    let budget = Arc::new(Budget::new(plan.stop, measure_from));
    let progress = plan
        .progress
        .then(|| progress::spawn(Arc::clone(&counters), measure_from));
    let workers: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            let job = worker::Job {
                message: message.clone(),
                framing: plan.framing,
                depth: plan.depth,
                expect: plan.expect.clone(),
                response_timeout: plan.response_timeout,
                measure_from,
                budget: Arc::clone(&budget),
                counters: Arc::clone(&counters),
                one_request: plan.churn,
            };
            if plan.churn {
                tokio::spawn(worker::churn(stream, connector.clone(), job))
            } else {
                tokio::spawn(worker::drive(stream, job))
            }
        })
        .collect();
    let mut outcome = Outcome::default();
    for worker in workers {
        match worker.await {
            Ok(done) => outcome.merge(done),
            // A worker that panicked lost its in-flight requests: count them as failed.
            Err(error) => outcome.note_failure(format!("worker task failed: {error}"), plan.depth as u64),
        }
    }
    let finished = Instant::now();
    if let Some(progress) = progress {
        progress.abort();
    }
    Ok(Report::new(
        plan,
        outcome,
        finished.saturating_duration_since(measure_from),
    ))
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, BenchError> {
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
    let stream = connected.map_err(|source| BenchError::Connect { addr, source })?;
    // Requests are small; Nagle would add the delayed-ACK wait to every latency.
    stream
        .set_nodelay(true)
        .map_err(|source| BenchError::Connect { addr, source })?;
    Ok(stream)
}
