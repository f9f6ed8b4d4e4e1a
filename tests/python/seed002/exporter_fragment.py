# Verbatim from the mission's seed 002 ("Monitoring Implementation", 3. Prometheus Exporter), not edited:
# tests/python/seed002/run_seed.py runs it against Warden (crates/warden/tests/seeds.rs).
from prometheus_client import Gauge, start_http_server

# Define metrics
health_status = Gauge('mcp_health_status',
                     'Health status (1=healthy, 0.5=degraded, 0=unhealthy)')
pool_utilization = Gauge('mcp_pool_utilization',
                        'Connection pool utilization (0-1)')
database_latency = Gauge('mcp_database_latency_ms',
                        'Database response time in milliseconds')

async def update_metrics():
    """Update Prometheus metrics from health check."""
    health = await check_health("http://localhost:8000")

    # Map status to numeric value
    status_map = {"healthy": 1, "degraded": 0.5, "unhealthy": 0}
    health_status.set(status_map[health["status"]])

    # Update pool metrics
    pool_utilization.set(health["connection_pool"]["pool_utilization"])

    # Update database latency
    db_check = health["checks"].get("database", {})
    if "latency_ms" in db_check:
        database_latency.set(db_check["latency_ms"])

# Start Prometheus metrics server
start_http_server(9090)
