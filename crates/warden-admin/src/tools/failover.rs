//! `failover_manager` (the operator's failover controls, for a server or every server of a
//! kind or tag) and `failover_coordinator` (which recovery Warden takes for a class of
//! failure, and taking it).

use std::time::Duration;

use serde_json::{json, Value};
use warden_config::{FallbackStrategy, ServerSpec};
use warden_core::FailureClass;
use warden_gateway::FailoverAction;
use warden_supervisor::Command;

use super::{select, Tools};

/// How long `recovery_priority: immediate` waits for what it restarted to serve again.
const IMMEDIATE_WAIT: Duration = Duration::from_secs(15);

impl Tools {
    /// The servers `integration_type` (or `server`) names.
    fn targets(&self, args: &Value, param: &str) -> Result<Vec<String>, String> {
        let named = args[param].as_str().or_else(|| args["server"].as_str());
        let Some(named) = named else {
            return Err(format!("name the servers: {param} (a server name, kind or tag)"));
        };
        select(&self.servers, &[named], param)
    }

    pub(super) async fn failover(&self, args: &Value) -> Result<Value, String> {
        let servers = self.targets(args, "integration_type")?;
        let action = args["action"].as_str().unwrap_or_default();
        let strategy = args["fallback_strategy"].as_str().and_then(FallbackStrategy::parse);
        let priority = args["recovery_priority"].as_str().unwrap_or("immediate");
        let mut out = Vec::new();
        for server in &servers {
            if let Some(s) = strategy {
                self.gateway.set_fallback_strategy(server, s)?;
            }
            out.push(self.failover_one(server, action, priority).await?);
        }
        Ok(match <[Value; 1]>::try_from(out) {
            Ok([one]) => one,
            Err(many) => json!({ "servers": many }),
        })
    }

    async fn failover_one(
        &self,
        server: &str,
        action: &str,
        priority: &str,
    ) -> Result<Value, String> {
        let act = |a| self.gateway.failover(server, a);
        match action {
            "enable_failover" => act(FailoverAction::Enable).await,
            "disable_failover" => act(FailoverAction::Disable).await,
            "test_fallback" => act(FailoverAction::Test).await,
            "restore_primary" => act(FailoverAction::Restore).await,
            "trigger_failover" => act(FailoverAction::Trigger).await,
            _ => self.trigger_recovery(server, priority).await,
        }
    }

    /// Recovers what is down now (immediate: and waits for it to serve), in the background, or
    /// — scheduled — leaves it to the supervisor's next retry and says when that is.
    async fn trigger_recovery(&self, server: &str, priority: &str) -> Result<Value, String> {
        let h = self.servers.handle(server).ok_or_else(|| format!("no server named {server:?}"))?;
        if priority == "scheduled" {
            let pending: Vec<Value> = h
                .views()
                .iter()
                .filter(|v| !v.state.is_routable())
                .map(|v| json!({ "instance": v.id, "state": v.state, "next_retry_at": v.next_retry_at }))
                .collect();
            return Ok(
                json!({ "server": server, "recovery_priority": priority, "scheduled": pending }),
            );
        }
        if priority == "background" {
            let this = self.clone();
            let name = server.to_owned();
            tokio::spawn(async move { this.recover(&name).await });
            return Ok(json!({ "server": server, "recovery_priority": priority, "started": true }));
        }
        let acted = self.recover(server).await;
        let waited = tokio::time::Instant::now();
        while !acted.is_empty()
            && !h.views().iter().any(|v| v.state.is_routable())
            && waited.elapsed() < IMMEDIATE_WAIT
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let states: Vec<Value> =
            h.views().iter().map(|v| json!({ "instance": v.id, "state": v.state })).collect();
        Ok(json!({
            "server": server,
            "recovery_priority": priority,
            "recovering": acted,
            "serving": h.views().iter().any(|v| v.state.is_routable()),
            "instances": states,
        }))
    }

    pub(super) async fn coordinate(&self, args: &Value) -> Result<Value, String> {
        let servers = self.targets(args, "server_type")?;
        let class = args["failure_type"].as_str().unwrap_or_default();
        let class = FailureClass::ALL
            .into_iter()
            .find(|c| c.as_str() == class)
            .ok_or_else(|| format!("{class:?} is not a failure type"))?;
        let strategy = args["recovery_strategy"].as_str().unwrap_or("auto");
        let apply = args["apply"].as_bool().unwrap_or(false);
        let mut out = Vec::new();
        for server in &servers {
            let Some(h) = self.servers.handle(server) else { continue };
            let fo = h.failover().get();
            let mut plan = plan(&h.spec, fo.strategy, class);
            if strategy != "auto" {
                plan["instances"] = json!(match strategy {
                    "restart" | "reconnect" => strategy,
                    _ => "none",
                });
                plan["calls"] =
                    json!(if strategy == "failover" { "fallbacks" } else { "unchanged" });
            }
            if apply {
                plan["applied"] = self.apply_plan(server, &plan).await;
            }
            out.push(plan);
        }
        Ok(json!({
            "failure_type": class.as_str(),
            "recovery_strategy": strategy,
            "applied": apply,
            "servers": out,
        }))
    }

    /// Takes the recovery `plan` names: restarts or reconnects, and fails over when its calls
    /// go to the fallbacks and it has some.
    async fn apply_plan(&self, server: &str, plan: &Value) -> Value {
        let mut done = Vec::new();
        let instances = plan["instances"].as_str().unwrap_or("none");
        if plan["recovery_strategy"] == "auto" || instances == "none" {
            // Auto: only what is down (a live instance is not restarted for a failure it
            // does not have).
            if instances != "none" {
                done.extend(self.recover(server).await);
            }
        } else if let Some(h) = self.servers.handle(server) {
            let n = h.command(Command::Restart, None).await;
            done.push(json!({ "action": instances, "instances": n }));
        }
        if plan["calls"] == "fallbacks" {
            match self.gateway.failover(server, FailoverAction::Trigger).await {
                Ok(v) => done.push(json!({ "action": "failover", "served_by": v["served_by"] })),
                Err(e) => done.push(json!({ "action": "failover", "error": e })),
            }
        }
        json!(done)
    }
}

/// What Warden's policy does for `class` on a server like `spec` under `strategy`: to its
/// instances, and to its calls.
fn plan(spec: &ServerSpec, strategy: FallbackStrategy, class: FailureClass) -> Value {
    let stdio = spec.is_stdio();
    let again = if stdio { "restart" } else { "reconnect" };
    let (instances, why) = match class {
        FailureClass::Crash | FailureClass::ConnectionError | FailureClass::ProtocolError => (
            again,
            "started again with exponential backoff; after too many restarts in the window it is failed and retried on probation",
        ),
        FailureClass::Hang => (
            if stdio { "kill_and_restart" } else { "reconnect" },
            "no byte while probes are outstanding past hang_timeout: the process group is killed and started again",
        ),
        FailureClass::Timeout => (
            again,
            "calls that time out are retried once on another instance when safe; probes failing unhealthy_threshold times make it critical, then it is started again",
        ),
        FailureClass::Authentication => (
            "none",
            "a restart does not fix credentials: it stays up, alerts fire, and calls go elsewhere",
        ),
        FailureClass::RateLimit => (
            "none",
            "its circuit breaker opens and calls go to other replicas until it lets calls through again",
        ),
        FailureClass::ServerError => (
            "none",
            "calls are retried on another instance when safe; repeated errors open the breaker, and a rising error ratio drains it before it fails",
        ),
    };
    let has_fallbacks = !spec.fallback.is_empty();
    let calls = match strategy {
        FallbackStrategy::FailFast => "fail",
        FallbackStrategy::Manual => "fail_until_operator",
        _ if has_fallbacks
            && matches!(class, FailureClass::Authentication | FailureClass::RateLimit) =>
        {
            "fallbacks"
        }
        _ if has_fallbacks => "fallbacks_while_down",
        FallbackStrategy::OfflineMode => "stale_read_only",
        _ => "fail_while_down",
    };
    json!({
        "server": spec.name,
        "transport": if stdio { "stdio" } else { "http" },
        "fallback_strategy": strategy.as_str(),
        "fallbacks": spec.fallback,
        "recovery_strategy": "auto",
        "instances": instances,
        "calls": calls,
        "why": why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> ServerSpec {
        let loaded = warden_config::compile(json, &|_| None).expect("a valid config");
        loaded.config.servers.into_iter().next().unwrap()
    }

    #[test]
    fn the_plan_follows_the_failure_the_transport_and_the_strategy() {
        let stdio = spec(
            r#"{ "mcpServers": { "a": { "command": "x", "fallback": "b" }, "b": { "command": "y" } } }"#,
        );
        let p = plan(&stdio, FallbackStrategy::GracefulDegradation, FailureClass::Hang);
        assert_eq!(
            (p["instances"].as_str(), p["calls"].as_str()),
            (Some("kill_and_restart"), Some("fallbacks_while_down"))
        );
        let p = plan(&stdio, FallbackStrategy::GracefulDegradation, FailureClass::Authentication);
        assert_eq!(
            (p["instances"].as_str(), p["calls"].as_str()),
            (Some("none"), Some("fallbacks"))
        );
        let p = plan(&stdio, FallbackStrategy::FailFast, FailureClass::Crash);
        assert_eq!((p["instances"].as_str(), p["calls"].as_str()), (Some("restart"), Some("fail")));
        let remote = spec(r#"{ "mcpServers": { "r": { "url": "http://127.0.0.1:1/mcp" } } }"#);
        let p = plan(&remote, FallbackStrategy::OfflineMode, FailureClass::Crash);
        assert_eq!(
            (p["instances"].as_str(), p["calls"].as_str()),
            (Some("reconnect"), Some("stale_read_only"))
        );
    }
}
