"""What can go wrong talking to a tcpy host.

Every exception the client raises is a :class:`TCPError`. Error *responses* are not
exceptions for :meth:`tcpy.TCPClient.execute`, which returns them as they came (as the
2014 client did); :meth:`tcpy.TCPClient.call` raises them as :class:`ServerError`, or
the subclass named after the host's error ``code`` (:class:`Busy`, :class:`UnknownCommand`…).
"""

from __future__ import annotations

import builtins
import json
from typing import Any, Dict, Mapping, Optional, Type

__all__ = [
    "TCPError",
    "ConnectError",
    "ConnectionFailed",
    "ConnectionClosed",
    "NotConnected",
    "TimeoutError",
    "ProtocolError",
    "MessageTooLarge",
    "EncodeError",
    "InvalidParams",
    "UnexpectedMessage",
    "ConversationOver",
    "SendClosed",
    "Busy",
    "ServerError",
    "BadRequest",
    "UnknownCommand",
    "TooLarge",
    "HandlerTimeout",
    "HandlerFailed",
    "IdleTimeout",
    "ReadTimeout",
    "ShuttingDown",
    "Unauthorized",
    "Forbidden",
    "TLSError",
    "server_error",
]


class TCPError(Exception):
    """Base class of every error of the tcpy client."""


class ConnectError(TCPError):
    """The TCP connection could not be made (refused, unreachable, name unknown).

    ``address`` is ``host:port`` as given to the client; the OS error is the
    ``__cause__``.
    """

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"cannot connect to {address}: {reason}")
        self.address = address


class ConnectionFailed(TCPError):
    """An established connection failed (reset, broken pipe…); the client has
    disconnected. The OS error is the ``__cause__``."""


class ConnectionClosed(TCPError):
    """The host closed the connection; the client has disconnected.

    A request sent before it may or may not have run (see docs/protocol.md: the host
    closes under a request only when it is killed or its grace period runs out).
    """

    def __init__(self, message: str = "the server closed the connection") -> None:
        super().__init__(message)


class TLSError(TCPError):
    """TLS failed: the handshake (the host's certificate is not signed by a trusted CA
    or does not name the host, the host refused the client's certificate or asked for
    one, the host does not speak TLS), or the TLS session later (an alert from the
    host: with TLS 1.3 a host that requires a client certificate says so only after
    the handshake, on the first read). Also a bad CA, certificate or key file given to
    :func:`tcpy.tls_context`. The client has disconnected; the ``ssl`` error, if any,
    is the ``__cause__``.
    """


class NotConnected(TCPError):
    """A message was to be sent or received without a connection: call ``connect()``
    first (``execute`` and ``call`` connect by themselves)."""

    def __init__(self) -> None:
        super().__init__("not connected")


class TimeoutError(TCPError, builtins.TimeoutError):
    """A step took longer than the client's ``timeout``.

    ``operation`` says which: ``"connect"``, ``"send"`` or ``"recv"``; ``after`` is the
    timeout in seconds. Also a :class:`builtins.TimeoutError`, so ``except
    TimeoutError`` without the ``tcpy.`` prefix catches it too.

    This is the *client* giving up waiting; a handler that ran past the host's deadline
    is a :class:`HandlerTimeout` response.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> "TimeoutError":
        # OSError.__new__ would read the arguments as (errno, strerror, filename).
        return builtins.TimeoutError.__new__(cls)

    def __init__(self, operation: str, after: Optional[float], address: str = "") -> None:
        what = {
            "connect": f"connecting to {address}" if address else "connecting",
            "send": "sending a message",
            "recv": "waiting for a message from the server",
        }.get(operation, operation)
        TCPError.__init__(self, f"timed out after {after}s {what}")
        self.operation = operation
        self.after = after

    def __str__(self) -> str:
        # OSError's __str__ would otherwise format its args its own way.
        return str(self.args[0]) if self.args else ""


class ProtocolError(TCPError):
    """The server sent something that is not a tcpy message (not a JSON object or
    msgpack map, or cut off)."""


class MessageTooLarge(TCPError):
    """A message over the client's ``max_message`` limit: one to send (nothing was
    sent), or one the server announced (the client has disconnected)."""

    def __init__(self, size: int, limit: int, direction: str) -> None:
        super().__init__(f"{direction} message of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class EncodeError(TCPError, ValueError):
    """A message could not be encoded (not JSON-serialisable, NaN…); nothing was sent."""


class InvalidParams(TCPError, ValueError):
    """The command or params of a request are not valid (``cmd`` not a string, or
    params holding ``"cmd"``); nothing was sent."""


class UnexpectedMessage(TCPError):
    """A one-shot request got an intermediate message where its response belonged: the
    handler wants a conversation (:meth:`tcpy.TCPClient.conversation`). The client has
    disconnected, as the connection is in the middle of that request.

    ``received`` is the message.
    """

    def __init__(self, received: Dict[str, Any]) -> None:
        super().__init__(
            "expected a response, but the handler sent a message first "
            f"(it needs a conversation): {_compact(received)}"
        )
        self.received = received


class ConversationOver(TCPError):
    """The conversation has ended (its response arrived, or it failed)."""

    def __init__(self) -> None:
        super().__init__("the conversation is over")


class SendClosed(TCPError):
    """A message was to be sent in a conversation after ``close_send()``."""

    def __init__(self) -> None:
        super().__init__("the client has closed its sending side of the conversation")


class ServerError(TCPError):
    """An error response, ``{"error": true, ...}`` (raised by ``call``, never by
    ``execute``).

    - ``code``: the response's ``"code"`` (a string), or ``None``;
    - ``message``: its ``"message"``, or the whole response as JSON when it has none;
    - ``response``: the response as it came.

    The host's own codes have subclasses (:class:`Busy`, :class:`HandlerTimeout`…);
    other codes, a handler's own, are plain ``ServerError``.
    """

    #: The wire code a subclass stands for.
    CODE: Optional[str] = None
    #: Whether the host says the request was not run, so it may be sent again.
    not_run: bool = False

    def __init__(self, response: Mapping[str, Any]) -> None:
        code = response.get("code")
        message = response.get("message")
        self.code: Optional[str] = code if isinstance(code, str) else None
        self.message: str = message if isinstance(message, str) else _compact(response)
        self.response: Dict[str, Any] = dict(response)
        suffix = f" ({self.code})" if self.code else ""
        super().__init__(f"error response{suffix}: {self.message}")


class BadRequest(ServerError):
    """``bad_request``: the message or its params are malformed (the host's check, or
    a handler's when the params do not fit). The connection stays open."""

    CODE = "bad_request"


class UnknownCommand(ServerError):
    """``unknown_command``: no handler serves the command. The connection stays open."""

    CODE = "unknown_command"


class TooLarge(ServerError):
    """``too_large``: a message over the host's size limit. Over a request the host
    closes the connection; over the handler's response it stays open."""

    CODE = "too_large"


class HandlerTimeout(ServerError):
    """``timeout``: the handler ran past its deadline (or waited too long in
    ``recv()``). The connection stays open."""

    CODE = "timeout"


class HandlerFailed(ServerError):
    """``handler_failed``: the handler trapped, ran out of memory, answered something
    that is not a response, or sent too many messages. The connection stays open."""

    CODE = "handler_failed"


class Busy(ServerError):
    """``busy``: the host is at its limit of requests (connection stays open) or of
    connections (closed); nothing ran: retry later."""

    CODE = "busy"
    not_run = True


class IdleTimeout(ServerError):
    """``idle_timeout``: the connection sat idle too long and was closed; nothing ran.
    ``execute`` resends once on a new connection by itself."""

    CODE = "idle_timeout"
    not_run = True


class ReadTimeout(ServerError):
    """``read_timeout``: a message was started but not finished in time; closed."""

    CODE = "read_timeout"


class ShuttingDown(ServerError):
    """``shutting_down``: the host is shutting down; nothing ran, so the request may be
    sent again elsewhere. ``execute`` resends once on a new connection by itself."""

    CODE = "shutting_down"
    not_run = True


class Unauthorized(ServerError):
    """``unauthorized``: the host asks every connection for a token first, and this
    one sent none (the client has no ``token``), or one the host does not know. The
    host closes the connection. With a ``token``, ``connect`` (and so ``execute`` and
    ``call``) raise it when the host refuses the token."""

    CODE = "unauthorized"


class Forbidden(ServerError):
    """``forbidden``: the handler's access list does not name the client's identity
    (from its token or client certificate; an anonymous caller is never on it). The
    connection stays open."""

    CODE = "forbidden"


_BY_CODE: Dict[str, Type[ServerError]] = {
    cls.CODE: cls
    for cls in (
        BadRequest,
        UnknownCommand,
        TooLarge,
        HandlerTimeout,
        HandlerFailed,
        Busy,
        IdleTimeout,
        ReadTimeout,
        ShuttingDown,
        Unauthorized,
        Forbidden,
    )
    if cls.CODE is not None
}


def server_error(response: Mapping[str, Any]) -> ServerError:
    """The :class:`ServerError` (subclass, when the code is the host's) for an error
    response."""
    code = response.get("code")
    cls = _BY_CODE.get(code, ServerError) if isinstance(code, str) else ServerError
    return cls(response)


def _compact(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        return repr(value)
