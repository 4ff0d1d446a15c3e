"""tcpy: a client for tcpy hosts, with the 2014 ``TCPClient`` API.

>>> from tcpy import TCPClient
>>> print(TCPClient().execute(cmd="add", x=1, y=2))  # doctest: +SKIP
{'solution': 3, 'success': True}

- :class:`TCPClient` is the blocking client: ``connect``, ``send``, ``recv``,
  ``disconnect`` and ``execute`` as tcpy 0.0.1 documented them, plus ``call`` (error
  responses raised as :class:`ServerError`), ``conversation``, timeouts and a context
  manager.
- :class:`AsyncClient` is the same for asyncio.
- Every error is a :class:`TCPError`; see :mod:`tcpy.errors`.
- ``tls=tcpy.tls_context(ca="ca.pem")`` speaks TLS to a host run with ``--tls-cert``
  (``cert=``/``key=`` for one that asks for client certificates); ``token=...``
  authenticates every new connection to a host run with ``--auth-tokens``.

The protocol is the tcpy host's frame mode (docs/protocol.md), with JSON bodies, or
msgpack ones with ``encoding="msgpack"`` (the ``msgpack`` extra).
"""

from ._wire import (
    DEFAULT_HOST,
    DEFAULT_MAX_MESSAGE,
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    is_response,
)
from ._tls import tls_context
from .aio import AsyncClient, AsyncConversation
from .client import Conversation, TCPClient
from .errors import (
    BadRequest,
    Busy,
    ConnectError,
    ConnectionClosed,
    ConnectionFailed,
    ConversationOver,
    EncodeError,
    Forbidden,
    HandlerFailed,
    HandlerTimeout,
    IdleTimeout,
    InvalidParams,
    MessageTooLarge,
    NotConnected,
    ProtocolError,
    ReadTimeout,
    SendClosed,
    ServerError,
    ShuttingDown,
    TCPError,
    TimeoutError,
    TLSError,
    TooLarge,
    Unauthorized,
    UnexpectedMessage,
    UnknownCommand,
    server_error,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_MESSAGE",
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT",
    "AsyncClient",
    "AsyncConversation",
    "BadRequest",
    "Busy",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionFailed",
    "Conversation",
    "ConversationOver",
    "EncodeError",
    "Forbidden",
    "HandlerFailed",
    "HandlerTimeout",
    "IdleTimeout",
    "InvalidParams",
    "MessageTooLarge",
    "NotConnected",
    "ProtocolError",
    "ReadTimeout",
    "SendClosed",
    "ServerError",
    "ShuttingDown",
    "TCPClient",
    "TCPError",
    "TimeoutError",
    "TLSError",
    "TooLarge",
    "Unauthorized",
    "UnexpectedMessage",
    "UnknownCommand",
    "is_response",
    "server_error",
    "tls_context",
]
