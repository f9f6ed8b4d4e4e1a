"""Connects the official Python MCP SDK client to Warden and exercises it.

    client_check.py http URL
    client_check.py stdio WARDEN CONFIG DB

Lists tools, expects a__echo and b__echo, calls a__echo and checks the answer, calls a tool of
a dead server (when DEAD is given as a third http argument) and checks the clear error. When
server-everything is behind Warden as `everything`, also: a prompt, a resource, a call with
progress, and a tool that asks this client to sample (answered by the callback below).
Prints one JSON line with what it saw; exits non-zero on any mismatch.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


async def sample(context, params):
    from mcp import types

    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="sampled by python"),
        model="test-model",
    )


async def everything(session, seen):
    prompts = [p.name for p in (await session.list_prompts()).prompts]
    assert "everything__simple-prompt" in prompts, prompts
    got = await session.get_prompt("everything__simple-prompt")
    assert got.messages, got
    # Warden's own health:// resource sits next to the servers'.
    resources = [r for r in (await session.list_resources()).resources if not str(r.uri).startswith("health://")]
    assert resources and all(r.name.startswith("everything__") for r in resources), resources
    read = await session.read_resource(resources[0].uri)
    assert read.contents, read
    progress = []

    async def on_progress(value, total, message):
        progress.append(value)

    result = await session.call_tool(
        "everything__trigger-long-running-operation", {"duration": 1, "steps": 2}, progress_callback=on_progress
    )
    assert not result.is_error, result
    for _ in range(50):
        if len(progress) >= 2:
            break
        await asyncio.sleep(0.1)
    assert progress == [1, 2], progress
    result = await session.call_tool("everything__trigger-sampling-request", {"prompt": "hi", "maxTokens": 5})
    text = "".join(c.text for c in result.content if getattr(c, "type", "") == "text")
    assert "sampled by python" in text, text
    seen.update({"prompts": len(prompts), "resources": len(resources), "progress": progress, "sampled": True})


async def exercise(read, write, dead):
    async with ClientSession(read, write, sampling_callback=sample) as session:
        init = await session.initialize()
        # Tools appear as servers become routable (announced with list_changed): wait for them.
        for _ in range(200):
            tools = sorted(t.name for t in (await session.list_tools()).tools)
            if "a__echo" in tools and "b__echo" in tools:
                break
            await asyncio.sleep(0.1)
        assert "a__echo" in tools and "b__echo" in tools, tools
        result = await session.call_tool("a__echo", {"text": "from python"})
        text = "".join(c.text for c in result.content if getattr(c, "type", "") == "text")
        assert text == "from python", result
        seen = {"server": init.server_info.name, "protocol": init.protocol_version, "tools": len(tools), "echo": text}
        if any(t.startswith("everything__") for t in tools):
            await everything(session, seen)
        if dead:
            try:
                await session.call_tool(f"{dead}__echo", {"text": "x"})
                raise AssertionError("a dead server's tool answered")
            except Exception as e:  # the SDK raises McpError carrying the JSON-RPC error
                error = getattr(e, "error", None)
                assert error is not None and error.code == -32001, repr(e)
                assert error.data["server"] == dead, error.data
                seen["dead_error"] = error.code
        return seen


async def main():
    mode = sys.argv[1]
    if mode == "http":
        dead = sys.argv[3] if len(sys.argv) > 3 else None
        async with streamable_http_client(sys.argv[2]) as streams:
            seen = await exercise(streams[0], streams[1], dead)
    else:
        warden, config, db = sys.argv[2:5]
        logs = os.path.join(os.path.dirname(db), "logs")
        params = StdioServerParameters(command=warden, args=["run", "--stdio", "--listen", "127.0.0.1:0", "--db", db, "--log-dir", logs, "-c", config])
        async with stdio_client(params) as streams:
            seen = await exercise(streams[0], streams[1], None)
    print(json.dumps(seen))


asyncio.run(asyncio.wait_for(main(), 60))
