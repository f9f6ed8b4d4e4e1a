-- SLO minutes per replica (issue 16): replicas sharing a database each count their own
-- requests; keyed by server and minute alone, one replica's counts replaced another's. Rows
-- written before this migration belong to the replica '' (a Warden without a replica id).
ALTER TABLE slo_minutes ADD COLUMN replica TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE slo_minutes DROP CONSTRAINT slo_minutes_pkey;
ALTER TABLE slo_minutes ADD PRIMARY KEY (replica, server, minute);
