//! What live reload has done: the config file in force, the last reload, and the errors of a
//! refused one (shown in `/health/status` as `checks.config` until a good config arrives).
//! The composition root reloads; this is only the record, shared with the surfaces.

use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use serde_json::{json, Value};
use warden_core::Timestamp;

/// A reload asked for by a surface (`POST /api/reload`, an MCP tool): the composition root
/// installs it. The answer is the applied diff, or every error with its path.
pub type ReloadFn =
    Arc<dyn Fn(&'static str) -> BoxFuture<'static, Result<Value, Vec<String>>> + Send + Sync>;

#[derive(Default)]
struct State {
    file: Option<String>,
    last_applied: Option<(Timestamp, String, String)>,
    rejected: Option<(Timestamp, String, Vec<String>)>,
}

/// The record, cheap to clone.
#[derive(Clone, Default)]
pub struct ConfigStatus {
    state: Arc<RwLock<State>>,
    reload: Arc<RwLock<Option<ReloadFn>>>,
}

impl ConfigStatus {
    /// The config file in force (`None`: none, as for the demo).
    pub fn set_file(&self, file: Option<String>) {
        self.write().file = file;
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A reload applied: any earlier refusal is over.
    pub fn applied(&self, trigger: &str, summary: &str) {
        let mut s = self.write();
        s.last_applied = Some((warden_core::now(), trigger.to_owned(), summary.to_owned()));
        s.rejected = None;
    }

    /// A reload refused: the errors stand until a good config arrives.
    pub fn rejected(&self, trigger: &str, errors: Vec<String>) {
        self.write().rejected = Some((warden_core::now(), trigger.to_owned(), errors));
    }

    /// The errors of the refused config, if the last reload was refused.
    pub fn errors(&self) -> Option<Vec<String>> {
        self.read().rejected.as_ref().map(|(_, _, e)| e.clone())
    }

    /// `checks.config`, and whether it is fine (a refused reload degrades Warden's status).
    pub fn check(&self) -> (Value, bool) {
        let s = self.read();
        let last = s.last_applied.as_ref().map(
            |(at, trigger, summary)| json!({ "at": at, "trigger": trigger, "summary": summary }),
        );
        match &s.rejected {
            None => (json!({ "status": "ok", "file": s.file, "last_reload": last }), true),
            Some((at, trigger, errors)) => (
                json!({
                    "status": "rejected",
                    "file": s.file,
                    "rejected_at": at,
                    "trigger": trigger,
                    "errors": errors,
                    "last_reload": last,
                }),
                false,
            ),
        }
    }

    /// Installs how a reload is done (by the composition root, once everything runs).
    pub fn install(&self, reload: ReloadFn) {
        *self.reload.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reload);
    }

    /// Reloads the config now (`trigger` names who asked); `Err` with every error, or with
    /// why no reload is possible (no config file: the demo, a test).
    pub async fn reload(&self, trigger: &'static str) -> Result<Value, Vec<String>> {
        let f = self.reload.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match f {
            Some(f) => f(trigger).await,
            None => Err(vec!["this Warden has no config file to reload".to_owned()]),
        }
    }
}
