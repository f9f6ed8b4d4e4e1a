-- PostgreSQL twin of migrations/sqlite/0006_predictor_seeds.sql: the same tables and columns (BIGINT for INTEGER,
-- DOUBLE PRECISION for REAL, identity columns for AUTOINCREMENT, TEXT compared bytewise as
-- SQLite does, so RFC 3339 timestamps order as text and ORDER BY matches).

-- The predictor baselines each server's instances learnt (median and σ of latency per second
-- and per batch, failure ratio and σ; for probes and for calls), so a server's instances are
-- watched from their first sample after Warden restarts instead of after the warm-up. One row
-- per server, rewritten when an instance publishes (at most once a minute) and at shutdown.

CREATE TABLE predictor_seeds (
    server     TEXT COLLATE "C" PRIMARY KEY,
    -- When the newest part was learnt, in the store's timestamp form.
    learnt_at  TEXT COLLATE "C" NOT NULL,
    -- The seeds as JSON ({"probes": {"seed": …, "at": …}, "calls": …}).
    seed       TEXT COLLATE "C" NOT NULL
);
