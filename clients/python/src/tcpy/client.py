"""The blocking client, ``TCPClient``: the 2014 API on the current protocol."""

from __future__ import annotations

import socket
import ssl
import time
from types import TracebackType
from typing import Any, Dict, Iterator, Mapping, Optional, Type

from . import _tls, _wire
from ._settings import ClientSettings
from ._wire import Message
from .errors import (
    ConnectError,
    ConnectionClosed,
    ConnectionFailed,
    ConversationOver,
    MessageTooLarge,
    NotConnected,
    SendClosed,
    TCPError,
    TimeoutError,
    TLSError,
    UnexpectedMessage,
    server_error,
)

__all__ = ["TCPClient", "Conversation"]

_CHUNK = 1 << 16


class _Connection:
    """A socket and the bytes read from it that do not yet make a whole frame."""

    __slots__ = ("sock", "buffer")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class TCPClient(ClientSettings):
    """A blocking client of a tcpy host, as in tcpy 0.0.1::

        from tcpy import TCPClient
        print(TCPClient().execute(cmd="add", x=1, y=2))  # {'solution': 3, 'success': True}

    The client connects on first use (or on :meth:`connect`) and keeps the connection
    for the requests that follow. When a call fails in a way that leaves the
    connection out of step (closed by the host, a request cut short by a timeout, a
    message that cannot be framed), the client disconnects and the next request
    connects again. It resends a request by itself only when the host says it did not
    run it (``idle_timeout`` or ``shutting_down`` on a kept connection), once, on a
    new connection.

    :param host: the host's name or address (default ``localhost``).
    :param port: its port (default ``7272``).
    :param timeout: seconds each step may take — connecting, sending one message,
        waiting for one message — or ``None`` to wait forever. A request as a whole
        may take longer, as long as no single step does. Default 30.
    :param encoding: ``"json"`` (default) or ``"msgpack"`` (needs the ``msgpack``
        extra), for the messages this client sends; the host answers in kind.
    :param max_message: the largest message, in bytes, sent or accepted (default
        1 MiB, the host's default). Keep it no larger than the host's limit: the host
        closes the connection on a larger one.
    :param tls: an :class:`ssl.SSLContext` (:func:`tcpy.tls_context` makes one from a
        CA file and an optional client certificate) to speak TLS to a host run with
        ``--tls-cert``; ``True`` for the system's CAs; ``None`` (default) for plain TCP.
    :param server_hostname: the name the host's certificate must carry, when it is
        not ``host`` (connecting by address to a host with a DNS name, say).
    :param token: for a host run with ``--auth-tokens``: sent as
        ``{"cmd": "auth", "token": ...}`` on every new connection, right after
        connecting; a refusal is raised by :meth:`connect` as :class:`Unauthorized`.
        Not read from the environment: pass ``os.environ.get("TCPY_TOKEN")`` for the
        CLI's variable.

    A client is not thread-safe: give each thread its own (connections are cheap).
    It is a context manager that disconnects on exit.
    """

    # The settings and ``__init__`` come from :class:`ClientSettings`; the connection is
    # this client's own.
    _conn: Optional[_Connection]
    _conversation: Optional[Conversation] = None

    # -- the connection ------------------------------------------------------------

    @property
    def socket(self) -> Optional[socket.socket]:
        """The connection's socket (an :class:`ssl.SSLSocket` over TLS), or ``None``:
        for socket options and the like. Reading or writing it directly puts the
        client out of step."""
        return self._conn.sock if self._conn is not None else None

    def connect(self) -> None:
        """Connects, unless already connected; with ``tls``, makes the TLS handshake;
        with a ``token``, authenticates.

        :raises ConnectError: naming the address, when the connection is refused or
            the name does not resolve.
        :raises TLSError: when the handshake fails (the host's certificate is not
            trusted or does not name the host, the host refused the client's).
        :raises Unauthorized: when the host refuses the token (another
            :class:`ServerError` if the host does not ask for tokens: ``unknown_command``).
        :raises TimeoutError: when connecting, the handshake or the authentication
            takes longer than the timeout.
        """
        if self._conn is None:
            self._conn = self._open()
            if self._token is not None:
                self._authenticate(self._token)

    def disconnect(self) -> None:
        """Closes the connection, if any. Closing twice is fine."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        if self._conversation is not None:
            self._conversation._end()

    close = disconnect

    def __enter__(self) -> "TCPClient":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.disconnect()

    # -- the raw protocol ----------------------------------------------------------

    def send(self, data: Mapping[str, Any]) -> None:
        """Sends one message as it is, with no ``"cmd"`` added: a request built by hand
        (``{"cmd": "add", "x": 1, "y": 2}``) or a reply within a conversation.

        :raises NotConnected: without a connection (call :meth:`connect` first).
        :raises EncodeError, MessageTooLarge: before anything is sent.
        :raises TimeoutError, ConnectionFailed: while sending; the client has
            disconnected, as the message may be half sent.
        """
        if self._conn is None:
            raise NotConnected()
        self._write(_wire.frame(data, self.encoding, self.max_message))

    def recv(self) -> Dict[str, Any]:
        """Waits for the next message from the host, whatever it is (a conversation
        message or a response), and returns it as a dict.

        A :class:`TimeoutError` or an undecodable message leaves the connection open
        (no byte is lost); any other failure disconnects.

        :raises NotConnected: without a connection.
        :raises ConnectionClosed: when the host has closed the connection.
        :raises TimeoutError: when no whole message came within the timeout.
        :raises ProtocolError: for a message that is not an object.
        :raises MessageTooLarge: for a message over ``max_message``.
        """
        if self._conn is None:
            raise NotConnected()
        return self._read()

    # -- requests ------------------------------------------------------------------

    def execute(self, cmd: str, **params: Any) -> Dict[str, Any]:
        """Runs ``cmd`` with ``params`` and returns its response as it came,
        ``{'success': True, ...}`` or ``{'error': True, ...}`` alike, as tcpy 0.0.1 did.
        Connects if needed.

        This is for one-shot requests: a handler that sends messages before its
        response needs a :meth:`conversation`.

        :raises InvalidParams: ``cmd`` is not a string; nothing was sent.
        :raises UnexpectedMessage: the handler sent a message before its response.
        :raises TCPError: any failure of :meth:`connect`, :meth:`send` or
            :meth:`recv`. After a failure on the connection the client has
            disconnected: the request may or may not have run.
        """
        self._check_free()
        request = _wire.frame(_wire.request(cmd, params), self.encoding, self.max_message)
        self._forget_if_closed()
        reused = self._conn is not None
        self.connect()
        try:
            self._write(request)
            response = self._read()
            code = _wire.closed_unrun(response) if reused else None
            if code is not None:
                # The host closed the kept connection (idle, or shutting down) before
                # this request ran: send it again on a new connection, which a
                # balancer gives to another host. If there is no other, the
                # `shutting_down` answer stands.
                self._drop()
                try:
                    self.connect()
                except TCPError:
                    if code == "shutting_down":
                        return response
                    raise
                self._write(request)
                response = self._read()
            if not _wire.is_response(response):
                raise UnexpectedMessage(response)
        except BaseException:
            # Whatever went wrong, the connection may be in the middle of this request.
            self._drop()
            raise
        if _wire.closes(response):
            # The host may close the connection after this answer: do not keep it.
            self._drop()
        return response

    def call(self, cmd: str, **params: Any) -> Dict[str, Any]:
        """Like :meth:`execute`, but an error response is raised.

        :raises ServerError: for an ``{'error': True, ...}`` response, as the subclass
            named after its ``code`` when it is the host's (``Busy``,
            ``UnknownCommand``, ``HandlerTimeout``…), with ``code``, ``message`` and
            ``response``.
        """
        response = self.execute(cmd, **params)
        if _wire.is_error(response):
            raise server_error(response)
        return response

    def conversation(self, cmd: str, **params: Any) -> "Conversation":
        """Starts a conversation: sends the request (connecting if needed) and returns
        the :class:`Conversation` through which the handler's messages arrive and the
        client's replies go, until the response.

        :raises InvalidParams: as for :meth:`execute`, before anything is sent.
        :raises TCPError: any failure of :meth:`connect` or :meth:`send`.
        """
        self._check_free()
        request = _wire.frame(_wire.request(cmd, params), self.encoding, self.max_message)
        self._forget_if_closed()
        self.connect()
        self._write(request)
        self._conversation = Conversation(self)
        return self._conversation

    # -- internals -----------------------------------------------------------------

    def _check_free(self) -> None:
        if self._conversation is not None and not self._conversation.over:
            raise TCPError("a conversation is in progress on this client: finish or close it first")

    def _open(self) -> _Connection:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except socket.timeout as error:
            raise TimeoutError("connect", self.timeout, self.address) from error
        except OSError as error:
            raise ConnectError(self.address, error.strerror or str(error)) from error
        # Requests are small and answered one at a time: Nagle only adds latency.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            name = self.server_hostname or self.host
            try:
                sock = self.tls.wrap_socket(sock, server_hostname=name)
            except socket.timeout as error:
                sock.close()
                raise TimeoutError("connect", self.timeout, self.address) from error
            except OSError as error:  # ssl.SSLError, or a reset mid-handshake
                sock.close()
                raise _tls.handshake_error(self.address, error) from error
        return _Connection(sock)

    def _authenticate(self, token: str) -> None:
        """Sends the token on the new connection and reads the host's answer."""
        try:
            self._write(_wire.frame(_wire.auth_request(token), self.encoding, self.max_message))
            self.identity = _wire.auth_identity(self._read())
        except BaseException:
            self._drop()
            raise

    def _forget_if_closed(self) -> None:
        """Drops a kept connection the host has already closed (after a ``busy`` or
        ``too_large`` that closes it, say), so that a request is not sent into it.
        Nothing has been sent yet, so reconnecting is safe. A pending message (an
        unasked ``idle_timeout``) stays for :meth:`execute` to read."""
        conn = self._conn
        if conn is None or conn.buffer:
            return
        try:
            conn.sock.setblocking(False)
            if isinstance(conn.sock, ssl.SSLSocket):
                # Peek at the TCP stream under TLS: an end there with nothing before
                # it is the host's close. (Records still to read count as alive.)
                if conn.sock.pending():
                    return
                peeked = socket.socket.recv(conn.sock, 1, socket.MSG_PEEK)
            else:
                peeked = conn.sock.recv(1, socket.MSG_PEEK)
            if peeked == b"":
                self._drop()
        except BlockingIOError:
            pass  # nothing to read: the connection is alive and quiet
        except OSError:
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _write(self, data: bytes) -> None:
        conn = self._conn
        if conn is None:
            raise NotConnected()
        try:
            conn.sock.settimeout(self.timeout)
            conn.sock.sendall(data)
        except socket.timeout as error:
            self._drop()
            raise TimeoutError("send", self.timeout) from error
        except ssl.SSLError as error:
            self._drop()
            raise _tls.session_error(self.address, error) from error
        except OSError as error:
            self._drop()
            raise ConnectionFailed(f"sending failed: {error}") from error

    def _read(self) -> Message:
        conn = self._conn
        if conn is None:
            raise NotConnected()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            try:
                body = _wire.split_frame(conn.buffer, self.max_message)
            except (MessageTooLarge, TLSError):
                self._drop()
                raise
            if body is not None:
                # The frame is whole and off the buffer: a bad body leaves the
                # connection in step.
                return _wire.decode(body)
            if deadline is None:
                conn.sock.settimeout(None)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("recv", self.timeout)
                conn.sock.settimeout(remaining)
            try:
                chunk = conn.sock.recv(max(_CHUNK, _wire.needed(conn.buffer)))
            except socket.timeout as error:
                raise TimeoutError("recv", self.timeout) from error
            except ssl.SSLError as error:
                self._drop()
                raise _tls.session_error(self.address, error) from error
            except OSError as error:
                self._drop()
                raise ConnectionFailed(f"receiving failed: {error}") from error
            if not chunk:
                partial = bool(conn.buffer)
                self._drop()
                if partial:
                    raise ConnectionClosed("the server closed the connection in the middle of a message")
                raise ConnectionClosed()
            conn.buffer += chunk


class Conversation:
    """A request in progress whose handler may send messages and wait for replies,
    started by :meth:`TCPClient.conversation`.

    Receive with :meth:`recv` until :attr:`over` (the response has arrived, and is in
    :attr:`response`); reply with :meth:`send` whenever the handler expects it, or say
    with :meth:`close_send` that no more will come. Iterating yields the handler's
    messages until the response. After the response the client is free for the next
    request on the same connection.

    As a context manager, leaving it before the response disconnects the client: the
    rest of the request would otherwise arrive as the answer to the next one.
    """

    def __init__(self, client: TCPClient) -> None:
        self._client = client
        self._send_closed = False
        #: Whether the conversation has ended: its response arrived, or it failed.
        self.over = False
        #: The response, once it has arrived.
        self.response: Optional[Dict[str, Any]] = None

    def send(self, message: Mapping[str, Any]) -> None:
        """Sends one message to the handler (any object: it is the handler's to read).

        :raises ConversationOver: once the conversation has ended.
        :raises SendClosed: after :meth:`close_send`.
        :raises TCPError: as :meth:`TCPClient.send`; a failure while sending ends the
            conversation and disconnects.
        """
        if self.over:
            raise ConversationOver()
        if self._send_closed:
            raise SendClosed()
        data = _wire.frame(message, self._client.encoding, self._client.max_message)
        try:
            self._client._write(data)
        except TCPError:
            self._end()
            raise

    def recv(self) -> Dict[str, Any]:
        """Waits for the handler's next message, or its response (then :attr:`over`
        is true and :attr:`response` holds it).

        A :class:`TimeoutError` leaves the conversation going, as the handler may be
        waiting for the client; any other failure ends it and disconnects.

        :raises ConversationOver: once the conversation has ended.
        """
        if self.over:
            raise ConversationOver()
        try:
            message = self._client._read()
        except TimeoutError:
            raise
        except TCPError:
            self._end()
            self._client._drop()
            raise
        if _wire.is_response(message):
            self.over = True
            self.response = message
            if self._send_closed or _wire.closes(message):
                self._client._drop()
        return message

    def close_send(self) -> None:
        """Tells the handler the client has nothing more to say: shuts down the sending
        half of the connection, so the handler's ``recv()`` yields none, while its
        messages and response still arrive. The connection cannot carry another
        request after this: the client disconnects once the response is in.

        :raises TCPError: over TLS, which Python's ``ssl`` cannot half-close; nothing
            changes (the conversation goes on).
        """
        if self.over:
            raise ConversationOver()
        if self._send_closed:
            return
        sock = self._client.socket
        if isinstance(sock, ssl.SSLSocket):
            raise _tls.no_half_close()
        self._send_closed = True
        if sock is None:
            self._end()
            raise NotConnected()
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError as error:
            self._end()
            self._client._drop()
            raise ConnectionFailed(f"closing the sending side failed: {error}") from error

    def wait(self) -> Dict[str, Any]:
        """Reads until the response and returns it, skipping any messages before it."""
        while not self.over:
            self.recv()
        assert self.response is not None
        return self.response

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        """The handler's messages, until (not including) the response."""
        while not self.over:
            message = self.recv()
            if not self.over:
                yield message

    def __enter__(self) -> "Conversation":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if not self.over:
            self._end()
            self._client._drop()

    def _end(self) -> None:
        self.over = True
        if self._client._conversation is self:
            self._client._conversation = None
