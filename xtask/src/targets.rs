//! `cargo xtask check-targets`: the host, the client and the protocol must keep
//! building for Windows and macOS, though CI runs on Linux. `cargo check` per target
//! type-checks every `cfg` branch of them and of their dependencies, warnings denied.
//!
//! ring's build script compiles its C for the target even for a check, so each
//! target needs a C compiler: Debian's mingw-w64 for Windows, clang for macOS. Debian
//! has no Apple SDK, and ring's C needs only a handful of its headers, so a few stub
//! headers (declarations only; see [`APPLE_STUBS`]) stand in for them. Nothing built
//! for the target is linked or run: this checks that the Rust compiles, no more.

use std::path::Path;

use anyhow::{Context, Result};

use crate::Workspace;
use crate::system::{self, Tool};

/// A target checked, and the C compiler its build scripts use.
struct Target {
    triple: &'static str,
    cc: &'static str,
    /// Extra flags for that compiler, given the directory of the stub headers.
    cflags: fn(&Path) -> String,
    tool: Tool,
}

const TARGETS: [Target; 2] = [
    Target {
        triple: "x86_64-pc-windows-gnu",
        cc: "x86_64-w64-mingw32-gcc",
        cflags: |_| String::new(),
        tool: Tool {
            program: "x86_64-w64-mingw32-gcc",
            package: "gcc-mingw-w64-x86-64",
        },
    },
    Target {
        triple: "aarch64-apple-darwin",
        cc: "clang",
        // Freestanding: clang's own stdint.h and friends, and the stubs, never the
        // host's glibc headers.
        cflags: |stubs| format!("-ffreestanding -nostdlibinc -I{}", stubs.display()),
        tool: Tool {
            program: "clang",
            package: "clang",
        },
    },
];

/// The macOS headers ring's C includes beyond what the compiler itself provides.
const APPLE_STUBS: [(&str, &str); 4] = [
    (
        "TargetConditionals.h",
        "#define TARGET_OS_MAC 1\n#define TARGET_OS_OSX 1\n#define TARGET_OS_IPHONE 0\n\
         #define TARGET_OS_IOS 0\n#define TARGET_OS_TV 0\n#define TARGET_OS_WATCH 0\n\
         #define TARGET_OS_SIMULATOR 0\n",
    ),
    ("assert.h", "#define assert(expression) ((void)0)\n"),
    (
        "string.h",
        "#include <stddef.h>\nvoid *memcpy(void *, const void *, size_t);\n\
         void *memmove(void *, const void *, size_t);\nvoid *memset(void *, int, size_t);\n\
         int memcmp(const void *, const void *, size_t);\n",
    ),
    ("stdlib.h", "#include <stddef.h>\nvoid abort(void);\n"),
];

/// The crates users build on their own machines.
const CRATES: [&str; 3] = ["tcpy-protocol", "tcpy-client", "tcpy-host"];

pub(crate) fn check(workspace: &Workspace) -> Result<()> {
    let tools: Vec<Tool> = TARGETS.iter().map(|target| target.tool).collect();
    system::ensure(&tools)?;
    let stubs = workspace.target.join("apple-stub-headers");
    std::fs::create_dir_all(&stubs).with_context(|| format!("cannot create `{}`", stubs.display()))?;
    for (name, text) in APPLE_STUBS {
        let path = stubs.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
    }
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
        let suffix = target.triple.replace('-', "_");
        check
            .env(format!("CC_{suffix}"), target.cc)
            .env(format!("CFLAGS_{suffix}"), (target.cflags)(&stubs))
            // NB: applies to what is built for the target only (not build scripts),
            // and dependencies' warnings stay capped: ours fail the check.
            .env("RUSTFLAGS", "-D warnings");
        crate::run(check)
            .with_context(|| format!("{} do not build for {}", CRATES.join(", "), target.triple))?;
    }
    Ok(())
}
