//! Offline mode (`fallback_strategy: offline_mode`): the last good result of each read-only
//! tool call, per server, tool and arguments, answers the same call while nothing can serve
//! it — marked stale in `_meta`, so a client can tell.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::json;
use warden_core::Timestamp;
use warden_upstream::Reply;

/// Results kept at most (a full store forgets its oldest half).
const CAP: usize = 10_000;

/// The `_meta` key that marks an answer from the offline store.
pub const STALE_META: &str = "io.warden/stale";

#[derive(Default)]
pub(crate) struct LastGood {
    map: Mutex<HashMap<String, (Timestamp, Reply)>>,
    pub(crate) served: std::sync::atomic::AtomicU64,
}

impl LastGood {
    pub(crate) fn put(&self, key: String, result: &Reply) {
        let mut map = self.map.lock().expect("not poisoned");
        if map.len() >= CAP && !map.contains_key(&key) {
            let mut ages: Vec<(Timestamp, String)> =
                map.iter().map(|(k, (t, _))| (*t, k.clone())).collect();
            ages.sort();
            for (_, k) in ages.into_iter().take(CAP / 2) {
                map.remove(&k);
            }
        }
        map.insert(key, (warden_core::now(), result.clone()));
    }

    /// The kept result, its `_meta` saying it is stale, when it was stored and why it is
    /// answered instead of the server.
    pub(crate) fn stale(&self, key: &str, why: &str) -> Option<Reply> {
        let (at, v) = self.map.lock().expect("not poisoned").get(key).cloned()?;
        let mut v = v.value().ok()?;
        self.served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let age = (warden_core::now() - at).num_milliseconds().max(0);
        if let Some(o) = v.as_object_mut() {
            let meta = o.entry("_meta").or_insert_with(|| json!({}));
            if let Some(m) = meta.as_object_mut() {
                m.insert(
                    STALE_META.to_owned(),
                    json!({ "stored_at": at, "age_ms": age, "reason": why }),
                );
            }
        }
        Some(Reply::from_value(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_answer_says_so_and_keeps_the_result() {
        let store = LastGood::default();
        assert!(store.stale("k", "down").is_none());
        let result = json!({ "content": [{ "type": "text", "text": "42" }] });
        store.put("k".into(), &Reply::from_value(&result));
        let v = store.stale("k", "no routable instance").unwrap().value().unwrap();
        assert_eq!(v["content"][0]["text"], "42");
        assert_eq!(v["_meta"][STALE_META]["reason"], "no routable instance");
        assert!(v["_meta"][STALE_META]["age_ms"].as_i64().unwrap() >= 0);
    }

    #[test]
    fn a_full_store_forgets_its_oldest_half() {
        let store = LastGood::default();
        for i in 0..CAP {
            store.put(format!("k{i}"), &Reply::from_value(&json!(i)));
        }
        store.put("new".into(), &Reply::from_value(&json!("new")));
        let len = store.map.lock().unwrap().len();
        assert_eq!(len, CAP - CAP / 2 + 1);
        assert!(store.stale("new", "x").is_some());
    }
}
