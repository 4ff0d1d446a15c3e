"""What both clients are configured with, checked once: the address, the limits, the
encoding, TLS and the token. Each client keeps its own connection."""

from __future__ import annotations

import ssl
from typing import Any, Optional

from . import _tls, _wire
from ._wire import DEFAULT_HOST, DEFAULT_MAX_MESSAGE, DEFAULT_PORT, DEFAULT_TIMEOUT


class ClientSettings:
    """The settings of :class:`tcpy.TCPClient` and :class:`tcpy.AsyncClient`."""

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        timeout: Optional[float] = DEFAULT_TIMEOUT,
        encoding: str = "json",
        max_message: int = DEFAULT_MAX_MESSAGE,
        tls: _tls.TLSOption = None,
        server_hostname: Optional[str] = None,
        token: Optional[str] = None,
    ) -> None:
        _wire.check_limits(timeout, max_message)
        self.host = host
        self.port = port
        self.timeout = timeout
        self.encoding = _wire.check_encoding(encoding)
        self.max_message = max_message
        self.tls: Optional[ssl.SSLContext] = _tls.resolve(tls, server_hostname)
        self.server_hostname = server_hostname
        self._token = _wire.check_token(token)
        #: The identity the host named for the token on the last connection, or None.
        self.identity: Optional[str] = None
        self._conn: Optional[Any] = None

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        tls = " tls" if self.tls is not None else ""
        return f"<{type(self).__name__} {self.address} {self.encoding}{tls} {state}>"

    @property
    def address(self) -> str:
        """``host:port`` (``[::1]:7272`` for an IPv6 literal)."""
        return _wire.address(self.host, self.port)

    @property
    def connected(self) -> bool:
        """Whether the client holds a connection. It may still turn out to be closed
        by the host: that shows on the next send or receive."""
        return self._conn is not None
