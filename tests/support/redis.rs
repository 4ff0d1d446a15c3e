//! A real `redis-server` (Debian's package) on a free loopback port, for the tests of
//! the Redis-backed stores. It keeps an append-only file in a temporary directory, so
//! a restart on the same port finds what was written before it stopped.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections once started.
const START_WAIT: Duration = Duration::from_secs(10);

/// A running `redis-server`; stopped when dropped.
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self {
            port,
            dir: tempfile::tempdir().expect("a temporary directory"),
            child: None,
        };
        server.restart();
        server
    }

    /// The URL hosts are given (`--redis`).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server (SIGTERM, as an operator would) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::send_signal(&child, libc::SIGTERM);
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory (after [`Self::stop`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        self.child = Some(spawn(self.port, self.dir.path()));
        let deadline = Instant::now() + START_WAIT;
        while !self.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within {START_WAIT:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs one command (space-separated words) and returns its reply's first line.
    pub fn command(&self, words: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connects to redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("sets a timeout");
        let mut request = format!("*{}\r\n", words.split(' ').count());
        for word in words.split(' ') {
            request.push_str(&format!("${}\r\n{word}\r\n", word.len()));
        }
        stream.write_all(request.as_bytes()).expect("writes");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).expect("reads a reply");
        if line.starts_with('$') && line.trim() != "$-1" {
            line.clear();
            reader.read_line(&mut line).expect("reads a bulk reply");
        }
        line.trim_end().to_owned()
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = String::new();
        stream.write_all(b"PING\r\n").is_ok()
            && BufReader::new(stream).read_line(&mut reply).is_ok()
            && reply.starts_with("+PONG")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(port: u16, dir: &Path) -> Child {
    let program = crate::tool("redis-server", "redis-server");
    Command::new(program)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "yes", "--appendfsync", "always"])
        .args([
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts")
}
