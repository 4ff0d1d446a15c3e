//! Project commands, run as `cargo xtask <command>`: build the handlers, serve them,
//! run every test, fuzz the protocol.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod clients;
mod fleet;
mod fuzz;
mod k8s;
mod languages;
mod serve;
mod system;
mod targets;
mod wasmtime_serve;

/// The example handlers `serve` offers.
const EXAMPLES: [&str; 4] = ["add", "counter", "echo", "tally"];
/// Handlers only the tests use.
const TEST_ONLY: [&str; 2] = ["kvops", "misbehave"];
const WASM_TARGET: &str = "wasm32-wasip2";

#[derive(Parser)]
#[command(about = "tcpy project commands")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Benchmarks: criterion micro-benchmarks, then sandboxed `add` against
    /// `native_add` end to end with tcpy-bench; writes the table into docs/performance.md.
    Bench(bench::Options),
    /// Builds the handler components into target/handlers (examples, the Python and
    /// JavaScript ones as `py_add`, `js_tally`, …), target/test-handlers (Rust examples
    /// and test fixtures) and target/language-handlers/{rust,py,js} (what the
    /// cross-language tests serve), installing the Python and JavaScript toolchains first.
    BuildHandlers,
    /// Checks that the host, the client and the protocol build for Windows and macOS
    /// (`cargo check` per target, with the C cross compilers ring needs).
    CheckTargets,
    /// Checks the Kubernetes manifests of deploy/k8s: valid against the official schemas
    /// (strict, offline) and consistent with tcpy-host's flags (deploy/k8s/check.py,
    /// its self-test first). Needs target/debug/tcpy-host for the flag names.
    CheckK8s,
    /// Runs a fleet on loopback: redis-server, `--hosts` tcpy-hosts on it serving the
    /// Rust examples, and HAProxy in front on `--port` running deploy/haproxy/haproxy.cfg;
    /// Ctrl-C stops it all.
    Fleet(fleet::Options),
    /// Fuzzes tcpy-protocol: every target of fuzz/ for `--seconds` each, with cargo-fuzz
    /// (installed into target/tools), no sanitizer, on the project's toolchain.
    Fuzz(fuzz::Options),
    /// Builds the Rust handlers, runs the host on target/handlers, and brings in the
    /// Python and JavaScript handlers by hot swap once the host listens.
    Serve {
        /// Passed on to `tcpy-host`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Installs what the tests run for real (Debian's `prometheus` for promtool) if
    /// missing, builds the handlers, then runs every test of the workspace.
    Test {
        /// Passed on to `cargo test --workspace`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

fn main() -> Result<ExitCode> {
    let workspace = Workspace::locate()?;
    match Cli::parse().command {
        Task::Bench(options) => bench::run(&workspace, &options).map(|()| ExitCode::SUCCESS),
        Task::BuildHandlers => workspace.build_handlers().map(|()| ExitCode::SUCCESS),
        Task::CheckTargets => targets::check(&workspace).map(|()| ExitCode::SUCCESS),
        Task::CheckK8s => k8s::check(&workspace).map(|()| ExitCode::SUCCESS),
        Task::Fleet(options) => fleet::run(&workspace, &options),
        Task::Fuzz(options) => fuzz::run(&workspace, &options).map(|()| ExitCode::SUCCESS),
        Task::Serve { args } => serve::run(&workspace, &args),
        Task::Test { args } => {
            system::ensure(&system::TEST_TOOLS)?;
            workspace.build_handlers()?;
            let mut command = workspace.cargo();
            command.args(["test", "--workspace"]).args(args);
            let status = status_of(command, "the tests")?;
            if status != ExitCode::SUCCESS {
                return Ok(status);
            }
            // The Python and JavaScript clients' suites, against the host it built.
            clients::test(&workspace)?;
            // The Kubernetes manifests, against the flags of the host it built.
            k8s::check(&workspace)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

struct Workspace {
    root: PathBuf,
    target: PathBuf,
    cargo: OsString,
}

impl Workspace {
    fn locate() -> Result<Self> {
        let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir
            .parent()
            .context("xtask's manifest directory has no parent")?
            .to_path_buf();
        // Made absolute, and handed to every cargo run here, so that the builds, the
        // copies and the host all agree on it whatever directory they run in.
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => std::path::absolute(dir).context("cannot resolve CARGO_TARGET_DIR")?,
            None => root.join("target"),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        Ok(Self { root, target, cargo })
    }

    fn cargo(&self) -> Command {
        let mut command = Command::new(&self.cargo);
        command
            .current_dir(&self.root)
            .env("CARGO_TARGET_DIR", &self.target);
        command
    }

    fn build_handlers(&self) -> Result<()> {
        self.build_rust_handlers()?;
        self.build_language_handlers()?;
        eprintln!(
            "handlers ready in {}",
            self.relative(&self.target.join("handlers")).display()
        );
        Ok(())
    }

    /// Builds the Rust examples and test handlers and copies them where the host, the
    /// tests and the cross-language tests find them.
    fn build_rust_handlers(&self) -> Result<()> {
        eprintln!("building the Rust handlers…");
        add_wasm_target()?;
        let mut build = self.cargo();
        build.args(["build", "--profile", "guest", "--target", WASM_TARGET]);
        for name in EXAMPLES.iter().chain(&TEST_ONLY) {
            build.args(["--package", name]);
        }
        run(build).context("cargo build of the handlers failed")?;

        let built = self.rust_built();
        self.copy_rust_handlers(&built, &self.target.join("handlers"), &EXAMPLES)?;
        let everything: Vec<&str> = EXAMPLES.iter().chain(&TEST_ONLY).copied().collect();
        self.copy_rust_handlers(&built, &self.target.join("test-handlers"), &everything)?;
        let mut rust: Vec<&str> = languages::HANDLERS.to_vec();
        rust.push("misbehave");
        self.copy_rust_handlers(&built, &self.target.join("language-handlers/rust"), &rust)
    }

    /// Where cargo leaves the Rust handler components.
    fn rust_built(&self) -> PathBuf {
        self.target.join(WASM_TARGET).join("guest")
    }

    /// Builds the Python and JavaScript handlers (installing their toolchains first if
    /// needed) and copies them beside the Rust ones as `py_NAME`, `js_NAME`, and into
    /// `target/language-handlers/LANG` as `NAME`: they are large and slow to compile,
    /// so the cross-language tests load them only in hosts of their own.
    fn build_language_handlers(&self) -> Result<()> {
        languages::build(self)?;
        let by_language = self.target.join("language-handlers");
        for language in languages::LANGUAGES {
            for handler in languages::HANDLERS {
                let component = languages::component(self, language, handler);
                let manifest = languages::manifest(self, language, handler);
                let prefixed = format!("{}_{handler}", language.prefix());
                copy_handler(
                    &component,
                    manifest.as_deref(),
                    &self.target.join("handlers"),
                    &prefixed,
                )?;
                copy_handler(
                    &component,
                    manifest.as_deref(),
                    &by_language.join(language.prefix()),
                    handler,
                )?;
            }
        }
        Ok(())
    }

    /// Copies the Rust handlers `names` from `built` into `to`, each with its manifest
    /// (`NAME.toml` in its crate's directory) if it has one.
    fn copy_rust_handlers(&self, built: &Path, to: &Path, names: &[&str]) -> Result<()> {
        for name in names {
            let manifest = [
                self.root.join("handlers/rust").join(name),
                self.root.join("tests/handlers").join(name),
            ]
            .into_iter()
            .map(|dir| dir.join(format!("{name}.toml")))
            .find(|path| path.is_file());
            copy_handler(&built.join(format!("{name}.wasm")), manifest.as_deref(), to, name)?;
        }
        Ok(())
    }

    /// `path` relative to the workspace root when it is inside it, for short messages.
    fn relative<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }

    /// Where `install_tool` puts tools: `target/tools`, with binaries in `bin/`.
    fn tools(&self) -> PathBuf {
        self.target.join("tools")
    }

    /// The binary `binary` of the crates.io package `package` at `version`, installed
    /// into [`Workspace::tools`] with `cargo install --locked` unless that version is
    /// already there (its `--version` output names the version).
    fn install_tool(&self, package: &str, binary: &str, version: &str) -> Result<PathBuf> {
        let tools = self.tools();
        let path = tools.join("bin").join(binary);
        let installed = Command::new(&path)
            .arg("--version")
            .output()
            .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains(version));
        if installed {
            return Ok(path);
        }
        eprintln!(
            "installing {package} {version} into {}…",
            self.relative(&tools).display()
        );
        let mut install = Command::new(&self.cargo);
        install
            .current_dir(&self.root)
            // Built in a temporary directory of its own, not in the workspace's target.
            .env_remove("CARGO_TARGET_DIR")
            .args(["install", package, "--locked", "--version", version, "--root"])
            .arg(&tools);
        run(install).with_context(|| format!("installing {package} failed"))?;
        Ok(path)
    }
}

/// Makes sure the wasm target is installed where rustup manages the toolchain; where
/// it does not, the build says plainly if the target is missing.
fn add_wasm_target() -> Result<()> {
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", WASM_TARGET]);
    match rustup.output() {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => bail!(
            "`rustup target add {WASM_TARGET}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("rustup is not on PATH; assuming the {WASM_TARGET} target is installed");
            Ok(())
        }
        Err(error) => Err(error).context("cannot run rustup"),
    }
}

/// Copies each `NAME.wasm` of `names` from `from` to `to`.
/// Copies the component `source` to `to/NAME.wasm`, and its `manifest` (if any) to
/// `to/NAME.toml` first, so the host never loads the new component without it.
fn copy_handler(source: &Path, manifest: Option<&Path>, to: &Path, name: &str) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create `{}`", to.display()))?;
    if let Some(manifest) = manifest {
        copy_file(manifest, to, &format!("{name}.toml"))?;
    }
    copy_file(source, to, &format!("{name}.wasm"))
}

/// Copies `source` to `to/file`.
///
/// A running host watches `to` and reloads what changes, so a file that is already
/// up to date is left alone, and another is replaced by a rename: the host never
/// sees a half-written one.
fn copy_file(source: &Path, to: &Path, file: &str) -> Result<()> {
    let destination = to.join(file);
    let bytes = std::fs::read(source).with_context(|| format!("cannot read `{}`", source.display()))?;
    if std::fs::read(&destination).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let partial = to.join(format!(".{file}.partial"));
    std::fs::write(&partial, &bytes)
        .and_then(|()| std::fs::rename(&partial, &destination))
        .with_context(|| format!("cannot write `{}`", destination.display()))
}

/// Runs `command`, failing unless it succeeds.
fn run(mut command: Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    anyhow::ensure!(status.success(), "{command:?} exited with {status}");
    Ok(())
}

/// Runs `command` and returns its exit status as ours.
fn status_of(mut command: Command, what: &str) -> Result<ExitCode> {
    let status = command.status().with_context(|| format!("cannot run {what}"))?;
    Ok(exit_code(status))
}

/// `status` as our own exit code. A signal has no exit code; it is a plain failure.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    let code = status
        .code()
        .and_then(|code| u8::try_from(code).ok())
        .unwrap_or(1);
    ExitCode::from(code)
}
