//! Client sessions any replica can continue (issue 16): rmcp's `SessionStore` over the
//! store's `mcp_sessions` table. rmcp writes a session's `initialize` parameters when it is
//! made; a replica that gets a request for a session it does not know loads them and replays
//! `initialize` to a new session worker, so the client goes on without noticing. What the
//! session set later (log level, subscriptions, tool exposure) rides in the same row
//! (`SessionMemory`). Only with a shared (PostgreSQL) database; the 2026-07-28 stateless
//! protocol needs none of it.

use rmcp::transport::streamable_http_server::session::store::{
    SessionState, SessionStore, SessionStoreError,
};
use warden_gateway::SessionMemory;
use warden_store::Store;
use warden_upstream::BoxFuture;

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

impl SessionMemory for DbSessions {
    fn save(&self, session: &str, settings: String) -> BoxFuture<'static, Result<(), String>> {
        let (store, session) = (self.0.clone(), session.to_owned());
        Box::pin(async move {
            store.put_mcp_session_extras(&session, &settings).await.map_err(|e| e.to_string())
        })
    }

    fn load(&self, session: &str) -> BoxFuture<'static, Result<Option<String>, String>> {
        let (store, session) = (self.0.clone(), session.to_owned());
        Box::pin(async move { store.mcp_session_extras(&session).await.map_err(|e| e.to_string()) })
    }
}
