//! `tcpy-host`: serve a directory of WebAssembly handler components over TCP.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tcpy_host::Server;
use tcpy_host::auth::Tokens;
use tcpy_host::config::Cli;
use tcpy_host::keyvalue::Stores;
use tcpy_host::reload::Reloadable;
use tcpy_host::runtime::Runtime;
use tcpy_host::status::Status;
use tcpy_host::tls::Tls;
use tcpy_host::watcher::Watcher;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        runtime.worker_threads(usize::from(threads));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(serve(cli));
    // NB: dropping the runtime would wait for every blocking thread, and one may be
    // compiling a large component for seconds: exit is bounded instead.
    runtime.shutdown_timeout(EXIT_WAIT);
    served
}

/// Longest exit waits for blocking work (a compile, a read) once serving has ended.
const EXIT_WAIT: Duration = Duration::from_millis(200);

async fn serve(cli: Cli) -> anyhow::Result<()> {
    // Signals are heard from the start: one while the handlers load stops the host at
    // once; once listening, the first starts the drain and a second exits.
    let stop = CancellationToken::new();
    tokio::spawn(watch_signals(stop.clone()));
    // NB: SIGHUP is ours from the first moment: its default action would end the host.
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;
    let status = Status::new();
    let reloadable = Arc::new(Reloadable {
        tls: match cli.tls_files() {
            Some(files) => {
                let cert = files.cert.display().to_string();
                let tls = Tls::load(files).await.context("cannot use the TLS files")?;
                tracing::info!(cert, client_certs = tls.requires_client_certs(), "TLS on");
                Some(Arc::new(tls))
            }
            None => None,
        },
        tokens: match &cli.auth_tokens {
            Some(path) => {
                let tokens = Tokens::load(path).await.context("cannot use the tokens file")?;
                tracing::info!(file = %path.display(), identities = tokens.len(), "tokens required");
                Some(Arc::new(tokens))
            }
            None => None,
        },
        status: Arc::clone(&status),
    });
    #[cfg(unix)]
    tokio::spawn(reload_on_sighup(hangups, Arc::clone(&reloadable)));
    // The admin port is up first, so /livez answers (and /readyz says "loading")
    // while the handlers compile.
    if let Some(admin) = &cli.admin {
        let listener = tokio::net::TcpListener::bind(admin.as_str())
            .await
            .with_context(|| format!("cannot listen on {admin} for the admin port"))?;
        let address = listener
            .local_addr()
            .context("cannot read the admin port's address")?;
        tracing::info!(%address, "admin port: /livez /readyz /metrics");
        tokio::spawn(tcpy_host::admin::serve(listener, Arc::clone(&status)));
    }
    let server = tokio::select! {
        server = load(&cli, status, &reloadable) => server?,
        () = stop.cancelled() => {
            tracing::info!("shutdown requested while loading handlers; exiting");
            return Ok(());
        }
    };
    let commands = server.registry().commands();
    if commands.is_empty() {
        tracing::warn!(dir = %cli.handlers.display(), "no handlers loaded: every request will get unknown_command");
    }
    let listener = tokio::net::TcpListener::bind((cli.host.as_str(), cli.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", cli.host, cli.port))?;
    let address = listener
        .local_addr()
        .context("cannot read the listening address")?;
    tracing::info!(%address, commands = ?commands, "tcpy-host listening");
    let server = Arc::new(server);
    // Held until the server stops, as is the watcher below.
    let _reloads = if reloadable.is_empty() {
        None
    } else {
        Some(
            Arc::clone(&reloadable)
                .watch()
                .context("cannot watch the TLS and tokens files")?,
        )
    };
    // Held until the server stops; dropping it stops following the directory.
    let _watcher = if cli.no_watch {
        None
    } else {
        Some(Watcher::start(Arc::clone(&server))?)
    };
    tcpy_host::server::run(listener, server, stop.cancelled_owned(), cli.shutdown()).await;
    Ok(())
}

/// Sets up the runtime and loads every handler of `--handlers`, reporting to `status`,
/// with the TLS and tokens of `reloadable`.
async fn load(cli: &Cli, status: Arc<Status>, reloadable: &Reloadable) -> anyhow::Result<Server> {
    let mut runtime = Runtime::new(cli.limits()).context("cannot set up the WebAssembly runtime")?;
    match cli.cache_dir() {
        Some(dir) => {
            runtime = runtime.with_compile_cache(&dir)?;
            tracing::info!(dir = %dir.display(), "compile cache");
        }
        None => tracing::info!("no compile cache: every handler is compiled at load"),
    }
    let stores = open_stores(cli).await?;
    tracing::info!(stores = %stores.location(), "key-value stores");
    runtime = runtime.with_stores(Arc::new(stores));
    let server = Server::new(runtime, &cli.handlers, status)
        .await
        .with_context(|| format!("cannot serve handlers from `{}`", cli.handlers.display()))?
        .with_connection_limits(cli.connection_limits())
        .with_idempotency(cli.idempotency());
    let server = match &reloadable.tls {
        Some(tls) => server.with_tls(Arc::clone(tls)),
        None => server,
    };
    let server = match &reloadable.tokens {
        Some(tokens) => server.with_tokens(Arc::clone(tokens)),
        None => server,
    };
    #[cfg(feature = "bench")]
    if cli.native_baseline {
        tracing::info!("native baseline on: serving native_add and native_echo too");
        return Ok(server.with_native_baseline());
    }
    Ok(server)
}

/// The key-value stores: in `--redis`, else embedded under the data directory.
async fn open_stores(cli: &Cli) -> anyhow::Result<Stores> {
    let limits = cli.kv_limits();
    if let Some(url) = &cli.redis {
        return Stores::redis(url, limits).context("cannot use --redis");
    }
    let dir = cli
        .data_dir()
        .context("no --data-dir given and no HOME to keep the key-value stores under")?;
    // NB: opening may check and repair the file after a crash: off the async threads.
    tokio::task::spawn_blocking(move || Stores::embedded(&dir, limits))
        .await
        .context("the key-value store's opening panicked")?
        .context("cannot open the key-value stores (--data-dir)")
}

/// Reloads the TLS and tokens files on every SIGHUP.
#[cfg(unix)]
async fn reload_on_sighup(mut hangups: tokio::signal::unix::Signal, reloadable: Arc<Reloadable>) {
    while hangups.recv().await.is_some() {
        if reloadable.is_empty() {
            tracing::info!("SIGHUP: nothing to reload (handlers are followed by hot swap)");
        } else {
            reloadable.reload("SIGHUP").await;
        }
    }
}

/// Cancels `stop` on the first Ctrl-C or SIGTERM; a second one exits at once.
async fn watch_signals(stop: CancellationToken) {
    signal().await;
    tracing::info!("shutdown requested; press Ctrl-C again to exit at once");
    stop.cancel();
    signal().await;
    tracing::warn!("second signal: exiting without waiting");
    std::process::exit(130);
}

async fn signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
