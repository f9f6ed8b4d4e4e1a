//! What a client session sets after its `initialize` — its log level, its resource
//! subscriptions and its tool exposure — kept beside rmcp's session store (issue 16), so that
//! the replica that continues a legacy `Mcp-Session-Id` session (rmcp replays its `initialize`
//! there, marked with a [`SessionRestoreMarker`]) continues it as the client left it.
//!
//! Written when the client changes one of them, bounded so a slow database cannot hold the
//! answer long; read once, when a replica restores the session. Without a shared database
//! nothing is kept: one replica's sessions live in its memory.

use std::sync::Arc;
use std::time::Duration;

use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::SessionRestoreMarker;
use serde::{Deserialize, Serialize};
use serde_json::json;
use warden_upstream::{BoxFuture, Origin};

use crate::clients::{level_name, level_param, level_rank};
use crate::handler::{upstream_all, Shared};
use crate::Exposure;

/// How long saving or loading a session's settings may take.
const BOUND: Duration = Duration::from_secs(2);

/// Where sessions' settings are kept (the shared database), as JSON text.
pub trait SessionMemory: Send + Sync {
    fn save(&self, session: &str, settings: String) -> BoxFuture<'static, Result<(), String>>;
    fn load(&self, session: &str) -> BoxFuture<'static, Result<Option<String>, String>>;
}

/// Which of a session's settings changed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Setting {
    Level,
    Subscriptions,
    Exposure,
}

/// One session's settings.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) level: Option<String>,
    /// `(server, uri)` pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) subscriptions: Vec<(String, String)>,
    /// The exposure the session chose (absent: where it started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) exposure: Option<Exposure>,
}

/// The session id of the HTTP request behind `ctx`, if it is in a legacy session.
pub(crate) fn session_of(ctx: &RequestContext<RoleServer>) -> Option<&str> {
    if let Some(m) = ctx.extensions.get::<SessionRestoreMarker>() {
        return Some(&m.id);
    }
    if let Some(lane) = ctx.extensions.get::<crate::http_lane::LaneContext>() {
        return Some(&lane.session);
    }
    let parts = ctx.extensions.get::<axum::http::request::Parts>()?;
    parts.headers.get("mcp-session-id")?.to_str().ok()
}

impl Shared {
    pub(crate) fn set_memory(&self, memory: Arc<dyn SessionMemory>) {
        *self.memory.write().expect("not poisoned") = Some(memory);
    }

    fn memory(&self) -> Option<Arc<dyn SessionMemory>> {
        self.memory.read().expect("not poisoned").clone()
    }

    /// Writes `changed`, as session `origin` has it here, into what the database keeps for the
    /// session, leaving the other settings as they are there (another replica may have
    /// changed one: a session can be served by several). A failure is logged: the session
    /// goes on here, only a restore elsewhere would miss the change.
    pub(crate) async fn remember(&self, origin: Origin, changed: Setting) {
        let (Some(memory), Some(session)) = (self.memory(), self.clients.session(origin)) else {
            return;
        };
        let save = async {
            let kept = memory.load(&session).await?;
            let mut s: Settings =
                kept.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
            let (level, mut subscriptions) = self.clients.settings(origin);
            match changed {
                Setting::Level => s.level = level.map(|l| level_name(l).to_owned()),
                Setting::Subscriptions => {
                    subscriptions.sort();
                    s.subscriptions = subscriptions;
                }
                Setting::Exposure => s.exposure = self.exposures.own(origin),
            }
            let text = serde_json::to_string(&s).map_err(|e| e.to_string())?;
            memory.save(&session, text).await
        };
        match tokio::time::timeout(BOUND, save).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "keeping a session's settings failed"),
            Err(_) => tracing::warn!("keeping a session's settings took over {BOUND:?}"),
        }
    }

    /// Gives session `origin`, restored from `session` (another replica began it), the
    /// settings that replica kept; the servers hear of its level and subscriptions in the
    /// background.
    pub(crate) async fn restore(self: &Arc<Self>, origin: Origin, session: &str) {
        let Some(memory) = self.memory() else { return };
        let text = match tokio::time::timeout(BOUND, memory.load(session)).await {
            Ok(Ok(Some(t))) => t,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => return tracing::warn!(error = %e, "reading a session's settings failed"),
            Err(_) => return tracing::warn!("reading a session's settings took over {BOUND:?}"),
        };
        let settings: Settings = match serde_json::from_str(&text) {
            Ok(s) => s,
            Err(e) => return tracing::warn!(error = %e, "a session's kept settings are unreadable"),
        };
        let mut upstream = Vec::new();
        if let Some(rank) = settings.level.as_deref().and_then(level_rank) {
            self.clients.set_level(origin, rank);
            for server in self.routes.table().server_names() {
                if let Some(min) = self.clients.min_level(&server) {
                    upstream.push((server, "logging/setLevel", level_param(min)));
                }
            }
        }
        for (server, uri) in settings.subscriptions {
            if self.clients.subscribe(origin, &server, &uri) {
                upstream.push((server, "resources/subscribe", json!({ "uri": uri })));
            }
        }
        if let Some(e) = settings.exposure {
            self.exposures.set(origin, e);
        }
        if upstream.is_empty() {
            return;
        }
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            for (server, method, params) in upstream {
                // The session may have closed meanwhile, and unsubscribed what it held.
                let uri = params["uri"].as_str().unwrap_or_default();
                if method == "resources/subscribe"
                    && !shared.clients.subscribed(&server).contains(uri)
                {
                    continue;
                }
                upstream_all(&shared.routes.table(), &server, method, params).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_back_as_written_and_an_empty_one_is_an_empty_object() {
        assert_eq!(serde_json::to_string(&Settings::default()).unwrap(), "{}");
        let s = Settings {
            level: Some("info".into()),
            subscriptions: vec![("alpha".into(), "test://watched-resource".into())],
            exposure: Some(Exposure::Meta),
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Settings>(&text).unwrap(), s);
        // Older or partial records read as far as they go.
        let partial: Settings = serde_json::from_str(r#"{"level":"error","later":1}"#).unwrap();
        assert_eq!(partial.level.as_deref(), Some("error"));
    }
}
