//! Programs from Debian's packages the tests, the benchmarks and the fleet use for real
//! (promtool, openssl, redis-server, redis-benchmark, haproxy), installed with apt-get
//! when they are missing.

use std::process::Command;

use anyhow::{Result, bail};

/// A program the tests run, and the Debian package that ships it.
#[derive(Clone, Copy)]
pub(crate) struct Tool {
    pub(crate) program: &'static str,
    pub(crate) package: &'static str,
}

/// What `cargo xtask test` needs on the machine: promtool checks `/metrics`, openssl
/// makes the certificates of the Python and JavaScript clients' TLS tests,
/// redis-server backs the key-value tests of the Redis stores, and haproxy is the
/// balancer of the fleet tests.
pub(crate) const TEST_TOOLS: [Tool; 4] = [
    Tool {
        program: "promtool",
        package: "prometheus",
    },
    Tool {
        program: "openssl",
        package: "openssl",
    },
    Tool {
        program: "redis-server",
        package: "redis-server",
    },
    Tool {
        program: "haproxy",
        package: "haproxy",
    },
];

/// What `cargo xtask bench` needs besides: a Redis to put the stores in, and
/// redis-benchmark for the reference figure.
pub(crate) const BENCH_TOOLS: [Tool; 2] = [
    Tool {
        program: "redis-server",
        package: "redis-server",
    },
    Tool {
        program: "redis-benchmark",
        package: "redis-tools",
    },
];

/// What `cargo xtask fleet` runs: the hosts' shared Redis, and HAProxy in front
/// (Debian 12 ships 2.6).
pub(crate) const FLEET_TOOLS: [Tool; 2] = [
    Tool {
        program: "redis-server",
        package: "redis-server",
    },
    Tool {
        program: "haproxy",
        package: "haproxy",
    },
];

/// Installs the package of every tool in `tools` whose program is not on the `PATH`:
/// `apt-get update` once, then `apt-get install`. Needs root (or passwordless sudo);
/// without it, says what to install.
pub(crate) fn ensure(tools: &[Tool]) -> Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|tool| !on_path(tool.program))
        .map(|tool| tool.package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing Debian packages: {}…", missing.join(" "));
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0");
    let apt = |args: &[&str]| -> Result<()> {
        let mut command = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        crate::run(command)
    };
    let installed = apt(&["update", "-qq"]).and_then(|()| {
        let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
        args.extend(&missing);
        apt(&args)
    });
    if let Err(error) = installed {
        bail!(
            "{error:#}\nthis needs these Debian packages: {}; install them (as root: \
             apt-get install {}) and run again",
            missing.join(", "),
            missing.join(" ")
        );
    }
    for tool in tools {
        if !on_path(tool.program) {
            bail!(
                "`{}` is still not on the PATH after installing `{}`",
                tool.program,
                tool.package
            );
        }
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .any(|dir| dir.join(program).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_on_the_path_is_found_and_a_missing_one_is_not() {
        assert!(on_path("sh"));
        assert!(!on_path("no-such-program-tcpy"));
    }

    #[test]
    fn nothing_missing_installs_nothing() {
        let tools = [Tool {
            program: "sh",
            package: "never-installed",
        }];
        ensure(&tools).expect("sh is there: nothing to install");
    }
}
