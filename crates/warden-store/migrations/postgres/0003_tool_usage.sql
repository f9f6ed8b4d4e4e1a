-- PostgreSQL twin of migrations/sqlite/0003_tool_usage.sql: the same tables and columns (BIGINT for INTEGER,
-- DOUBLE PRECISION for REAL, identity columns for AUTOINCREMENT, TEXT compared bytewise as
-- SQLite does, so RFC 3339 timestamps order as text and ORDER BY matches).

-- Tool usage: the gateway's per-tool call counts, rolled up per server, tool and UTC hour.
-- The gateway counts in memory and warden-app adds the counts here about once a minute
-- (INSERT … ON CONFLICT DO UPDATE), so a row is one hour's total however often it is written.

CREATE TABLE tool_usage (
    server   TEXT COLLATE "C"    NOT NULL,
    tool     TEXT COLLATE "C"    NOT NULL,
    -- The start of the hour, in the store's timestamp form (RFC 3339, UTC, microseconds).
    hour     TEXT COLLATE "C"    NOT NULL,
    calls    BIGINT NOT NULL,
    -- Failures for the server's sake; isError results are calls, not errors.
    errors   BIGINT NOT NULL,
    total_ms DOUBLE PRECISION    NOT NULL,
    max_ms   DOUBLE PRECISION    NOT NULL,
    -- Calls whose arguments equal one of the tool's last few calls' (caching candidates).
    repeats  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (server, tool, hour)
);
CREATE INDEX idx_tool_usage_hour ON tool_usage (hour);
