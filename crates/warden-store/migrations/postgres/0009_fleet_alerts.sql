-- One leader for what must happen once (issue 16). Every replica evaluates its own instances
-- and records the alerts it fires, with its id; the leader notifies for the whole fleet, and
-- says so in its heartbeat row. NULL replica: rows written before.
ALTER TABLE alerts ADD COLUMN replica TEXT COLLATE "C";
ALTER TABLE replicas ADD COLUMN is_leader BIGINT NOT NULL DEFAULT 0;
-- The alerts a notification was about (fingerprint:status, sorted): a leader that takes over
-- does not send what the fleet already sent (Store::enqueue_notification_once).
ALTER TABLE alert_notifications ADD COLUMN alert_set TEXT COLLATE "C";
