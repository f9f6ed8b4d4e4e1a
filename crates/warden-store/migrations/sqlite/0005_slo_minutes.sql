-- SLO burn-rate counts per server and minute (requests and failed ones, probes included), so
-- the 1 h, 6 h and 3 d windows of the burn-rate alerts survive a restart of Warden. A minute is
-- written once it is over (and the current one at shutdown); rows older than the retention go.

CREATE TABLE slo_minutes (
    server   TEXT    NOT NULL,
    -- The start of the minute, in the store's timestamp form.
    minute   TEXT    NOT NULL,
    requests INTEGER NOT NULL,
    errors   INTEGER NOT NULL,
    PRIMARY KEY (server, minute)
);
