-- PostgreSQL twin of migrations/sqlite/0007_fleet.sql: the same tables and columns (BIGINT for INTEGER,
-- DOUBLE PRECISION for REAL, identity columns for AUTOINCREMENT, TEXT compared bytewise as
-- SQLite does, so RFC 3339 timestamps order as text and ORDER BY matches).

-- The fleet: Warden replicas sharing this database (PostgreSQL) and what each serves.
-- Every replica writes its row every 2 s (heartbeat_at is the database's clock, never a
-- replica's, so replica clocks may drift) and its servers' views when they change. A replica
-- whose heartbeat is older than 10 s is gone; one gone for an hour is deleted with its views.

CREATE TABLE replicas (
    id           TEXT COLLATE "C" PRIMARY KEY,
    host         TEXT COLLATE "C"    NOT NULL,
    pid          BIGINT NOT NULL,
    version      TEXT COLLATE "C"    NOT NULL,
    -- The HTTP listener, when it has one.
    listen       TEXT COLLATE "C",
    started_at   TEXT COLLATE "C"    NOT NULL,
    heartbeat_at TEXT COLLATE "C"    NOT NULL,
    -- Set when it stopped cleanly (NULL while it runs, or when it died).
    stopped_at   TEXT COLLATE "C"
);

-- One row per replica and server: the server's view (as in /api/servers) on that replica.
CREATE TABLE server_views (
    replica    TEXT COLLATE "C" NOT NULL,
    server     TEXT COLLATE "C" NOT NULL,
    view       TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (replica, server)
);
