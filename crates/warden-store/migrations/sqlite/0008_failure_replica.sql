-- The replica that opened a failure row (issue 16): several replicas share one database and
-- each has an instance named alpha#0, so a recovery resolves, and a start abandons, only the
-- rows of its own replica. NULL on rows written before.
ALTER TABLE integration_failures ADD COLUMN replica TEXT;
