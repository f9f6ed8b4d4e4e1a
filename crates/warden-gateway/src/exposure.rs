//! What each client session of the aggregated endpoint is shown (`warden.tools.exposure`, and
//! the meta-tools that change it): every tool, only Warden's meta-tools, or the tools of some
//! categories and some tools by name. A session starts from the default and its exposure ends
//! with it; a change is announced with `notifications/tools/list_changed` to that session only.
//! Exposure trims lists (the context a model reads); it is not access control: a call to a
//! tool not shown still goes through. `/servers/{name}/mcp` is never filtered.

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use warden_config::ExposureSetting;
use warden_upstream::Origin;

use crate::search::{Analysis, Hit, ToolDoc};
use crate::Gateway;

/// One session's exposure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Exposure {
    #[default]
    All,
    Meta,
    Chosen {
        categories: Vec<String>,
        tools: Vec<String>,
    },
}

impl Exposure {
    pub fn from_setting(s: &ExposureSetting) -> Self {
        match s {
            ExposureSetting::All => Self::All,
            ExposureSetting::Meta => Self::Meta,
            ExposureSetting::Categories(c) => Self::Chosen { categories: c.clone(), tools: vec![] },
        }
    }

    pub fn mode(&self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Meta => "meta",
            Self::Chosen { .. } => "chosen",
        }
    }

    /// Whether a server's tool (named as the aggregated endpoint names it) is shown.
    pub fn shows(&self, name: &str, categories: &[String]) -> bool {
        match self {
            Self::All => true,
            Self::Meta => false,
            Self::Chosen { categories: cats, tools } => {
                tools.iter().any(|t| t == name) || categories.iter().any(|c| cats.contains(c))
            }
        }
    }

    /// Whether one of Warden's own tools that is not a meta-tool is shown: they are in the
    /// `monitoring` category.
    pub(crate) fn shows_builtin(&self, name: &str) -> bool {
        self.shows(name, &["monitoring".to_owned()])
    }
}

/// Every session's exposure that differs from the default.
#[derive(Default)]
pub(crate) struct Exposures {
    default: RwLock<Exposure>,
    /// The configured endpoints (`warden.tools.endpoints`): name → the exposure its sessions
    /// start from.
    pub(crate) endpoints: RwLock<HashMap<String, Exposure>>,
    /// Sessions of such an endpoint: where they start from (and return to on reset).
    starts: RwLock<HashMap<Origin, Exposure>>,
    map: RwLock<HashMap<Origin, Exposure>>,
}

impl Exposures {
    pub(crate) fn get(&self, session: Origin) -> Exposure {
        if let Some(e) = self.map.read().expect("not poisoned").get(&session) {
            return e.clone();
        }
        match self.starts.read().expect("not poisoned").get(&session) {
            Some(e) => e.clone(),
            None => self.default.read().expect("not poisoned").clone(),
        }
    }

    /// The exposure session `session` chose itself, if it did.
    pub(crate) fn own(&self, session: Origin) -> Option<Exposure> {
        self.map.read().expect("not poisoned").get(&session).cloned()
    }

    /// A session of endpoint `e` starts from (and resets to) its exposure.
    pub(crate) fn start(&self, session: Origin, e: Exposure) {
        self.starts.write().expect("not poisoned").insert(session, e);
    }

    /// Sets it; whether it changed.
    pub(crate) fn set(&self, session: Origin, e: Exposure) -> bool {
        let before = self.get(session);
        self.map.write().expect("not poisoned").insert(session, e.clone());
        before != e
    }

    pub(crate) fn reset(&self, session: Origin) -> bool {
        let before = self.get(session);
        self.map.write().expect("not poisoned").remove(&session);
        before != self.get(session)
    }

    pub(crate) fn forget(&self, session: Origin) {
        self.map.write().expect("not poisoned").remove(&session);
        self.starts.write().expect("not poisoned").remove(&session);
    }

    pub(crate) fn set_default(&self, e: Exposure) {
        *self.default.write().expect("not poisoned") = e;
    }

    /// The heap the sessions' own exposures hold, in bytes: entries, names and the map's
    /// slots (an accounting for the benchmark; RSS moves with far more than this).
    pub(crate) fn heap_bytes(&self) -> usize {
        let map = self.map.read().expect("not poisoned");
        let strings =
            |v: &[String]| std::mem::size_of_val(v) + v.iter().map(String::capacity).sum::<usize>();
        let held: usize = map
            .values()
            .map(|e| match e {
                Exposure::Chosen { categories, tools } => strings(categories) + strings(tools),
                _ => 0,
            })
            .sum();
        held + map.capacity() * (std::mem::size_of::<(Origin, Exposure)>() + 1)
    }

    /// How many of `sessions` are in each mode.
    pub(crate) fn modes(&self, sessions: &[Origin]) -> [(&'static str, usize); 3] {
        let mut out = [("all", 0), ("meta", 0), ("chosen", 0)];
        for s in sessions {
            let m = self.get(*s).mode();
            if let Some(slot) = out.iter_mut().find(|(n, _)| *n == m) {
                slot.1 += 1;
            }
        }
        out
    }
}

impl Gateway {
    /// Warden's tool settings: the categories in force and the exposure new sessions start
    /// from.
    pub fn set_tool_settings(&self, s: &warden_config::ToolSettings) {
        self.shared.search.set_categories(&s.categories);
        self.shared.exposures.set_default(Exposure::from_setting(&s.exposure));
        *self.shared.exposures.endpoints.write().expect("not poisoned") =
            s.endpoints.iter().map(|(n, e)| (n.clone(), Exposure::from_setting(e))).collect();
    }

    /// A configured endpoint's exposure (`warden.tools.endpoints`).
    pub fn endpoint_exposure(&self, name: &str) -> Option<Exposure> {
        self.shared.exposures.endpoints.read().expect("not poisoned").get(name).cloned()
    }

    /// The listed tools that match `query`, best first.
    pub fn search_tools(&self, query: &str, limit: usize) -> Vec<Hit> {
        self.shared.search.index(&self.routes.table()).search(query, limit)
    }

    /// The categories and tools a task described by `prompt` needs (the static choice).
    pub fn analyze_prompt(&self, prompt: &str, max_tools: usize) -> Analysis {
        let idx = self.shared.search.index(&self.routes.table());
        idx.analyze(&self.shared.search.categories(), prompt, max_tools)
    }

    /// Every listed tool with its categories.
    pub fn tool_docs(&self) -> Vec<ToolDoc> {
        self.shared.search.index(&self.routes.table()).docs.clone()
    }

    /// The category names in force, and how many listed tools each has.
    pub fn categories(&self) -> Vec<(String, String, usize)> {
        let counts = self.shared.search.index(&self.routes.table()).category_counts();
        let cats = self.shared.search.categories();
        cats.names
            .iter()
            .zip(&cats.descriptions)
            .map(|(n, d)| (n.clone(), d.clone(), counts.get(n).copied().unwrap_or(0)))
            .collect()
    }

    pub fn exposure(&self, session: Origin) -> Exposure {
        self.shared.exposures.get(session)
    }

    /// Sets a session's exposure (`None`: back to the default) and, when that changes what it
    /// is shown, tells that session alone (`notifications/tools/list_changed`).
    pub async fn set_exposure(&self, session: Origin, e: Option<Exposure>) -> bool {
        let changed = match e {
            Some(e) => self.shared.exposures.set(session, e),
            None => self.shared.exposures.reset(session),
        };
        if changed {
            self.shared.remember(session, crate::memory::Setting::Exposure).await;
            if let Some(peer) = self.shared.clients.peer(session) {
                let _ = peer.notify_tool_list_changed().await;
            }
        }
        changed
    }

    /// Counts one choice of tools for a prompt, by method (`static`, `llm`) and outcome, and
    /// how long the model took when it was asked.
    pub fn count_categorization(&self, method: &str, outcome: &str, model_secs: Option<f64>) {
        let mut m = self.shared.categorizations.lock().expect("not poisoned");
        *m.entry((method.to_owned(), outcome.to_owned())).or_default() += 1;
        if let Some(s) = model_secs {
            let mut t = self.shared.llm_time.lock().expect("not poisoned");
            t.0 += 1;
            t.1 += s;
        }
    }

    /// Requests to the tool-choosing model so far, and the seconds they took in all.
    pub fn llm_time(&self) -> (u64, f64) {
        *self.shared.llm_time.lock().expect("not poisoned")
    }

    /// Choices of tools for prompts so far, by method and outcome.
    pub fn categorizations(&self) -> Vec<((String, String), u64)> {
        let m = self.shared.categorizations.lock().expect("not poisoned");
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// How many of the servers' tools each connected session of the aggregated face is shown
    /// now (all of them for `all`, none for `meta`).
    pub fn exposed_tool_counts(&self) -> Vec<usize> {
        let idx = self.shared.search.index(&self.routes.table());
        self.shared
            .clients
            .ids()
            .into_iter()
            .map(|s| {
                let e = self.shared.exposures.get(s);
                idx.docs.iter().filter(|d| e.shows(&d.name, &d.categories)).count()
            })
            .collect()
    }

    /// The heap the sessions' own exposures hold (see `Exposures::heap_bytes`).
    pub fn exposure_heap_bytes(&self) -> usize {
        self.shared.exposures.heap_bytes()
    }

    /// How many connected sessions are in each exposure mode.
    pub fn exposure_modes(&self) -> [(&'static str, usize); 3] {
        self.shared.exposures.modes(&self.shared.clients.ids())
    }
}
