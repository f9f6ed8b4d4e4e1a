-- Alerting: the history of every alert that fired, the notification outbox (undelivered
-- notifications survive a restart and are never lost), and silences.

CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    severity    TEXT    NOT NULL CHECK (severity IN ('warning', 'critical')),
    server      TEXT,
    instance    TEXT,
    labels      TEXT    NOT NULL,
    annotations TEXT    NOT NULL,
    value       REAL,
    starts_at   TEXT    NOT NULL,
    fired_at    TEXT    NOT NULL,
    ends_at     TEXT
);
CREATE INDEX idx_alerts_open ON alerts (fingerprint, ends_at);
CREATE INDEX idx_alerts_time ON alerts (fired_at);

CREATE TABLE alert_notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver        TEXT    NOT NULL,
    group_key       TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('firing', 'resolved')),
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'expired')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    last_error      TEXT,
    created_at      TEXT    NOT NULL,
    delivered_at    TEXT
);
CREATE INDEX idx_notifications_due ON alert_notifications (state, next_attempt_at);

CREATE TABLE silences (
    id         TEXT PRIMARY KEY,
    matchers   TEXT NOT NULL,
    starts_at  TEXT NOT NULL,
    ends_at    TEXT NOT NULL,
    created_by TEXT NOT NULL,
    comment    TEXT NOT NULL,
    created_at TEXT NOT NULL
);
