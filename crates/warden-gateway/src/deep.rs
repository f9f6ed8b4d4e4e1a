//! A health check made now rather than read from state (`integration_monitor`'s `deep` and
//! `comprehensive` depths): each instance with a live session is probed, its tools listed
//! afresh and compared with what Warden routes by, and — comprehensive — its smoke-test tool
//! called.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warden_config::SmokeTest;
use warden_upstream::{Call, Session};

use crate::Gateway;

/// How long a listing may take in a deep check.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

impl Gateway {
    /// Checks every instance of `server` now; `smoke` adds the smoke-test call. One entry per
    /// instance: `{instance, ok, probe_ms, tools, catalog_current, smoke_test, error}`.
    pub async fn check_now(
        &self,
        server: &str,
        smoke: Option<&SmokeTest>,
    ) -> Result<Vec<Value>, String> {
        let table = self.routes.table();
        let s = table.server(server).ok_or_else(|| format!("no server named {server:?}"))?;
        let timeout = s.spec.health.timeout;
        let mut out = Vec::new();
        for i in &s.instances {
            let Some(session) = i.link.session() else {
                out.push(json!({ "instance": i.id, "ok": false, "error": "no live session" }));
                continue;
            };
            let mut row = json!({ "instance": i.id });
            let probe = session.probe(s.spec.health.method, timeout).await;
            row["probe_ms"] = json!(probe.as_ref().ok().map(|d| d.as_secs_f64() * 1000.0));
            let mut ok = probe.is_ok();
            if let Err(e) = &probe {
                row["error"] = json!(e.to_string());
            }
            match session.list_catalog(LIST_TIMEOUT).await {
                Ok(listed) => {
                    let names = |c: &warden_upstream::Catalog| {
                        let mut n: Vec<String> = c.tools.iter().map(|t| t.name.clone()).collect();
                        n.sort();
                        n
                    };
                    let now = names(&listed);
                    let held = i.link.catalog().map(|c| names(&c));
                    row["tools"] = json!(now.len());
                    // Whether Warden routes by the list the server gives now.
                    row["catalog_current"] = json!(held.as_ref() == Some(&now));
                }
                Err(e) => {
                    ok = false;
                    row["list_error"] = json!(e.to_string());
                }
            }
            if let Some(smoke) = smoke {
                let r = smoke_call(session.as_ref(), smoke, s.call_timeout()).await;
                ok &= r["ok"].as_bool().unwrap_or(false);
                row["smoke_test"] = r;
            }
            row["ok"] = json!(ok);
            out.push(row);
        }
        Ok(out)
    }
}

/// Calls the smoke-test tool; a JSON-RPC error or an `isError` result fails it.
async fn smoke_call(session: &dyn Session, smoke: &SmokeTest, timeout: Duration) -> Value {
    let params = json!({ "name": smoke.tool, "arguments": smoke.arguments });
    let started = Instant::now();
    let r = session.request(Call::new("tools/call", Some(params), timeout)).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match r {
        Ok(v) if v.peek().is_error => {
            let v = v.value().unwrap_or_default();
            let text = v["content"][0]["text"].as_str().unwrap_or("isError").to_owned();
            json!({ "tool": smoke.tool, "ok": false, "ms": ms, "error": text })
        }
        Ok(_) => json!({ "tool": smoke.tool, "ok": true, "ms": ms }),
        Err(e) => json!({ "tool": smoke.tool, "ok": false, "ms": ms, "error": e.to_string() }),
    }
}
