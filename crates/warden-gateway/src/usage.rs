//! Per-tool usage: every `tools/call` a client makes through the gateway is counted here, per
//! server, tool and UTC hour (calls, errors, latency, repeated arguments), and warden-ops
//! drains the counts into the store's `tool_usage` rollup about once a minute.
//!
//! On the call path this is one uncontended lock and two map lookups by `&str`; a tool's name is
//! allocated once, the first time it is called. Only tools the server offers are counted (an
//! unknown name is refused before it gets here), so the map is bounded by the catalogs; entries
//! idle for a whole drain interval are dropped. Other methods (resources, prompts, completion)
//! are not tool calls and are not counted here; they show in each instance's throughput.
//! Counted where a call is forwarded: answers from the result cache and calls that shared an
//! identical call's answer are not (they are in `Gateway::optimized_calls`), and each round of
//! a call that asks the client for input is one call.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use warden_core::{Timestamp, ToolUsage};

/// How many recent argument fingerprints per tool a call is compared with.
const RECENT: usize = 8;

/// One server's counts.
#[derive(Default)]
pub(crate) struct Usage {
    tools: Mutex<HashMap<String, Entry>>,
}

#[derive(Default)]
struct Entry {
    /// By hour (seconds since the epoch / 3600); one element except around the hour.
    hours: Vec<(i64, Counts)>,
    recent: [u64; RECENT],
    next: usize,
    /// Called since the last drain.
    active: bool,
}

#[derive(Clone, Copy, Default, Debug, PartialEq)]
struct Counts {
    calls: u64,
    errors: u64,
    total_ms: f64,
    max_ms: f64,
    repeats: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.calls += o.calls;
        self.errors += o.errors;
        self.total_ms += o.total_ms;
        self.max_ms = self.max_ms.max(o.max_ms);
        self.repeats += o.repeats;
    }
}

/// A fingerprint of a call's arguments (the JSON text of an object), read from the text
/// without building it: equal values give one fingerprint whatever their key order, spacing
/// or escapes (an object's members are combined in any order). Text that does not read is
/// fingerprinted as it is.
pub(crate) fn fingerprint(args: Option<&str>) -> u64 {
    let Some(text) = args else { return hash(&0u8) };
    let mut json = serde_json::Deserializer::from_str(text);
    serde::Deserializer::deserialize_any(&mut json, Fingerprint).unwrap_or_else(|_| hash(text))
}

/// foldhash, not SipHash: a fingerprint is compared in memory only, and a long argument (a
/// file's text) costs a tenth as much to hash.
fn hash<T: Hash + ?Sized>(x: &T) -> u64 {
    foldhash::fast::FixedState::with_seed(0).hash_one(x)
}

/// A JSON value's fingerprint: each kind of value tagged, an array's in order, an object's
/// members summed (so in any order).
struct Fingerprint;

impl<'de> serde::de::DeserializeSeed<'de> for Fingerprint {
    type Value = u64;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Fingerprint {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<u64, E> {
        Ok(hash(&1u8))
    }

    fn visit_bool<E>(self, b: bool) -> Result<u64, E> {
        Ok(hash(&(2u8, b)))
    }

    fn visit_u64<E>(self, n: u64) -> Result<u64, E> {
        Ok(hash(&(3u8, n)))
    }

    fn visit_i64<E>(self, n: i64) -> Result<u64, E> {
        Ok(u64::try_from(n).map_or_else(|_| hash(&(4u8, n)), |n| hash(&(3u8, n))))
    }

    fn visit_f64<E>(self, n: f64) -> Result<u64, E> {
        Ok(hash(&(5u8, n.to_bits())))
    }

    fn visit_str<E>(self, s: &str) -> Result<u64, E> {
        Ok(hash(&(6u8, s)))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut h = hash(&7u8);
        while let Some(x) = seq.next_element_seed(Fingerprint)? {
            h = hash(&(h, x));
        }
        Ok(h)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        let (mut sum, mut n) = (0u64, 0u64);
        while let Some(k) = map.next_key_seed(Fingerprint)? {
            let x = map.next_value_seed(Fingerprint)?;
            sum = sum.wrapping_add(hash(&(k, x)));
            n += 1;
        }
        Ok(hash(&(8u8, n, sum)))
    }
}

fn hour_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64 / 3600)
}

impl Usage {
    /// Counts one call of `tool`.
    pub(crate) fn record(&self, tool: &str, latency: Duration, failed: bool, args: u64) {
        let ms = latency.as_secs_f64() * 1000.0;
        let hour = hour_now();
        let mut tools = self.tools.lock().expect("not poisoned");
        if !tools.contains_key(tool) {
            tools.insert(tool.to_owned(), Entry::default());
        }
        let e = tools.get_mut(tool).expect("just inserted");
        let repeat = e.recent.contains(&args);
        e.recent[e.next] = args;
        e.next = (e.next + 1) % RECENT;
        e.active = true;
        let call = Counts {
            calls: 1,
            errors: u64::from(failed),
            total_ms: ms,
            max_ms: ms,
            repeats: u64::from(repeat),
        };
        match e.hours.iter_mut().find(|(h, _)| *h == hour) {
            Some((_, c)) => c.add(&call),
            None => e.hours.push((hour, call)),
        }
    }

    /// The counts so far, as rows of `server`; the counts start again from zero.
    pub(crate) fn drain(&self, server: &str) -> Vec<ToolUsage> {
        let mut tools = self.tools.lock().expect("not poisoned");
        // Tools not called since the last drain are forgotten (a renamed tool must not stay).
        tools.retain(|_, e| std::mem::take(&mut e.active) || !e.hours.is_empty());
        let mut rows = Vec::new();
        for (tool, e) in tools.iter_mut() {
            for (hour, c) in e.hours.drain(..) {
                rows.push(ToolUsage {
                    server: server.to_owned(),
                    tool: tool.clone(),
                    hour: Timestamp::from_timestamp(hour * 3600, 0).unwrap_or_default(),
                    calls: c.calls,
                    errors: c.errors,
                    total_ms: c.total_ms,
                    max_ms: c.max_ms,
                    repeats: c.repeats,
                });
            }
        }
        rows
    }

    /// Puts drained rows back (the store could not take them); they go out with the next drain.
    pub(crate) fn restore<'a>(&self, rows: impl IntoIterator<Item = &'a ToolUsage>) {
        let mut tools = self.tools.lock().expect("not poisoned");
        for r in rows {
            let e = tools.entry(r.tool.clone()).or_default();
            let c = Counts {
                calls: r.calls,
                errors: r.errors,
                total_ms: r.total_ms,
                max_ms: r.max_ms,
                repeats: r.repeats,
            };
            let hour = r.hour.timestamp() / 3600;
            match e.hours.iter_mut().find(|(h, _)| *h == hour) {
                Some((_, have)) => have.add(&c),
                None => e.hours.push((hour, c)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_per_tool_and_hour_and_drained_once() {
        let u = Usage::default();
        let same = fingerprint(Some(r#"{"text":"a","n":[1,2]}"#));
        // Equal values: key order, spacing and escapes aside.
        for equal in [r#"{ "n" : [1, 2], "text": "a" }"#, r#"{"te\u0078t":"\u0061","n":[1,2]}"#] {
            assert_eq!(same, fingerprint(Some(equal)), "{equal}");
        }
        for other in [
            r#"{"text":"b","n":[1,2]}"#,
            r#"{"text":"a","n":[2,1]}"#,
            r#"{"text":"a","n":[1,2.0]}"#,
            r#"{"text":"a"}"#,
            r#"{"text":"a","n":[1,2],"x":null}"#,
            r#"{"text":["a"],"n":[1,2]}"#,
            r#"{"n":"a","text":[1,2]}"#,
            "{}",
        ] {
            assert_ne!(same, fingerprint(Some(other)), "{other}");
        }
        assert_ne!(fingerprint(Some("{}")), fingerprint(None));
        assert_eq!(fingerprint(Some("{\"x\":-1}")), fingerprint(Some("{\"x\":-1}")));
        assert_ne!(fingerprint(Some("{\"x\":-1}")), fingerprint(Some("{\"x\":1}")));
        u.record("echo", Duration::from_millis(10), false, same);
        u.record("echo", Duration::from_millis(30), true, same);
        u.record("echo", Duration::from_millis(20), false, fingerprint(None));
        u.record("add", Duration::from_millis(5), false, same);
        let mut rows = u.drain("s");
        rows.sort_by(|a, b| a.tool.cmp(&b.tool));
        assert_eq!(rows.len(), 2);
        let echo = &rows[1];
        assert_eq!((echo.server.as_str(), echo.tool.as_str()), ("s", "echo"));
        assert_eq!((echo.calls, echo.errors, echo.repeats), (3, 1, 1));
        assert!((echo.total_ms - 60.0).abs() < 1e-9 && (echo.max_ms - 30.0).abs() < 1e-9);
        assert_eq!(echo.hour.timestamp() % 3600, 0, "the start of an hour");
        assert_eq!(rows[0].repeats, 0, "repeats are per tool");
        assert!(u.drain("s").is_empty(), "drained once");
        // What the store refused comes back with the next drain, added to new calls.
        u.restore(&rows);
        u.record("add", Duration::from_millis(5), false, 1);
        let again = u.drain("s");
        let add = again.iter().find(|r| r.tool == "add").unwrap();
        assert_eq!(add.calls, 2);
        assert_eq!(again.iter().find(|r| r.tool == "echo").unwrap().calls, 3);
        // Idle tools are forgotten after a drain without calls.
        u.drain("s");
        assert!(u.tools.lock().unwrap().is_empty());
    }
}
