//! A scripted stand-in for a tcpy host: it accepts connections on 127.0.0.1 port 0
//! and does what each test tells it, so the client can be tested without wasmtime.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tcpy_client::{Client, Encoding};
use tcpy_protocol::{DEFAULT_MAX_MESSAGE, Message, WireCodec};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

/// Bounds every wait of the fake server, so a client that hangs fails the test.
const PATIENCE: Duration = Duration::from_secs(10);

/// A fake host running its script on a task of its own.
pub struct FakeServer {
    pub addr: SocketAddr,
    script: JoinHandle<()>,
}

impl FakeServer {
    /// Binds a port and runs `script` with the listener.
    pub async fn start<F, Fut>(script: F) -> Self
    where
        F: FnOnce(Listener) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("has an address");
        let script = tokio::spawn(script(Listener(listener)));
        Self { addr, script }
    }

    /// A client of this server.
    pub fn client(&self) -> Client {
        Client::new(self.addr.ip().to_string(), self.addr.port())
    }

    /// Waits for the script to end, failing the test if one of its checks failed.
    pub async fn finish(self) {
        match tokio::time::timeout(PATIENCE, self.script).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => match error.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(error) => panic!("fake server script failed: {error}"),
            },
            Err(_) => panic!("fake server script did not finish"),
        }
    }
}

/// The fake server's listening socket.
pub struct Listener(TcpListener);

impl Listener {
    /// The next connection, framed as a host frames it.
    pub async fn accept(&mut self) -> Connection {
        let (stream, _) = tokio::time::timeout(PATIENCE, self.0.accept())
            .await
            .expect("a client connects in time")
            .expect("accepts");
        Connection(Framed::new(stream, WireCodec::detect(DEFAULT_MAX_MESSAGE)))
    }
}

/// One client connection, as the fake server sees it.
pub struct Connection(Framed<TcpStream, WireCodec>);

impl Connection {
    /// The next message as it came, or `None` once the client has closed its side.
    pub async fn recv_message(&mut self) -> Option<Message> {
        tokio::time::timeout(PATIENCE, self.0.next())
            .await
            .expect("the client sends in time")
            .map(|message| message.expect("a well-framed message"))
    }

    /// The next message, decoded; the client must send one.
    pub async fn recv(&mut self) -> Value {
        let message = self.recv_message().await.expect("a message, not the end");
        Value::Object(message.decode().expect("an object"))
    }

    /// Sends `value` as JSON.
    pub async fn send(&mut self, value: Value) {
        self.send_in(value, Encoding::Json).await;
    }

    /// Sends `value` in `encoding`.
    pub async fn send_in(&mut self, value: Value, encoding: Encoding) {
        let message = Message::encode(&object(value), encoding).expect("encodes");
        self.0.send(message).await.expect("sends");
    }

    /// Writes bytes as they are, bypassing the framing.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let stream = self.0.get_mut();
        stream.write_all(bytes).await.expect("writes");
        stream.flush().await.expect("flushes");
    }
}

pub use tcpy_protocol::test_support::object;

/// A client of a port where nothing listens: any attempt to connect fails.
pub fn client_of_nothing() -> (Client, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    (Client::new("127.0.0.1", port), port)
}
