//! `tcpy build [DIR] [--out HANDLERS_DIR]`: builds the project in DIR into a component
//! and, with `--out`, deploys it (and its manifest) into a handlers directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Parser;

use super::templates::{JS_HELPER_FILE, PYTHON_HELPER_FILE};
use super::{Language, check_form, toolchains};

const AFTER_HELP: &str = "\
The language and NAME come from DIR: a Cargo.toml (Rust, NAME is its package name),
or NAME.py beside tcpy_guest.py (Python), or NAME.js beside tcpy-guest.js
(JavaScript), with NAME.toml beside it. `tcpy new` writes such a project.

The toolchain is the one the project pins: Rust from rust-toolchain.toml (installed
with rustup), componentize-py from requirements.txt (in a virtualenv shared by
projects, under $XDG_CACHE_HOME/tcpy/toolchains), componentize-qjs from
package-lock.json (npm ci, into DIR/node_modules).

With --out, NAME.toml and then NAME.wasm are copied into HANDLERS_DIR, each through a
hidden temporary file renamed into place: a host serving HANDLERS_DIR swaps the new
version in, and never sees a half-written file.";

/// Build the handler project in DIR into a component; with --out, deploy it.
#[derive(Debug, Parser)]
#[command(name = "tcpy build", bin_name = "tcpy build", version, after_help = AFTER_HELP)]
pub struct BuildArgs {
    /// The project's directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Copy the component and its manifest into this handlers directory (created if
    /// missing), as NAME.wasm and NAME.toml.
    #[arg(long, value_name = "HANDLERS_DIR")]
    out: Option<PathBuf>,
}

/// A handler project, as found in its directory.
pub struct Project {
    /// Its directory, absolute.
    pub dir: PathBuf,
    /// The handler's name: its command, and the stem of its files.
    pub name: String,
    /// Its language.
    pub language: Language,
}

impl Project {
    /// The manifest, `NAME.toml` in the project's directory.
    fn manifest(&self) -> PathBuf {
        self.dir.join(format!("{}.toml", self.name))
    }
}

/// One step of a build: what it is called in messages, and what it does.
pub struct Step<'a> {
    /// A short name, e.g. `cargo build`, for the progress line and a failure.
    pub label: &'static str,
    /// What it does, for the progress line.
    pub what: String,
    /// Runs it.
    pub run: Box<dyn FnOnce() -> anyhow::Result<()> + 'a>,
}

/// Builds (and deploys) the project `args` names, announcing each step on stderr.
///
/// # Errors
/// DIR is not a project, or a step failed; the error names the step.
pub fn run(args: &BuildArgs) -> anyhow::Result<()> {
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("cannot open the project directory `{}`", args.dir.display()))?;
    let project = detect(&dir)?;
    let (mut steps, component) = toolchains::steps(&project)?;
    let out = args
        .out
        .as_ref()
        .map(|out| {
            std::fs::create_dir_all(out)
                .and_then(|()| out.canonicalize())
                .with_context(|| format!("cannot create the handlers directory `{}`", out.display()))
        })
        .transpose()?;
    if let Some(out) = &out {
        let manifest = Some(project.manifest()).filter(|manifest| manifest.is_file());
        let (name, out, component) = (project.name.as_str(), out.clone(), component.clone());
        steps.push(Step {
            label: "deploy",
            what: format!("copying {name}.toml and {name}.wasm into {}", out.display()),
            run: Box::new(move || deploy(&out, name, manifest.as_deref(), &component)),
        });
    }

    eprintln!(
        "tcpy build: {} handler `{}` in {}",
        project.language.title(),
        project.name,
        project.dir.display()
    );
    let total = steps.len();
    for (i, step) in steps.into_iter().enumerate() {
        let i = i + 1;
        eprintln!("[{i}/{total}] {}: {}…", step.label, step.what);
        (step.run)().with_context(|| format!("step {i}/{total} ({}) failed", step.label))?;
    }

    let size = std::fs::metadata(&component)
        .map(|metadata| metadata.len())
        .unwrap_or(0);
    println!("built {} ({} KiB)", component.display(), size.div_ceil(1024));
    if let Some(out) = &out {
        let deployed = out.join(format!("{}.wasm", project.name));
        println!("deployed as {}", deployed.display());
    }
    Ok(())
}

/// The project in `dir`: its language, from the files it holds, and its name.
///
/// # Errors
/// `dir` holds no project, or more than one handler, or a name that is not valid.
pub fn detect(dir: &Path) -> anyhow::Result<Project> {
    let cargo = dir.join("Cargo.toml");
    let (language, name) = if cargo.is_file() {
        (Language::Rust, package_name(&cargo)?)
    } else {
        let python = scripts(dir, PYTHON_HELPER_FILE, "py")?;
        let js = scripts(dir, JS_HELPER_FILE, "js")?;
        let mut found: Vec<_> = python
            .into_iter()
            .map(|name| (Language::Python, name))
            .chain(js.into_iter().map(|name| (Language::JavaScript, name)))
            .collect();
        match found.len() {
            1 => found.remove(0),
            0 => bail!(
                "`{}` is not a tcpy handler project: it has no Cargo.toml, and no NAME.py beside \
                 {PYTHON_HELPER_FILE} or NAME.js beside {JS_HELPER_FILE} with a NAME.toml beside it \
                 (`tcpy new` writes one)",
                dir.display()
            ),
            _ => {
                let names: Vec<_> = found.iter().map(|(_, name)| format!("`{name}`")).collect();
                bail!(
                    "`{}` holds more than one handler ({}): give each a directory of its own",
                    dir.display(),
                    names.join(", ")
                );
            }
        }
    };
    check_form(&name)?;
    Ok(Project {
        dir: dir.to_owned(),
        name,
        language,
    })
}

/// The `[package] name` of the Cargo manifest `path`.
fn package_name(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let manifest: toml::Table = text
        .parse()
        .with_context(|| format!("`{}` is not valid TOML", path.display()))?;
    manifest
        .get("package")
        .and_then(|package| package.get("name"))
        .and_then(toml::Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("`{}` has no [package] name", path.display()))
}

/// The stems of the `*.EXTENSION` files in `dir` that have a `STEM.toml` beside them,
/// if `dir` holds the language's `helper`; none otherwise.
fn scripts(dir: &Path, helper: &str, extension: &str) -> anyhow::Result<Vec<String>> {
    if !dir.join(helper).is_file() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read `{}`", dir.display()))? {
        let path = entry
            .with_context(|| format!("cannot read `{}`", dir.display()))?
            .path();
        let Some(stem) = path.file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        let is_source = path.extension().is_some_and(|ext| ext == extension)
            && path.file_name().is_some_and(|file| file != helper);
        if is_source && dir.join(format!("{stem}.toml")).is_file() {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Copies the manifest (first) and the component into `out` as `NAME.toml` and
/// `NAME.wasm`.
///
/// NB: a host swaps a handler in when its `.wasm` changes and reads the manifest then;
/// copying the manifest first means the new code never runs with the old grants.
fn deploy(out: &Path, name: &str, manifest: Option<&Path>, component: &Path) -> anyhow::Result<()> {
    let deployed_manifest = out.join(format!("{name}.toml"));
    match manifest {
        Some(manifest) => install(manifest, &deployed_manifest)?,
        None if deployed_manifest.exists() => eprintln!(
            "tcpy build: note: the project has no {name}.toml, so {} (deployed earlier) still applies",
            deployed_manifest.display()
        ),
        None => {}
    }
    install(component, &out.join(format!("{name}.wasm")))
}

/// Copies `from` to `to` through a hidden temporary file beside `to` (which the host
/// ignores), renamed into place once complete.
fn install(from: &Path, to: &Path) -> anyhow::Result<()> {
    let file_name = to
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default();
    let temporary = to.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let copied = std::fs::copy(from, &temporary)
        .and_then(|_| std::fs::File::open(&temporary)?.sync_all())
        .and_then(|()| std::fs::rename(&temporary, to));
    if let Err(error) = copied {
        let _ = std::fs::remove_file(&temporary);
        return Err(error).with_context(|| format!("cannot copy `{}` to `{}`", from.display(), to.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_and_name_come_from_the_files() {
        let dir = std::env::temp_dir().join(format!("tcpy-detect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory");
        assert!(detect(&dir).is_err());
        for file in ["hello.py", "hello.toml", "notes.py"] {
            std::fs::write(dir.join(file), "").expect("writes");
        }
        // No helper: not a Python project.
        assert!(detect(&dir).is_err());
        std::fs::write(dir.join(PYTHON_HELPER_FILE), "").expect("writes");
        let project = detect(&dir).expect("a Python project");
        assert_eq!(
            (project.language, project.name.as_str()),
            (Language::Python, "hello")
        );
        std::fs::write(dir.join("Cargo.toml"), "[package]\nname = \"hello_rs\"\n").expect("writes");
        let project = detect(&dir).expect("a Rust project");
        assert_eq!(
            (project.language, project.name.as_str()),
            (Language::Rust, "hello_rs")
        );
        std::fs::write(dir.join("Cargo.toml"), "[package]\nname = \"Hello-RS\"\n").expect("writes");
        assert!(detect(&dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
