-- Legacy (Mcp-Session-Id) client sessions of the HTTP endpoints, so that any replica sharing
-- this database continues a session another replica began (issue 16): what the client sent in
-- its initialize request, replayed by rmcp to a new session worker on the replica that gets
-- the next request. Written at initialize, deleted when the client ends the session.
CREATE TABLE mcp_sessions (
    id         TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    replica    TEXT,
    created_at TEXT NOT NULL
);
