//! Tool search and categories over what the gateway serves now: an index of every listed tool
//! (a server with nothing routable is not listed, so its tools are never offered), rebuilt when
//! a catalog changes; BM25 search for `search_tools`; the static choice of categories and tools
//! for a prompt (`analyze_prompt`); and each tool's categories — the config's, else the static
//! classifier's (`categories.rs`).

pub(crate) mod bm25;
pub(crate) mod categories;
#[cfg(test)]
mod quality_tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use serde_json::Value;

use crate::route::Table;
use bm25::{query_terms, tokens, Bm25};
use categories::Categories;

/// One listed tool.
#[derive(Clone, Debug, Serialize)]
pub struct ToolDoc {
    /// As the aggregated endpoint names it: `server__tool`.
    pub name: String,
    pub server: String,
    pub tool: String,
    pub description: String,
    pub categories: Vec<String>,
    /// `config` (the server's `categories`) or `static` (the classifier).
    pub categorized_by: &'static str,
}

/// The tools served now, indexed.
pub(crate) struct Index {
    pub(crate) docs: Vec<ToolDoc>,
    by_name: HashMap<String, usize>,
    bm25: Bm25,
}

/// A search hit.
#[derive(Clone, Debug, Serialize)]
pub struct Hit {
    #[serde(flatten)]
    pub doc: ToolDoc,
    pub score: f64,
}

/// What `analyze_prompt` chose, statically.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Analysis {
    pub categories: Vec<String>,
    pub tools: Vec<String>,
    /// The prompt's words that matched, and how the categories scored.
    pub why: String,
}

/// Which catalogs (server, catalog identity) an index was built from.
type CatalogKey = Vec<(String, usize)>;

/// The index and the categories in force, shared by every session.
pub(crate) struct Search {
    categories: RwLock<Arc<Categories>>,
    /// The last index, and the catalogs (by identity) it was built from.
    cache: Mutex<Option<(CatalogKey, Arc<Index>)>>,
    /// Classifier answers per (server, tool, description): a catalog change re-lists
    /// unchanged tools, which need not be classified again.
    classified: Mutex<HashMap<(String, String, u64), Vec<String>>>,
}

impl Default for Search {
    fn default() -> Self {
        Self {
            categories: RwLock::new(Arc::new(Categories::new(&BTreeMap::new()))),
            cache: Mutex::default(),
            classified: Mutex::default(),
        }
    }
}

fn hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// A tool's searchable words: its name (three times), title, description, parameter names,
/// its server's name, its categories and their descriptions (the words of its domain a
/// description leaves out).
fn terms(doc: &ToolDoc, raw: &Value, cats: &Categories) -> Vec<String> {
    let mut t = tokens(&doc.tool);
    t.extend(t.clone());
    t.extend(tokens(&doc.tool));
    if let Some(title) = raw["title"].as_str().or_else(|| raw["annotations"]["title"].as_str()) {
        t.extend(tokens(title));
    }
    t.extend(tokens(&doc.description));
    if let Some(props) = raw["inputSchema"]["properties"].as_object() {
        for k in props.keys() {
            t.extend(tokens(k));
        }
    }
    t.extend(tokens(&doc.server));
    for c in &doc.categories {
        t.extend(tokens(c));
        if let Some(d) = cats.description(c) {
            t.extend(tokens(d));
        }
    }
    t
}

impl Search {
    /// Categories in force: the built-in ones and `extra` (`warden.tools.categories`).
    pub(crate) fn set_categories(&self, extra: &BTreeMap<String, String>) {
        *self.categories.write().expect("not poisoned") = Arc::new(Categories::new(extra));
        *self.cache.lock().expect("not poisoned") = None;
        self.classified.lock().expect("not poisoned").clear();
    }

    pub(crate) fn categories(&self) -> Arc<Categories> {
        Arc::clone(&self.categories.read().expect("not poisoned"))
    }

    /// The index of what `table` lists now (built again only when a catalog changed).
    pub(crate) fn index(&self, table: &Table) -> Arc<Index> {
        let listed: Vec<(String, Arc<warden_upstream::Catalog>)> = table
            .server_names()
            .into_iter()
            .filter_map(|n| table.listed_catalog(&n).map(|(_, c)| (n, c)))
            .collect();
        let key: CatalogKey =
            listed.iter().map(|(n, c)| (n.clone(), Arc::as_ptr(c) as usize)).collect();
        if let Some((k, idx)) = &*self.cache.lock().expect("not poisoned") {
            if *k == key {
                return Arc::clone(idx);
            }
        }
        let cats = self.categories();
        let mut items = Vec::new();
        for (server, catalog) in &listed {
            let Some(spec) = table.server(server).map(|s| &s.spec) else { continue };
            for entry in catalog.tools.iter().filter(|t| !spec.disabled_tools.contains(&t.name)) {
                let raw = &*entry.raw;
                let description = raw["description"].as_str().unwrap_or_default();
                let (categories, by) = match spec.categories.of(&entry.name) {
                    Some(c) => (c.to_vec(), "config"),
                    None => (self.classify(&cats, server, &entry.name, description), "static"),
                };
                items.push((doc(server, &entry.name, description, categories, by), raw));
            }
        }
        let idx = Arc::new(Index::build(items, &cats));
        *self.cache.lock().expect("not poisoned") = Some((key, Arc::clone(&idx)));
        idx
    }

    fn classify(
        &self,
        cats: &Categories,
        server: &str,
        tool: &str,
        description: &str,
    ) -> Vec<String> {
        let key = (server.to_owned(), tool.to_owned(), hash(description));
        if let Some(c) = self.classified.lock().expect("not poisoned").get(&key) {
            return c.clone();
        }
        let c = cats.classify(tool, description);
        self.classified.lock().expect("not poisoned").insert(key, c.clone());
        c
    }
}

/// A listed tool's entry.
fn doc(
    server: &str,
    tool: &str,
    description: &str,
    categories: Vec<String>,
    by: &'static str,
) -> ToolDoc {
    ToolDoc {
        name: format!("{server}__{tool}"),
        server: server.to_owned(),
        tool: tool.to_owned(),
        description: description.to_owned(),
        categories,
        categorized_by: by,
    }
}

impl Index {
    /// Indexes tools, each with its entry and the tool as its server described it.
    pub(crate) fn build(items: Vec<(ToolDoc, &Value)>, cats: &Categories) -> Self {
        let all_terms: Vec<Vec<String>> =
            items.iter().map(|(d, raw)| terms(d, raw, cats)).collect();
        let docs: Vec<ToolDoc> = items.into_iter().map(|(d, _)| d).collect();
        let by_name = docs.iter().enumerate().map(|(i, d)| (d.name.clone(), i)).collect();
        Index { docs, by_name, bm25: Bm25::new(&all_terms) }
    }

    /// The categories of a listed tool (by its aggregated name).
    pub(crate) fn categories_of(&self, name: &str) -> &[String] {
        self.by_name.get(name).map_or(&[], |&i| self.docs[i].categories.as_slice())
    }

    /// The tools that match `query`, best first, at most `limit`.
    pub(crate) fn search(&self, query: &str, limit: usize) -> Vec<Hit> {
        let q = query_terms(query);
        let mut hits: Vec<Hit> = self
            .bm25
            .scores(&q)
            .into_iter()
            .enumerate()
            .filter(|(_, s)| *s > 0.0)
            .map(|(i, score)| Hit {
                doc: self.docs[i].clone(),
                score: (score * 1000.0).round() / 1000.0,
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.doc.name.cmp(&b.doc.name)));
        hits.truncate(limit);
        hits
    }

    /// The categories and tools a task described by `prompt` needs: categories score by the
    /// prompt against their descriptions plus the scores of their best-matching tools; the
    /// best and those within half of it (three at most) are chosen, and their tools — the
    /// matching ones first — are exposed, `max_tools` at most, with any other tool that
    /// matches well filling what is left.
    pub(crate) fn analyze(&self, cats: &Categories, prompt: &str, max_tools: usize) -> Analysis {
        let q = query_terms(prompt);
        let tool_scores = self.bm25.scores(&q);
        let top = tool_scores.iter().copied().fold(0.0_f64, f64::max);
        let mut by_cat: BTreeMap<String, f64> = BTreeMap::new();
        for (name, s) in cats.names.iter().zip(cats.scores(&q)) {
            if s > 0.0 {
                *by_cat.entry(name.clone()).or_default() += s;
            }
        }
        if top > 0.0 {
            for (doc, s) in self.docs.iter().zip(&tool_scores) {
                for c in &doc.categories {
                    // The tools' part counts as much as the descriptions' at most.
                    *by_cat.entry(c.clone()).or_default() += 2.0 * s / top;
                }
            }
        }
        let mut ranked: Vec<(String, f64)> =
            by_cat.into_iter().filter(|(c, s)| *s > 0.0 && c != "other").collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let Some(best) = ranked.first().map(|r| r.1) else {
            return Analysis {
                why: "no word of the prompt matches a tool or a category".to_owned(),
                ..Analysis::default()
            };
        };
        let chosen: Vec<(String, f64)> =
            ranked.iter().filter(|r| r.1 >= 0.5 * best).take(3).cloned().collect();
        let categories: Vec<String> = chosen.iter().map(|c| c.0.clone()).collect();
        let mut order: Vec<usize> = (0..self.docs.len()).collect();
        order.sort_by(|&a, &b| {
            tool_scores[b]
                .total_cmp(&tool_scores[a])
                .then_with(|| self.docs[a].name.cmp(&self.docs[b].name))
        });
        let in_chosen = |i: usize| self.docs[i].categories.iter().any(|c| categories.contains(c));
        let mut tools: Vec<String> = Vec::new();
        for &i in order.iter().filter(|&&i| in_chosen(i)) {
            tools.push(self.docs[i].name.clone());
        }
        for &i in
            order.iter().filter(|&&i| !in_chosen(i) && tool_scores[i] >= 0.5 * top && top > 0.0)
        {
            tools.push(self.docs[i].name.clone());
        }
        tools.truncate(max_tools);
        let scored: Vec<String> = chosen.iter().map(|(c, s)| format!("{c} {s:.2}")).collect();
        let words = self.bm25.known(&q);
        Analysis {
            categories,
            tools,
            why: format!(
                "matched {}; categories scored {}",
                if words.is_empty() { "no tool's words".to_owned() } else { words.join(", ") },
                scored.join(", ")
            ),
        }
    }

    /// Each category a listed tool has, with how many tools.
    pub(crate) fn category_counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for d in &self.docs {
            for c in &d.categories {
                *out.entry(c.clone()).or_default() += 1;
            }
        }
        out
    }
}
