"""forge's pooled HTTP client keeps every connection it opens, so bursts of concurrent calls reuse them.

With ``max_connections`` = N the pool used to keep only 100 idle connections:
each burst of N concurrent streams closed N - 100 of them and the next burst
reconnected that many at once. At 1,000 streams on a busy event loop those
reconnects overran ``connect_timeout`` (``ProviderTimeout: could not connect
within 5s``). Checked against the raw-bytes server by counting the TCP
connections it accepts.
"""

from __future__ import annotations

import asyncio

import forge
from forge.config import ProviderConfig
from forge.providers._common import make_httpx_kwargs
from tests.hostile import HostileServer
from tests.test_streams_hostile import VENDORS

STREAMS = 120  # more than the 100 idle connections the pool used to keep


async def _burst(reg: forge.Registry, ref: str) -> None:
    """``STREAMS`` streams open at once: each holds its connection until all have their first text."""
    all_open = asyncio.Event()
    opened = 0

    async def one() -> str:
        nonlocal opened
        async with reg.stream(ref, "hi") as stream:
            it = aiter(stream)
            first = await anext(it)
            opened += 1
            if opened == STREAMS:
                all_open.set()
            await all_open.wait()
            return first + "".join([text async for text in it])

    texts = await asyncio.gather(*(one() for _ in range(STREAMS)))
    assert set(texts) == {"Hello there, how are you doing today?"}


async def test_a_second_burst_of_concurrent_streams_opens_no_new_connection() -> None:
    vendor = VENDORS["openai"]
    async with HostileServer() as srv:
        srv.push(*(vendor.reply() for _ in range(2 * STREAMS)))
        config = vendor.config(srv)
        config["providers"][vendor.provider]["max_connections"] = STREAMS  # type: ignore[index]
        async with forge.Registry(config=config) as reg:
            await _burst(reg, vendor.model)
            assert srv.connections == STREAMS
            await _burst(reg, vendor.model)
            assert srv.connections == STREAMS, (
                f"the second burst opened {srv.connections - STREAMS} new connections: "
                "the pool closed connections it had open"
            )


def test_the_legacy_httpx_pool_keeps_every_connection_too() -> None:
    # Ollama's client builds its own httpx pool from these (kept idle connections
    # expire after httpx's 5 s keep-alive, which makes a burst test of it load-dependent).
    limits = make_httpx_kwargs(ProviderConfig("ollama", max_connections=1000))["limits"]
    assert limits.max_connections == limits.max_keepalive_connections == 1000  # type: ignore[attr-defined]
