//! The Rust side of `haproxy.cfg`: render it with other addresses, and read what
//! HAProxy says about its servers on the stats socket.
//!
//! One file, compiled into both `cargo xtask fleet` and the fleet tests' support
//! (`#[path = "../../deploy/haproxy/control.rs"] mod control;`: xtask cannot depend on
//! the tests), so both run exactly the file operators use. Only `std`.

use std::fmt;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The backend (and frontend) name in `haproxy.cfg`: servers are `tcpy/NAME`.
pub const BACKEND: &str = "tcpy";
/// The line after which [`render`] writes the servers.
const SERVERS_BEGIN: &str = "# tcpy:servers";
/// The line before which the servers end.
const SERVERS_END: &str = "# tcpy:end";

/// One tcpy host as HAProxy sees it.
#[derive(Clone, Debug)]
pub struct Backend {
    /// The server's name in HAProxy (`tcpy/NAME` on the stats socket).
    pub name: String,
    /// Where the host takes requests.
    pub traffic: SocketAddr,
    /// Its admin port, where HAProxy checks `GET /readyz`.
    pub admin: SocketAddr,
}

/// What [`render`] did not find in the config.
#[derive(Debug)]
pub struct RenderError(&'static str);

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the HAProxy config has {}", self.0)
    }
}

impl std::error::Error for RenderError {}

/// `config` (the text of `haproxy.cfg`) with its one `bind` on `front`, its
/// `stats socket` at `socket`, and `servers` between the `# tcpy:servers` and
/// `# tcpy:end` lines; every other line as it is.
///
/// # Errors
/// If `config` has not exactly one `bind` line, one `stats socket` line and the two
/// marker lines, in order.
pub fn render(
    config: &str,
    front: SocketAddr,
    socket: &Path,
    servers: &[Backend],
) -> Result<String, RenderError> {
    let lines: Vec<&str> = config.lines().collect();
    let find = |what: &'static str, matches: fn(&str) -> bool| {
        let mut found = (0..lines.len()).filter(|&at| matches(lines[at].trim_start()));
        match (found.next(), found.next()) {
            (Some(at), None) => Ok(at),
            (None, _) => Err(RenderError(what)),
            (Some(_), Some(_)) => Err(RenderError("more than one of a line it replaces")),
        }
    };
    let bind = find("no `bind` line", |line| line.starts_with("bind "))?;
    let stats = find("no `stats socket` line", |line| line.starts_with("stats socket "))?;
    let begin = find("no `# tcpy:servers` line", |line| line == SERVERS_BEGIN)?;
    let end = find("no `# tcpy:end` line", |line| line == SERVERS_END)?;
    if end < begin {
        return Err(RenderError("`# tcpy:end` before `# tcpy:servers`"));
    }
    let mut out = String::new();
    for (at, line) in lines.iter().enumerate() {
        if at == bind {
            out.push_str(&replace_word(line, 1, &haproxy_addr(front)));
        } else if at == stats {
            out.push_str(&replace_word(line, 2, &socket.display().to_string()));
        } else if at > begin && at < end {
            continue;
        } else {
            out.push_str(line);
        }
        out.push('\n');
        if at == begin {
            let indent = &line[..line.len() - line.trim_start().len()];
            for server in servers {
                out.push_str(&format!(
                    "{indent}server {} {} check addr {} port {}\n",
                    server.name,
                    haproxy_addr(server.traffic),
                    server.admin.ip(),
                    server.admin.port()
                ));
            }
        }
    }
    Ok(out)
}

/// `line` with its `index`th word (from 0) replaced by `word`, indentation and the
/// other words kept.
fn replace_word(line: &str, index: usize, word: &str) -> String {
    let indent = &line[..line.len() - line.trim_start().len()];
    let mut words: Vec<&str> = line.split_whitespace().collect();
    if let Some(slot) = words.get_mut(index) {
        *slot = word;
    }
    format!("{indent}{}", words.join(" "))
}

/// `addr` as HAProxy writes one: `IP:PORT`, for IPv6 too (it splits at the last colon).
fn haproxy_addr(addr: SocketAddr) -> String {
    format!("{}:{}", addr.ip(), addr.port())
}

/// Sends one runtime API command (`show stat`, `show servers state`,
/// `set server tcpy/host1 state drain`, …) to the stats socket at `socket` and
/// returns HAProxy's whole answer, waiting at most `timeout` for each read.
///
/// # Errors
/// If the socket does not accept, or does not answer in time.
pub fn command(socket: &Path, line: &str, timeout: Duration) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("{line}\n").as_bytes())?;
    // Without `prompt`, HAProxy closes the connection after its answer.
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// The field `field` (a `show stat` column: `status`, `check_status`, `scur`,
/// `stot`, …) of the row of proxy `proxy` and server `server` (`FRONTEND` and
/// `BACKEND` name the proxies' own rows) in `stat`, the CSV `show stat` answers.
pub fn stat_field(stat: &str, proxy: &str, server: &str, field: &str) -> Option<String> {
    let mut lines = stat.lines();
    let header = lines.next()?.strip_prefix("# ")?;
    let column = header.split(',').position(|name| name == field)?;
    lines
        .map(|line| line.split(',').collect::<Vec<_>>())
        .find(|row| row.first() == Some(&proxy) && row.get(1) == Some(&server))
        .and_then(|row| row.get(column).map(|value| (*value).to_owned()))
}

/// Whether server `name` of [`BACKEND`] is `UP` in `stat` (a `show stat` answer) on
/// the strength of a passed check (`L7OK`), not only because HAProxy starts servers UP.
pub fn is_up(stat: &str, name: &str) -> bool {
    let field = |field| stat_field(stat, BACKEND, name, field);
    field("status").as_deref() == Some("UP")
        && field("check_status").is_some_and(|check| check.starts_with("L7OK"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = include_str!("haproxy.cfg");

    fn backend(name: &str, traffic: u16, admin: u16) -> Backend {
        Backend {
            name: name.to_owned(),
            traffic: SocketAddr::from(([127, 0, 0, 1], traffic)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
        }
    }

    #[test]
    fn the_shipped_config_renders_with_other_addresses() {
        let front = SocketAddr::from(([127, 0, 0, 1], 4000));
        let servers = [backend("a", 4001, 4002)];
        let out = render(CONFIG, front, Path::new("/tmp/x.sock"), &servers).expect("renders");
        assert!(out.contains("    bind 127.0.0.1:4000\n"), "{out}");
        assert!(
            out.contains("    stats socket /tmp/x.sock mode 600 level admin\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "# tcpy:servers\n    server a 127.0.0.1:4001 check addr 127.0.0.1 port 4002\n    # tcpy:end"
            ),
            "{out}"
        );
        assert!(!out.contains("server host1"), "{out}");
        assert_eq!(
            out.lines().count(),
            CONFIG.lines().count() - 2,
            "only the servers changed"
        );
    }

    #[test]
    fn a_config_without_markers_is_refused() {
        let front = SocketAddr::from(([127, 0, 0, 1], 4000));
        let config = "global\n    stats socket /s\nfrontend f\n    bind :1\n";
        let error = render(config, front, Path::new("/s"), &[]).expect_err("no markers");
        assert_eq!(
            error.to_string(),
            "the HAProxy config has no `# tcpy:servers` line"
        );
    }

    #[test]
    fn a_server_row_is_read_by_column_name() {
        let stat = "# pxname,svname,status,check_status,\ntcpy,FRONTEND,OPEN,,\ntcpy,host1,UP,L7OK,\ntcpy,host2,DOWN,L7STS,\n";
        assert_eq!(
            stat_field(stat, "tcpy", "host2", "status").as_deref(),
            Some("DOWN")
        );
        assert!(is_up(stat, "host1"));
        assert!(!is_up(stat, "host2"));
        assert_eq!(stat_field(stat, "tcpy", "host3", "status"), None);
    }
}
