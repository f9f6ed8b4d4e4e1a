-- What a client session set after its initialize (issue 16): its log level, its resource
-- subscriptions and its tool exposure, as JSON, so that the replica that continues the session
-- restores them with it. Written when the client changes one of them.
ALTER TABLE mcp_sessions ADD COLUMN extras TEXT;
