//! Silences as the store keeps them, and as the API and the MCP tools give them (JSON).

use chrono::{DateTime, Utc};
use serde_json::Value;
use warden_alerts::{Matcher, Silence};
use warden_store::SilenceRow;

/// A silence as the store keeps it, ending at `ends_at`.
pub(super) fn silence_row(s: &Silence, ends_at: DateTime<Utc>) -> SilenceRow {
    SilenceRow {
        id: s.id.clone(),
        matchers: serde_json::to_value(&s.matchers).unwrap_or_default(),
        starts_at: stamp(s.starts_at),
        ends_at: stamp(ends_at),
        created_by: s.created_by.clone(),
        comment: s.comment.clone(),
    }
}

/// The store's timestamp form (fixed width, so text order is time order).
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(super) fn silence_of(r: &SilenceRow) -> Option<Silence> {
    let time = |s: &str| DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc));
    Some(Silence {
        id: r.id.clone(),
        matchers: serde_json::from_value(r.matchers.clone()).ok()?,
        starts_at: time(&r.starts_at)?,
        ends_at: time(&r.ends_at)?,
        created_by: r.created_by.clone(),
        comment: r.comment.clone(),
    })
}

pub fn parse_silence(v: &Value) -> Result<Silence, String> {
    let mut matchers = Vec::new();
    match v.get("matchers") {
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, m) in items.iter().enumerate() {
                let parsed = match m {
                    Value::String(s) => Matcher::parse(s),
                    other => {
                        serde_json::from_value::<Matcher>(other.clone()).map_err(|e| e.to_string())
                    }
                };
                matchers.push(parsed.map_err(|e| format!("matchers[{i}]: {e}"))?);
            }
        }
        _ => return Err("matchers: give a non-empty list, e.g. [\"server=search\"]".into()),
    }
    let time = |key: &str| -> Result<Option<DateTime<Utc>>, String> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|e| format!("{key}: {s:?} is not an RFC 3339 time: {e}")),
            Some(other) => Err(format!("{key}: must be an RFC 3339 time, not {other}")),
        }
    };
    let now = Utc::now();
    let starts_at = time("starts_at")?.unwrap_or(now);
    let ends_at = match (time("ends_at")?, v.get("duration").and_then(Value::as_str)) {
        (Some(t), None) => t,
        (None, Some(d)) => {
            let d = warden_config::parse_duration(d).map_err(|e| format!("duration: {e}"))?;
            chrono::Duration::from_std(d).ok().and_then(|d| starts_at.checked_add_signed(d)).ok_or(
                "duration: too long (the silence would end after the last date Warden can hold)",
            )?
        }
        (Some(_), Some(_)) => return Err("give ends_at or duration, not both".into()),
        (None, None) => return Err("duration: missing (e.g. \"2h\"), or give ends_at".into()),
    };
    if ends_at <= starts_at || ends_at <= now {
        return Err("ends_at: the silence would end before it starts or in the past".into());
    }
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let comment = text("comment");
    let created_by = match text("created_by") {
        s if s.is_empty() => "api".to_owned(),
        s => s,
    };
    Ok(Silence {
        id: format!("{:016x}", rand::random::<u64>()),
        matchers,
        starts_at,
        ends_at,
        created_by,
        comment,
    })
}
