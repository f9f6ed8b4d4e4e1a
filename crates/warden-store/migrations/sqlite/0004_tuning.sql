-- Tuning: every change Warden (or an operator through it) made to a server's policy at run
-- time — call timeout, probe interval, probe timeout, an instance's balancing weight — with
-- the configured value it started from, the evidence, and when (and why) it was undone.
-- A row whose reverted_at is NULL is in force; it is re-applied at start while the config's
-- value still equals base_value.

CREATE TABLE tuning_changes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              TEXT    NOT NULL,
    server          TEXT    NOT NULL,
    -- The instance index, for a weight; NULL for a server-wide parameter.
    instance        INTEGER,
    -- timeout | health.interval | health.timeout | weight
    parameter       TEXT    NOT NULL,
    -- Durations in milliseconds, weights as themselves.
    base_value      REAL    NOT NULL,
    old_value       REAL    NOT NULL,
    new_value       REAL    NOT NULL,
    -- The rule that proposed it (or "operator" for a value set by hand).
    rule            TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    evidence        TEXT    NOT NULL,
    -- api | cli | mcp | auto
    source          TEXT    NOT NULL,
    reverted_at     TEXT,
    reverted_reason TEXT
);
CREATE INDEX idx_tuning_server ON tuning_changes (server, parameter, instance);
