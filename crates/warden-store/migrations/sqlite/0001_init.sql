-- Warden's store. The first three tables keep the names and columns of the original
-- specification; `server_instance`, `resolved_at` and `trace_id` are additions.

CREATE TABLE integration_health_metrics (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    server_type     TEXT    NOT NULL,
    server_instance TEXT    NOT NULL,
    metric_type     TEXT    NOT NULL CHECK (metric_type IN ('response_time', 'error_rate', 'availability', 'throughput')),
    metric_value    REAL    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('healthy', 'warning', 'critical', 'offline')),
    details         TEXT,
    measured_at     TEXT    NOT NULL
);
CREATE INDEX idx_metrics_instance_time ON integration_health_metrics (server_instance, measured_at);
CREATE INDEX idx_metrics_time ON integration_health_metrics (measured_at);

CREATE TABLE integration_failures (
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    server_type             TEXT    NOT NULL,
    server_instance         TEXT,
    failure_type            TEXT    NOT NULL CHECK (failure_type IN ('timeout', 'connection_error', 'authentication',
                                        'rate_limit', 'server_error', 'crash', 'hang', 'protocol_error')),
    task_context            TEXT,
    error_details           TEXT,
    recovery_action         TEXT,
    resolution_time_seconds REAL,
    resolved                INTEGER NOT NULL DEFAULT 0,
    occurred_at             TEXT    NOT NULL,
    resolved_at             TEXT,
    trace_id                TEXT
);
CREATE INDEX idx_failures_open ON integration_failures (server_instance, resolved);
CREATE INDEX idx_failures_time ON integration_failures (occurred_at);

CREATE TABLE failover_configurations (
    id                            INTEGER PRIMARY KEY AUTOINCREMENT,
    primary_server_type           TEXT    NOT NULL UNIQUE,
    fallback_strategy             TEXT    NOT NULL,
    fallback_server_type          TEXT,
    auto_recovery_enabled         INTEGER NOT NULL,
    max_retry_attempts            INTEGER NOT NULL,
    retry_delay_seconds           REAL    NOT NULL,
    health_check_interval_seconds REAL    NOT NULL,
    created_at                    TEXT    NOT NULL
);

CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       TEXT NOT NULL,
    kind     TEXT NOT NULL,
    server   TEXT,
    instance TEXT,
    trace_id TEXT NOT NULL,
    payload  TEXT NOT NULL
);
CREATE INDEX idx_events_time ON events (at);
CREATE INDEX idx_events_instance ON events (instance, at);
