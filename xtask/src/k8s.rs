//! `cargo xtask check-k8s`: the Kubernetes manifests of `deploy/k8s`, validated against
//! the official schemas and checked against tcpy-host's own flags by
//! `deploy/k8s/check.py`, first on broken copies (`--self-test`: each must fail), then
//! as they are.
//!
//! The validator (`kubernetes-validate`, which bundles the schemas: no network once
//! installed) is pinned in `deploy/k8s/requirements.txt` and installed into a
//! virtualenv in `target/toolchains/k8s-venv`.

use std::process::Command;

use anyhow::{Context, Result};

use crate::{Workspace, languages};

const DIR: &str = "deploy/k8s";
const PINS: &str = "requirements.txt";
const VENV: &str = "toolchains/k8s-venv";

/// Installs the validator if needed, then runs `check.py --self-test` and `check.py`
/// against the host in `target/debug` (for its flag names); fails if either fails.
pub(crate) fn check(workspace: &Workspace) -> Result<()> {
    let dir = workspace.root.join(DIR);
    let host = workspace.target.join("debug/tcpy-host");
    anyhow::ensure!(
        host.is_file(),
        "no host at `{}` to read the flag names from: `cargo build -p tcpy-host` builds it",
        host.display()
    );
    let venv = languages::pinned_venv(
        workspace,
        workspace.target.join(VENV),
        &dir.join(PINS),
        "the Kubernetes manifest validator",
    )?;
    for (args, what) in [
        (&["--self-test"][..], "deploy/k8s/check.py --self-test"),
        (&[][..], "deploy/k8s/check.py"),
    ] {
        eprintln!("running {what}…");
        let mut command = Command::new(venv.join("bin/python"));
        command
            .current_dir(&workspace.root)
            // No `__pycache__` left in deploy/k8s.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg(dir.join("check.py"))
            .arg("--tcpy-host")
            .arg(&host)
            .args(args);
        crate::run(command).with_context(|| format!("{what} failed"))?;
    }
    Ok(())
}
