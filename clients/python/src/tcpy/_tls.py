"""TLS for the clients' connections: the context that checks the host's certificate,
and the client's own certificate for hosts that ask for one."""

from __future__ import annotations

import os
import ssl
from typing import Optional, Union

from .errors import TCPError, TLSError

__all__ = ["tls_context"]

PathLike = Union[str, "os.PathLike[str]"]
TLSOption = Union[ssl.SSLContext, bool, None]


def tls_context(
    ca: Optional[PathLike] = None,
    cert: Optional[PathLike] = None,
    key: Optional[PathLike] = None,
) -> ssl.SSLContext:
    """An :class:`ssl.SSLContext` for ``tls=``: TLS 1.2 or 1.3, the host's certificate
    verified (``CERT_REQUIRED``) and checked against the host name
    (``check_hostname``).

    :param ca: a PEM file of the CA certificates the host's certificate must be signed
        by; ``None`` trusts the system's CAs.
    :param cert: a PEM file of the client's certificate chain, for a host run with
        ``--tls-client-ca``; its subject's common name is the client's identity.
    :param key: the PEM file of ``cert``'s private key (``None``: it is in ``cert``).
    :raises TLSError: naming a file that cannot be read or used.
    """
    if key is not None and cert is None:
        raise ValueError("key given without cert")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    if ca is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        try:
            context.load_verify_locations(cafile=os.fspath(ca))
        except (OSError, ssl.SSLError) as error:
            raise TLSError(f"CA file `{os.fspath(ca)}`: {_reason(error)}") from error
    if cert is not None:
        try:
            context.load_cert_chain(os.fspath(cert), None if key is None else os.fspath(key))
        except (OSError, ssl.SSLError) as error:
            files = os.fspath(cert) if key is None else f"{os.fspath(cert)}` and `{os.fspath(key)}"
            raise TLSError(f"client certificate `{files}`: {_reason(error)}") from error
    return context


def resolve(tls: TLSOption, server_hostname: Optional[str]) -> Optional[ssl.SSLContext]:
    """The context a client's ``tls`` option stands for (``True``: :func:`tls_context`
    with the system's CAs), checked against ``server_hostname``."""
    if tls is None or tls is False:
        if server_hostname is not None:
            raise ValueError("server_hostname needs tls")
        return None
    if tls is True:
        return tls_context()
    if isinstance(tls, ssl.SSLContext):
        return tls
    raise TypeError(f"tls must be an ssl.SSLContext (see tcpy.tls_context), True or None, not {type(tls).__name__}")


def handshake_error(address: str, error: OSError) -> TLSError:
    """The :class:`TLSError` for a failed handshake with ``address``."""
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = f"the host's certificate did not verify: {error.verify_message or _reason(error)}"
    else:
        reason = _reason(error)
    return TLSError(f"TLS handshake with {address} failed: {reason}")


def session_error(address: str, error: ssl.SSLError) -> TLSError:
    """The :class:`TLSError` for a TLS failure after the handshake (an alert)."""
    reason = _reason(error)
    if "CERTIFICATE_REQUIRED" in str(error.reason or "") or "certificate required" in reason:
        reason += " (the host requires a client certificate: tls_context(cert=..., key=...))"
    return TLSError(f"the TLS session with {address} failed: {reason}")


def no_half_close() -> TCPError:
    """Why ``close_send`` cannot work over TLS."""
    return TCPError(
        "close_send() is not available over TLS: Python's ssl module cannot close the "
        "sending side of a TLS connection alone; end the conversation with a message "
        "the handler understands instead"
    )


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError):
        # "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: … (_ssl.c:1006)"
        text = str(error.args[1]) if len(error.args) > 1 else str(error)
        return text.split(" (_ssl.c:")[0]
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
