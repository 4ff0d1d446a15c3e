//! Command-line options.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::runtime::Limits;

/// Command-line options of `tcpy-host`.
#[derive(Debug, Parser)]
#[command(
    name = "tcpy-host",
    version,
    about = "Serve WebAssembly handler components over TCP, a fresh sandbox per request"
)]
pub struct Cli {
    /// Directory of handler components: `NAME.wasm` serves command `NAME`.
    #[arg(long, value_name = "DIR")]
    pub handlers: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = tcpy_protocol::DEFAULT_HOST)]
    pub host: String,
    /// Port to listen on; 0 picks a free one (the log says which).
    #[arg(long, default_value_t = tcpy_protocol::DEFAULT_PORT)]
    pub port: u16,
    /// Worker threads for the async runtime [default: one per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Time a request may run, not counting waits for the client in `recv()` (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Largest linear memory of one handler instance (e.g. 64MiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub max_memory: usize,
    /// Largest message accepted or sent, either way (e.g. 1MiB).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub max_message: usize,
    /// Requests that may run at once; more get a `busy` error. Sizes the instance pool.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_requests: u32,
    /// Do not follow changes to the handlers directory (hot swap is on by default).
    #[arg(long)]
    pub no_watch: bool,
    /// Where compiled handlers are cached [default: $XDG_CACHE_HOME/tcpy or ~/.cache/tcpy].
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Compile every handler afresh; keep no compile cache.
    #[arg(long)]
    pub no_cache: bool,
    /// How long shutdown waits for requests in flight before dropping them.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Also serve `native_add` and `native_echo`: the example handlers as plain Rust,
    /// no sandbox, for benchmarks to compare against (see docs/performance.md).
    #[arg(long)]
    pub native_baseline: bool,
}

impl Cli {
    /// The per-request limits these options describe.
    pub fn limits(&self) -> Limits {
        Limits {
            timeout: self.timeout,
            max_memory: self.max_memory,
            max_message: self.max_message,
            max_in_flight: self.max_requests,
        }
    }
}

impl Cli {
    /// The compile cache directory to use, if any: `--cache-dir`, else the user's
    /// cache directory; none with `--no-cache` or when no cache directory is known.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache_dir.clone().or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
            Some(base.join("tcpy"))
        })
    }
}

/// Parses `250ms`, `5s`, `2m` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_unit(text);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 5s or 250ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit `{unit}` in `{text}` (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is not a valid duration"))
}

/// Parses `65536`, `64KiB`, `64MiB`, `1GiB` (K, M, G mean the same binary units).
fn parse_size(text: &str) -> Result<usize, String> {
    let (number, unit) = split_unit(text);
    let value: usize = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 64MiB"))?;
    let scale: usize = match unit {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(format!("unknown unit `{unit}` in `{text}` (use KiB, MiB or GiB)")),
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too large"))
}

fn split_unit(text: &str) -> (&str, &str) {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    (&text[..split], &text[split..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("1TB").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn defaults_match_the_documented_limits() {
        let cli = Cli::parse_from(["tcpy-host", "--handlers", "h"]);
        assert_eq!(cli.port, 7272);
        assert_eq!(cli.limits(), Limits::default());
    }
}
