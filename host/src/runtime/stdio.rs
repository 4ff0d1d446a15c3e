//! A handler's stdout and stderr, sent line by line to the host's log, within a
//! budget per request.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line logged; the rest of a longer line is cut so one handler cannot flood the log.
const MAX_LINE: usize = 4096;
/// Lines one request may log, stdout and stderr together.
pub const MAX_LINES_PER_REQUEST: u32 = 100;
/// Bytes one request may log, stdout and stderr together.
pub const MAX_BYTES_PER_REQUEST: usize = 64 * 1024;

/// What one request may still log; past it, lines are counted and dropped, and the
/// count is logged once when the request ends.
#[derive(Debug)]
pub(super) struct OutputBudget {
    command: Arc<str>,
    used: Mutex<Used>,
}

#[derive(Debug, Default)]
struct Used {
    lines: u32,
    bytes: usize,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl OutputBudget {
    pub(super) fn new(command: Arc<str>) -> Arc<Self> {
        Arc::new(Self {
            command,
            used: Mutex::default(),
        })
    }

    /// Whether a line of `len` bytes may be logged; counts it either way.
    fn take(&self, len: usize) -> bool {
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if used.lines < MAX_LINES_PER_REQUEST && used.bytes + len <= MAX_BYTES_PER_REQUEST {
            used.lines += 1;
            used.bytes += len;
            true
        } else {
            used.dropped_lines += 1;
            used.dropped_bytes += len as u64;
            false
        }
    }
}

impl Drop for OutputBudget {
    fn drop(&mut self) {
        let used = self
            .used
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if used.dropped_lines > 0 {
            tracing::warn!(
                cmd = %self.command,
                dropped_lines = used.dropped_lines,
                dropped_bytes = used.dropped_bytes,
                max_lines = MAX_LINES_PER_REQUEST,
                max_bytes = MAX_BYTES_PER_REQUEST,
                "handler output over its per-request budget was dropped"
            );
        }
    }
}

/// A guest output stream whose lines become `tracing` events tagged with the command.
pub(super) struct LogStream {
    command: Arc<str>,
    stream: &'static str,
    budget: Arc<OutputBudget>,
}

impl LogStream {
    pub(super) fn new(command: Arc<str>, stream: &'static str, budget: Arc<OutputBudget>) -> Self {
        Self {
            command,
            stream,
            budget,
        }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineLogger {
            command: self.command.clone(),
            stream: self.stream,
            budget: Arc::clone(&self.budget),
            line: Vec::new(),
        })
    }
}

/// Buffers bytes until a newline, then logs the line.
struct LineLogger {
    command: Arc<str>,
    stream: &'static str,
    budget: Arc<OutputBudget>,
    line: Vec<u8>,
}

impl LineLogger {
    fn emit(&mut self) {
        if !self.line.is_empty() && self.budget.take(self.line.len()) {
            let text = String::from_utf8_lossy(&self.line);
            // Escaped: a handler's output must not forge the host's log lines.
            let text = crate::report::escaped(text.trim_end(), MAX_LINE);
            tracing::info!(cmd = %self.command, stream = self.stream, "{text}");
        }
        self.line.clear();
    }
}

impl AsyncWrite for LineLogger {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        for chunk in buf.split_inclusive(|&b| b == b'\n') {
            let room = MAX_LINE.saturating_sub(this.line.len());
            let (text, ends_line) = match chunk.split_last() {
                Some((b'\n', text)) => (text, true),
                _ => (chunk, false),
            };
            this.line.extend_from_slice(&text[..text.len().min(room)]);
            if ends_line {
                this.emit();
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().emit();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        self.emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_logs_at_most_its_budget_of_lines() {
        let budget = OutputBudget::new("flood".into());
        let taken = (0..MAX_LINES_PER_REQUEST + 50)
            .filter(|_| budget.take(10))
            .count();
        assert_eq!(taken, MAX_LINES_PER_REQUEST as usize);
        let used = budget.used.lock().expect("not poisoned");
        assert_eq!((used.dropped_lines, used.dropped_bytes), (50, 500));
    }

    #[test]
    fn a_request_logs_at_most_its_budget_of_bytes() {
        let budget = OutputBudget::new("flood".into());
        assert!(budget.take(MAX_BYTES_PER_REQUEST - 1));
        assert!(!budget.take(2));
        assert!(budget.take(1));
    }
}
