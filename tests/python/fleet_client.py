"""Read-only calls through a load balancer for SECONDS, with the official Python MCP SDK.

    fleet_client.py URL SECONDS [legacy|modern]

Alternates tools/list and alpha__echo on one session (legacy: `initialize` and an
Mcp-Session-Id; modern: `server/discover`, protocol 2026-07-28, no session); a call that fails
(its replica was killed under it) is retried once on a new connection, after a quarter of a
second. Prints one JSON line: calls, retried, failed (after the retry), slowest (seconds).
Used by the fleet chaos test.
"""

import asyncio
import json
import sys
import time

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

DEADLINE = 10.0
RETRY_PAUSE = 0.25


async def one(session, k):
    if k % 2 == 0:
        tools = (await session.list_tools()).tools
        assert tools, "no tools"
    else:
        result = await session.call_tool("alpha__echo", {"text": f"call {k}"})
        assert not result.is_error, result


async def handshake(session, mode):
    if mode == "modern":
        await session.discover()
        assert session.protocol_version == "2026-07-28", session.protocol_version
    else:
        await session.initialize()


async def run(url, seconds, mode):
    stats = {"calls": 0, "retried": 0, "failed": [], "slowest": 0.0}
    end = time.monotonic() + seconds
    k = 0
    pending = None  # (call index, attempts made)
    while time.monotonic() < end:
        try:
            async with streamable_http_client(url) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    await asyncio.wait_for(handshake(session, mode), DEADLINE)
                    while time.monotonic() < end:
                        if pending is None:
                            k += 1
                            stats["calls"] += 1
                            pending = (k, 0)
                        started = time.monotonic()
                        await asyncio.wait_for(one(session, pending[0]), DEADLINE)
                        stats["slowest"] = max(stats["slowest"], time.monotonic() - started)
                        pending = None
        except BaseException as e:  # anyio raises exception groups
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            if pending is None:
                continue
            index, attempts = pending
            if attempts >= 1:
                if len(stats["failed"]) < 5:
                    stats["failed"].append(f"call {index}: {e!r}"[:300])
                stats["failures"] = stats.get("failures", 0) + 1
                pending = None
            else:
                stats["retried"] += 1
                pending = (index, attempts + 1)
                # As clients retry: after a short pause (the balancer takes the dead replica
                # out on the first error it sees; an immediate retry can race that).
                await asyncio.sleep(RETRY_PAUSE)
    print(json.dumps(stats))


asyncio.run(run(sys.argv[1], float(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "legacy"))
