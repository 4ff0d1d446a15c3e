//! `cargo xtask check-targets`: the host, the client and the protocol must keep
//! building for Windows and macOS, though CI runs on Linux. `cargo check` per target
//! type-checks every `cfg` branch; ring's build script compiles its C and assembly
//! for the target, so the C cross compilers Debian packages are installed first.

use anyhow::{Context, Result};

use crate::Workspace;
use crate::system::{self, Tool};

/// A target checked, and the C compiler its build scripts use.
struct Target {
    triple: &'static str,
    /// `CC_<triple>` for the `cc` crate.
    cc: &'static str,
    tool: Tool,
}

const TARGETS: [Target; 2] = [
    Target {
        triple: "x86_64-pc-windows-gnu",
        cc: "x86_64-w64-mingw32-gcc",
        tool: Tool {
            program: "x86_64-w64-mingw32-gcc",
            package: "gcc-mingw-w64-x86-64",
        },
    },
    Target {
        triple: "aarch64-apple-darwin",
        cc: "clang",
        tool: Tool {
            program: "clang",
            package: "clang",
        },
    },
];

/// The crates users build on their own machines.
const CRATES: [&str; 3] = ["tcpy-protocol", "tcpy-client", "tcpy-host"];

pub(crate) fn check(workspace: &Workspace) -> Result<()> {
    let tools: Vec<Tool> = TARGETS.iter().map(|target| target.tool).collect();
    system::ensure(&tools)?;
    for target in TARGETS {
        eprintln!("cargo check --target {}…", target.triple);
        let mut rustup = std::process::Command::new("rustup");
        rustup
            .current_dir(&workspace.root)
            .args(["target", "add", target.triple]);
        crate::run(rustup).with_context(|| format!("cannot add the {} target", target.triple))?;
        let mut check = workspace.cargo();
        check.args(["check", "--target", target.triple]);
        for name in CRATES {
            check.args(["--package", name]);
        }
        check.env(format!("CC_{}", target.triple.replace('-', "_")), target.cc);
        crate::run(check)
            .with_context(|| format!("{} does not build for {}", CRATES.join(", "), target.triple))?;
    }
    Ok(())
}
