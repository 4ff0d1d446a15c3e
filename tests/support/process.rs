//! A `tcpy-host` process: the real binary, started on port 0, its log lines read as
//! they come, for the tests that signal, kill and restart it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `tcpy-host`, its log lines arriving on a channel; killed when dropped.
pub struct HostProcess {
    /// The process.
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Its `--data-dir`, unless the test gave its own.
    _data: Option<tempfile::TempDir>,
}

impl HostProcess {
    /// Starts `binary` on `dir` with `extra` options; no drain delay and a data
    /// directory of its own unless `extra` sets them.
    pub fn start(binary: &Path, dir: &Path, extra: &[&str]) -> Self {
        let mut defaults: Vec<PathBuf> = Vec::new();
        if !extra.contains(&"--drain-delay") {
            defaults.extend(["--drain-delay".into(), "0s".into()]);
        }
        let data =
            (!extra.contains(&"--data-dir")).then(|| tempfile::tempdir().expect("a temporary directory"));
        if let Some(data) = &data {
            defaults.extend(["--data-dir".into(), data.path().to_owned()]);
        }
        let mut child = Command::new(binary)
            .args(["--port", "0", "--no-cache", "--handlers"])
            .arg(dir)
            .args(&defaults)
            .args(extra)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "tcpy_host=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpy-host starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            _data: data,
        }
    }

    /// Waits up to `within` for a log line containing `text`; returns it.
    pub fn wait_for(&self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with `{text}` within {within:?}"),
            }
        }
    }

    /// Waits (up to 60 s) until the host listens; its address.
    pub fn listening(&self) -> SocketAddr {
        Self::address(&self.wait_for("tcpy-host listening", Duration::from_secs(60)))
    }

    /// Sends SIGTERM, as an orchestrator stopping the host would.
    pub fn terminate(&self) {
        crate::send_signal(&self.child, libc::SIGTERM);
    }

    /// Waits up to `within` for the process to exit.
    pub fn exits_within(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(status) = self.child.try_wait().expect("waits") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("tcpy-host still running {within:?} after the signal");
    }

    /// The address in a log line's `address=` field (the "tcpy-host listening" and
    /// "admin port" lines).
    pub fn address(line: &str) -> SocketAddr {
        let start = line.find("address=").expect("an address field") + "address=".len();
        let end = line[start..].find(' ').map_or(line.len(), |end| start + end);
        line[start..end].parse().expect("a socket address")
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
