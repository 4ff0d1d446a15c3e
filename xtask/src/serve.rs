//! `cargo xtask serve`: the first answer as soon as the host can give it. The Rust
//! examples are built, the host is started on `target/handlers`, and once it listens
//! the Python and JavaScript handlers are built and copied in, where hot swap loads
//! them into the running host.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::process::{ExitCode, Stdio};
use std::sync::mpsc;

use anyhow::{Context, Result};

use crate::Workspace;

/// The host's log line that says it listens.
const LISTENING: &str = "tcpy-host listening";

pub(crate) fn run(workspace: &Workspace, args: &[OsString]) -> Result<ExitCode> {
    workspace.build_rust_handlers()?;
    let handlers = workspace.target.join("handlers");
    let mut command = workspace.cargo();
    command
        .args(["run", "--package", "tcpy-host", "--", "--handlers"])
        .arg(&handlers)
        .args(args)
        .stdout(Stdio::piped());
    let mut host = command.spawn().context("cannot run cargo run -p tcpy-host")?;
    let stdout = host.stdout.take().context("the host's stdout is piped")?;
    // Its log is ours too; the line that says it listens starts the rest.
    let (listening, heard) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = std::io::stdout();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(LISTENING) {
                let _ = listening.send(());
            }
            let _ = writeln!(out, "{line}");
        }
    });
    if heard.recv().is_ok() {
        eprintln!(
            "xtask serve: the host serves the Rust examples; building the Python and JavaScript ones, which hot swap brings in…"
        );
        match workspace.build_language_handlers() {
            Ok(()) => eprintln!(
                "xtask serve: py_* and js_* handlers copied into {}; the host loads them (unless run with --no-watch)",
                workspace.relative(&handlers).display()
            ),
            Err(error) => eprintln!(
                "xtask serve: the Python and JavaScript handlers were not built ({error:#}); the host goes on serving the Rust ones"
            ),
        }
    }
    let status = host.wait().context("cannot wait for the host")?;
    // The host's exit status is ours: a failed serve must not look like success.
    Ok(crate::exit_code(status))
}
