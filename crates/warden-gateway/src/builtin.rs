//! Warden's own MCP surface on the aggregated endpoint: tools named `warden__…` and
//! `health://` resources. The composition root implements [`Builtin`] (it sees the health
//! snapshot, the store and the supervisor); the gateway only lists and routes.

use std::sync::{Arc, OnceLock};

use serde_json::Value;
use warden_upstream::BoxFuture;

/// The default prefix of Warden's own tools (a server may not be named `warden`).
pub const BUILTIN_PREFIX: &str = "warden__";

pub trait Builtin: Send + Sync + 'static {
    /// What comes before each tool's name (`warden.tools.prefix`).
    fn prefix(&self) -> &str {
        BUILTIN_PREFIX
    }
    /// Whether `tool` (the name without the prefix) is one of them.
    fn has_tool(&self, tool: &str) -> bool;
    /// Whether `tool` (without the prefix) is a meta-tool, shown whatever a session's
    /// exposure (`analyze_prompt`, `search_tools`, `expose_tools`).
    fn is_meta(&self, _tool: &str) -> bool {
        false
    }
    /// Tool definitions (MCP `Tool` JSON), named with the prefix.
    fn tools(&self) -> Vec<Value>;
    /// Calls one for client session `session`; the answer is a `CallToolResult` as JSON.
    /// `Err` is a caller mistake (unknown tool), returned as invalid params.
    fn call(
        &self,
        tool: &str,
        args: Value,
        session: warden_upstream::Origin,
    ) -> BoxFuture<'static, Result<Value, String>>;
    /// Resource definitions (MCP `Resource` JSON) and templates (`ResourceTemplate` JSON).
    fn resources(&self) -> Vec<Value>;
    fn templates(&self) -> Vec<Value>;
    /// Reads a resource if the URI is Warden's (`None` otherwise); the answer is a
    /// `ReadResourceResult` as JSON.
    fn read(&self, uri: &str) -> Option<BoxFuture<'static, Result<Value, String>>>;
}

/// Where the app installs its [`Builtin`].
#[derive(Clone, Default)]
pub(crate) struct Slot(Arc<OnceLock<Arc<dyn Builtin>>>);

impl Slot {
    pub(crate) fn install(&self, b: Arc<dyn Builtin>) {
        let _ = self.0.set(b);
    }

    pub(crate) fn get(&self) -> Option<&Arc<dyn Builtin>> {
        self.0.get()
    }
}
