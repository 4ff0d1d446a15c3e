//! The Python and JavaScript handlers: their toolchains, pinned in the project's own
//! files and installed into the project, and their builds, skipped when nothing a
//! component is made of has changed.
//!
//! - Python: `handlers/python/requirements.txt` → a virtualenv in `target/toolchains/venv`.
//! - JavaScript: `handlers/js/package-lock.json` → `handlers/js/node_modules` (`npm ci`).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use anyhow::{Context, Result, bail};

use crate::Workspace;

/// A guest language and where its handlers, helper and toolchain pins live.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Language {
    Python,
    JavaScript,
}

impl Language {
    /// Prefix of the command names in `target/handlers` (`py_add`, `js_tally`), and the
    /// name of the language's directory in `target/language-handlers`.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Self::Python => "py",
            Self::JavaScript => "js",
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Self::Python => "handlers/python",
            Self::JavaScript => "handlers/js",
        }
    }

    /// The file that pins the toolchain's exact versions.
    fn pins(self) -> &'static str {
        match self {
            Self::Python => "requirements.txt",
            Self::JavaScript => "package-lock.json",
        }
    }

    /// The helper every handler of the language imports.
    fn helper(self) -> &'static str {
        match self {
            Self::Python => "tcpy_guest.py",
            Self::JavaScript => "tcpy-guest.js",
        }
    }

    fn source(self, handler: &str) -> String {
        match self {
            Self::Python => format!("{handler}.py"),
            Self::JavaScript => format!("{handler}.js"),
        }
    }
}

/// The handlers built in each language, beside the Rust examples of the same names.
pub(crate) const HANDLERS: [&str; 3] = ["add", "counter", "tally"];
pub(crate) const LANGUAGES: [Language; 2] = [Language::Python, Language::JavaScript];

/// The component of `handler` in `language`, as `build` leaves it.
pub(crate) fn component(workspace: &Workspace, language: Language, handler: &str) -> PathBuf {
    built_dir(workspace).join(format!("{}_{handler}.wasm", language.prefix()))
}

/// The manifest of `handler` in `language` (`NAME.toml` beside its source), if it has one.
pub(crate) fn manifest(workspace: &Workspace, language: Language, handler: &str) -> Option<PathBuf> {
    let path = workspace
        .root
        .join(language.dir())
        .join(format!("{handler}.toml"));
    path.is_file().then_some(path)
}

fn built_dir(workspace: &Workspace) -> PathBuf {
    workspace.target.join("languages")
}

/// Installs the toolchains if needed, then builds every Python and JavaScript handler
/// whose sources, helper, WIT or toolchain changed since its last build.
pub(crate) fn build(workspace: &Workspace) -> Result<()> {
    let python = install_python(workspace)?;
    let node_modules = install_javascript(workspace)?;
    std::fs::create_dir_all(built_dir(workspace)).context("cannot create target/languages")?;

    let mut running: Vec<(PathBuf, String, Child)> = Vec::new();
    for language in LANGUAGES {
        for handler in HANDLERS {
            let output = component(workspace, language, handler);
            let stamp = output.with_extension("stamp");
            let fingerprint = fingerprint(workspace, language, handler)?;
            if output.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|old| old == fingerprint) {
                continue;
            }
            let mut command = match language {
                Language::Python => python_build(workspace, &python, handler, &output),
                Language::JavaScript => javascript_build(workspace, &node_modules, handler, &output),
            };
            eprintln!("building {}", workspace.relative(&output).display());
            // Stale stamps go first: a build that dies half-way must not look finished.
            let _ = std::fs::remove_file(&stamp);
            let child = command
                .spawn()
                .with_context(|| format!("cannot run {command:?}"))?;
            running.push((stamp, fingerprint, child));
        }
    }
    // The builds are single-threaded tools: running them side by side halves the wait.
    let mut failed = Vec::new();
    for (stamp, fingerprint, mut child) in running {
        let status = child.wait().context("cannot wait for a handler build")?;
        if status.success() {
            std::fs::write(&stamp, fingerprint)
                .with_context(|| format!("cannot write `{}`", stamp.display()))?;
        } else {
            failed.push(stamp.with_extension("wasm").display().to_string());
        }
    }
    if !failed.is_empty() {
        bail!("building {} failed", failed.join(", "));
    }
    Ok(())
}

/// What a component is made of: its source, the helper, the WIT and the toolchain pins.
fn fingerprint(workspace: &Workspace, language: Language, handler: &str) -> Result<String> {
    let dir = workspace.root.join(language.dir());
    let mut inputs = vec![
        dir.join(language.source(handler)),
        dir.join(language.helper()),
        dir.join(language.pins()),
    ];
    inputs.extend(wit_files(workspace)?);
    let mut hasher = DefaultHasher::new();
    for input in &inputs {
        let bytes = std::fs::read(input).with_context(|| format!("cannot read `{}`", input.display()))?;
        bytes.hash(&mut hasher);
    }
    Ok(format!("{:016x}\n", hasher.finish()))
}

/// Every WIT file of the `handler` world: `wit/tcpy.wit` and the packages in `wit/deps`.
fn wit_files(workspace: &Workspace) -> Result<Vec<PathBuf>> {
    let wit = workspace.root.join("wit");
    let mut files = vec![wit.join("tcpy.wit")];
    let deps = wit.join("deps");
    for package in std::fs::read_dir(&deps).with_context(|| format!("cannot read `{}`", deps.display()))? {
        let package = package?.path();
        for file in
            std::fs::read_dir(&package).with_context(|| format!("cannot read `{}`", package.display()))?
        {
            files.push(file?.path());
        }
    }
    // NB: sorted, so the fingerprint does not depend on the order read_dir lists them in.
    files.sort();
    Ok(files)
}

fn python_build(workspace: &Workspace, venv: &Path, handler: &str, output: &Path) -> Command {
    let mut command = Command::new(venv.join("bin/componentize-py"));
    command
        .current_dir(&workspace.root)
        .args(["--quiet", "-d", "wit", "-w", "handler", "componentize", handler])
        .args(["-p", Language::Python.dir(), "-o"])
        .arg(output);
    command
}

fn javascript_build(workspace: &Workspace, node_modules: &Path, handler: &str, output: &Path) -> Command {
    let mut command = Command::new(node_modules.join(".bin/componentize-qjs"));
    // `--sync`: the host runs exports without component-model async.
    command
        .current_dir(&workspace.root)
        .args(["--wit", "wit", "--world", "handler", "--sync", "--js"])
        .arg(format!(
            "{}/{}",
            Language::JavaScript.dir(),
            Language::JavaScript.source(handler)
        ))
        .arg("-o")
        .arg(output)
        .stdout(std::process::Stdio::null());
    command
}

/// Makes `target/toolchains/venv` hold exactly what `requirements.txt` pins; returns the venv.
fn install_python(workspace: &Workspace) -> Result<PathBuf> {
    let venv = workspace.target.join("toolchains/venv");
    let pins = workspace
        .root
        .join(Language::Python.dir())
        .join(Language::Python.pins());
    pinned_venv(workspace, venv, &pins, "the Python toolchain")
}

/// Makes the virtualenv `venv` hold exactly what the requirements file `pins` pins,
/// skipped when a stamp says it already does; returns the venv. `what` names it in
/// messages.
pub(crate) fn pinned_venv(workspace: &Workspace, venv: PathBuf, pins: &Path, what: &str) -> Result<PathBuf> {
    let wanted =
        std::fs::read_to_string(pins).with_context(|| format!("cannot read `{}`", pins.display()))?;
    let stamp = venv.join("tcpy-installed.txt");
    if venv.join("bin/python").is_file()
        && std::fs::read_to_string(&stamp).is_ok_and(|installed| installed == wanted)
    {
        return Ok(venv);
    }
    eprintln!(
        "installing {what} ({}) into {}…",
        workspace.relative(pins).display(),
        workspace.relative(&venv).display()
    );
    if !venv.join("bin/python").is_file() {
        let mut create = Command::new("python3");
        create.args(["-m", "venv"]).arg(&venv);
        crate::run(create).context("cannot create the virtualenv (is python3 with venv installed?)")?;
    }
    let mut pip = Command::new(venv.join("bin/python"));
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
    ])
    .arg("-r")
    .arg(pins);
    crate::run(pip).with_context(|| format!("pip could not install {what}"))?;
    std::fs::write(&stamp, wanted).with_context(|| format!("cannot write `{}`", stamp.display()))?;
    Ok(venv)
}

/// Makes `handlers/js/node_modules` hold exactly what `package-lock.json` pins; returns it.
fn install_javascript(workspace: &Workspace) -> Result<PathBuf> {
    let dir = workspace.root.join(Language::JavaScript.dir());
    let node_modules = dir.join("node_modules");
    let pins = dir.join(Language::JavaScript.pins());
    let wanted =
        std::fs::read_to_string(&pins).with_context(|| format!("cannot read `{}`", pins.display()))?;
    let stamp = node_modules.join(".tcpy-installed.json");
    if std::fs::read_to_string(&stamp).is_ok_and(|installed| installed == wanted) {
        return Ok(node_modules);
    }
    eprintln!(
        "installing the JavaScript toolchain ({}) into {}…",
        workspace.relative(&pins).display(),
        workspace.relative(&node_modules).display()
    );
    // `npm ci` installs exactly the lock file, and fails rather than change it.
    let mut npm = Command::new("npm");
    npm.current_dir(&dir).args(["ci", "--no-audit", "--no-fund"]);
    crate::run(npm)
        .context("npm could not install the JavaScript toolchain (are node and npm installed?)")?;
    std::fs::write(&stamp, wanted).with_context(|| format!("cannot write `{}`", stamp.display()))?;
    Ok(node_modules)
}
