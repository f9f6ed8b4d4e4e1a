-- Who is sending an outbox row (issue 16): a replica claims a pending notification for a
-- while before it sends it, so two replicas that both believe they lead (one cut off from
-- PostgreSQL on its lock connection only, for the seconds before it steps down) never both
-- send it. A claim that runs out (its replica died between the send and the record) lets
-- another replica send it again: delivery is at least once, and twice only after a crash.
ALTER TABLE alert_notifications ADD COLUMN claimed_by TEXT COLLATE "C";
ALTER TABLE alert_notifications ADD COLUMN claimed_until TEXT COLLATE "C";
