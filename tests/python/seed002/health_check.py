#!/usr/bin/env python3
# Verbatim from the mission's seed 002 ("Monitoring Implementation", 1. Basic Health Check Script), not edited:
# tests/python/seed002/run_seed.py runs it against Warden (crates/warden/tests/seeds.rs).
"""health_check.py - Monitor MCP server health"""

import asyncio
import json
from datetime import datetime
from mcp import Client

async def check_health(server_url: str):
    """Perform health check and return status."""
    client = Client(server_url)

    try:
        # Request health resource
        response = await client.get_resource("health://status")
        health_data = json.loads(response)

        # Parse status
        status = health_data["status"]
        db_status = health_data["database_status"]
        pool_util = health_data["connection_pool"]["pool_utilization"]

        # Format output
        print(f"[{datetime.now().isoformat()}] Health Check")
        print(f"  Status: {status.upper()}")
        print(f"  Database: {db_status}")
        print(f"  Pool Utilization: {pool_util:.1%}")

        # Return status code
        return 0 if status == "healthy" else 1

    except Exception as e:
        print(f"ERROR: Health check failed - {e}")
        return 2

if __name__ == "__main__":
    import sys
    server = sys.argv[1] if len(sys.argv) > 1 else "http://localhost:8000"
    exit_code = asyncio.run(check_health(server))
    sys.exit(exit_code)
