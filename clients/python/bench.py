"""A rough requests/s of `add` against a running host: sequential requests on one
connection (TCPClient), then 32 concurrent AsyncClients. Reports, asserts nothing.

    python bench.py --port 7272 --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from tcpy import AsyncClient, TCPClient  # noqa: E402


def sequential(host: str, port: int, seconds: float) -> float:
    with TCPClient(host, port) as client:
        client.execute("add", x=1, y=1)  # connect, warm up
        count, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            assert client.execute("add", x=count, y=1)["solution"] == count + 1
            count += 1
    return count / elapsed


async def concurrent(host: str, port: int, seconds: float, clients: int) -> float:
    deadline = time.perf_counter() + seconds

    async def one() -> int:
        count = 0
        async with AsyncClient(host, port) as client:
            while time.perf_counter() < deadline:
                assert (await client.execute("add", x=count, y=1))["solution"] == count + 1
                count += 1
        return count

    started = time.perf_counter()
    counts = await asyncio.gather(*(one() for _ in range(clients)))
    return sum(counts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7272)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    print(f"sequential, one connection (TCPClient): {sequential(args.host, args.port, args.seconds):,.0f} req/s")
    rate = asyncio.run(concurrent(args.host, args.port, args.seconds, args.clients))
    print(f"{args.clients} concurrent AsyncClients: {rate:,.0f} req/s")


if __name__ == "__main__":
    main()
