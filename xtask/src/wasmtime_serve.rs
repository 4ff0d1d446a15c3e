//! The nearest peer, measured in the same session: `wasmtime serve` running the
//! `hello-http` component (`bench/hello-http`, which answers what tcpy's `add`
//! answers), driven by `wrk` at the same 32 connections (`cargo xtask bench
//! --wasmtime-serve`).
//!
//! wasmtime's CLI, at the version tcpy embeds, is installed into `target/tools` the
//! first time (about 10 minutes on 2 cores); `wrk` comes from the system
//! (`apt-get install wrk`).

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::Workspace;

/// The wasmtime CLI installed: the same wasmtime as the host's.
pub(crate) const WASMTIME_VERSION: &str = "50.0.1";
/// Connections `wrk` keeps open, as in tcpy's 32-connection runs.
pub(crate) const CONNECTIONS: usize = 32;

/// One `wrk` run.
pub(crate) struct Run {
    /// Requests per second.
    pub(crate) req_per_s: f64,
    /// Latency percentiles, in microseconds.
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
}

/// Builds `hello-http`, serves it with `wasmtime serve`, and measures it with `wrk`
/// `rounds` times for `seconds` each (after a 1 s warm-up).
pub(crate) fn measure(workspace: &Workspace, rounds: usize, seconds: u64) -> Result<Vec<Run>> {
    check_wrk()?;
    let component = build_hello(workspace)?;
    // About 10 minutes on 2 cores, the first time.
    let wasmtime = workspace.install_tool("wasmtime-cli", "wasmtime", WASMTIME_VERSION)?;
    let log = workspace.target.join("wasmtime-serve.log");
    let server = Server::start(&wasmtime, &component, &log)?;
    let url = format!("http://{}/", server.addr);
    wrk(&url, 1).context("the warm-up run failed")?;
    let mut runs = Vec::new();
    for round in 1..=rounds {
        eprintln!("round {round}: wasmtime serve over {CONNECTIONS} connections (wrk)…");
        runs.push(wrk(&url, seconds)?);
    }
    Ok(runs)
}

fn check_wrk() -> Result<()> {
    match Command::new("wrk").arg("-v").output() {
        Ok(_) => Ok(()),
        Err(error) => bail!("the wasmtime serve comparison needs wrk (`apt-get install wrk`): {error}"),
    }
}

/// Builds the component `wasmtime serve` runs.
fn build_hello(workspace: &Workspace) -> Result<PathBuf> {
    let mut build = workspace.cargo();
    build.args([
        "build",
        "--profile",
        "guest",
        "--target",
        crate::WASM_TARGET,
        "--package",
        "hello-http",
    ]);
    crate::run(build).context("building bench/hello-http failed")?;
    Ok(workspace
        .target
        .join(crate::WASM_TARGET)
        .join("guest/hello_http.wasm"))
}

/// `wasmtime serve` on a free loopback port, stopped when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts serving `component`; what the server prints goes to `log`.
    fn start(wasmtime: &Path, component: &Path, log: &Path) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let output = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(wasmtime)
            // `-Scli`: Rust's std on wasm32-wasip2 imports wasi:cli/environment even in
            // a proxy component, and `serve` links only the proxy world without it.
            .args(["serve", "-Scli", "--addr", &addr.to_string()])
            .arg(component)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("cannot start {}", wasmtime.display()))?;
        let mut server = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline || server.child.try_wait()?.is_some() {
                bail!(
                    "wasmtime serve did not start listening on {addr}; its output is in {}",
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `wrk` run of `seconds` against `url`, one load thread, [`CONNECTIONS`] connections.
fn wrk(url: &str, seconds: u64) -> Result<Run> {
    let output = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{seconds}s"),
            "--latency",
            url,
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run wrk")?;
    let report = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || report.contains("Non-2xx") || report.contains("Socket errors") {
        bail!("wrk saw failed requests:\n{report}");
    }
    let field = |prefix: &str| {
        report
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .map(str::trim)
            .with_context(|| format!("no `{prefix}` in wrk's report:\n{report}"))
    };
    Ok(Run {
        req_per_s: field("Requests/sec:")?.parse().context("wrk's Requests/sec")?,
        p50_us: micros(field("50%")?)?,
        p99_us: micros(field("99%")?)?,
    })
}

/// `wrk`'s `1.23ms`, `456.00us` or `1.20s`, in microseconds.
fn micros(text: &str) -> Result<f64> {
    let (number, scale) = if let Some(number) = text.strip_suffix("us") {
        (number, 1.0)
    } else if let Some(number) = text.strip_suffix("ms") {
        (number, 1e3)
    } else if let Some(number) = text.strip_suffix('s') {
        (number, 1e6)
    } else {
        bail!("`{text}` is not a wrk latency");
    };
    Ok(number
        .parse::<f64>()
        .with_context(|| format!("`{text}` is not a wrk latency"))?
        * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_latencies_become_microseconds() {
        assert_eq!(micros("456.00us").ok(), Some(456.0));
        assert_eq!(micros("1.50ms").ok(), Some(1500.0));
        assert_eq!(micros("2.00s").ok(), Some(2_000_000.0));
        assert!(micros("fast").is_err());
    }
}
