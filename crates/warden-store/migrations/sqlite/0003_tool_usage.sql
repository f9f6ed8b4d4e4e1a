-- Tool usage: the gateway's per-tool call counts, rolled up per server, tool and UTC hour.
-- The gateway counts in memory and warden-app adds the counts here about once a minute
-- (INSERT … ON CONFLICT DO UPDATE), so a row is one hour's total however often it is written.

CREATE TABLE tool_usage (
    server   TEXT    NOT NULL,
    tool     TEXT    NOT NULL,
    -- The start of the hour, in the store's timestamp form (RFC 3339, UTC, microseconds).
    hour     TEXT    NOT NULL,
    calls    INTEGER NOT NULL,
    -- Failures for the server's sake; isError results are calls, not errors.
    errors   INTEGER NOT NULL,
    total_ms REAL    NOT NULL,
    max_ms   REAL    NOT NULL,
    -- Calls whose arguments equal one of the tool's last few calls' (caching candidates).
    repeats  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (server, tool, hour)
);
CREATE INDEX idx_tool_usage_hour ON tool_usage (hour);
