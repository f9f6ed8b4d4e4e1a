//! The meta-tools (issue 14): `analyze_prompt` chooses the categories and tools a task needs
//! and shows the calling session only those; `search_tools` ranks tools for a query without
//! changing anything; `expose_tools` lets a client choose itself. Only tools the gateway lists
//! now — of servers something serves — are ever offered.

use serde_json::{json, Value};
use warden_core::{Event, EventKind, TraceId};
use warden_gateway::Exposure;
use warden_ops::toolpick::Candidate;
use warden_upstream::Origin;

use super::Tools;

impl Tools {
    /// Announces a session's new exposure.
    fn exposure_changed(&self, session: Origin, method: &str) {
        let e = self.gateway.exposure(session);
        let docs = self.gateway.tool_docs();
        let shown = docs.iter().filter(|d| e.shows(&d.name, &d.categories)).count();
        let categories = match &e {
            Exposure::Chosen { categories, .. } => categories.clone(),
            _ => vec![],
        };
        self.bus.emit(Event::new(
            None,
            TraceId::random(),
            EventKind::ExposureChanged {
                session,
                mode: e.mode().to_owned(),
                categories,
                tools: shown,
                method: method.to_owned(),
            },
        ));
    }

    /// The model's choice (when one is configured and answers usefully), else the static one.
    pub(super) async fn analyze_prompt(
        &self,
        args: &Value,
        session: Origin,
    ) -> Result<Value, String> {
        let prompt = args["prompt"].as_str().unwrap_or_default();
        let max = args["max_tools"].as_u64().unwrap_or(15) as usize;
        let started = std::time::Instant::now();
        let mut fallback = None;
        if let Some(picker) = &self.picker {
            let docs = self.gateway.tool_docs();
            let candidates: Vec<Candidate<'_>> = docs
                .iter()
                .map(|d| Candidate { name: &d.name, description: &d.description })
                .collect();
            let cats: Vec<(String, String)> =
                self.gateway.categories().into_iter().map(|(n, d, _)| (n, d)).collect();
            let asked = std::time::Instant::now();
            let answer = picker.choose(prompt, &candidates, &cats, max).await;
            let secs = asked.elapsed().as_secs_f64();
            match answer {
                Ok(choice) => {
                    self.gateway.count_categorization("llm", "ok", Some(secs));
                    let e = Exposure::Chosen {
                        categories: choice.categories.clone(),
                        tools: choice.tools.clone(),
                    };
                    let changed = self.gateway.set_exposure(session, Some(e)).await;
                    if changed {
                        self.exposure_changed(session, "llm");
                    }
                    return Ok(json!({
                        "method": "llm",
                        "provider": picker.provider(),
                        "categories": choice.categories,
                        "tools": choice.tools,
                        "why": choice.why,
                        "exposure_changed": changed,
                        "ms": started.elapsed().as_secs_f64() * 1000.0,
                    }));
                }
                Err(r) => {
                    let timed = (r.class != "backoff").then_some(secs);
                    self.gateway.count_categorization("llm", r.class, timed);
                    tracing::info!(reason = %r.reason, "tool choice falls back to static");
                    fallback = Some(r.reason);
                }
            }
        }
        let a = self.gateway.analyze_prompt(prompt, max);
        let outcome = if a.tools.is_empty() { "no_match" } else { "ok" };
        self.gateway.count_categorization("static", outcome, None);
        let changed = if a.tools.is_empty() {
            false
        } else {
            let e = Exposure::Chosen { categories: vec![], tools: a.tools.clone() };
            self.gateway.set_exposure(session, Some(e)).await
        };
        if changed {
            self.exposure_changed(session, "static");
        }
        Ok(json!({
            "method": "static",
            "fallback": fallback,
            "categories": a.categories,
            "tools": a.tools,
            "why": a.why,
            "exposure_changed": changed,
            "ms": started.elapsed().as_secs_f64() * 1000.0,
        }))
    }

    pub(super) fn search_tools(&self, args: &Value) -> Value {
        let query = args["query"].as_str().unwrap_or_default();
        let limit = args["limit"].as_u64().unwrap_or(10) as usize;
        let started = std::time::Instant::now();
        let hits = self.gateway.search_tools(query, limit);
        json!({ "query": query, "tools": hits, "ms": started.elapsed().as_secs_f64() * 1000.0 })
    }

    pub(super) async fn expose_tools(
        &self,
        args: &Value,
        session: Origin,
    ) -> Result<Value, String> {
        let list = |k: &str| -> Vec<String> {
            args[k]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let (tools, categories) = (list("tools"), list("categories"));
        let docs = self.gateway.tool_docs();
        let unknown: Vec<&String> =
            tools.iter().filter(|t| !docs.iter().any(|d| &d.name == *t)).collect();
        if !unknown.is_empty() {
            return Err(format!(
                "not listed now: {} (search_tools finds tools by what they do; a server with nothing serving it lists none)",
                unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        let known: Vec<String> = self.gateway.categories().into_iter().map(|c| c.0).collect();
        if let Some(bad) = categories.iter().find(|c| !known.contains(c)) {
            return Err(format!("{bad:?} is not a category; known: {}", known.join(", ")));
        }
        let mode = args["mode"].as_str().unwrap_or_default();
        let next = match mode {
            "reset" => None,
            "replace" => Some(Exposure::Chosen { categories, tools }),
            _ => Some(match self.gateway.exposure(session) {
                Exposure::All => Exposure::All,
                Exposure::Meta => Exposure::Chosen { categories, tools },
                Exposure::Chosen { categories: mut c, tools: mut t } => {
                    c.extend(categories.into_iter().filter(|x| !c.contains(x)).collect::<Vec<_>>());
                    t.extend(tools.into_iter().filter(|x| !t.contains(x)).collect::<Vec<_>>());
                    Exposure::Chosen { categories: c, tools: t }
                }
            }),
        };
        let changed = self.gateway.set_exposure(session, next).await;
        if changed {
            self.exposure_changed(session, "client");
        }
        let e = self.gateway.exposure(session);
        let shown: Vec<&str> = docs
            .iter()
            .filter(|d| e.shows(&d.name, &d.categories))
            .map(|d| d.name.as_str())
            .collect();
        Ok(json!({ "exposure": e, "exposure_changed": changed, "tools": shown }))
    }
}
