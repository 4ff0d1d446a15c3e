//! `tcpy new` and `tcpy build` (issue #17): a project written outside the repository
//! builds with the toolchain it pins, deploys into a handlers directory, and the real
//! host serves it to the real client.
//!
//! These run the `tcpy` binary (`cargo test --workspace` builds it; else `cargo build
//! -p tcpy-client`). The Rust test compiles the project's dependencies in its own
//! target directory (a minute or two); the Python one installs componentize-py from
//! PyPI into the shared cache (`~/.cache/tcpy/toolchains`) the first time; the
//! JavaScript one runs `npm ci`. Every child is bounded in time and killed, with its
//! process group, if it overruns.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tcpy_host::runtime::RequestLimits;
use tcpy_tests::process::HostProcess;
use tcpy_tests::target_dir;

/// The `tcpy` binary.
fn tcpy() -> PathBuf {
    let path = target_dir().join("debug/tcpy");
    assert!(
        path.is_file(),
        "no {}: run `cargo build -p tcpy-client` (`cargo test --workspace` builds it)",
        path.display()
    );
    path
}

/// What a finished child printed, and how it exited.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Finished {
    /// Panics with everything it printed unless it exited 0.
    fn assert_success(&self, what: &str) {
        assert!(
            self.status.success(),
            "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

/// Runs `tcpy ARGS` in its own process group, waiting at most `within`; past it the
/// whole group (the toolchains it started too) is killed and the test fails.
fn run_tcpy(args: &[&std::ffi::OsStr], within: Duration) -> Finished {
    use std::os::unix::process::CommandExt;

    let started = Instant::now();
    let mut child = Command::new(tcpy())
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpy starts");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break status;
        }
        if started.elapsed() > within {
            // The group's id is the child's pid (process_group(0)).
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            let stderr = stderr.join().unwrap_or_default();
            panic!("`tcpy {args:?}` still running after {within:?}; killed. Its stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        took: started.elapsed(),
    }
}

/// `tcpy new NAME --lang LANG --dir DIR`, then `tcpy build DIR/NAME --out DIR/handlers`,
/// then the host on DIR/handlers and `tcpy NAME x=1 y=2` against it.
fn a_new_project_builds_and_is_served(lang: &str, build_within: Duration) {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let name = format!("hello_{lang}");
    let project = tmp.path().join(&name);
    let handlers = tmp.path().join("handlers");

    let new = run_tcpy(
        &[
            "new".as_ref(),
            name.as_ref(),
            "--lang".as_ref(),
            lang.as_ref(),
            "--dir".as_ref(),
            tmp.path().as_os_str(),
        ],
        Duration::from_secs(30),
    );
    new.assert_success("tcpy new");
    assert!(
        new.stdout.contains(&format!("tcpy {name} x=1 y=2")),
        "{}",
        new.stdout
    );
    for file in [
        format!("{name}.toml"),
        "README.md".to_owned(),
        "wit/tcpy.wit".to_owned(),
    ] {
        assert!(project.join(&file).is_file(), "no {file} in the project");
    }

    let build = run_tcpy(
        &[
            "build".as_ref(),
            project.as_os_str(),
            "--out".as_ref(),
            handlers.as_os_str(),
        ],
        build_within,
    );
    build.assert_success("tcpy build");
    assert!(
        build.stderr.contains("[1/"),
        "progress is announced: {}",
        build.stderr
    );
    for file in [format!("{name}.wasm"), format!("{name}.toml")] {
        assert!(handlers.join(&file).is_file(), "no {file} deployed");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&handlers)
        .expect("reads the handlers directory")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|file| file.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let host = HostProcess::start(Path::new(env!("CARGO_BIN_EXE_tcpy-host")), &handlers, &[]);
    // A Python component is large: compiling it uncached takes a while on a busy machine.
    let listening = HostProcess::address(&host.wait_for("tcpy-host listening", Duration::from_secs(180)));
    let port = listening.port().to_string();
    let call = run_tcpy(
        &[
            "--host".as_ref(),
            "127.0.0.1".as_ref(),
            "--port".as_ref(),
            port.as_ref(),
            name.as_ref(),
            "x=1".as_ref(),
            "y=2".as_ref(),
        ],
        Duration::from_secs(60),
    );
    call.assert_success("the call");
    assert_eq!(call.stdout, "{\"solution\":3,\"success\":true}\n");
    println!(
        "{lang}: new {:.1?}, build {:.1?}, call {:.1?}, all {:.1?}",
        new.took,
        build.took,
        call.took,
        started.elapsed()
    );
}

#[test]
fn a_new_rust_project_builds_and_is_served() {
    a_new_project_builds_and_is_served("rust", Duration::from_secs(20 * 60));
}

#[test]
fn a_new_python_project_builds_and_is_served() {
    a_new_project_builds_and_is_served("python", Duration::from_secs(10 * 60));
}

#[test]
fn a_new_js_project_builds_and_is_served() {
    a_new_project_builds_and_is_served("js", Duration::from_secs(5 * 60));
}

#[test]
fn new_refuses_a_bad_name_and_a_directory_that_is_not_empty() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().as_os_str();
    let bad = run_tcpy(
        &[
            "new".as_ref(),
            "Hello-World".as_ref(),
            "--lang".as_ref(),
            "rust".as_ref(),
            "--dir".as_ref(),
            dir,
        ],
        Duration::from_secs(30),
    );
    assert!(!bad.status.success());
    assert!(
        bad.stderr.contains("`Hello-World` is not a valid handler name")
            && bad.stderr.contains("lowercase letter"),
        "{}",
        bad.stderr
    );
    assert!(!tmp.path().join("Hello-World").exists());

    std::fs::create_dir(tmp.path().join("taken")).expect("creates");
    std::fs::write(tmp.path().join("taken/notes.txt"), "mine").expect("writes");
    let taken = run_tcpy(
        &[
            "new".as_ref(),
            "taken".as_ref(),
            "--lang".as_ref(),
            "python".as_ref(),
            "--dir".as_ref(),
            dir,
        ],
        Duration::from_secs(30),
    );
    assert!(!taken.status.success());
    assert!(
        taken.stderr.contains("already exists and is not empty"),
        "{}",
        taken.stderr
    );
    let entries: Vec<_> = std::fs::read_dir(tmp.path().join("taken"))
        .expect("reads")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    assert_eq!(entries, ["notes.txt"], "the directory is left as it was");

    // An empty directory is taken, and nothing of the work is left beside it.
    std::fs::create_dir(tmp.path().join("empty")).expect("creates");
    let empty = run_tcpy(
        &[
            "new".as_ref(),
            "empty".as_ref(),
            "--lang".as_ref(),
            "js".as_ref(),
            "--dir".as_ref(),
            dir,
        ],
        Duration::from_secs(30),
    );
    empty.assert_success("tcpy new into an empty directory");
    assert!(tmp.path().join("empty/empty.js").is_file());
    let mut top: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("reads")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    top.sort();
    assert_eq!(top, ["empty", "taken"]);
}

#[test]
fn build_says_which_step_failed() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let new = run_tcpy(
        &[
            "new".as_ref(),
            "broken".as_ref(),
            "--lang".as_ref(),
            "js".as_ref(),
            "--dir".as_ref(),
            tmp.path().as_os_str(),
        ],
        Duration::from_secs(30),
    );
    new.assert_success("tcpy new");
    // A lock that pins nothing npm can install.
    let project = tmp.path().join("broken");
    std::fs::write(project.join("package-lock.json"), "not JSON").expect("writes");
    let build = run_tcpy(&["build".as_ref(), project.as_os_str()], Duration::from_secs(120));
    assert!(!build.status.success());
    let last = build.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("tcpy build: step 1/2 (npm ci) failed: "),
        "the last line names the step: {}",
        build.stderr
    );

    let nothing = run_tcpy(
        &["build".as_ref(), tmp.path().as_os_str()],
        Duration::from_secs(30),
    );
    assert!(!nothing.status.success());
    assert!(
        nothing.stderr.contains("is not a tcpy handler project"),
        "{}",
        nothing.stderr
    );
}

/// Every line of the manifest `tcpy new` writes, uncommented, is a manifest the host
/// accepts: the template keeps up with the format.
#[test]
fn the_manifest_template_uncommented_is_a_valid_manifest() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let new = run_tcpy(
        &[
            "new".as_ref(),
            "granted".as_ref(),
            "--lang".as_ref(),
            "python".as_ref(),
            "--dir".as_ref(),
            tmp.path().as_os_str(),
        ],
        Duration::from_secs(30),
    );
    new.assert_success("tcpy new");
    let template = std::fs::read_to_string(tmp.path().join("granted/granted.toml")).expect("reads");
    // The header is the first paragraph; every other line is `# ` and a manifest line.
    let (header, body) = template.split_once("\n\n").expect("a header paragraph");
    assert!(header.lines().all(|line| line.starts_with("# ")), "{header}");
    let uncommented: String = body
        .lines()
        .map(|line| format!("{}\n", line.strip_prefix("# ").unwrap_or(line)))
        .collect();
    for section in [
        "[env]",
        "[dir]",
        "[access]",
        "[keyvalue]",
        "[keyvalue.quotas.default]",
        "[limits]",
    ] {
        let present = uncommented
            .lines()
            .any(|line| line.starts_with(&format!("{section} ")));
        assert!(present, "no {section} in:\n{uncommented}");
    }

    let handlers = tmp.path().join("handlers");
    std::fs::create_dir_all(handlers.join("assets")).expect("creates");
    std::fs::write(handlers.join("granted.toml"), &uncommented).expect("writes");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let sandbox = runtime.block_on(tcpy_host::manifest::sandbox_for(
        &handlers.join("granted.wasm"),
        RequestLimits::DEFAULT,
        1 << 20,
    ));
    if let Err(error) = sandbox {
        panic!("the host refuses the uncommented template: {error}\n{uncommented}");
    }
}
