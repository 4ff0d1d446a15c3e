//! A fleet on loopback: real `tcpy-host` processes sharing one handlers directory and
//! one real `redis-server`, behind a real HAProxy running the shipped config, as an
//! operator would run them (docs/deploy.md). Every wait is bounded; dropping the fleet
//! stops HAProxy, then the hosts, then Redis.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::haproxy::{Backend, Haproxy};
use crate::process::HostProcess;
use crate::redis::RedisServer;

/// How long a host may take to load its handlers and listen.
const START_WAIT: Duration = Duration::from_secs(60);
/// How long HAProxy may take to see a listening host pass its checks.
const UP_WAIT: Duration = Duration::from_secs(10);

/// One host of the fleet.
struct Member {
    process: HostProcess,
    traffic: SocketAddr,
    admin: SocketAddr,
}

/// N hosts on one Redis behind one HAProxy; everything stopped when dropped.
pub struct Fleet {
    // NB: fields drop in order: the balancer first, so no client is sent to a host
    // being stopped, then the hosts, and Redis, which they use, last.
    haproxy: Haproxy,
    hosts: Vec<Member>,
    redis: RedisServer,
}

impl Fleet {
    /// Starts a `redis-server`, `hosts` hosts of `binary` serving `handlers` with
    /// `--redis` on it, `--host 127.0.0.1 --admin 127.0.0.1:0` and `extra_host_args`
    /// (which must not repeat those, nor `--port`/`--handlers`; [`HostProcess`] gives
    /// no drain delay unless they set `--drain-delay`), and HAProxy over them; returns
    /// once HAProxy has seen every host pass a check.
    pub fn start(binary: &Path, handlers: &Path, hosts: usize, extra_host_args: &[&str]) -> Self {
        let redis = RedisServer::start();
        let url = redis.url();
        let mut args = vec!["--host", "127.0.0.1", "--admin", "127.0.0.1:0", "--redis", &url];
        args.extend_from_slice(extra_host_args);
        // All started before any is waited for: they load their handlers side by side.
        let processes: Vec<HostProcess> = (0..hosts)
            .map(|_| HostProcess::start(binary, handlers, &args))
            .collect();
        let hosts: Vec<Member> = processes.into_iter().map(Member::ready).collect();
        let backends: Vec<Backend> = hosts
            .iter()
            .enumerate()
            .map(|(i, host)| Backend {
                name: Self::name(i),
                traffic: host.traffic,
                admin: host.admin,
            })
            .collect();
        let haproxy = Haproxy::start(&Haproxy::deploy_config(), None, &backends);
        for backend in &backends {
            haproxy.wait_up(&backend.name, UP_WAIT);
        }
        Self {
            haproxy,
            hosts,
            redis,
        }
    }

    /// Host `i`'s server name in HAProxy: `host1` for host 0, `host2` for host 1, ….
    pub fn name(i: usize) -> String {
        format!("host{}", i + 1)
    }

    /// How many hosts the fleet started with.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether the fleet has no host.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Where clients connect: HAProxy's front.
    pub fn front(&self) -> SocketAddr {
        self.haproxy.front()
    }

    /// A client of the front.
    pub fn client(&self) -> tcpy_client::Client {
        tcpy_client::Client::new(self.front().ip().to_string(), self.front().port())
    }

    /// The Redis every host keeps its stores in.
    pub fn redis(&self) -> &RedisServer {
        &self.redis
    }

    /// The Redis, to stop and restart it.
    pub fn redis_mut(&mut self) -> &mut RedisServer {
        &mut self.redis
    }

    /// The balancer.
    pub fn haproxy(&self) -> &Haproxy {
        &self.haproxy
    }

    /// Host `i` (from 0), its log lines and its process.
    pub fn host(&mut self, i: usize) -> &mut HostProcess {
        &mut self.hosts[i].process
    }

    /// Where host `i` takes requests (bypassing HAProxy).
    pub fn traffic(&self, i: usize) -> SocketAddr {
        self.hosts[i].traffic
    }

    /// Host `i`'s admin port.
    pub fn admin(&self, i: usize) -> SocketAddr {
        self.hosts[i].admin
    }

    /// Host `i`'s state in HAProxy (see [`Haproxy::server_state`]).
    pub fn state(&self, i: usize) -> String {
        self.haproxy.server_state(&Self::name(i))
    }

    /// Waits up to `within` until HAProxy says host `i` is `state`; how long it took.
    pub fn wait_state(&self, i: usize, state: &str, within: Duration) -> Duration {
        self.haproxy.wait_state(&Self::name(i), state, within)
    }

    /// Kills host `i` (SIGKILL, no drain) and waits for it.
    pub fn kill(&mut self, i: usize) {
        let child = &mut self.hosts[i].process.child;
        let _ = child.kill();
        child.wait().expect("waits for the killed host");
    }

    /// Sends host `i` SIGTERM: it drains (see docs/operations.md). Wait for its exit
    /// with `host(i).exits_within(…)`.
    pub fn terminate(&self, i: usize) {
        self.hosts[i].process.terminate();
    }

    /// How many `command` requests host `i` has answered with success, from its
    /// `/metrics`.
    pub async fn served(&self, i: usize, command: &str) -> u64 {
        let metrics = crate::http::get(self.admin(i), "/metrics", &[]).await;
        assert_eq!(metrics.status, 200, "{metrics:?}");
        let series = format!("tcpy_requests_total{{command=\"{command}\",outcome=\"success\"}} ");
        metrics
            .body
            .lines()
            .find_map(|line| line.strip_prefix(&series))
            .map_or(0, |value| value.trim().parse().expect("a counter"))
    }
}

impl Member {
    /// `process` once it listens, with its addresses from its log.
    fn ready(process: HostProcess) -> Self {
        let admin = HostProcess::address(&process.wait_for("admin port", START_WAIT));
        let traffic = process.listening();
        Self {
            process,
            traffic,
            admin,
        }
    }
}
