"""The blocking TCPClient against a real host."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any, Dict, List

import pytest

import tcpy
from tcpy import TCPClient

from conftest import Host, HostFactory


def client_of(host: Host, **options: Any) -> TCPClient:
    options.setdefault("timeout", 10.0)
    return TCPClient(host.host, host.port, **options)


# -- add, the 2014 API ----------------------------------------------------------------


def test_execute_add_returns_the_response_dict(host: Host) -> None:
    with client_of(host) as client:
        response = client.execute(cmd="add", x=1, y=2)
    assert response == {"solution": 3, "success": True}
    # Keys as the host sends them (sorted), so it prints as the 2014 docs show.
    assert str(response) == "{'solution': 3, 'success': True}"


def test_execute_takes_cmd_positionally_too(host: Host) -> None:
    with client_of(host) as client:
        assert client.execute("add", x=40, y=2)["solution"] == 42


def test_connect_send_recv_disconnect_speak_the_raw_protocol(host: Host) -> None:
    client = client_of(host)
    client.connect()
    assert client.connected
    client.send({"cmd": "add", "x": 20, "y": 22})
    assert client.recv() == {"solution": 42, "success": True}
    client.disconnect()
    assert not client.connected
    client.disconnect()  # twice is fine
    with pytest.raises(tcpy.NotConnected):
        client.send({"cmd": "add", "x": 1, "y": 1})
    with pytest.raises(tcpy.NotConnected):
        client.recv()


def test_execute_reconnects_after_disconnect(host: Host) -> None:
    client = client_of(host)
    assert client.execute("add", x=1, y=1)["solution"] == 2
    client.disconnect()
    assert client.execute("add", x=2, y=2)["solution"] == 4
    assert client.connected
    client.disconnect()


def test_msgpack_frames(host: Host) -> None:
    pytest.importorskip("msgpack")
    with client_of(host, encoding="msgpack") as client:
        assert client.execute("add", x=1, y=2) == {"solution": 3, "success": True}
        with pytest.raises(tcpy.UnknownCommand):
            client.call("nope")
        with client.conversation("tally", start=1) as tally:
            tally.send({"n": 2})
            assert tally.recv() == {"total": 3}
            tally.send({"done": True})
            assert tally.recv() == {"count": 1, "success": True, "total": 3}


def test_msgpack_body_is_really_msgpack(host: Host) -> None:
    msgpack = pytest.importorskip("msgpack")
    with socket.create_connection((host.host, host.port), timeout=10) as sock:
        body = msgpack.packb({"cmd": "add", "x": 2, "y": 3})
        sock.sendall(struct.pack(">I", len(body)) + body)
        reply = _recv_frame(sock)
    assert msgpack.unpackb(reply) == {"solution": 5, "success": True}
    assert tcpy._wire.decode(reply) == {"solution": 5, "success": True}


def test_unicode_and_nested_params_round_trip(host: Host) -> None:
    with client_of(host) as client:
        params = {"text": "héllo ✓ 🎉", "nested": {"list": [1, 2.5, None, True]}}
        response = client.call("echo", **params)
    for key, value in params.items():
        assert response[key] == value, response


# -- error responses: execute returns them, call raises them -----------------------------


def test_unknown_command(host: Host) -> None:
    with client_of(host) as client:
        response = client.execute("no_such_command")
        assert response["error"] is True and response["code"] == "unknown_command"
        with pytest.raises(tcpy.UnknownCommand) as caught:
            client.call("no_such_command")
        assert caught.value.code == "unknown_command"
        assert "no_such_command" in caught.value.message
        assert caught.value.response["error"] is True
        assert isinstance(caught.value, tcpy.ServerError)
        # The connection stays open and in step.
        conn = client._conn
        assert client.call("add", x=1, y=1)["solution"] == 2
        assert client._conn is conn


def test_bad_request_from_the_handler_and_from_the_host(host: Host) -> None:
    with client_of(host) as client:
        with pytest.raises(tcpy.BadRequest) as caught:
            client.call("add", x=1)  # no y: the SDK says bad_request
        assert "y" in caught.value.message
        client.send({"x": 1})  # no cmd at all: the host says bad_request
        response = client.recv()
        assert response["code"] == "bad_request" and response["error"] is True
        assert client.call("add", x=1, y=2)["solution"] == 3


def test_handler_failed(host: Host) -> None:
    with client_of(host) as client:
        for mode in ("panic", "unreachable", "not_object", "no_marker"):
            with pytest.raises(tcpy.HandlerFailed) as caught:
                client.call("misbehave", do=mode)
            assert caught.value.code == "handler_failed", mode
        assert client.call("add", x=2, y=2)["solution"] == 4


def test_handler_timeout(host: Host) -> None:
    started = time.monotonic()
    with client_of(host) as client:
        with pytest.raises(tcpy.HandlerTimeout) as caught:
            client.call("misbehave", do="loop")
        assert caught.value.code == "timeout"
        assert time.monotonic() - started < 8
        assert client.call("add", x=3, y=3)["solution"] == 6


def test_too_large_response_keeps_the_connection(host: Host) -> None:
    with client_of(host, max_message=4 << 20) as client:
        with pytest.raises(tcpy.TooLarge):
            client.call("misbehave", do="huge", mib=2)
        assert client.call("add", x=1, y=2)["solution"] == 3


def test_too_large_request_closes_the_connection(tight: Host) -> None:
    with client_of(tight, max_message=1 << 20) as client:
        with pytest.raises(tcpy.TooLarge) as caught:
            client.call("echo", pad="x" * 100_000)
        assert "65536" in caught.value.message
        # The host closed the connection; the client notices before sending the next
        # request, and connects again.
        time.sleep(0.1)
        assert client.call("add", x=1, y=2)["solution"] == 3


def test_local_limit_refuses_to_send_a_message_too_large(host: Host) -> None:
    with client_of(host, max_message=1000) as client:
        with pytest.raises(tcpy.MessageTooLarge):
            client.execute("echo", pad="x" * 2000)
        assert not client.connected  # nothing was sent, nothing was opened
        # A response over the client's own limit: it disconnects. echo answers its
        # params with `"success":true` instead of `"cmd":"echo"`: 2 bytes more.
        pad = "x" * (1000 - len('{"cmd":"echo","pad":""}'))
        assert len(tcpy._wire.frame({"cmd": "echo", "pad": pad}, "json", 1000)) == 1004
        with pytest.raises(tcpy.MessageTooLarge) as caught:
            client.execute("echo", pad=pad)
        assert caught.value.size == 1002
        assert not client.connected


def test_busy_when_the_pool_is_full(tight: Host) -> None:
    results: Dict[str, Any] = {}
    started = threading.Event()

    def sleeper() -> None:
        with client_of(tight) as client:
            started.set()
            # The other client's `add` may hold the only slot for a moment.
            for _ in range(100):
                response = client.execute("misbehave", do="sleep", ms=1500)
                if response.get("code") != "busy":
                    break
                time.sleep(0.01)
            results["sleep"] = response

    thread = threading.Thread(target=sleeper)
    thread.start()
    try:
        assert started.wait(5)
        time.sleep(0.1)
        deadline = time.monotonic() + 5
        busy = None
        with client_of(tight) as client:
            while time.monotonic() < deadline:
                response = client.execute("add", x=1, y=1)
                if response.get("code") == "busy":
                    busy = response
                    break
                time.sleep(0.02)
            assert busy is not None, "never got busy with the only slot taken"
            assert busy["error"] is True and busy["message"]
            with pytest.raises(tcpy.Busy) as caught:
                raise tcpy.server_error(busy)
            assert caught.value.not_run
            thread.join(10)
            assert results["sleep"] == {"slept_ms": 1500, "success": True}
            # After busy the next request runs (on a new connection: see _wire.closes).
            assert client.call("add", x=1, y=1)["solution"] == 2
    finally:
        thread.join(10)


def test_busy_when_connections_are_full(hosts: HostFactory) -> None:
    limited = hosts("--max-connections", "1")
    try:
        with client_of(limited) as first, client_of(limited) as second:
            assert first.call("add", x=1, y=1)["solution"] == 2
            with pytest.raises(tcpy.Busy):
                second.call("add", x=1, y=1)
            first.disconnect()
            deadline = time.monotonic() + 5
            while True:
                response = second.execute("add", x=2, y=2)
                if response.get("success") or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert response == {"solution": 4, "success": True}
    finally:
        limited.stop()


def test_idle_timeout_is_the_last_word_and_execute_resends(tight: Host) -> None:
    with client_of(tight) as client:
        client.connect()
        started = time.monotonic()
        last = client.recv()  # unasked
        assert last["code"] == "idle_timeout" and last["error"] is True
        assert 0.5 < time.monotonic() - started < 5
        with pytest.raises(tcpy.ConnectionClosed):
            client.recv()
        assert not client.connected

    with client_of(tight) as client:
        assert client.call("add", x=1, y=1)["solution"] == 2
        first = client._conn
        time.sleep(1.5)  # the host says idle_timeout and closes the kept connection
        assert client.call("add", x=2, y=3)["solution"] == 5
        assert client._conn is not first


def test_read_timeout_on_a_message_cut_short(tight: Host) -> None:
    with client_of(tight) as client:
        client.connect()
        sock = client.socket
        assert sock is not None
        sock.sendall(struct.pack(">I", 50) + b'{"cmd":')  # and nothing more
        response = client.recv()
        assert response["code"] == "read_timeout"
        with pytest.raises(tcpy.ReadTimeout):
            raise tcpy.server_error(response)
        with pytest.raises(tcpy.ConnectionClosed):
            client.recv()


def test_shutting_down(hosts: HostFactory) -> None:
    doomed = hosts()
    idle = client_of(doomed)
    kept = client_of(doomed)
    try:
        # A request first, so that the host has surely accepted the connection (one
        # still in the listener's backlog is reset when the listener closes).
        assert idle.call("add", x=1, y=1)["solution"] == 2
        assert kept.call("add", x=1, y=1)["solution"] == 2
        doomed.terminate()
        last = idle.recv()  # an idle connection's unasked last word
        assert last["code"] == "shutting_down" and last["error"] is True
        assert doomed.wait() is not None, "the host did not exit"
        # On the kept connection the answer is shutting_down; the client tries once
        # more on a new connection, which is refused, so that answer stands.
        response = kept.execute("add", x=1, y=1)
        assert response["code"] == "shutting_down"
        assert not kept.connected
        with pytest.raises(tcpy.ConnectError):
            kept.call("add", x=1, y=1)
    finally:
        idle.disconnect()
        kept.disconnect()
        doomed.stop()


# -- conversations ----------------------------------------------------------------------


def test_tally_conversation(host: Host) -> None:
    with client_of(host) as client:
        conn_before = None
        with client.conversation("tally", start=10) as tally:
            conn_before = client._conn
            tally.send({"n": 5})
            assert tally.recv() == {"total": 15}
            assert not tally.over
            tally.send({"n": 2})
            assert tally.recv() == {"total": 17}
            tally.send({"n": "seven"})
            assert "warning" in tally.recv()
            tally.send({"done": True})
            response = tally.recv()
        assert response == {"count": 2, "success": True, "total": 17}
        assert tally.over and tally.response == response
        with pytest.raises(tcpy.ConversationOver):
            tally.send({"n": 1})
        with pytest.raises(tcpy.ConversationOver):
            tally.recv()
        # The same connection carries the next request.
        assert client.call("add", x=1, y=2)["solution"] == 3
        assert client._conn is conn_before


def test_tally_with_the_2014_send_and_recv(host: Host) -> None:
    client = client_of(host)
    client.connect()
    client.send({"cmd": "tally"})
    totals = []
    for n in range(1, 6):
        client.send({"n": n})
        totals.append(client.recv()["total"])
    client.send({"done": True})
    assert totals == [1, 3, 6, 10, 15]
    assert client.recv() == {"count": 5, "success": True, "total": 15}
    client.disconnect()


def test_close_send_ends_the_conversation(host: Host) -> None:
    with client_of(host) as client:
        tally = client.conversation("tally", start=1)
        tally.send({"n": 1})
        tally.close_send()
        with pytest.raises(tcpy.SendClosed):
            tally.send({"n": 1})
        assert tally.recv() == {"total": 2}
        assert tally.wait() == {"count": 1, "success": True, "total": 2}
        assert not client.connected  # the sending side is gone: no more requests on it
        assert client.call("add", x=1, y=1)["solution"] == 2


def test_execute_refuses_a_conversational_handler(host: Host) -> None:
    with client_of(host) as client:
        with pytest.raises(tcpy.UnexpectedMessage) as caught:
            client.execute("misbehave", do="plant", secret=0)
        assert caught.value.received == {"planted": True}
        assert not client.connected
        assert client.call("add", x=1, y=1)["solution"] == 2


def test_requests_wait_for_the_conversation(host: Host) -> None:
    with client_of(host) as client:
        tally = client.conversation("tally")
        with pytest.raises(tcpy.TCPError, match="conversation is in progress"):
            client.execute("add", x=1, y=1)
        tally.send({"done": True})
        assert tally.recv()["success"] is True
        assert client.call("add", x=1, y=1)["solution"] == 2


def test_leaving_a_conversation_early_disconnects(host: Host) -> None:
    with client_of(host) as client:
        with client.conversation("tally") as tally:
            tally.send({"n": 3})
            assert tally.recv() == {"total": 3}
        assert tally.over and not client.connected
        assert client.call("add", x=1, y=1)["solution"] == 2


def test_iterating_a_conversation_yields_messages_until_the_response(host: Host) -> None:
    with client_of(host) as client:
        conversation = client.conversation("misbehave", do="recv")
        conversation.send({"hello": "there"})
        assert list(conversation) == []
        assert conversation.response == {"got": {"hello": "there"}, "success": True}


# -- timeouts and closed connections --------------------------------------------------


def test_client_timeout_bounds_the_wait(host: Host) -> None:
    client = client_of(host, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(tcpy.TimeoutError) as caught:
        client.execute("misbehave", do="sleep", ms=900)
    elapsed = time.monotonic() - started
    assert 0.25 < elapsed < 0.85, elapsed
    assert caught.value.operation == "recv" and caught.value.after == 0.3
    assert isinstance(caught.value, TimeoutError)  # the builtin one, too
    # The request was cut short: the client has disconnected, so no stale answer
    # arrives as the next one's.
    assert not client.connected
    time.sleep(0.7)
    assert client.execute("add", x=1, y=1) == {"solution": 2, "success": True}
    client.disconnect()


def test_recv_timeout_loses_nothing(host: Host) -> None:
    with client_of(host, timeout=0.2) as client:
        tally = client.conversation("misbehave", do="sleep", ms=500)
        with pytest.raises(tcpy.TimeoutError):
            tally.recv()
        assert not tally.over and client.connected
        client.timeout = 5.0
        assert tally.recv() == {"slept_ms": 500, "success": True}


def test_connect_refused_names_the_address() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = TCPClient("127.0.0.1", port, timeout=2)
    with pytest.raises(tcpy.ConnectError) as caught:
        client.execute("add", x=1, y=2)
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert not client.connected


def test_host_killed_mid_request_is_a_closed_connection(hosts: HostFactory) -> None:
    victim = hosts()
    try:
        with client_of(victim) as client:
            assert client.call("add", x=1, y=1)["solution"] == 2
            killer = threading.Timer(0.3, victim.kill)
            killer.start()
            with pytest.raises((tcpy.ConnectionClosed, tcpy.ConnectionFailed)):
                client.execute("misbehave", do="sleep", ms=3000)
            killer.join()
            assert not client.connected
    finally:
        victim.stop()


def test_invalid_arguments_are_refused_before_sending(host: Host) -> None:
    client = client_of(host)
    with pytest.raises(tcpy.InvalidParams):
        client.execute(42)  # type: ignore[arg-type]
    with pytest.raises(tcpy.EncodeError):
        client.execute("echo", value=float("nan"))
    with pytest.raises(tcpy.EncodeError):
        client.execute("echo", value=object())
    assert not client.connected
    with pytest.raises(ValueError):
        TCPClient(timeout=0)
    with pytest.raises(ValueError):
        TCPClient(encoding="xml")


# -- volume -------------------------------------------------------------------------


def test_a_thousand_requests_on_one_connection(host: Host) -> None:
    with client_of(host) as client:
        client.connect()
        conn = client._conn
        for i in range(1000):
            assert client.execute("add", x=i, y=i) == {"solution": 2 * i, "success": True}
        assert client._conn is conn


def test_32_concurrent_clients(host: Host) -> None:
    errors: List[BaseException] = []
    counts: List[int] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        try:
            with client_of(host) as client:
                done = 0
                for i in range(25):
                    assert client.call("add", x=k, y=i)["solution"] == k + i
                    done += 1
            with lock:
                counts.append(done)
        except BaseException as error:  # reported below
            with lock:
                errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors[:3]
    assert counts == [25] * 32


def _recv_frame(sock: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "closed"
            data += chunk
        return data

    (length,) = struct.unpack(">I", exactly(4))
    return exactly(length)
