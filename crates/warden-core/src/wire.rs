//! The wire form of an event: one flat JSON object per occurrence, the same on `/events` (SSE),
//! `/ws`, `/api/events`, the JSONL event log and `warden events --json`.
//!
//! ```json
//! { "seq": 42, "at": "2026-11-21T10:00:00.123456Z", "kind": "process_exited",
//!   "instance": "search#0", "server": "search",
//!   "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
//!   "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-000000000000002a-01",
//!   "message": "process exited with signal 9",
//!   "data": { "exit": { "code": null, "signal": 9, "at": "…", "pid": 4242 } } }
//! ```
//!
//! `data` holds the kind's own fields (those of [`EventKind`](crate::EventKind)), so a new kind
//! needs no change here. A subscriber that falls behind gets a `dropped` notice instead:
//! `{"kind": "dropped", "at": …, "missed": N, "message": …}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Event, Timestamp};

/// One event on the wire; serializes with its fields in this order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireEvent {
    /// Position in its Warden run's stream (from 1); `null` for events recorded before it existed.
    pub seq: Option<u64>,
    pub at: Value,
    pub kind: String,
    pub instance: Option<String>,
    pub server: Option<String>,
    pub trace_id: Option<String>,
    pub traceparent: Option<String>,
    pub message: String,
    pub data: Value,
}

/// The wire form of a live event.
pub fn event_json(e: &Event) -> WireEvent {
    from_serialized(serde_json::to_value(e).unwrap_or_default())
}

/// The wire form of an event as it was serialized (`serde_json::to_value(&event)`, which is also
/// the `payload` column of the store's `events` table).
pub fn from_serialized(v: Value) -> WireEvent {
    let mut data = match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let text = |v: Option<Value>| match v {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let seq = data.remove("seq").and_then(|s| s.as_u64());
    let at = data.remove("at").unwrap_or(Value::Null);
    let kind = text(data.remove("type")).unwrap_or_default();
    let instance = text(data.remove("instance"));
    let trace_id = text(data.remove("trace_id"));
    let server = instance
        .as_deref()
        .and_then(|i| i.rsplit_once('#'))
        .map(|(s, _)| s.to_owned())
        .or_else(|| data.get("server").and_then(Value::as_str).map(str::to_owned));
    let traceparent =
        trace_id.as_deref().map(|t| format!("00-{t}-{:016x}-01", seq.unwrap_or(0).max(1)));
    let data = Value::Object(data);
    let message = describe(&kind, &data);
    WireEvent { seq, at, kind, instance, server, trace_id, traceparent, message, data }
}

/// The notice a subscriber gets, instead of the events it missed, before it is disconnected.
#[derive(Clone, Debug, Serialize)]
pub struct DroppedNotice {
    /// Always `dropped`.
    pub kind: &'static str,
    pub at: Timestamp,
    pub missed: u64,
    pub message: String,
}

pub fn dropped_notice(missed: u64, why: &str) -> DroppedNotice {
    DroppedNotice {
        kind: "dropped",
        at: crate::now(),
        missed,
        message: format!("{missed} events missed: {why}"),
    }
}

impl WireEvent {
    /// One line of JSON.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl DroppedNotice {
    /// One line of JSON.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A one-line human description of an event from its kind and `data` (works on live events
/// and on stored ones alike, and on kinds it does not know: it names them).
pub fn describe(kind: &str, data: &Value) -> String {
    let s = |key: &str| data.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
    let n = |key: &str| data.get(key).and_then(Value::as_u64).unwrap_or(0);
    let reason = |v: Option<&Value>| -> Option<String> {
        let r = v?;
        let class = r.get("class")?.as_str()?;
        let message = r.get("message").and_then(Value::as_str).unwrap_or("");
        Some(if message.is_empty() { class.to_owned() } else { format!("{class}: {message}") })
    };
    match kind {
        "state_changed" => {
            let base = format!("{} → {}", s("from"), s("to"));
            match reason(data.get("reason")) {
                Some(r) => format!("{base} ({r})"),
                None => base,
            }
        }
        "process_started" => format!("process started (pid {})", n("pid")),
        "process_exited" => {
            let exit = data.get("exit").cloned().unwrap_or_default();
            let how = match (exit["code"].as_i64(), exit["signal"].as_i64()) {
                (_, Some(sig)) => format!("exited with signal {sig}"),
                (Some(code), None) => format!("exited with code {code}"),
                (None, None) => "exited".to_owned(),
            };
            match exit["pid"].as_u64() {
                Some(pid) => format!("process {pid} {how}"),
                None => format!("process {how}"),
            }
        }
        "connected" => match s("protocol_version") {
            p if p.is_empty() => format!("connected to {}", s("server_name")),
            p => format!("connected to {} (protocol {p})", s("server_name")),
        },
        "probe_failed" => format!(
            "probe {} failed: {}",
            s("method"),
            reason(data.get("reason")).unwrap_or_default()
        ),
        "failure" => {
            let r = reason(data.get("reason")).unwrap_or_default();
            match s("context") {
                c if c.is_empty() => format!("failure: {r}"),
                c => format!("failure: {r} ({c})"),
            }
        }
        "recovered" => format!(
            "recovered from {} by {} after {:.1} s",
            s("class"),
            s("action"),
            data.get("downtime_seconds").and_then(Value::as_f64).unwrap_or(0.0)
        ),
        "restart_scheduled" => format!("restart {} in {} ms", n("attempt"), n("delay_ms")),
        "restart_intensity_exceeded" => format!(
            "{} restarts within {} s: failed, no more automatic restarts",
            n("restarts"),
            n("window_seconds")
        ),
        "hang_killed" => format!("killed as hung after {} ms of silence", n("silent_ms")),
        "catalog_listed" => {
            let mut m = format!(
                "{} tools, {} resources, {} prompts",
                n("tools"),
                n("resources"),
                n("prompts")
            );
            let names = |key: &str, sign: char| -> Vec<String> {
                data.get(key)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter().filter_map(Value::as_str).map(|x| format!("{sign}{x}")).collect()
                    })
                    .unwrap_or_default()
            };
            let changes: Vec<String> =
                names("added", '+').into_iter().chain(names("removed", '-')).collect();
            if !changes.is_empty() {
                m += &format!(" ({})", changes.join(" "));
            }
            m
        }
        "operator_action" => format!("operator: {}", s("action")),
        "store_degraded" => format!("database degraded: {}", s("message")),
        "store_recovered" => "database writable again".to_owned(),
        "alert_firing" => {
            format!("alert {} firing ({}): {}", s("alert"), s("severity"), s("summary"))
        }
        "alert_resolved" => format!(
            "alert {} resolved after {:.0} s: {}",
            s("alert"),
            data.get("firing_seconds").and_then(Value::as_f64).unwrap_or(0.0),
            s("summary")
        ),
        "tuning_changed" => {
            let f = |key: &str| data.get(key).and_then(Value::as_f64).unwrap_or(0.0);
            let verb = if data["reverted"] == true { "reverted" } else { "tuned" };
            format!(
                "{verb} {} {} → {} (change {}): {}",
                s("parameter"),
                f("from"),
                f("to"),
                n("change_id"),
                s("reason")
            )
        }
        "config_reloaded" => format!("config reloaded ({}): {}", s("trigger"), s("summary")),
        "config_rejected" => {
            let errors: Vec<&str> = data
                .get("errors")
                .and_then(Value::as_array)
                .map(|e| e.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!(
                "config rejected ({}), the running config stays: {}",
                s("trigger"),
                errors.join("; ")
            )
        }
        "dropped" => format!("{} events missed", n("missed")),
        other => other.replace('_', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventBus, EventKind, ExitInfo, FailureClass, InstanceId, Reason, TraceId};

    fn emitted(kind: EventKind) -> std::sync::Arc<Event> {
        let bus = EventBus::new(None);
        let mut rx = bus.subscribe();
        bus.emit(Event::new(Some(InstanceId::new("search", 0)), TraceId::random(), kind.clone()));
        bus.emit(Event::new(Some(InstanceId::new("search", 0)), TraceId::random(), kind));
        rx.try_recv().unwrap();
        rx.try_recv().unwrap()
    }

    #[test]
    fn live_and_stored_events_have_the_same_shape() {
        let e = emitted(EventKind::ProcessExited {
            exit: ExitInfo { code: None, signal: Some(9), at: crate::now(), pid: Some(4242) },
        });
        let wire = event_json(&e);
        // The store keeps `serde_json::to_string(&event)`; reading it back gives the same form.
        let stored: Value = serde_json::from_str(&serde_json::to_string(&*e).unwrap()).unwrap();
        assert_eq!(from_serialized(stored), wire);
        // Fields in the documented order.
        let line = wire.to_line();
        assert!(line.starts_with(r#"{"seq":2,"at":""#), "{line}");
        let order = [
            "\"kind\"",
            "\"instance\"",
            "\"server\"",
            "\"trace_id\"",
            "\"traceparent\"",
            "\"message\"",
            "\"data\"",
        ];
        let at = |k: &str| line.find(k).unwrap();
        assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{line}");
        let live: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(live["seq"], 2, "the bus numbers events from 1");
        assert_eq!(live["kind"], "process_exited");
        assert_eq!(live["instance"], "search#0");
        assert_eq!(live["server"], "search");
        assert_eq!(live["data"]["exit"]["signal"], 9);
        assert_eq!(live["message"], "process 4242 exited with signal 9");
        let trace = live["trace_id"].as_str().unwrap();
        assert_eq!(trace.len(), 32);
        assert!(trace.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(live["traceparent"], format!("00-{trace}-0000000000000002-01"));
        assert_eq!(e.trace_id.traceparent(2), live["traceparent"].as_str().unwrap());
        let keys: Vec<&str> = live.as_object().unwrap().keys().map(String::as_str).collect();
        for k in ["seq", "at", "kind", "instance", "server", "trace_id", "traceparent", "message"] {
            assert!(keys.contains(&k), "{k} missing: {live}");
        }
    }

    #[test]
    fn messages_read_well() {
        let e = emitted(EventKind::StateChanged {
            from: crate::InstanceState::Healthy,
            to: crate::InstanceState::Offline,
            reason: Some(Reason::new(FailureClass::Crash, "exited with signal 9")),
        });
        assert_eq!(event_json(&e).message, "healthy → offline (crash: exited with signal 9)");
        let e = emitted(EventKind::CatalogListed {
            tools: 3,
            resources: 0,
            prompts: 1,
            changed: true,
            added: vec!["echo".into()],
            removed: vec!["old".into()],
        });
        assert_eq!(event_json(&e).message, "3 tools, 0 resources, 1 prompts (+echo -old)");
        assert_eq!(describe("some_new_kind", &Value::Null), "some new kind");
        let notice: Value = serde_json::from_str(&dropped_notice(7, "too slow").to_line()).unwrap();
        assert_eq!(notice["kind"], "dropped");
        assert_eq!(notice["missed"], 7);
        assert_eq!(notice["message"], "7 events missed: too slow");
    }

    #[test]
    fn traceparent_never_has_a_zero_parent() {
        let t = TraceId::random();
        assert!(t.traceparent(0).ends_with("-0000000000000001-01"));
    }
}
