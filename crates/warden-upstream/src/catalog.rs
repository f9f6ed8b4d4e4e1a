//! What a server offers (tools, resources, prompts) and how it changed across a restart.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::Serialize;

/// One tool: its name, the annotations that matter for retries, and a fingerprint of its
/// definition so a changed schema is noticed.
#[derive(Clone, Debug, Serialize)]
pub struct ToolEntry {
    pub name: String,
    pub read_only: bool,
    pub idempotent: bool,
    #[serde(skip)]
    pub fingerprint: u64,
    /// The tool as the server described it.
    #[serde(skip)]
    pub raw: Arc<serde_json::Value>,
}

impl ToolEntry {
    pub fn from_json(raw: serde_json::Value) -> Option<Self> {
        let name = raw.get("name")?.as_str()?.to_owned();
        let ann = raw.get("annotations");
        let flag = |k: &str| ann.and_then(|a| a.get(k)).and_then(|v| v.as_bool()).unwrap_or(false);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        raw.to_string().hash(&mut h);
        Some(Self {
            name,
            read_only: flag("readOnlyHint"),
            idempotent: flag("idempotentHint"),
            fingerprint: h.finish(),
            raw: Arc::new(raw),
        })
    }
}

/// One resource, resource template or prompt: its key (URI, URI template or name) and the
/// entry as the server described it.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub key: String,
    #[serde(skip)]
    pub raw: Arc<serde_json::Value>,
}

impl Entry {
    /// Reads `field` of `raw` as the key; `None` if the server left it out.
    pub fn from_json(raw: serde_json::Value, field: &str) -> Option<Self> {
        let key = raw.get(field)?.as_str()?.to_owned();
        Some(Self { key, raw: Arc::new(raw) })
    }
}

/// The lists an instance offers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Catalog {
    pub tools: Vec<ToolEntry>,
    pub resources: Vec<Entry>,
    pub templates: Vec<Entry>,
    pub prompts: Vec<Entry>,
}

/// Differences between two catalogs, by name (`~name` marks a changed tool definition).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl CatalogDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

impl Catalog {
    /// What changed from `old` to `self`. Tools are compared by name and definition; resources
    /// and prompts by name (prefixed `resource:` and `prompt:`).
    pub fn diff(&self, old: &Catalog) -> CatalogDiff {
        let mut diff = CatalogDiff::default();
        let new_tools: BTreeMap<&str, u64> =
            self.tools.iter().map(|t| (t.name.as_str(), t.fingerprint)).collect();
        let old_tools: BTreeMap<&str, u64> =
            old.tools.iter().map(|t| (t.name.as_str(), t.fingerprint)).collect();
        for (name, fp) in &new_tools {
            match old_tools.get(name) {
                None => diff.added.push((*name).to_owned()),
                Some(old_fp) if old_fp != fp => diff.added.push(format!("~{name}")),
                _ => {}
            }
        }
        diff.removed.extend(
            old_tools.keys().filter(|n| !new_tools.contains_key(*n)).map(|n| (*n).to_owned()),
        );
        for (prefix, new, old) in [
            ("resource:", &self.resources, &old.resources),
            ("template:", &self.templates, &old.templates),
            ("prompt:", &self.prompts, &old.prompts),
        ] {
            let new: Vec<&String> = new.iter().map(|e| &e.key).collect();
            let old: Vec<&String> = old.iter().map(|e| &e.key).collect();
            let new_set: HashSet<&String> = new.iter().copied().collect();
            let old_set: HashSet<&String> = old.iter().copied().collect();
            diff.added.extend(
                new.iter().filter(|n| !old_set.contains(*n)).map(|n| format!("{prefix}{n}")),
            );
            diff.removed.extend(
                old.iter().filter(|n| !new_set.contains(*n)).map(|n| format!("{prefix}{n}")),
            );
        }
        diff
    }
}
