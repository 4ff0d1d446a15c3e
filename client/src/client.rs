//! The async client: one persistent connection, requests one after the other.

mod failover;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tcpy_protocol::{
    CodecError, DEFAULT_HOST, DEFAULT_MAX_MESSAGE, DEFAULT_PORT, Encoding, Framing, Message, Object, Request,
    WireCodec,
};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;
use tokio_util::either::Either;

use crate::address::Addresses;
use crate::error::{ClientError, Operation};
use crate::{Conversation, DEFAULT_TIMEOUT, RetryPolicy, TlsConfig};

/// A connection in frame mode, over TCP or TLS.
pub(crate) type Connection = Framed<Either<TcpStream, TlsStream<TcpStream>>, WireCodec>;

/// The command that authenticates a connection to a host that asks for tokens.
const AUTH: &str = "auth";

/// An async client of a tcpy host, or of several that it fails over between.
///
/// The client connects on first use (or on [`Client::connect`]) and keeps the
/// connection for the requests that follow, as the protocol allows. When a call fails
/// in a way that leaves the connection out of step (the server closed it, a request
/// was cut short, a message could not be framed), the client drops the connection and
/// the next request connects again.
///
/// A client made with [`Client::new`] never retries a request by itself (but for the
/// one case the protocol allows, a kept connection the host closed before the
/// request), since the host may already have run it. One made with
/// [`Client::with_addresses`], or given a [`RetryPolicy`] with [`Client::with_retry`],
/// fails over: it sends a request again, to the next address, when that is safe —
/// the request did not run, or running it twice is harmless
/// ([`Client::execute_idempotent`], [`Client::execute_with_key`]).
///
/// ```no_run
/// # async fn run() -> Result<(), tcpy_client::ClientError> {
/// use serde_json::json;
/// use tcpy_client::Client;
///
/// let mut client = Client::new("localhost", 7272);
/// let response = client.execute("add", json!({"x": 1, "y": 2})).await?;
/// assert_eq!(response["solution"], 3);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Client {
    addresses: Addresses,
    retry: Option<RetryPolicy>,
    retries: u64,
    timeout: Duration,
    encoding: Encoding,
    max_message: usize,
    tls: Option<TlsConfig>,
    token: Option<String>,
    pub(crate) connection: Option<Connection>,
}

impl Default for Client {
    /// A client of `localhost:7272`.
    fn default() -> Self {
        Self::new(DEFAULT_HOST, DEFAULT_PORT)
    }
}

impl Client {
    /// A client of the host at `host:port`; nothing happens on the network until it
    /// is used. Defaults: JSON messages, a [`DEFAULT_TIMEOUT`] and a
    /// [`DEFAULT_MAX_MESSAGE`] limit.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self::of(Addresses::one(host.into(), port), None)
    }

    fn of(addresses: Addresses, retry: Option<RetryPolicy>) -> Self {
        Self {
            addresses,
            retry,
            retries: 0,
            timeout: DEFAULT_TIMEOUT,
            encoding: Encoding::Json,
            max_message: DEFAULT_MAX_MESSAGE,
            tls: None,
            token: None,
            connection: None,
        }
    }

    /// Connects over TLS with `tls` (the host must run with `--tls-cert`).
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Authenticates every new connection with `token` (the host must run with
    /// `--auth-tokens`): `{"cmd": "auth", "token": …}` is its first message.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets the timeout of each step: connecting, sending one message, and waiting for
    /// one message. A request as a whole may take longer, as long as no single step does.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the encoding of the messages this client sends (the host answers in kind).
    /// JSON by default; [`Encoding::Msgpack`] is what tcpy 0.0.x clients spoke.
    pub fn with_encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Sets the largest message, in bytes, this client sends or accepts. Keep it no
    /// larger than the host's limit: the host closes the connection on a larger one.
    pub fn with_max_message(mut self, max_message: usize) -> Self {
        self.max_message = max_message;
        self
    }

    /// The host and port, as `host:port` (`[::1]:7272` for an IPv6 literal): of a
    /// client of several hosts, the one it is connected to, or connects to next.
    pub fn addr(&self) -> String {
        self.addresses.current().to_string()
    }

    /// How many attempts beyond the first of each call this client has made, in all:
    /// how often it had to fail over (always 0 without a retry policy).
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// Whether the client holds a connection. It may still turn out to be closed by
    /// the server: that shows on the next send or receive.
    pub fn is_connected(&self) -> bool {
        self.connection.is_some()
    }

    /// Connects, unless already connected; under a retry policy, to the first address
    /// that lets it.
    ///
    /// # Errors
    /// [`ClientError::Connect`] naming the address, [`ClientError::Timeout`],
    /// [`ClientError::Tls`], or [`ClientError::Server`] for a token refused; under a
    /// retry policy, [`ClientError::GaveUp`] with the last of those.
    pub async fn connect(&mut self) -> Result<(), ClientError> {
        if self.connection.is_none() {
            self.connection = Some(self.connect_any().await?);
        }
        Ok(())
    }

    /// Closes the connection, if any, after sending what is still buffered. Closing
    /// twice is fine.
    pub async fn disconnect(&mut self) {
        if let Some(mut connection) = self.connection.take() {
            // The connection is being given up: a failure to flush or shut down
            // changes nothing for the caller.
            let _ = timeout(self.timeout, connection.close()).await;
        }
    }

    /// Sends one message as it is, with no `"cmd"` added: the raw protocol, for a
    /// request built by hand or a reply within a conversation.
    ///
    /// If sending fails, the client disconnects (a message may be half sent). Sending
    /// is not cancel-safe: a cancelled send may still go out with the next one.
    ///
    /// # Errors
    /// [`ClientError::NotConnected`] without a connection; [`ClientError::Encode`] or
    /// [`ClientError::Codec`] (too large) before anything is sent; [`ClientError::Io`]
    /// or [`ClientError::Timeout`] while sending.
    pub async fn send(&mut self, message: Object) -> Result<(), ClientError> {
        if self.connection.is_none() {
            return Err(ClientError::NotConnected);
        }
        let message = self.encode(&message)?;
        self.write(message).await
    }

    /// Waits for the next message from the server, whatever it is: an intermediate
    /// message or a response.
    ///
    /// Cancel-safe: if the returned future is dropped before it completes, no message
    /// is lost. A timeout or an undecodable message leaves the connection open; any
    /// other failure disconnects.
    ///
    /// # Errors
    /// [`ClientError::NotConnected`] without a connection; [`ClientError::Closed`] when
    /// the server has closed it; [`ClientError::Timeout`]; [`ClientError::Decode`] for
    /// a message that is not an object; [`ClientError::Codec`] for one over the limit
    /// or cut off; [`ClientError::Io`].
    pub async fn recv(&mut self) -> Result<Object, ClientError> {
        let connection = self.connection.as_mut().ok_or(ClientError::NotConnected)?;
        let result = read(connection, self.timeout).await;
        if let Err(error) = &result
            && !matches!(error, ClientError::Timeout { .. } | ClientError::Decode(_))
        {
            self.connection = None;
        }
        result
    }

    /// Runs `cmd` with `params` and returns its response as it came, `{"success": true, ...}`
    /// or `{"error": true, ...}` alike, as in tcpy 0.0.x. Connects if needed.
    ///
    /// `params` is a JSON object (`json!({"x": 1})` or an [`Object`]), or `()`/`null`
    /// for none. It is checked before anything is sent.
    ///
    /// This is for one-shot requests: a handler that sends messages before its response
    /// needs a [`Client::conversation`]. If the returned future is dropped before it
    /// completes, the client disconnects rather than be left in the middle of a request.
    ///
    /// Under a retry policy, the request is sent again, at the next address, when it did
    /// not run: the connection failed before it was written, or the host answered
    /// `busy`, `shutting_down`, `idle_timeout`, `unavailable` or `in_progress`. When it
    /// was written and no answer came, it is sent again only if it carries an
    /// idempotency key (a string `"idempotency_key"` in `params`, see
    /// [`Client::execute_with_key`]); use [`Client::execute_idempotent`] for a request
    /// that is harmless to run twice.
    ///
    /// # Errors
    /// [`ClientError::InvalidParams`] if `params` is not an object or holds a `"cmd"`;
    /// [`ClientError::UnexpectedMessage`] if the handler sends a message before its
    /// response; any failure of [`Client::connect`], [`Client::send`] or
    /// [`Client::recv`]. After a failure on the connection (any but invalid params or a
    /// request too large to send), the client has disconnected; so it has after an
    /// answer the host may close the connection behind (`busy`, `too_large`,
    /// `idle_timeout`, `read_timeout`, `shutting_down`, `unauthorized`).
    ///
    /// Under a retry policy, instead of a connection's failure:
    /// [`ClientError::MaybeRan`] when the request was written and no answer came and it
    /// could not be sent again; [`ClientError::GaveUp`] when the policy's time ran out.
    pub async fn execute(&mut self, cmd: &str, params: impl Into<Value>) -> Result<Object, ClientError> {
        self.execute_as(cmd, params.into(), false).await
    }

    /// Like [`Client::execute`], but an error response is an error.
    ///
    /// # Errors
    /// [`ClientError::Server`] for an `{"error": true, ...}` response, with its code
    /// and message; otherwise as [`Client::execute`].
    pub async fn call(&mut self, cmd: &str, params: impl Into<Value>) -> Result<Object, ClientError> {
        success(self.execute(cmd, params).await?)
    }

    /// Starts a conversation: sends the request for `cmd` with `params` (connecting if
    /// needed) and returns the [`Conversation`] through which the handler's messages
    /// arrive and the client's replies go, until its response.
    ///
    /// A conversation is never sent again: under a retry policy only connecting fails
    /// over, as in [`Client::connect`].
    ///
    /// # Errors
    /// [`ClientError::InvalidParams`] as for [`Client::execute`], before anything is
    /// sent; any failure of [`Client::connect`] or [`Client::send`].
    pub async fn conversation(
        &mut self,
        cmd: &str,
        params: impl Into<Value>,
    ) -> Result<Conversation<'_>, ClientError> {
        let request = self.encode(&request(cmd, params.into())?)?;
        self.connect().await?;
        self.write(request).await?;
        Ok(Conversation::new(self))
    }

    /// Encodes a message and checks it against the size limit, so that nothing is
    /// sent of a message that cannot go.
    pub(crate) fn encode(&self, object: &Object) -> Result<Message, ClientError> {
        let message = Message::encode(object, self.encoding).map_err(ClientError::Encode)?;
        if message.body.len() > self.max_message {
            return Err(ClientError::Codec(CodecError::TooLarge {
                max: self.max_message,
            }));
        }
        Ok(message)
    }

    /// Sends an encoded message on the connection; on failure, disconnects.
    pub(crate) async fn write(&mut self, message: Message) -> Result<(), ClientError> {
        let connection = self.connection.as_mut().ok_or(ClientError::NotConnected)?;
        let result = write(connection, message, self.timeout).await;
        if result.is_err() {
            self.connection = None;
        }
        result
    }

    /// Flushes the connection and shuts down its sending half; on failure, disconnects.
    pub(crate) async fn close_write(&mut self) -> Result<(), ClientError> {
        let connection = self.connection.as_mut().ok_or(ClientError::NotConnected)?;
        let result = match timeout(self.timeout, connection.close()).await {
            Ok(result) => result.map_err(ClientError::from),
            Err(_) => Err(ClientError::Timeout {
                operation: Operation::Send,
                after: self.timeout,
            }),
        };
        if result.is_err() {
            self.connection = None;
        }
        result
    }

    /// Reads the next message on the connection, leaving it in place on every outcome
    /// (callers decide what a failure means for them).
    pub(crate) async fn read(&mut self) -> Result<Object, ClientError> {
        let connection = self.connection.as_mut().ok_or(ClientError::NotConnected)?;
        read(connection, self.timeout).await
    }

    /// A new connection to the current address, over TLS and authenticated if the
    /// client is configured so.
    async fn open(&self, deadline: Option<Instant>) -> Result<Connection, ClientError> {
        let address = self.addresses.current();
        let addr = address.to_string();
        let connecting = TcpStream::connect((address.host.as_str(), address.port));
        let after = self.step(deadline);
        let stream = match timeout(after, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(ClientError::Connect { addr, source }),
            Err(_) => {
                return Err(ClientError::Timeout {
                    operation: Operation::Connect { addr },
                    after,
                });
            }
        };
        // Requests are small and answered one at a time: waiting to coalesce them
        // (Nagle) only adds latency.
        stream.set_nodelay(true).map_err(ClientError::Io)?;
        let stream = match &self.tls {
            None => Either::Left(stream),
            Some(tls) => {
                let (connector, name) = tls.connector(&address.host)?;
                let after = self.step(deadline);
                match timeout(after, connector.connect(name, stream)).await {
                    Ok(Ok(stream)) => Either::Right(stream),
                    Ok(Err(error)) => {
                        return Err(ClientError::Tls(format!("handshake with {addr}: {error}")));
                    }
                    Err(_) => {
                        return Err(ClientError::Timeout {
                            operation: Operation::Connect { addr },
                            after,
                        });
                    }
                }
            }
        };
        let mut connection = Framed::new(stream, WireCodec::new(Framing::Frame, self.max_message));
        if let Some(token) = &self.token {
            let mut auth = Object::new();
            auth.insert("cmd".to_owned(), Value::String(AUTH.to_owned()));
            auth.insert("token".to_owned(), Value::String(token.clone()));
            write(&mut connection, self.encode(&auth)?, self.step(deadline)).await?;
            let answer = read(&mut connection, self.step(deadline)).await?;
            if answer.get("success") != Some(&Value::Bool(true)) {
                return Err(ClientError::server(answer));
            }
        }
        Ok(connection)
    }
}

/// `response` if it is not an error response; [`ClientError::Server`] if it is.
fn success(response: Object) -> Result<Object, ClientError> {
    if response.get("error") == Some(&Value::Bool(true)) {
        return Err(ClientError::server(response));
    }
    Ok(response)
}

/// The request object for `cmd` with `params`.
fn request(cmd: &str, params: Value) -> Result<Object, ClientError> {
    let params = match params {
        Value::Object(params) => params,
        Value::Null => Object::new(),
        other => {
            return Err(ClientError::InvalidParams {
                reason: format!("params must be an object, not {}", kind_of(&other)),
            });
        }
    };
    if params.contains_key("cmd") {
        // It would be overwritten by the command name without a word.
        return Err(ClientError::InvalidParams {
            reason: "params cannot hold \"cmd\": it names the command".to_owned(),
        });
    }
    Ok(Request::new(cmd, params).into_object())
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

async fn write(connection: &mut Connection, message: Message, after: Duration) -> Result<(), ClientError> {
    match timeout(after, connection.send(message)).await {
        Ok(result) => result.map_err(ClientError::from),
        Err(_) => Err(ClientError::Timeout {
            operation: Operation::Send,
            after,
        }),
    }
}

/// NB: cancel-safe because its only await is `Framed::next`, which keeps a partly
/// read message in its buffer; conversations rely on it.
async fn read(connection: &mut Connection, after: Duration) -> Result<Object, ClientError> {
    match timeout(after, connection.next()).await {
        Ok(Some(Ok(message))) => message.decode().map_err(ClientError::Decode),
        Ok(Some(Err(error))) => Err(error.into()),
        Ok(None) => Err(ClientError::Closed),
        Err(_) => Err(ClientError::Timeout {
            operation: Operation::Recv,
            after,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_put_cmd_beside_the_params() {
        let object = request("add", json!({"x": 1})).expect("valid");
        assert_eq!(Value::Object(object), json!({"cmd": "add", "x": 1}));
        let object = request("ping", Value::Null).expect("no params");
        assert_eq!(Value::Object(object), json!({"cmd": "ping"}));
    }

    #[test]
    fn params_must_be_an_object_without_cmd() {
        let error = request("add", json!([1, 2])).expect_err("an array");
        assert_eq!(
            error.to_string(),
            "invalid params: params must be an object, not an array"
        );
        let error = request("add", json!({"cmd": "other"})).expect_err("cmd inside");
        assert!(matches!(error, ClientError::InvalidParams { .. }));
    }

    #[test]
    fn ipv6_literals_are_bracketed() {
        assert_eq!(Client::new("::1", 7).addr(), "[::1]:7");
        assert_eq!(Client::default().addr(), "localhost:7272");
    }
}
