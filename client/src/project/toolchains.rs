//! The build steps of each language, with the toolchain each project pins:
//!
//! - Rust: `rust-toolchain.toml` (rustup), then `cargo build --release --target wasm32-wasip2`.
//! - Python: `requirements.txt` → a virtualenv shared by every project with the same
//!   pins, in `$XDG_CACHE_HOME/tcpy/toolchains`; then componentize-py.
//! - JavaScript: `package-lock.json` → `node_modules` (`npm ci`); then componentize-qjs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::build::{Project, Step};
use super::{Language, on_path};

/// The steps that build `project`, and the component they leave.
///
/// # Errors
/// What the steps need cannot be found (a Python project's `requirements.txt`, or a
/// cache directory for its toolchain).
pub fn steps(project: &Project) -> anyhow::Result<(Vec<Step<'_>>, PathBuf)> {
    match project.language {
        Language::Rust => Ok(rust(project)),
        Language::Python => python(project),
        Language::JavaScript => Ok(javascript(project)),
    }
}

fn rust(project: &Project) -> (Vec<Step<'_>>, PathBuf) {
    let dir = &project.dir;
    let target = dir.join("target");
    let component = target.join(format!("wasm32-wasip2/release/{}.wasm", project.name));
    let mut steps = Vec::new();
    // Where rustup is missing, cargo is whatever is installed, and says if it lacks the target.
    if let Some(rustup) = on_path("rustup") {
        steps.push(Step {
            label: "rustup toolchain install",
            what: "the toolchain rust-toolchain.toml pins, with the wasm32-wasip2 target".to_owned(),
            run: Box::new(move || {
                let mut command = Command::new(rustup);
                command.current_dir(dir).args(["toolchain", "install"]);
                run(without_outer_cargo(command), "rustup", "")
            }),
        });
    }
    steps.push(Step {
        label: "cargo build",
        what: format!("building {}", component.display()),
        run: Box::new(move || {
            let mut command = Command::new("cargo");
            command
                .current_dir(dir)
                .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
                .arg(&target);
            run(
                without_outer_cargo(command),
                "cargo",
                " (is Rust installed? see https://rustup.rs)",
            )
        }),
    });
    (steps, component)
}

/// `command` without the variables a cargo running `tcpy` (a test, `cargo run`) sets
/// for it: they would pick that cargo's toolchain (`RUSTUP_TOOLCHAIN`), target
/// directory or package for the project's build instead of its own.
///
/// Kept: `CARGO_HOME` (where the registry cache and the user's config are) and the
/// user's own network, registry and terminal settings.
fn without_outer_cargo(mut command: Command) -> Command {
    const KEPT: &[&str] = &[
        "CARGO_HOME",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRY_",
        "CARGO_REGISTRIES_",
        "CARGO_TERM_",
    ];
    for (key, _) in std::env::vars_os() {
        let Some(name) = key.to_str() else { continue };
        let outer = name == "CARGO"
            || (name.starts_with("CARGO_") && !KEPT.iter().any(|kept| name.starts_with(kept)))
            || name == "RUSTUP_TOOLCHAIN"
            || name == "RUSTUP_TOOLCHAIN_SOURCE";
        if outer {
            command.env_remove(&key);
        }
    }
    command
}

fn python(project: &Project) -> anyhow::Result<(Vec<Step<'_>>, PathBuf)> {
    let dir = &project.dir;
    let name = &project.name;
    let component = dir.join(format!("{name}.wasm"));
    let requirements = dir.join("requirements.txt");
    let venv = python_venv(&requirements)?;
    let steps = vec![
        Step {
            label: "pip install",
            what: format!(
                "the pinned componentize-py, into {} if not there yet",
                venv.display()
            ),
            run: Box::new({
                let venv = venv.clone();
                move || pinned_venv(&venv, &requirements)
            }),
        },
        Step {
            label: "componentize-py",
            what: format!("building {}", component.display()),
            run: Box::new({
                let component = component.clone();
                move || {
                    let mut command = Command::new(venv.join("bin/componentize-py"));
                    command
                        .current_dir(dir)
                        .args(["--quiet", "-d", "wit", "-w", "handler", "componentize", name])
                        .args(["-p", ".", "-o"])
                        .arg(&component);
                    run(command, "componentize-py", "")
                }
            }),
        },
    ];
    Ok((steps, component))
}

/// The shared virtualenv for the pins in `requirements`:
/// `$XDG_CACHE_HOME/tcpy/toolchains/python-HASH` (else `~/.cache/…`).
fn python_venv(requirements: &Path) -> anyhow::Result<PathBuf> {
    let pins =
        std::fs::read(requirements).with_context(|| format!("cannot read `{}`", requirements.display()))?;
    let cache = match std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from) {
        // The XDG spec: a relative path is to be ignored.
        Some(cache) if cache.is_absolute() => cache,
        _ => std::env::home_dir()
            .context("neither XDG_CACHE_HOME nor HOME is set: no place for the Python toolchain")?
            .join(".cache"),
    };
    Ok(cache.join(format!("tcpy/toolchains/python-{:016x}", fnv1a(&pins))))
}

/// The 64-bit FNV-1a hash of `bytes`: stable across builds and Rust versions, unlike
/// `DefaultHasher`, so a cache directory keeps its name.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Makes `venv` hold exactly what `requirements` pins, skipped when its stamp says it
/// already does (as `cargo xtask` does for the repository's own venv).
fn pinned_venv(venv: &Path, requirements: &Path) -> anyhow::Result<()> {
    let wanted = std::fs::read_to_string(requirements)
        .with_context(|| format!("cannot read `{}`", requirements.display()))?;
    let python = venv.join("bin/python");
    let stamp = venv.join("tcpy-installed.txt");
    if python.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|installed| installed == wanted) {
        eprintln!("      already installed");
        return Ok(());
    }
    if !python.is_file() {
        if let Some(parent) = venv.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        let mut create = Command::new("python3");
        create.args(["-m", "venv"]).arg(venv);
        run(create, "python3", " (is python3 installed?)")
            .context("cannot create the virtualenv (is python3 with venv installed?)")?;
    }
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
    ])
    .arg("-r")
    .arg(requirements);
    run(pip, "pip", "")?;
    // Written last: an install that fails half-way is retried next time.
    std::fs::write(&stamp, wanted).with_context(|| format!("cannot write `{}`", stamp.display()))
}

fn javascript(project: &Project) -> (Vec<Step<'_>>, PathBuf) {
    let dir = &project.dir;
    let name = &project.name;
    let component = dir.join(format!("{name}.wasm"));
    let steps = vec![
        Step {
            label: "npm ci",
            what: "the pinned componentize-qjs, into node_modules if not there yet".to_owned(),
            run: Box::new(move || node_modules(dir)),
        },
        Step {
            label: "componentize-qjs",
            what: format!("building {}", component.display()),
            run: Box::new({
                let component = component.clone();
                move || {
                    // `--sync`: the host runs exports without component-model async.
                    let mut command = Command::new(dir.join("node_modules/.bin/componentize-qjs"));
                    command
                        .current_dir(dir)
                        .args(["--wit", "wit", "--world", "handler", "--sync", "--js"])
                        .arg(format!("{name}.js"))
                        .arg("-o")
                        .arg(&component);
                    run(command, "componentize-qjs", "")
                }
            }),
        },
    ];
    (steps, component)
}

/// Makes `dir/node_modules` hold exactly what `package-lock.json` pins, skipped when
/// its stamp says it already does.
fn node_modules(dir: &Path) -> anyhow::Result<()> {
    let lock = dir.join("package-lock.json");
    let wanted =
        std::fs::read_to_string(&lock).with_context(|| format!("cannot read `{}`", lock.display()))?;
    let stamp = dir.join("node_modules/.tcpy-installed.json");
    if std::fs::read_to_string(&stamp).is_ok_and(|installed| installed == wanted) {
        eprintln!("      already installed");
        return Ok(());
    }
    // `npm ci` installs exactly the lock file, and fails rather than change it.
    let mut npm = Command::new("npm");
    npm.current_dir(dir).args(["ci", "--no-audit", "--no-fund"]);
    run(npm, "npm", " (are node and npm installed?)")?;
    std::fs::write(&stamp, wanted).with_context(|| format!("cannot write `{}`", stamp.display()))
}

/// Runs `command` with the terminal's stdio, as if typed; fails unless it exits 0.
/// `hint` follows the error if `program` cannot be started at all.
fn run(mut command: Command, program: &str, hint: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run `{program}`{hint}"))?;
    if !status.success() {
        bail!("{status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
