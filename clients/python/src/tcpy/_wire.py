"""The wire format shared by both clients: frames, bodies and requests.

Frame mode (docs/protocol.md): a 4-byte big-endian length ``N``, then ``N`` bytes of
body; a body is a JSON object or a msgpack map, and says for itself which.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Dict, Mapping, Optional

from .errors import EncodeError, InvalidParams, MessageTooLarge, ProtocolError, TLSError, server_error

try:  # msgpack is an optional extra: `pip install "tcpy[msgpack]"`.
    import msgpack as _msgpack
except ImportError:  # pragma: no cover - exercised only without the extra
    _msgpack = None

#: The host's port unless told otherwise.
DEFAULT_PORT = 7272
#: The host's name unless told otherwise.
DEFAULT_HOST = "localhost"
#: The largest message sent or accepted, as the host's default ``--max-message``.
DEFAULT_MAX_MESSAGE = 1 << 20
#: Seconds each step (connect, send one message, receive one message) may take.
DEFAULT_TIMEOUT = 30.0

ENCODINGS = ("json", "msgpack")
HEADER = struct.Struct(">I")
_MSGPACK_MARKERS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}
_JSON_WHITESPACE = b" \t\r\n"
# The host's codes after which a kept connection is closed with the request unrun.
_CLOSED_UNRUN = ("idle_timeout", "shutting_down")
# The host's codes after which the client does not keep the connection: the host
# closes it after these, always (idle_timeout, read_timeout, shutting_down) or
# sometimes (busy at the connection limit, too_large over a request). Its FIN may
# not have arrived when the next request goes out, so a reconnect is the safe choice.
# `unauthorized` (a host that asks for tokens, answering a first message that is not
# a good `auth`) always closes it.
_CLOSING = ("idle_timeout", "read_timeout", "shutting_down", "busy", "too_large", "unauthorized")

Message = Dict[str, Any]


def check_encoding(encoding: str) -> str:
    """Validates an encoding name; msgpack needs the optional extra."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be 'json' or 'msgpack', not {encoding!r}")
    if encoding == "msgpack" and _msgpack is None:
        raise ImportError('msgpack frames need the msgpack package: pip install "tcpy[msgpack]"')
    return encoding


def check_limits(timeout: Optional[float], max_message: int) -> None:
    """Rejects a timeout or a size limit that cannot work."""
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, not {timeout!r}")
    if not isinstance(max_message, int) or max_message <= 0:
        raise ValueError(f"max_message must be a positive number of bytes, not {max_message!r}")


def check_token(token: Optional[str]) -> Optional[str]:
    """Validates a token: ``None`` (no auth) or a non-empty string."""
    if token is None:
        return None
    if not isinstance(token, str) or not token:
        raise ValueError("token must be a non-empty string or None")
    return token


def auth_request(token: str) -> Message:
    """The message a host that asks for tokens wants first on every connection."""
    return {"cmd": "auth", "token": token}


def auth_identity(answer: Mapping[str, Any]) -> Optional[str]:
    """The identity of a successful answer to :func:`auth_request`; raises the error
    a refusal stands for (:class:`~tcpy.errors.Unauthorized` for a bad token)."""
    if answer.get("success") is True:
        identity = answer.get("identity")
        return identity if isinstance(identity, str) else None
    if is_error(answer):
        raise server_error(answer)
    raise ProtocolError(f"the server answered the auth message with something else: {answer!r}")


def address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 literal bracketed."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def request(cmd: Any, params: Mapping[str, Any]) -> Message:
    """The request object for ``cmd`` with ``params``: ``{"cmd": cmd, **params}``."""
    if not isinstance(cmd, str):
        raise InvalidParams(f"cmd must be a string, not {type(cmd).__name__}")
    if "cmd" in params:
        raise InvalidParams('params cannot hold "cmd": it names the command')
    message: Message = {"cmd": cmd}
    message.update(params)
    return message


def frame(message: Mapping[str, Any], encoding: str, max_message: int) -> bytes:
    """One whole frame (header and body) for ``message``, checked against the limit
    before anything is sent."""
    if not isinstance(message, Mapping):
        raise EncodeError(f"a message must be a mapping (a dict), not {type(message).__name__}")
    try:
        if encoding == "msgpack":
            assert _msgpack is not None  # check_encoding made sure
            body = _msgpack.packb(dict(message), use_bin_type=True)
        else:
            body = json.dumps(
                message, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode("utf-8")
    except (TypeError, ValueError, OverflowError) as error:
        raise EncodeError(f"cannot encode the message: {error}") from error
    if len(body) > max_message:
        raise MessageTooLarge(len(body), max_message, "outgoing")
    return HEADER.pack(len(body)) + body


def split_frame(buffer: bytearray, max_message: int) -> Optional[bytes]:
    """Takes one whole frame's body off the front of ``buffer``, or returns ``None``
    if it holds no whole frame yet."""
    if len(buffer) < HEADER.size:
        return None
    (length,) = HEADER.unpack_from(buffer)
    if length > max_message:
        if looks_like_tls(buffer):
            raise TLSError("the server answered with TLS: it serves TLS, so connect with tls=tcpy.tls_context(...)")
        raise MessageTooLarge(length, max_message, "incoming")
    end = HEADER.size + length
    if len(buffer) < end:
        return None
    body = bytes(buffer[HEADER.size : end])
    del buffer[:end]
    return body


def looks_like_tls(data: "bytes | bytearray") -> bool:
    """Whether ``data`` starts like a TLS record (an alert or a handshake, version
    3.x), which a host serving TLS sends a plaintext client."""
    return len(data) >= 3 and data[0] in (0x15, 0x16) and data[1] == 0x03 and data[2] <= 0x04


def needed(buffer: bytearray) -> int:
    """How many more bytes the frame at the front of ``buffer`` needs (at least 1)."""
    if len(buffer) < HEADER.size:
        return HEADER.size - len(buffer)
    (length,) = HEADER.unpack_from(buffer)
    return max(1, HEADER.size + length - len(buffer))


def decode(body: bytes) -> Message:
    """The object a body holds, JSON or msgpack as it says for itself."""
    first = body.lstrip(_JSON_WHITESPACE)[:1]
    if first == b"{":
        try:
            value = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            raise ProtocolError(f"the server sent invalid JSON: {error}") from error
    elif first and first[0] in _MSGPACK_MARKERS:
        if _msgpack is None:
            raise ProtocolError('the server sent msgpack: pip install "tcpy[msgpack]" to read it')
        try:
            value = _msgpack.unpackb(body, raw=False)
        except Exception as error:  # msgpack raises several unrelated types
            raise ProtocolError(f"the server sent invalid msgpack: {error}") from error
    else:
        raise ProtocolError("the server sent a message that is neither a JSON object nor a msgpack map")
    if not isinstance(value, dict):
        raise ProtocolError("the server sent a message that is not an object")
    return value


def is_response(message: Mapping[str, Any]) -> bool:
    """Whether ``message`` ends its request: ``"success": true`` or ``"error": true``."""
    return message.get("success") is True or message.get("error") is True


def is_error(message: Mapping[str, Any]) -> bool:
    """Whether ``message`` is an error response."""
    return message.get("error") is True


def closed_unrun(response: Mapping[str, Any]) -> Optional[str]:
    """The code, if ``response`` is the host closing a kept connection without running
    the request it answers: ``idle_timeout`` or ``shutting_down``."""
    code = response.get("code")
    if is_error(response) and code in _CLOSED_UNRUN:
        return str(code)
    return None



def closes(response: Mapping[str, Any]) -> bool:
    """Whether the host may close the connection after ``response``."""
    return is_error(response) and response.get("code") in _CLOSING
