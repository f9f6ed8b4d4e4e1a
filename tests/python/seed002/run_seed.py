"""Runs seed 002's health-check script and Prometheus exporter, unchanged, against Warden.

    run_seed.py check URL    runs health_check.py as its own __main__ with URL; exits with its code
    run_seed.py export URL   runs the exporter fragment, calls its update_metrics() once, scrapes
                             the exporter's own HTTP endpoint and prints what it serves

The seed was written against an MCP client API the official SDK does not have: `from mcp
import Client`, `Client(url)`, `await client.get_resource(uri)` returning the resource's text.
`Client` below is that API, a thin adapter over the SDK's Streamable HTTP client (Warden's
endpoint is `URL/mcp`), put into the `mcp` package before the seed's code runs. Two more
deviations, both outside the seed's code: the exporter fragment calls `check_health(...)`
expecting the health dict (the seed's own check_health returns an exit code), so it is given one
that returns the dict read through the same Client; and its `start_http_server(9090)` binds a
free loopback port instead of 9090 (tests never take fixed ports). The seed's example address
`http://localhost:8000` is mapped to URL.
"""

import asyncio
import json
import os
import runpy
import socket
import sys
import urllib.request

import mcp
import prometheus_client
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = sys.argv[2]


def _endpoint(url):
    url = url.rstrip("/").replace("http://localhost:8000", TARGET.rstrip("/"))
    return url if url.endswith("/mcp") else url + "/mcp"


class Client:
    """The client API seed 002 assumes, over the official SDK."""

    def __init__(self, url):
        self.url = _endpoint(url)

    async def get_resource(self, uri):
        async with streamable_http_client(self.url) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                result = await session.read_resource(uri)
                return result.contents[0].text


mcp.Client = Client


def check():
    sys.argv = ["health_check.py", TARGET]
    try:
        runpy.run_path(os.path.join(HERE, "health_check.py"), run_name="__main__")
    except SystemExit as e:
        sys.exit(e.code)


def export():
    bound = {}
    real = prometheus_client.start_http_server

    def start_http_server(port, addr="127.0.0.1", **kw):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free = s.getsockname()[1]
        bound["port"] = free
        return real(free, addr="127.0.0.1", **kw)

    async def check_health(url):
        return json.loads(await Client(url).get_resource("health://status"))

    prometheus_client.start_http_server = start_http_server
    ns = {"check_health": check_health}
    code = open(os.path.join(HERE, "exporter_fragment.py")).read()
    exec(compile(code, "exporter_fragment.py", "exec"), ns)
    asyncio.run(ns["update_metrics"]())
    with urllib.request.urlopen(f"http://127.0.0.1:{bound['port']}/metrics", timeout=10) as r:
        print(r.read().decode())


{"check": check, "export": export}[sys.argv[1]]()
