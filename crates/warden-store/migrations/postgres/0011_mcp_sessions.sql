-- Legacy (Mcp-Session-Id) client sessions of the HTTP endpoints, so that any replica sharing
-- this database continues a session another replica began (issue 16): what the client sent in
-- its initialize request, replayed by rmcp to a new session worker on the replica that gets
-- the next request. Written at initialize, deleted when the client ends the session.
CREATE TABLE mcp_sessions (
    id         TEXT COLLATE "C" PRIMARY KEY,
    state      TEXT COLLATE "C" NOT NULL,
    replica    TEXT COLLATE "C",
    created_at TEXT COLLATE "C" NOT NULL
);
