-- The fleet: Warden replicas sharing this database (PostgreSQL) and what each serves.
-- Every replica writes its row every 2 s (heartbeat_at is the database's clock, never a
-- replica's, so replica clocks may drift) and its servers' views when they change. A replica
-- whose heartbeat is older than 10 s is gone; one gone for an hour is deleted with its views.

CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    version      TEXT    NOT NULL,
    -- The HTTP listener, when it has one.
    listen       TEXT,
    started_at   TEXT    NOT NULL,
    heartbeat_at TEXT    NOT NULL,
    -- Set when it stopped cleanly (NULL while it runs, or when it died).
    stopped_at   TEXT
);

-- One row per replica and server: the server's view (as in /api/servers) on that replica.
CREATE TABLE server_views (
    replica    TEXT NOT NULL,
    server     TEXT NOT NULL,
    view       TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (replica, server)
);
