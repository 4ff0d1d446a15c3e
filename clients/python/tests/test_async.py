"""The asyncio client against a real host."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, TypeVar

import pytest

import tcpy
from tcpy import AsyncClient

from conftest import Host, HostFactory

T = TypeVar("T")


def run(coroutine: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, 45)

    return asyncio.run(bounded())


def client_of(host: Host, **options: Any) -> AsyncClient:
    options.setdefault("timeout", 10.0)
    return AsyncClient(host.host, host.port, **options)


def test_add(host: Host) -> None:
    async def main() -> None:
        async with client_of(host) as client:
            assert await client.execute(cmd="add", x=1, y=2) == {"solution": 3, "success": True}
            assert (await client.call("add", x=2, y=2))["solution"] == 4
            assert client.connected
        assert not client.connected

    run(main())


def test_raw_send_and_recv(host: Host) -> None:
    async def main() -> None:
        client = client_of(host)
        with pytest.raises(tcpy.NotConnected):
            await client.send({"cmd": "add"})
        await client.connect()
        await client.send({"cmd": "add", "x": 1, "y": 1})
        assert await client.recv() == {"solution": 2, "success": True}
        await client.disconnect()
        await client.disconnect()

    run(main())


def test_error_codes_are_typed(host: Host) -> None:
    async def main() -> None:
        async with client_of(host) as client:
            with pytest.raises(tcpy.UnknownCommand) as caught:
                await client.call("nope")
            assert caught.value.code == "unknown_command"
            with pytest.raises(tcpy.BadRequest):
                await client.call("add", x=1)
            with pytest.raises(tcpy.HandlerFailed):
                await client.call("misbehave", do="panic")
            with pytest.raises(tcpy.HandlerTimeout):
                await client.call("misbehave", do="loop")
            assert (await client.call("add", x=1, y=1))["solution"] == 2

    run(main())


def test_tally_conversation(host: Host) -> None:
    async def main() -> None:
        async with client_of(host) as client:
            async with await client.conversation("tally", start=10) as tally:
                await tally.send({"n": 5})
                assert await tally.recv() == {"total": 15}
                await tally.send({"n": 2})
                assert await tally.recv() == {"total": 17}
                await tally.send({"done": True})
                assert await tally.recv() == {"count": 2, "success": True, "total": 17}
            assert tally.over
            with pytest.raises(tcpy.ConversationOver):
                await tally.recv()
            assert (await client.call("add", x=1, y=2))["solution"] == 3

    run(main())


def test_close_send(host: Host) -> None:
    async def main() -> None:
        async with client_of(host) as client:
            conversation = await client.conversation("misbehave", do="recv")
            await conversation.close_send()
            assert [m async for m in conversation] == []
            assert conversation.response == {"got": None, "success": True}
            assert not client.connected

    run(main())


def test_client_timeout(host: Host) -> None:
    async def main() -> None:
        client = client_of(host, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(tcpy.TimeoutError) as caught:
            await client.execute("misbehave", do="sleep", ms=900)
        assert 0.25 < time.monotonic() - started < 0.85
        assert caught.value.operation == "recv"
        assert not client.connected
        await asyncio.sleep(0.7)
        assert (await client.call("add", x=1, y=1))["solution"] == 2
        await client.disconnect()

    run(main())


def test_cancelled_execute_disconnects(host: Host) -> None:
    async def main() -> None:
        async with client_of(host) as client:
            task = asyncio.ensure_future(client.execute("misbehave", do="sleep", ms=500))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not client.connected
            await asyncio.sleep(0.5)
            assert (await client.call("add", x=3, y=4))["solution"] == 7

    run(main())


def test_busy(tight: Host) -> None:
    async def sleep_once_free(client: AsyncClient) -> Any:
        # The other client's `add` may hold the only slot for a moment.
        for _ in range(100):
            response = await client.execute("misbehave", do="sleep", ms=1000)
            if response.get("code") != "busy":
                return response
            await asyncio.sleep(0.01)
        return response

    async def main() -> None:
        async with client_of(tight) as sleeper, client_of(tight) as other:
            sleeping = asyncio.ensure_future(sleep_once_free(sleeper))
            busy = None
            await asyncio.sleep(0.1)
            for _ in range(100):
                try:
                    await other.call("add", x=1, y=1)
                except tcpy.Busy as error:
                    busy = error
                    break
                await asyncio.sleep(0.02)
            assert busy is not None and busy.code == "busy"
            assert await sleeping == {"slept_ms": 1000, "success": True}

    run(main())


def test_idle_timeout_resend(tight: Host) -> None:
    async def main() -> None:
        async with client_of(tight) as client:
            assert (await client.call("add", x=1, y=1))["solution"] == 2
            await asyncio.sleep(1.5)
            assert (await client.call("add", x=2, y=2))["solution"] == 4

    run(main())


def test_shutting_down(hosts: HostFactory) -> None:
    doomed = hosts()

    async def main() -> None:
        async with client_of(doomed) as idle, client_of(doomed) as kept:
            # A request first, so that the host has surely accepted the connection (one
            # still in the listener's backlog is reset when the listener closes).
            assert (await idle.call("add", x=1, y=1))["solution"] == 2
            assert (await kept.call("add", x=1, y=1))["solution"] == 2
            doomed.terminate()
            last = await idle.recv()
            assert last["code"] == "shutting_down"
            with pytest.raises(tcpy.ConnectionClosed):
                await idle.recv()
            await asyncio.get_running_loop().run_in_executor(None, doomed.wait)
            with pytest.raises(tcpy.ShuttingDown):
                await kept.call("add", x=1, y=1)

    try:
        run(main())
    finally:
        doomed.stop()


def test_a_thousand_requests_on_one_connection(host: Host) -> None:
    async def main() -> None:
        async with client_of(host) as client:
            await client.connect()
            conn = client._conn
            for i in range(1000):
                assert await client.execute("add", x=i, y=1) == {"solution": i + 1, "success": True}
            assert client._conn is conn

    run(main())


def test_32_concurrent_clients(host: Host) -> None:
    async def one(k: int) -> int:
        async with client_of(host) as client:
            for i in range(25):
                assert (await client.call("add", x=k, y=i))["solution"] == k + i
            return k

    async def main() -> None:
        assert sorted(await asyncio.gather(*(one(k) for k in range(32)))) == list(range(32))

    run(main())


def test_one_client_shared_by_many_tasks(host: Host) -> None:
    async def main() -> None:
        async with client_of(host) as client:
            results = await asyncio.gather(*(client.call("add", x=i, y=i) for i in range(50)))
            assert [r["solution"] for r in results] == [2 * i for i in range(50)]

    run(main())


def test_msgpack(host: Host) -> None:
    pytest.importorskip("msgpack")

    async def main() -> None:
        async with client_of(host, encoding="msgpack") as client:
            assert await client.execute("add", x=1, y=2) == {"solution": 3, "success": True}

    run(main())
