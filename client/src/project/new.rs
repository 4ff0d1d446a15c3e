//! `tcpy new NAME --lang LANG [--dir DIR]`: writes a handler project into `DIR/NAME`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Parser;

use super::{Language, check_name, templates};

const AFTER_HELP: &str = "\
The project builds on its own, wherever it is moved: it holds the WIT world, the
language's tcpy helper (the Rust SDK crate, tcpy_guest.py, tcpy-guest.js) and the
pinned toolchain's versions. Its handler is the 2014 tutorial's `add`.

Then:
  tcpy build DIR/NAME --out HANDLERS_DIR    build it, deploy it into HANDLERS_DIR
  tcpy-host --handlers HANDLERS_DIR         serve it
  tcpy NAME x=1 y=2                         {\"solution\":3,\"success\":true}";

/// Write a new handler project, DIR/NAME, ready for `tcpy build`.
#[derive(Debug, Parser)]
#[command(name = "tcpy new", bin_name = "tcpy new", version, after_help = AFTER_HELP)]
pub struct NewArgs {
    /// The handler's name, which is also its command, crate and module name: a lowercase
    /// letter, then up to 63 lowercase letters, digits or `_`.
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum)]
    lang: Language,
    /// The directory to create the project directory NAME in.
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
}

/// Writes the project `args` asks for and says what it wrote and what to run next.
///
/// The files are written into a hidden directory beside the target and renamed into
/// place at the end, so a failure leaves no half-written project behind.
///
/// # Errors
/// A bad name, a target that exists and is not an empty directory, or a file that
/// cannot be written.
pub fn run(args: &NewArgs) -> anyhow::Result<()> {
    check_name(&args.name)?;
    let target = args.dir.join(&args.name);
    check_target(&target)?;
    let files = templates::project_files(&args.name, args.lang)?;

    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create `{}`", args.dir.display()))?;
    let staging = args
        .dir
        .join(format!(".{}.tcpy-new-{}", args.name, std::process::id()));
    let written = write_all(&staging, &files).and_then(|()| {
        // An empty directory in the way is replaced (checked empty above).
        if target.is_dir() {
            std::fs::remove_dir(&target).with_context(|| format!("cannot replace `{}`", target.display()))?;
        }
        std::fs::rename(&staging, &target)
            .with_context(|| format!("cannot move the project into `{}`", target.display()))
    });
    if let Err(error) = written {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(error);
    }

    println!(
        "wrote {} ({} handler `{}`):",
        target.display(),
        args.lang.title(),
        args.name
    );
    for (path, _) in &files {
        println!("  {}", target.join(path).display());
    }
    let next = [
        (
            format!("tcpy build {} --out HANDLERS_DIR", target.display()),
            "build it, deploy it into HANDLERS_DIR",
        ),
        (
            "tcpy-host --handlers HANDLERS_DIR".to_owned(),
            "serve it (new builds are swapped in live)",
        ),
        (
            format!("tcpy {} x=1 y=2", args.name),
            "call it: {\"solution\":3,\"success\":true}",
        ),
    ];
    let width = next.iter().map(|(command, _)| command.len()).max().unwrap_or(0);
    println!();
    println!("Next:");
    for (command, what) in next {
        println!("  {command:width$}   # {what}");
    }
    Ok(())
}

/// Refuses a target that exists and is anything but an empty directory.
fn check_target(target: &Path) -> anyhow::Result<()> {
    let metadata = match std::fs::symlink_metadata(target) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error).with_context(|| format!("cannot look at `{}`", target.display())),
    };
    if !metadata.is_dir() {
        bail!("`{}` exists and is not a directory", target.display());
    }
    let mut entries =
        std::fs::read_dir(target).with_context(|| format!("cannot read `{}`", target.display()))?;
    if entries.next().is_some() {
        bail!(
            "`{}` already exists and is not empty: choose another name or --dir",
            target.display()
        );
    }
    Ok(())
}

/// Writes `files` (paths relative to `root`) under `root`, which must not exist yet.
fn write_all(root: &Path, files: &[(String, String)]) -> anyhow::Result<()> {
    std::fs::create_dir(root).with_context(|| format!("cannot create `{}`", root.display()))?;
    for (path, text) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    Ok(())
}
