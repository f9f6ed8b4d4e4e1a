"""Keeps one official Python SDK client session open across live reloads of Warden's config.

    reload_check.py URL CONFIG STEP1 STEP2

CONFIG is the file Warden watches; STEP1 and STEP2 are files whose text replaces it in turn.
STEP1 adds server `b` (the tool list changes: a `tools/list_changed` must arrive and `b__echo`
must be callable in the same session); STEP2 changes only `a`'s policy (no list changes: no
notification may arrive). Prints one JSON line with what it saw; exits non-zero on a mismatch.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client


def replace(config, step):
    with open(step) as f:
        text = f.read()
    tmp = config + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, config)


async def main(url, config, step1, step2):
    changed = []

    async def on_message(message):
        # A notification comes wrapped (`ServerNotification.root`) or bare, by SDK version.
        inner = getattr(message, "root", message) if not isinstance(message, Exception) else None
        if isinstance(inner, types.ToolListChangedNotification):
            changed.append(1)

    async with streamable_http_client(url) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write, message_handler=on_message) as session:
            await session.initialize()
            for _ in range(200):
                tools = [t.name for t in (await session.list_tools()).tools]
                if "a__echo" in tools:
                    break
                await asyncio.sleep(0.1)
            assert "a__echo" in tools, tools
            await asyncio.sleep(1)
            before = len(changed)

            replace(config, step1)
            for _ in range(300):
                if len(changed) > before:
                    tools = [t.name for t in (await session.list_tools()).tools]
                    if "b__echo" in tools:
                        break
                await asyncio.sleep(0.1)
            assert len(changed) > before, "no tools/list_changed after a server was added"
            assert "b__echo" in tools, tools
            result = await session.call_tool("b__echo", {"text": "after reload"})
            text = "".join(c.text for c in result.content if getattr(c, "type", "") == "text")
            assert text == "after reload", result
            await asyncio.sleep(1)
            after_add = len(changed)

            replace(config, step2)
            await asyncio.sleep(3)
            assert len(changed) == after_add, f"{len(changed) - after_add} list_changed for a policy change"
            result = await session.call_tool("a__echo", {"text": "still here"})
            assert not result.is_error, result
            print(json.dumps({"added_notified": after_add - before, "policy_notified": len(changed) - after_add, "echo": text}))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
