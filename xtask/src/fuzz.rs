//! `cargo xtask fuzz`: every cargo-fuzz target of `fuzz/` for a while each, with
//! libFuzzer, on the project's own (stable) toolchain.
//!
//! The targets are built with `--sanitizer none`: AddressSanitizer needs nightly,
//! which a CI machine does not have, and buys little here. The fuzzed code has no
//! `unsafe` (the workspace denies it), so the failures to look for are panics,
//! aborts, stack overflows and broken invariants, and libFuzzer sees all of those
//! without a sanitizer. Without ASan, each run also makes about four times as many
//! executions.
//!
//! cargo-fuzz, at a pinned version, is installed into `target/tools` the first time.
//! Each run starts from the committed seeds (`fuzz/corpus/TARGET`, read only) and a
//! working corpus in `fuzz/target/corpus/TARGET`, kept between runs, where libFuzzer
//! writes what it finds: the repository stays clean. A crashing input goes to
//! `fuzz/artifacts/TARGET/`, as with a plain `cargo fuzz run`.

use std::ffi::OsString;
use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

use crate::Workspace;

/// The cargo-fuzz installed into `target/tools`.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// The targets of fuzz/Cargo.toml, in the order they run.
const TARGETS: [&str; 2] = ["wire", "request"];

/// Options of `cargo xtask fuzz`.
#[derive(clap::Args)]
pub(crate) struct Options {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
}

pub(crate) fn run(workspace: &Workspace, options: &Options) -> Result<()> {
    let started = Instant::now();
    let fuzz = Fuzz::prepare(workspace)?;
    fuzz.build()?;
    let mut failed = Vec::new();
    for target in TARGETS {
        if let Err(error) = fuzz.run(target, options.seconds) {
            eprintln!("fuzz: {error:#}");
            failed.push(target);
        }
    }
    eprintln!("fuzz: finished in {} s", started.elapsed().as_secs());
    ensure!(failed.is_empty(), "fuzz targets failed: {}", failed.join(", "));
    Ok(())
}

/// The fuzz workspace, and how to run cargo-fuzz on it.
struct Fuzz {
    dir: PathBuf,
    /// `target/tools/bin`, then the rest of `PATH`, so that `cargo fuzz` finds it.
    path: OsString,
}

impl Fuzz {
    /// Installs cargo-fuzz if it is not there yet.
    fn prepare(workspace: &Workspace) -> Result<Self> {
        let tools = workspace.tools();
        workspace.install_tool("cargo-fuzz", "cargo-fuzz", CARGO_FUZZ_VERSION)?;
        let rest = std::env::var_os("PATH").unwrap_or_default();
        let path =
            std::env::join_paths(std::iter::once(tools.join("bin")).chain(std::env::split_paths(&rest)))
                .context("cannot build PATH for cargo-fuzz")?;
        Ok(Self {
            dir: workspace.root.join("fuzz"),
            path,
        })
    }

    /// `cargo fuzz SUBCOMMAND --sanitizer none`, in fuzz/, building into fuzz/target.
    fn cargo_fuzz(&self, subcommand: &str) -> Command {
        let mut command = Command::new("cargo");
        command
            .current_dir(&self.dir)
            .env("PATH", &self.path)
            .env_remove("CARGO_TARGET_DIR")
            .args(["fuzz", subcommand, "--sanitizer", "none"]);
        command
    }

    /// Builds every target (cargo's progress shows; the runs' output goes to logs).
    fn build(&self) -> Result<()> {
        eprintln!("fuzz: building the targets…");
        crate::run(self.cargo_fuzz("build")).context("building the fuzz targets failed")
    }

    /// Fuzzes `target` for `seconds`; its output goes to fuzz/target/logs/TARGET.log,
    /// and a summary (or, on a crash, the end of the log) to the terminal.
    fn run(&self, target: &str, seconds: u64) -> Result<()> {
        let corpus = self.dir.join("target/corpus").join(target);
        let logs = self.dir.join("target/logs");
        for dir in [&corpus, &logs] {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        let log_path = logs.join(format!("{target}.log"));
        let log =
            File::create(&log_path).with_context(|| format!("cannot create `{}`", log_path.display()))?;
        let mut command = self.cargo_fuzz("run");
        command
            .arg(target)
            .arg(&corpus)
            .arg(self.dir.join("corpus").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1")
            .stdout(log.try_clone().context("cannot share the log")?)
            .stderr(log);
        eprintln!("fuzz: `{target}` for {seconds} s (log: fuzz/target/logs/{target}.log)…");
        let status = command
            .status()
            .with_context(|| format!("cannot run cargo fuzz for `{target}`"))?;
        let output = std::fs::read_to_string(&log_path).unwrap_or_default();
        if !status.success() {
            eprintln!("{}", tail(&output, 40));
            bail!(
                "`{target}` failed ({status}); the input that did it is in fuzz/artifacts/{target}/ \
                 (the README's Fuzzing section says how to replay it)"
            );
        }
        eprintln!("fuzz: `{target}`: {}", summary(&output));
        Ok(())
    }
}

/// libFuzzer's figures from the end of a run's log: runs, rate, coverage, corpus.
fn summary(log: &str) -> String {
    let stat = |name: &str| {
        log.lines()
            .find_map(|line| line.strip_prefix(&format!("stat::{name}:")))
            .map(str::trim)
            .unwrap_or("?")
    };
    let seconds = log
        .lines()
        .rev()
        .find_map(|line| {
            let rest = line.strip_prefix("Done ")?;
            rest.split_whitespace().nth(3)
        })
        .unwrap_or("?");
    // The last status line ("#N DONE cov: C ft: F corp: K/S …") has the coverage.
    let coverage = log
        .lines()
        .rev()
        .find(|line| line.starts_with('#') && line.contains(" cov: "))
        .and_then(|line| line.split_once(" cov: "))
        .map_or("?", |(_, rest)| rest.trim());
    format!(
        "{} runs in {seconds} s ({} per second), no crash; cov: {coverage}; peak RSS {} MB",
        stat("number_of_executed_units"),
        stat("average_exec_per_sec"),
        stat("peak_rss_mb"),
    )
}

/// The last `count` lines of `text`.
fn tail(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}
