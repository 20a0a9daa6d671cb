"""The slow-link proxy of benchmarks/slowlink.py forwards at its rate and delay, and the benchmark's figures."""

import asyncio
import time

import pytest

from benchmarks.slowlink import SlowLink, percentile_ms


async def test_the_proxy_delivers_at_its_rate_after_half_its_round_trip() -> None:
    received = asyncio.Queue[float]()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        total = 0
        while chunk := await reader.read(65536):
            total += len(chunk)
            if total == 1:
                received.put_nowait(time.monotonic())  # the first byte
        received.put_nowait(time.monotonic())  # everything, then EOF
        writer.close()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    try:
        async with SlowLink(("127.0.0.1", server.sockets[0].getsockname()[1]), rate_bps=1e6, rtt_s=0.2) as link:
            _, writer = await asyncio.open_connection("127.0.0.1", link.port)
            started = time.monotonic()
            writer.write(b"x")
            await writer.drain()
            first = await received.get() - started
            writer.write(bytes(50_000))  # 0.4 s at 1 Mbit/s
            writer.write_eof()
            last = await received.get() - started
            writer.close()
    finally:
        server.close()
        await server.wait_closed()
    assert first == pytest.approx(0.1, abs=0.03)  # one way: half the round trip
    assert last - first == pytest.approx(50_000 * 8 / 1e6 + 0.1, abs=0.08)  # sent once the first byte was in


def test_percentiles_count_unanswered_messages_as_infinitely_late() -> None:
    lags = [0.1] * 98 + [0.2, 0.3]
    assert percentile_ms(lags, 0, 50) == 100.0 and percentile_ms(lags, 0, 99) == 200.0
    assert percentile_ms(lags, 2, 99) is None  # two of 102 never answered: the p99 is one of them
    assert percentile_ms([], 0, 50) is None
