-- Operator actions made on one replica, applied by every other (issue 16): stop, start and
-- reset of a server or instance, and failover controls. Each replica reads the rows after the
-- last it saw, every second; history older than the retention is pruned.

CREATE TABLE fleet_commands (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       TEXT    NOT NULL,
    -- The replica the operator acted on (it applied the action itself).
    origin   TEXT    NOT NULL,
    server   TEXT    NOT NULL,
    instance INTEGER,
    -- server (restart | stop | start | reset) or failover (enable | disable | trigger | restore)
    kind     TEXT    NOT NULL,
    action   TEXT    NOT NULL
);
