//! `cargo xtask fleet`: the fleet of docs/deploy.md on loopback, to try and to watch.
//! A `redis-server`, N `tcpy-host`s on it serving `target/handlers`, and HAProxy in
//! front running `deploy/haproxy/haproxy.cfg` with these addresses. Ctrl-C (or any of
//! them exiting) stops them all, HAProxy first and Redis last.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Workspace, system};

// The renderer and stats reader the fleet tests use too (they cannot share a crate
// with xtask, so both compile the one file beside the config).
#[path = "../../deploy/haproxy/control.rs"]
mod control;

/// How long Redis may take to answer once started.
const REDIS_WAIT: Duration = Duration::from_secs(10);
/// How long a host may take to load its handlers and listen: the first compiles
/// every handler, the Python and JavaScript ones taking seconds each.
const LISTEN_WAIT: Duration = Duration::from_secs(300);
/// How long HAProxy may take to see listening hosts pass their checks.
const UP_WAIT: Duration = Duration::from_secs(30);
/// How long one stats socket command may take.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the children and the signal flag are looked at.
const POLL: Duration = Duration::from_millis(100);

/// Options of `cargo xtask fleet`.
#[derive(clap::Args)]
pub(crate) struct Options {
    /// How many hosts to run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    hosts: u16,
    /// HAProxy's port on 127.0.0.1, where clients connect.
    #[arg(long, default_value_t = 7272)]
    port: u16,
}

/// Builds the host and the Rust handlers, starts the fleet, and runs it until Ctrl-C
/// (success) or until one of its processes exits (an error); stops it either way.
pub(crate) fn run(workspace: &Workspace, options: &Options) -> Result<ExitCode> {
    system::ensure(&system::FLEET_TOOLS)?;
    let front = free_front(options.port)?;
    let binary = build_host(workspace)?;
    signals::catch()?;
    let mut fleet = Fleet::new()?;
    let ports = free_ports(1 + 2 * usize::from(options.hosts))?;
    let (redis, hosts) = ports.split_first().context("no port for Redis")?;
    let redis_url = fleet.start_redis(*redis)?;
    let backends = fleet.start_hosts(&binary, &workspace.target.join("handlers"), &redis_url, hosts)?;
    let config = workspace.root.join("deploy/haproxy/haproxy.cfg");
    fleet.start_haproxy(&config, front, &backends)?;
    fleet.wait_up(&backends)?;
    print_ready(front, &backends, &redis_url, &fleet);
    match fleet.watch() {
        Stopped::Signal => {
            eprintln!("xtask fleet: interrupted; stopping the fleet…");
            drop(fleet);
            Ok(ExitCode::SUCCESS)
        }
        Stopped::Exited(name, status) => {
            eprintln!("xtask fleet: {name} exited ({status}); stopping the fleet…");
            drop(fleet);
            bail!("{name} exited ({status})")
        }
    }
}

/// Builds the Rust example handlers into `target/handlers` and `tcpy-host` (debug, as
/// `cargo xtask serve` runs it); the host's path.
fn build_host(workspace: &Workspace) -> Result<PathBuf> {
    workspace.build_rust_handlers()?;
    eprintln!("xtask fleet: building tcpy-host…");
    let mut build = workspace.cargo();
    build.args(["build", "--package", "tcpy-host"]);
    crate::run(build).context("cargo build of tcpy-host failed")?;
    Ok(workspace.target.join("debug/tcpy-host"))
}

/// `127.0.0.1:port` if nothing listens there.
fn free_front(port: u16) -> Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("cannot use port {port} on 127.0.0.1 for HAProxy's front (--port)"))?;
    listener.local_addr().context("cannot read the front's address")
}

/// `n` distinct loopback ports free a moment ago: all bound at once, then released.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0 to find a free port"))
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr().context("cannot read a free port")?.port()))
        .collect()
}

/// Why the fleet stopped.
enum Stopped {
    /// Ctrl-C or SIGTERM.
    Signal,
    /// A process of the fleet exited, with this status.
    Exited(String, ExitStatus),
}

/// The processes started, in order, and the directory they work in; dropping it
/// kills them in reverse order, then removes the directory.
struct Fleet {
    children: Vec<(String, Child)>,
    dir: PathBuf,
}

impl Fleet {
    /// An empty fleet with a fresh temporary directory.
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("tcpy-fleet-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
        Ok(Self {
            children: Vec::new(),
            dir,
        })
    }

    /// Starts `command` as `name`, in a process group of its own (so Ctrl-C reaches
    /// only xtask, which stops it in turn), its output printed with `name` before
    /// each line.
    fn spawn(&mut self, name: &str, mut command: Command) -> Result<()> {
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {name} ({program})"))?;
        if let Some(stdout) = child.stdout.take() {
            forward(name, stdout);
        }
        if let Some(stderr) = child.stderr.take() {
            forward(name, stderr);
        }
        self.children.push((name.to_owned(), child));
        Ok(())
    }

    /// Starts `redis-server` on `port` with no persistence; its URL once it answers.
    fn start_redis(&mut self, port: u16) -> Result<String> {
        eprintln!("xtask fleet: starting redis-server on 127.0.0.1:{port}…");
        let mut redis = Command::new("redis-server");
        redis
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning", "--dir"])
            .arg(&self.dir);
        self.spawn("redis", redis)?;
        let started = Instant::now();
        while !answers_ping(port) {
            self.check_running()?;
            if started.elapsed() > REDIS_WAIT {
                bail!("redis-server did not answer on 127.0.0.1:{port} within {REDIS_WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(format!("redis://127.0.0.1:{port}/0"))
    }

    /// Starts a host of `binary` on `handlers` for each pair of `ports` (traffic,
    /// admin), all on `redis`, each once the one before listens: the first compiles
    /// the handlers into the compile cache, the others load them from it at once.
    /// The servers HAProxy is to have.
    fn start_hosts(
        &mut self,
        binary: &Path,
        handlers: &Path,
        redis: &str,
        ports: &[u16],
    ) -> Result<Vec<control::Backend>> {
        let mut backends = Vec::new();
        for (i, &[traffic, admin]) in ports.as_chunks::<2>().0.iter().enumerate() {
            let backend = control::Backend {
                name: format!("host{}", i + 1),
                traffic: SocketAddr::from(([127, 0, 0, 1], traffic)),
                admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            };
            eprintln!(
                "xtask fleet: starting {} on {} (admin {})…",
                backend.name, backend.traffic, backend.admin
            );
            let mut host = Command::new(binary);
            host.args(["--host", "127.0.0.1", "--port", &traffic.to_string()])
                .args(["--admin", &backend.admin.to_string(), "--redis", redis])
                .arg("--handlers")
                .arg(handlers);
            self.spawn(&backend.name, host)?;
            self.wait_listening(&backend)?;
            backends.push(backend);
        }
        Ok(backends)
    }

    /// Waits until `host` accepts connections on its traffic port.
    fn wait_listening(&mut self, host: &control::Backend) -> Result<()> {
        let started = Instant::now();
        while TcpStream::connect_timeout(&host.traffic, SOCKET_TIMEOUT).is_err() {
            self.check_running()?;
            if started.elapsed() > LISTEN_WAIT {
                bail!(
                    "{} did not listen on {} within {LISTEN_WAIT:?}",
                    host.name,
                    host.traffic
                );
            }
            std::thread::sleep(POLL);
        }
        eprintln!(
            "xtask fleet: {} listens, after {:.1} s",
            host.name,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Renders `config` for `front` and `backends` into the fleet's directory and
    /// starts HAProxy on it, in the foreground (`-db`).
    fn start_haproxy(
        &mut self,
        config: &Path,
        front: SocketAddr,
        backends: &[control::Backend],
    ) -> Result<()> {
        eprintln!("xtask fleet: starting haproxy on {front}…");
        let text =
            std::fs::read_to_string(config).with_context(|| format!("cannot read `{}`", config.display()))?;
        let rendered = control::render(&text, front, &self.socket(), backends)
            .with_context(|| format!("cannot render `{}`", config.display()))?;
        let file = self.dir.join("haproxy.cfg");
        std::fs::write(&file, rendered).with_context(|| format!("cannot write `{}`", file.display()))?;
        let mut haproxy = Command::new("haproxy");
        haproxy.arg("-db").arg("-f").arg(&file);
        self.spawn("haproxy", haproxy)
    }

    /// HAProxy's stats socket.
    fn socket(&self) -> PathBuf {
        self.dir.join("haproxy.sock")
    }

    /// Waits until HAProxy has seen every one of `backends` pass a check.
    fn wait_up(&mut self, backends: &[control::Backend]) -> Result<()> {
        eprintln!("xtask fleet: waiting for haproxy to see every host UP…");
        let started = Instant::now();
        loop {
            self.check_running()?;
            let stat = control::command(&self.socket(), "show stat", SOCKET_TIMEOUT).unwrap_or_default();
            if backends
                .iter()
                .all(|backend| control::is_up(&stat, &backend.name))
            {
                return Ok(());
            }
            if started.elapsed() > UP_WAIT {
                bail!("not every host was UP in haproxy within {UP_WAIT:?}; `show stat` said:\n{stat}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// An error if Ctrl-C came or a process has exited.
    fn check_running(&mut self) -> Result<()> {
        match self.stopped() {
            None => Ok(()),
            Some(Stopped::Signal) => bail!("interrupted"),
            Some(Stopped::Exited(name, status)) => bail!("{name} exited ({status}) before the fleet was up"),
        }
    }

    /// Waits for Ctrl-C or for a process to exit; which.
    fn watch(&mut self) -> Stopped {
        loop {
            if let Some(stopped) = self.stopped() {
                return stopped;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Whether Ctrl-C came or a process has exited.
    fn stopped(&mut self) -> Option<Stopped> {
        if signals::caught() {
            return Some(Stopped::Signal);
        }
        self.children
            .iter_mut()
            .find_map(|(name, child)| match child.try_wait() {
                Ok(Some(status)) => Some(Stopped::Exited(name.clone(), status)),
                Ok(None) | Err(_) => None,
            })
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        while let Some((name, mut child)) = self.children.pop() {
            let _ = child.kill();
            match child.wait() {
                Ok(status) => eprintln!("xtask fleet: stopped {name} ({status})"),
                Err(error) => eprintln!("xtask fleet: cannot wait for {name}: {error}"),
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Prints `from`'s lines as they come, each after `name`, on a thread of its own.
fn forward(name: &str, from: impl Read + Send + 'static) {
    let prefix = format!("{name:>7} | ");
    std::thread::spawn(move || {
        let mut out = std::io::stdout();
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            let _ = writeln!(out, "{prefix}{line}");
        }
    });
}

/// Whether a Redis on 127.0.0.1:`port` answers PING.
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut reply = [0; 5];
    stream.set_read_timeout(Some(Duration::from_secs(1))).is_ok()
        && stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG"
}

/// Says where everything is, and how to look at it.
fn print_ready(front: SocketAddr, backends: &[control::Backend], redis: &str, fleet: &Fleet) {
    let socket = fleet.socket();
    let mut lines = vec![
        "xtask fleet: ready; Ctrl-C stops it all".to_owned(),
        format!(
            "  front    {front}    cargo run -q -p tcpy-client -- --port {} add x=1 y=2",
            front.port()
        ),
    ];
    for backend in backends {
        lines.push(format!(
            "  {:<8} traffic {}  admin http://{}/readyz",
            backend.name, backend.traffic, backend.admin
        ));
    }
    lines.push(format!("  redis    {redis}"));
    lines.push(format!(
        "  stats    echo 'show stat' | socat stdio unix-connect:{}",
        socket.display()
    ));
    let _ = writeln!(std::io::stdout(), "{}", lines.join("\n"));
}

/// Ctrl-C and SIGTERM, caught, so that xtask stops the fleet before it exits.
mod signals {
    use std::sync::Arc;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    use anyhow::{Context, Result};

    static CAUGHT: OnceLock<Arc<AtomicBool>> = OnceLock::new();

    /// From now on, SIGINT and SIGTERM only set the flag [`caught`] reads.
    pub(super) fn catch() -> Result<()> {
        let flag = CAUGHT.get_or_init(Arc::default);
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(flag))
                .with_context(|| format!("cannot catch signal {signal}"))?;
        }
        Ok(())
    }

    /// Whether SIGINT or SIGTERM has come since [`catch`].
    pub(super) fn caught() -> bool {
        CAUGHT.get().is_some_and(|flag| flag.load(Ordering::SeqCst))
    }
}
