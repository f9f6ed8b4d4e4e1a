-- PostgreSQL twin of migrations/sqlite/0005_slo_minutes.sql: the same tables and columns (BIGINT for INTEGER,
-- DOUBLE PRECISION for REAL, identity columns for AUTOINCREMENT, TEXT compared bytewise as
-- SQLite does, so RFC 3339 timestamps order as text and ORDER BY matches).

-- SLO burn-rate counts per server and minute (requests and failed ones, probes included), so
-- the 1 h, 6 h and 3 d windows of the burn-rate alerts survive a restart of Warden. A minute is
-- written once it is over (and the current one at shutdown); rows older than the retention go.

CREATE TABLE slo_minutes (
    server   TEXT COLLATE "C"    NOT NULL,
    -- The start of the minute, in the store's timestamp form.
    minute   TEXT COLLATE "C"    NOT NULL,
    requests BIGINT NOT NULL,
    errors   BIGINT NOT NULL,
    PRIMARY KEY (server, minute)
);
