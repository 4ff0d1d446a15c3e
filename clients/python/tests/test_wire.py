"""The wire format, without a host: frames, bodies, requests and error types."""

from __future__ import annotations

import struct

import pytest

import tcpy
from tcpy import _wire


def test_frames_are_a_big_endian_length_then_the_body() -> None:
    frame = _wire.frame({"cmd": "add", "x": 1}, "json", 1 << 20)
    body = b'{"cmd":"add","x":1}'
    assert frame == struct.pack(">I", len(body)) + body


def test_split_frame_waits_for_whole_frames() -> None:
    frame = _wire.frame({"a": 1}, "json", 100)
    buffer = bytearray(frame[:3])
    assert _wire.split_frame(buffer, 100) is None
    assert _wire.needed(buffer) == 1
    buffer += frame[3:] + frame[:5]
    assert _wire.split_frame(buffer, 100) == b'{"a":1}'
    assert buffer == bytearray(frame[:5])


def test_an_announced_frame_over_the_limit_is_refused() -> None:
    buffer = bytearray(struct.pack(">I", 101))
    with pytest.raises(tcpy.MessageTooLarge):
        _wire.split_frame(buffer, 100)
    with pytest.raises(tcpy.MessageTooLarge):
        _wire.frame({"pad": "x" * 100}, "json", 100)


def test_bodies_say_their_encoding() -> None:
    assert _wire.decode(b'  {"a": [1, 2]}') == {"a": [1, 2]}
    msgpack = pytest.importorskip("msgpack")
    assert _wire.decode(msgpack.packb({"a": 1})) == {"a": 1}
    with pytest.raises(tcpy.ProtocolError):
        _wire.decode(b"[1, 2]")
    with pytest.raises(tcpy.ProtocolError):
        _wire.decode(b'{"a": ')
    with pytest.raises(tcpy.ProtocolError):
        _wire.decode(b"")


def test_requests_put_cmd_beside_the_params() -> None:
    assert _wire.request("add", {"x": 1}) == {"cmd": "add", "x": 1}
    with pytest.raises(tcpy.InvalidParams):
        _wire.request("add", {"cmd": "other"})
    with pytest.raises(tcpy.InvalidParams):
        _wire.request(None, {})


def test_responses_are_marked() -> None:
    assert _wire.is_response({"success": True})
    assert _wire.is_response({"error": True, "code": "busy"})
    assert not _wire.is_response({"total": 3})
    assert not _wire.is_response({"success": 1})
    assert _wire.closed_unrun({"error": True, "code": "idle_timeout"}) == "idle_timeout"
    assert _wire.closed_unrun({"error": True, "code": "busy"}) is None


def test_server_errors_are_typed_by_code() -> None:
    cases = {
        "bad_request": tcpy.BadRequest,
        "unknown_command": tcpy.UnknownCommand,
        "too_large": tcpy.TooLarge,
        "timeout": tcpy.HandlerTimeout,
        "handler_failed": tcpy.HandlerFailed,
        "busy": tcpy.Busy,
        "idle_timeout": tcpy.IdleTimeout,
        "read_timeout": tcpy.ReadTimeout,
        "shutting_down": tcpy.ShuttingDown,
    }
    for code, cls in cases.items():
        error = tcpy.server_error({"error": True, "code": code, "message": "m"})
        assert type(error) is cls and error.code == code and error.message == "m"
        assert str(error) == f"error response ({code}): m"
    custom = tcpy.server_error({"error": True, "code": "not_found", "why": 7})
    assert type(custom) is tcpy.ServerError
    assert custom.message == '{"error":true,"code":"not_found","why":7}'


def test_timeouts_are_builtin_timeouts_too() -> None:
    error = tcpy.TimeoutError("connect", 1.5, "localhost:7272")
    assert isinstance(error, TimeoutError) and isinstance(error, tcpy.TCPError)
    assert str(error) == "timed out after 1.5s connecting to localhost:7272"
