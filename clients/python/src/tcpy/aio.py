"""The asyncio client, ``AsyncClient``: the same API as :class:`tcpy.TCPClient`, with
coroutines."""

from __future__ import annotations

import asyncio
import socket
import ssl
from types import TracebackType
from typing import Any, AsyncIterator, Awaitable, Dict, Mapping, Optional, Type, TypeVar

from . import _tls, _wire
from ._settings import ClientSettings
from ._wire import DEFAULT_TIMEOUT, Message
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

__all__ = ["AsyncClient", "AsyncConversation"]

_CHUNK = 1 << 16
T = TypeVar("T")


class _Connection:
    __slots__ = ("reader", "writer", "buffer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()

    def close(self) -> None:
        try:
            self.writer.close()
        except (OSError, RuntimeError):
            pass  # the loop may be closing; the transport goes with it


class AsyncClient(ClientSettings):
    """An asyncio client of a tcpy host::

        async with AsyncClient("localhost", 7272) as client:
            response = await client.execute("add", x=1, y=2)

    Same behaviour and parameters as :class:`tcpy.TCPClient` (one kept connection,
    per-step ``timeout``, ``encoding``, ``max_message``, ``tls``, ``server_hostname``,
    ``token``). Requests on one client run
    one after the other: concurrent ``execute`` calls on the same client wait their
    turn (each bounded by the timeout), so one client may be shared by many tasks;
    for requests that run at the same time, use one client per task.
    """

    # The settings and ``__init__`` come from :class:`ClientSettings`; the connection is
    # this client's own.
    _conn: Optional[_Connection]
    _conversation: Optional[AsyncConversation] = None
    _lock: Optional[asyncio.Lock] = None

    async def connect(self) -> None:
        """Connects, unless already connected; with ``tls``, makes the TLS handshake;
        with a ``token``, authenticates. See :meth:`tcpy.TCPClient.connect`.

        :raises ConnectError: when the connection is refused or the name does not
            resolve. :raises TLSError: when the handshake fails. :raises Unauthorized:
            when the host refuses the token. :raises TimeoutError: when a step takes
            longer than the timeout.
        """
        if self._conn is None:
            self._conn = await self._open()
            if self._token is not None:
                await self._authenticate(self._token)

    async def disconnect(self) -> None:
        """Closes the connection, if any. Closing twice is fine."""
        conn, self._conn = self._conn, None
        if self._conversation is not None:
            self._conversation._end()
        if conn is not None:
            conn.close()
            try:
                await asyncio.wait_for(conn.writer.wait_closed(), self._bounded())
            except (OSError, asyncio.TimeoutError):
                pass  # given up anyway

    close = disconnect

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.disconnect()

    async def send(self, data: Mapping[str, Any]) -> None:
        """Sends one message as it is (the raw protocol); see :meth:`tcpy.TCPClient.send`."""
        if self._conn is None:
            raise NotConnected()
        await self._write(_wire.frame(data, self.encoding, self.max_message))

    async def recv(self) -> Dict[str, Any]:
        """Waits for the next message from the host; see :meth:`tcpy.TCPClient.recv`.

        Cancel-safe: a cancelled or timed-out ``recv`` loses no byte.
        """
        if self._conn is None:
            raise NotConnected()
        return await self._read()

    async def execute(self, cmd: str, **params: Any) -> Dict[str, Any]:
        """Runs ``cmd`` with ``params`` and returns its response as it came; see
        :meth:`tcpy.TCPClient.execute`. If the coroutine is cancelled mid-request, the
        client disconnects rather than be left in the middle of it."""
        request = _wire.frame(_wire.request(cmd, params), self.encoding, self.max_message)
        async with self._turn():
            self._check_free()
            self._forget_if_closed()
            reused = self._conn is not None
            await self.connect()
            try:
                await self._write(request)
                response = await self._read()
                code = _wire.closed_unrun(response) if reused else None
                if code is not None:
                    # Not run: once more on a new connection (see TCPClient.execute).
                    self._drop()
                    try:
                        await self.connect()
                    except TCPError:
                        if code == "shutting_down":
                            return response
                        raise
                    await self._write(request)
                    response = await self._read()
                if not _wire.is_response(response):
                    raise UnexpectedMessage(response)
            except BaseException:
                self._drop()
                raise
            if _wire.closes(response):
                self._drop()
            return response

    async def call(self, cmd: str, **params: Any) -> Dict[str, Any]:
        """Like :meth:`execute`, but an error response is raised as :class:`ServerError`
        (the subclass named after its code)."""
        response = await self.execute(cmd, **params)
        if _wire.is_error(response):
            raise server_error(response)
        return response

    async def conversation(self, cmd: str, **params: Any) -> "AsyncConversation":
        """Starts a conversation; see :meth:`tcpy.TCPClient.conversation`. Other requests
        on this client are refused until it is over."""
        request = _wire.frame(_wire.request(cmd, params), self.encoding, self.max_message)
        async with self._turn():
            self._check_free()
            self._forget_if_closed()
            await self.connect()
            await self._write(request)
            self._conversation = AsyncConversation(self)
            return self._conversation

    # -- internals -----------------------------------------------------------------

    def _turn(self) -> asyncio.Lock:
        # Made on first use, inside the running loop (older Pythons bind it there).
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _bounded(self) -> float:
        return self.timeout if self.timeout is not None else DEFAULT_TIMEOUT

    def _check_free(self) -> None:
        if self._conversation is not None and not self._conversation.over:
            raise TCPError("a conversation is in progress on this client: finish or close it first")

    def _forget_if_closed(self) -> None:
        conn = self._conn
        if conn is None or conn.buffer:
            return
        if conn.reader.at_eof() or conn.writer.is_closing():
            self._drop()

    async def _open(self) -> _Connection:
        tls: Dict[str, Any] = {}
        if self.tls is not None:
            tls = {"ssl": self.tls, "server_hostname": self.server_hostname or self.host}
        try:
            reader, writer = await self._timed(
                asyncio.open_connection(self.host, self.port, limit=max(_CHUNK, self.max_message), **tls),
                "connect",
            )
        except TimeoutError:
            raise
        except ssl.SSLError as error:
            raise _tls.handshake_error(self.address, error) from error
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as error:
            if self.tls is None:
                raise ConnectError(self.address, error.strerror or str(error)) from error
            raise _tls.handshake_error(self.address, error) from error
        except OSError as error:
            raise ConnectError(self.address, error.strerror or str(error)) from error
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        return _Connection(reader, writer)

    async def _authenticate(self, token: str) -> None:
        """Sends the token on the new connection and reads the host's answer."""
        try:
            await self._write(_wire.frame(_wire.auth_request(token), self.encoding, self.max_message))
            self.identity = _wire.auth_identity(await self._read())
        except BaseException:
            self._drop()
            raise

    async def _timed(self, awaitable: Awaitable[T], operation: str) -> T:
        try:
            return await asyncio.wait_for(awaitable, self.timeout)
        except asyncio.TimeoutError as error:
            raise TimeoutError(operation, self.timeout, self.address) from error

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _write(self, data: bytes) -> None:
        conn = self._conn
        if conn is None:
            raise NotConnected()
        try:
            conn.writer.write(data)
            await self._timed(conn.writer.drain(), "send")
        except TimeoutError:
            self._drop()
            raise
        except ssl.SSLError as error:
            self._drop()
            raise _tls.session_error(self.address, error) from error
        except (OSError, RuntimeError) as error:
            self._drop()
            raise ConnectionFailed(f"sending failed: {error}") from error
        except asyncio.CancelledError:
            self._drop()
            raise

    async def _read(self) -> Message:
        conn = self._conn
        if conn is None:
            raise NotConnected()
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        while True:
            try:
                body = _wire.split_frame(conn.buffer, self.max_message)
            except (MessageTooLarge, TLSError):
                self._drop()
                raise
            if body is not None:
                return _wire.decode(body)
            want = max(_CHUNK, _wire.needed(conn.buffer))
            try:
                if deadline is None:
                    chunk = await conn.reader.read(want)
                else:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        raise TimeoutError("recv", self.timeout)
                    # NB: StreamReader.read takes bytes off only when it returns, so a
                    # timeout or a cancellation here loses nothing.
                    chunk = await asyncio.wait_for(conn.reader.read(want), remaining)
            except asyncio.TimeoutError as error:
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


class AsyncConversation:
    """A conversation on an :class:`AsyncClient`; the same as
    :class:`tcpy.Conversation`, with coroutines (``async for`` yields the handler's
    messages; ``async with`` disconnects if left before the response)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._send_closed = False
        #: Whether the conversation has ended: its response arrived, or it failed.
        self.over = False
        #: The response, once it has arrived.
        self.response: Optional[Dict[str, Any]] = None

    async def send(self, message: Mapping[str, Any]) -> None:
        """Sends one message to the handler; see :meth:`tcpy.Conversation.send`."""
        if self.over:
            raise ConversationOver()
        if self._send_closed:
            raise SendClosed()
        data = _wire.frame(message, self._client.encoding, self._client.max_message)
        try:
            await self._client._write(data)
        except BaseException:
            self._end()
            raise

    async def recv(self) -> Dict[str, Any]:
        """Waits for the handler's next message or its response; see
        :meth:`tcpy.Conversation.recv`. Cancel-safe."""
        if self.over:
            raise ConversationOver()
        try:
            message = await self._client._read()
        except (TimeoutError, asyncio.CancelledError):
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

    async def close_send(self) -> None:
        """Shuts down the client's sending side; see :meth:`tcpy.Conversation.close_send`
        (not over TLS: it raises :class:`TCPError` and changes nothing)."""
        if self.over:
            raise ConversationOver()
        if self._send_closed:
            return
        conn = self._client._conn
        if conn is not None and self._client.tls is not None:
            raise _tls.no_half_close()
        self._send_closed = True
        if conn is None:
            self._end()
            raise NotConnected()
        try:
            if conn.writer.can_write_eof():
                conn.writer.write_eof()
            await self._client._timed(conn.writer.drain(), "send")
        except (OSError, RuntimeError, TimeoutError) as error:
            self._end()
            self._client._drop()
            if isinstance(error, TimeoutError):
                raise
            raise ConnectionFailed(f"closing the sending side failed: {error}") from error

    async def wait(self) -> Dict[str, Any]:
        """Reads until the response and returns it, skipping any messages before it."""
        while not self.over:
            await self.recv()
        assert self.response is not None
        return self.response

    async def __aiter__(self) -> AsyncIterator[Dict[str, Any]]:
        while not self.over:
            message = await self.recv()
            if not self.over:
                yield message

    async def __aenter__(self) -> "AsyncConversation":
        return self

    async def __aexit__(
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
