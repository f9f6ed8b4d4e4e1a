-- The predictor baselines each server's instances learnt (median and σ of latency per second
-- and per batch, failure ratio and σ; for probes and for calls), so a server's instances are
-- watched from their first sample after Warden restarts instead of after the warm-up. One row
-- per server, rewritten when an instance publishes (at most once a minute) and at shutdown.

CREATE TABLE predictor_seeds (
    server     TEXT PRIMARY KEY,
    -- When the newest part was learnt, in the store's timestamp form.
    learnt_at  TEXT NOT NULL,
    -- The seeds as JSON ({"probes": {"seed": …, "at": …}, "calls": …}).
    seed       TEXT NOT NULL
);
