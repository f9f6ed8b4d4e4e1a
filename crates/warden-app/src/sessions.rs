//! Client sessions any replica can continue (issue 16): rmcp's `SessionStore` over the
//! store's `mcp_sessions` table. rmcp writes a session's `initialize` parameters when it is
//! made; a replica that gets a request for a session it does not know loads them and replays
//! `initialize` to a new session worker, so the client goes on without noticing. Only with a
//! shared (PostgreSQL) database; the 2026-07-28 stateless protocol needs none of it.

use rmcp::transport::streamable_http_server::session::store::{
    SessionState, SessionStore, SessionStoreError,
};
use warden_store::Store;

pub(crate) struct DbSessions(pub(crate) Store);

#[async_trait::async_trait]
impl SessionStore for DbSessions {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        match self.0.mcp_session(session_id).await? {
            Some(text) => Ok(Some(serde_json::from_str(&text)?)),
            None => Ok(None),
        }
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        Ok(self.0.put_mcp_session(session_id, &serde_json::to_string(state)?).await?)
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        Ok(self.0.delete_mcp_session(session_id).await?)
    }
}
