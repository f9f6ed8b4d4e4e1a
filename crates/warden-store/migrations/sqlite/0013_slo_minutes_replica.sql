-- SLO minutes per replica (issue 16): replicas sharing a database each count their own
-- requests; keyed by server and minute alone, one replica's counts replaced another's. Rows
-- written before this migration belong to the replica '' (a Warden without a replica id).
CREATE TABLE slo_minutes_by_replica (
    replica  TEXT    NOT NULL DEFAULT '',
    server   TEXT    NOT NULL,
    minute   TEXT    NOT NULL,
    requests INTEGER NOT NULL,
    errors   INTEGER NOT NULL,
    PRIMARY KEY (replica, server, minute)
);
INSERT INTO slo_minutes_by_replica (replica, server, minute, requests, errors)
    SELECT '', server, minute, requests, errors FROM slo_minutes;
DROP TABLE slo_minutes;
ALTER TABLE slo_minutes_by_replica RENAME TO slo_minutes;
