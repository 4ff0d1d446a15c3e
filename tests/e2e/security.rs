//! TLS, client certificates, tokens and per-handler access, over real TCP with
//! certificates made by the tests.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tcpy_client::{ClientError, Encoding, ErrorCode, ServerCode};
use tcpy_host::auth::Tokens;
use tcpy_host::reload::Reloadable;
use tcpy_host::runtime::Runtime;
use tcpy_host::server::Shutdown;
use tcpy_host::tls::Tls;
use tcpy_host::{ConnectionLimits, Server};
use tcpy_tests::certs::{self, Pki};
use tcpy_tests::{LineConn, TestHost, handler_bytes, handlers_dir, http, object, test_limits, wait_until};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const SHUTDOWN: Shutdown = Shutdown {
    drain_delay: Duration::ZERO,
    grace: Duration::from_secs(5),
};

/// Limits with a short read timeout, so dropped handshakes show quickly.
fn quick_limits() -> ConnectionLimits {
    ConnectionLimits {
        read_timeout: Duration::from_millis(800),
        ..ConnectionLimits::default()
    }
}

/// How a test host is secured.
#[derive(Default)]
struct Secured {
    tls: Option<Arc<Tls>>,
    tokens: Option<Arc<Tokens>>,
}

/// A host serving `dir` (the test handlers unless given) as `secured` says.
async fn start(secured: Secured, dir: Option<&Path>) -> TestHost {
    let runtime = Runtime::new(test_limits()).expect("runtime builds");
    let dir = dir.map_or_else(handlers_dir, Path::to_path_buf);
    let mut server = Server::with_runtime(runtime, &dir)
        .await
        .expect("loads")
        .with_connection_limits(quick_limits());
    if let Some(tls) = secured.tls {
        server = server.with_tls(tls);
    }
    if let Some(tokens) = secured.tokens {
        server = server.with_tokens(tokens);
    }
    TestHost::serve_server(server, SHUTDOWN, false).await
}

/// A host serving TLS with `server`, asking for client certificates from `client_ca`.
async fn tls_host(server: &certs::Pair, client_ca: Option<&Path>, dir: Option<&Path>) -> TestHost {
    let tls = Some(tls(server, client_ca).await);
    start(
        Secured {
            tls,
            ..Secured::default()
        },
        dir,
    )
    .await
}

async fn tls(server: &certs::Pair, client_ca: Option<&Path>) -> Arc<Tls> {
    let files = certs::tls_files(server, client_ca.map(Path::to_path_buf));
    Arc::new(Tls::load(files).await.expect("the TLS files load"))
}

async fn tokens(dir: &Path, text: &str) -> Arc<Tokens> {
    let path = dir.join("tokens.toml");
    std::fs::write(&path, text).expect("writes");
    Arc::new(Tokens::load(&path).await.expect("the tokens load"))
}

/// A JSON line over a raw TLS stream, and the line that comes back.
async fn line_round_trip<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    request: Value,
) -> Option<Value> {
    stream
        .get_mut()
        .write_all(format!("{request}\n").as_bytes())
        .await
        .ok()?;
    let mut line = String::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_line(&mut line))
        .await
        .expect("answered in time")
        .ok()?;
    (read > 0).then(|| serde_json::from_str(&line).expect("a JSON line"))
}

fn code_of(error: &ClientError) -> Option<ErrorCode> {
    match error {
        ClientError::Server {
            code: Some(ServerCode::Known(code)),
            ..
        } => Some(*code),
        _ => None,
    }
}

#[tokio::test]
async fn tls_carries_both_framings_and_both_encodings() {
    let pki = Pki::new("main");
    let host = tls_host(&pki.server("server", false), None, None).await;
    for encoding in [Encoding::Json, Encoding::Msgpack] {
        let mut client = host
            .client()
            .with_tls(certs::client_config(&pki.ca(), None))
            .with_encoding(encoding);
        for i in 0..3 {
            let answer = client
                .call("add", json!({"x": i, "y": 1}))
                .await
                .expect("answered over TLS");
            assert_eq!(answer["solution"], i + 1, "{encoding:?}");
        }
        // A conversation, inside TLS too.
        let mut talk = client.conversation("tally", ()).await.expect("a conversation");
        talk.send(object(json!({"n": 2}))).await.expect("sends");
        talk.send(object(json!({"done": true}))).await.expect("sends");
        let mut last = None;
        while let Ok(turn) = talk.recv().await {
            if let tcpy_client::Turn::Response(response) = turn {
                last = Some(response);
                break;
            }
        }
        assert_eq!(last.expect("a response")["total"], 2, "{encoding:?}");
    }
    let stream = certs::connect(host.addr, &pki.ca())
        .await
        .expect("a TLS handshake");
    let mut lines = BufReader::new(stream);
    let answer = line_round_trip(&mut lines, json!({"cmd": "add", "x": 20, "y": 22})).await;
    assert_eq!(answer.expect("an answer")["solution"], 42, "line mode inside TLS");
}

#[tokio::test]
async fn plaintext_and_stalled_handshakes_are_dropped_while_tls_clients_are_served() {
    let pki = Pki::new("main");
    let host = tls_host(&pki.server("server", false), None, None).await;
    let admin = host.serve_admin().await;
    // 200 connections that never finish a handshake, and a plaintext client.
    let mut half_open = Vec::new();
    for i in 0..200 {
        let mut stream = TcpStream::connect(host.addr).await.expect("connects");
        if i % 2 == 0 {
            // The first bytes of a ClientHello, then nothing.
            stream
                .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
                .await
                .expect("writes");
        }
        half_open.push(stream);
    }
    let mut plain = TcpStream::connect(host.addr).await.expect("connects");
    plain
        .write_all(b"{\"cmd\":\"add\",\"x\":1,\"y\":2}\n")
        .await
        .expect("writes");

    let mut client = host.client().with_tls(certs::client_config(&pki.ca(), None));
    let started = Instant::now();
    for i in 0..20 {
        let answer = client
            .call("add", json!({"x": i, "y": 1}))
            .await
            .expect("served meanwhile");
        assert_eq!(answer["solution"], i + 1);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?} for 20 requests",
        started.elapsed()
    );

    // The plaintext client gets no answer: its connection is dropped.
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), plain.read(&mut buf))
        .await
        .expect("dropped in time");
    assert!(
        !matches!(read, Ok(n) if n > 0 && buf[..n].starts_with(b"{")),
        "no plaintext answer"
    );
    // The stalled ones are dropped after the read timeout; only the client's stays.
    let state = host.host();
    assert!(
        wait_until(Duration::from_secs(10), || state.open_connections() <= 1).await,
        "{} connections still open",
        state.open_connections()
    );
    let metrics = http::get(admin, "/metrics", &[]).await.body;
    let failed = metrics
        .lines()
        .find_map(|line| line.strip_prefix("tcpy_tls_handshakes_total{result=\"failed\"} "))
        .map_or(0.0, |n| n.parse::<f64>().expect("a number"));
    assert!(failed >= 201.0, "{metrics}");
    drop(half_open);
}

#[tokio::test]
async fn untrusted_expired_and_missing_certificates_are_refused() {
    let pki = Pki::new("main");
    let other = Pki::new("other");
    // A client that trusts another CA refuses the host.
    let host = tls_host(&pki.server("server", false), None, None).await;
    let mut wrong_ca = host.client().with_tls(certs::client_config(&other.ca(), None));
    let error = wrong_ca
        .call("add", json!({"x": 1, "y": 1}))
        .await
        .expect_err("untrusted");
    assert!(matches!(error, ClientError::Tls(_)), "{error:?}");
    drop(host);

    // An expired host certificate is refused.
    let expired = tls_host(&pki.server("expired", true), None, None).await;
    let mut client = expired.client().with_tls(certs::client_config(&pki.ca(), None));
    let error = client
        .call("add", json!({"x": 1, "y": 1}))
        .await
        .expect_err("expired");
    assert!(
        format!("{error:?}").to_lowercase().contains("expired"),
        "{error:?}"
    );

    // A host that asks for client certificates refuses a client without one, with one
    // from another CA; and knows one with a good one by its name.
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("add.wasm"), handler_bytes("add")).expect("copies");
    std::fs::write(dir.path().join("misbehave.wasm"), handler_bytes("misbehave")).expect("copies");
    std::fs::write(
        dir.path().join("misbehave.toml"),
        "[access]\nallow = [\"billing\"]\npass_identity = true\n",
    )
    .expect("writes");
    let host = tls_host(&pki.server("server", false), Some(&pki.ca()), Some(dir.path())).await;
    let mut anonymous = host.client().with_tls(certs::client_config(&pki.ca(), None));
    assert!(
        anonymous.call("add", json!({"x": 1, "y": 1})).await.is_err(),
        "no client certificate"
    );
    let stranger = other.client("billing", "stranger");
    let mut forged = host
        .client()
        .with_tls(certs::client_config(&pki.ca(), Some(&stranger)));
    assert!(
        forged.call("add", json!({"x": 1, "y": 1})).await.is_err(),
        "a certificate from another CA"
    );
    let escape =
        json!({"do": "escape", "file": "/nothing", "env": "TCPY_IDENTITY", "connect": "127.0.0.1:9"});
    let billing = pki.client("billing", "billing");
    let mut known = host
        .client()
        .with_tls(certs::client_config(&pki.ca(), Some(&billing)));
    let answer = known
        .call("misbehave", escape.clone())
        .await
        .expect("a good client certificate");
    assert_eq!(
        answer["env"],
        json!({"ok": "billing"}),
        "the certificate's name: {answer:?}"
    );
    let ops = pki.client("ops", "ops");
    let mut other_name = host
        .client()
        .with_tls(certs::client_config(&pki.ca(), Some(&ops)));
    let error = other_name
        .call("misbehave", escape)
        .await
        .expect_err("not on the list");
    assert_eq!(code_of(&error), Some(ErrorCode::Forbidden), "{error:?}");
    assert_eq!(
        other_name
            .call("add", json!({"x": 1, "y": 1}))
            .await
            .expect("add")["solution"],
        2
    );
}

#[tokio::test]
async fn a_token_is_asked_for_first_and_names_the_caller() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tokens = tokens(dir.path(), "billing = \"billing-token-0123456789\"\n").await;
    let host = start(
        Secured {
            tokens: Some(tokens),
            ..Secured::default()
        },
        None,
    )
    .await;

    // Missing: the first message is a request, answered unauthorized and closed.
    let mut conn = LineConn::connect(host.addr).await;
    let answer = conn.round_trip(json!({"cmd": "add", "x": 1, "y": 1})).await;
    assert_eq!(answer["code"], "unauthorized", "{answer}");
    assert_eq!(conn.recv().await, None, "closed");
    // Wrong.
    let mut conn = LineConn::connect(host.addr).await;
    let answer = conn
        .round_trip(json!({"cmd": "auth", "token": "guess-guess-guess-guess"}))
        .await;
    assert_eq!(answer["code"], "unauthorized", "{answer}");
    assert_eq!(conn.recv().await, None, "closed");
    // Right: the identity comes back, and requests follow on the same connection.
    let mut conn = LineConn::connect(host.addr).await;
    let answer = conn
        .round_trip(json!({"cmd": "auth", "token": "billing-token-0123456789"}))
        .await;
    assert_eq!(answer, json!({"success": true, "identity": "billing"}));
    let answer = conn.round_trip(json!({"cmd": "add", "x": 2, "y": 3})).await;
    assert_eq!(answer["solution"], 5);

    // A connection that owes its token gets only the read timeout to send it.
    let mut silent = TcpStream::connect(host.addr).await.expect("connects");
    let started = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest))
        .await
        .expect("closed well before the idle timeout")
        .expect("reads");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "after {:?}",
        started.elapsed()
    );

    // The client library sends it on every new connection.
    let mut client = host.client().with_token("billing-token-0123456789");
    assert_eq!(
        client
            .call("add", json!({"x": 1, "y": 1}))
            .await
            .expect("authenticated")["solution"],
        2
    );
    let mut wrong = host.client().with_token("nope-nope-nope-nope-nope");
    let error = wrong
        .call("add", json!({"x": 1, "y": 1}))
        .await
        .expect_err("refused");
    assert_eq!(code_of(&error), Some(ErrorCode::Unauthorized), "{error:?}");
}

#[tokio::test]
async fn an_access_list_lets_in_only_its_identities_and_passes_the_identity_if_asked() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let handlers = dir.path().join("handlers");
    std::fs::create_dir(&handlers).expect("creates");
    std::fs::write(handlers.join("add.wasm"), handler_bytes("add")).expect("copies");
    std::fs::write(handlers.join("misbehave.wasm"), handler_bytes("misbehave")).expect("copies");
    std::fs::write(
        handlers.join("misbehave.toml"),
        "[access]\nallow = [\"ops\"]\npass_identity = true\n",
    )
    .expect("writes");
    let tokens = tokens(
        dir.path(),
        "billing = \"billing-token-0123456789\"\nops = \"ops-token-0123456789abc\"\n",
    )
    .await;
    let host = start(
        Secured {
            tokens: Some(tokens),
            ..Secured::default()
        },
        Some(&handlers),
    )
    .await;
    let escape =
        json!({"do": "escape", "file": "/nothing", "env": "TCPY_IDENTITY", "connect": "127.0.0.1:9"});

    let mut billing = host.client().with_token("billing-token-0123456789");
    let error = billing
        .call("misbehave", escape.clone())
        .await
        .expect_err("forbidden");
    assert_eq!(code_of(&error), Some(ErrorCode::Forbidden), "{error:?}");
    // Forbidden leaves the connection open, and other handlers are open to everyone.
    assert_eq!(
        billing
            .call("add", json!({"x": 1, "y": 1}))
            .await
            .expect("add is open")["solution"],
        2
    );

    let mut ops = host.client().with_token("ops-token-0123456789abc");
    let answer = ops.call("misbehave", escape).await.expect("ops may");
    assert_eq!(
        answer["env"],
        json!({"ok": "ops"}),
        "the identity, as asked for: {answer:?}"
    );
    let answer = ops.call("add", json!({"x": 1, "y": 1})).await.expect("add");
    assert_eq!(answer["solution"], 2);
}

#[tokio::test]
async fn a_swapped_certificate_serves_new_connections_and_old_ones_keep_working() {
    let first = Pki::new("first");
    let second = Pki::new("second");
    let live = tempfile::tempdir().expect("a temporary directory");
    let (cert, key) = (live.path().join("server.pem"), live.path().join("server.key"));
    let install = |pair: &certs::Pair| {
        // As a deploy would: write beside, then rename into place.
        for (from, to) in [(&pair.cert, &cert), (&pair.key, &key)] {
            let partial = to.with_extension("partial");
            std::fs::copy(from, &partial).expect("copies");
            std::fs::rename(&partial, to).expect("renames");
        }
    };
    install(&first.server("server", false));
    let files = tcpy_host::tls::TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: None,
    };
    let tls = Arc::new(Tls::load(files).await.expect("loads"));
    let host = start(
        Secured {
            tls: Some(Arc::clone(&tls)),
            ..Secured::default()
        },
        None,
    )
    .await;
    let reloadable = Arc::new(Reloadable {
        tls: Some(tls),
        tokens: None,
        status: Arc::clone(host.host().status()),
    });
    let _watcher = Arc::clone(&reloadable).watch().expect("watches the files");

    let mut old = host.client().with_tls(certs::client_config(&first.ca(), None));
    assert_eq!(
        old.call("add", json!({"x": 1, "y": 1}))
            .await
            .expect("first cert")["solution"],
        2
    );

    install(&second.server("server", false));
    let mut new = host.client().with_tls(certs::client_config(&second.ca(), None));
    let started = Instant::now();
    loop {
        match new.call("add", json!({"x": 2, "y": 2})).await {
            Ok(answer) => {
                assert_eq!(answer["solution"], 4);
                break;
            }
            Err(error) => assert!(
                started.elapsed() < Duration::from_secs(10),
                "the new cert never served: {error:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        old.call("add", json!({"x": 3, "y": 3}))
            .await
            .expect("the old connection goes on")["solution"],
        6
    );
    let mut stale = host.client().with_tls(certs::client_config(&first.ca(), None));
    assert!(
        stale.call("add", json!({"x": 1, "y": 1})).await.is_err(),
        "new connections get the new cert"
    );

    // A bad new pair (a key that is not the certificate's) is refused; the second stays.
    std::fs::copy(first.server("other", false).key, &key).expect("copies");
    reloadable.reload("test").await;
    let mut again = host.client().with_tls(certs::client_config(&second.ca(), None));
    assert_eq!(
        again
            .call("add", json!({"x": 4, "y": 4}))
            .await
            .expect("still the second cert")["solution"],
        8
    );
}
