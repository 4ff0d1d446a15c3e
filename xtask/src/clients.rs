//! The Python and JavaScript client libraries' own test suites, run against a real
//! host: `target/debug/tcpy-host` (built by `cargo test --workspace`) serving
//! `target/test-handlers`.
//!
//! - Python: `clients/python/requirements-test.txt` pins the test tools (pytest,
//!   msgpack…), installed into a virtualenv in `target/toolchains/clients-venv`.
//! - JavaScript: `node --test` needs nothing beyond Node itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::Workspace;

const PYTHON_DIR: &str = "clients/python";
const PYTHON_PINS: &str = "requirements-test.txt";
const JS_DIR: &str = "clients/js";

/// Installs the Python test tools if needed, then runs both clients' suites; fails if
/// either fails (both run either way, so one failure does not hide the other).
pub(crate) fn test(workspace: &Workspace) -> Result<()> {
    let host = workspace.target.join("debug/tcpy-host");
    let handlers = workspace.target.join("test-handlers");
    anyhow::ensure!(
        host.is_file(),
        "no host at `{}`: `cargo test --workspace` builds it",
        host.display()
    );
    anyhow::ensure!(
        handlers.join("add.wasm").is_file(),
        "no handlers in `{}`: `cargo xtask build-handlers` builds them",
        handlers.display()
    );
    let venv = install_python_tools(workspace)?;

    let mut pytest = Command::new(venv.join("bin/python"));
    pytest
        .current_dir(workspace.root.join(PYTHON_DIR))
        // The suite reads the sources in place: no caches left in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["-m", "pytest", "-p", "no:cacheprovider"]);
    let python = suite(pytest, &host, &handlers, "the Python client's tests (pytest)");

    let mut node = Command::new("node");
    node.current_dir(workspace.root.join(JS_DIR))
        .args(["--test", "--test-concurrency=1"])
        .args(js_test_files(&workspace.root.join(JS_DIR))?);
    let javascript = suite(
        node,
        &host,
        &handlers,
        "the JavaScript client's tests (node --test)",
    );

    let failed: Vec<String> = [python, javascript]
        .into_iter()
        .filter_map(|result| result.err().map(|error| format!("{error:#}")))
        .collect();
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

/// Runs one suite against the host, failing unless it passes.
fn suite(mut command: Command, host: &Path, handlers: &Path, what: &str) -> Result<()> {
    eprintln!("running {what}…");
    command.env("TCPY_HOST_BIN", host).env("TCPY_HANDLERS", handlers);
    crate::run(command).with_context(|| format!("{what} failed"))
}

/// The `*.test.js` files of `clients/js/test`, sorted, relative to `dir`.
fn js_test_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let tests = dir.join("test");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&tests).with_context(|| format!("cannot read `{}`", tests.display()))? {
        let name = entry.context("cannot list the JavaScript tests")?.file_name();
        if name.to_string_lossy().ends_with(".test.js") {
            files.push(Path::new("test").join(name));
        }
    }
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no *.test.js in `{}`", tests.display());
    Ok(files)
}

/// Makes `target/toolchains/clients-venv` hold exactly what `requirements-test.txt`
/// pins (skipped when it already does); returns the venv.
fn install_python_tools(workspace: &Workspace) -> Result<PathBuf> {
    let venv = workspace.target.join("toolchains/clients-venv");
    let pins = workspace.root.join(PYTHON_DIR).join(PYTHON_PINS);
    crate::languages::pinned_venv(workspace, venv, &pins, "the Python client's test tools")
}
