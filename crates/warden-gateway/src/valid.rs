//! Readers that tell whether serde_json would read a JSON value as rmcp's types read it
//! (`serde_json::Value`, a string, an object), keeping nothing (an object of more than eight
//! keys allocates a set of their hashes): for the lanes, which pass what they check on as text.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// How deep [`Any`] follows a value; deeper is left to rmcp's own reading (serde_json stops at
/// 127 levels in all, the message's own included).
pub(crate) const DEPTH: u8 = 64;

/// Whether `text` is one JSON object `serde_json::Value` reads, at most [`DEPTH`] levels deep.
pub(crate) fn is_object(text: &str) -> bool {
    let mut json = serde_json::Deserializer::from_str(text);
    text.starts_with('{') && Any(DEPTH).deserialize(&mut json).is_ok() && json.end().is_ok()
}

/// A string (read in full, so escapes are checked as rmcp checks them), equal to the one
/// given if there is one.
pub(crate) struct Str(pub(crate) Option<&'static str>);

impl<'de> DeserializeSeed<'de> for Str {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Str {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        match self.0 {
            Some(want) if want != s => Err(E::custom("another string")),
            _ => Ok(()),
        }
    }
}

/// An object, read as `serde_json::Value` reads one.
pub(crate) struct Object;

impl<'de> DeserializeSeed<'de> for Object {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(Any(DEPTH))
    }
}

/// Any JSON value `serde_json::Value` reads (numbers in range, strings with valid escapes), up
/// to this many levels deep, each object's keys once (see [`KeyHash`]); nothing is kept.
#[derive(Clone, Copy)]
pub(crate) struct Any(pub(crate) u8);

impl<'de> DeserializeSeed<'de> for Any {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Any {
    fn inner<E: de::Error>(self) -> Result<Self, E> {
        self.0.checked_sub(1).map(Any).ok_or_else(|| E::custom("deeper than the pass goes"))
    }
}

impl<'de> Visitor<'de> for Any {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.inner()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.inner()?;
        let mut keys = Keys::default();
        while let Some(key) = map.next_key_seed(KeyHash)? {
            if !keys.insert(key) {
                return Err(de::Error::custom("a key twice"));
            }
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// An object key, read in full (escapes checked), as a hash: `Value` keeps one of two equal
/// keys where the text has both, so a key given twice (or two keys whose hashes meet) is left
/// to rmcp's reading.
struct KeyHash;

impl<'de> DeserializeSeed<'de> for KeyHash {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyHash {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, s: &str) -> Result<u64, E> {
        use std::hash::BuildHasher;
        Ok(foldhash::fast::FixedState::with_seed(0).hash_one(s))
    }
}

/// The key hashes of one object: the first eight on the stack, beyond that all of them in a
/// set (so a large object costs no more than a set's lookups).
#[derive(Default)]
struct Keys {
    few: [u64; 8],
    len: usize,
    many: Option<std::collections::HashSet<u64>>,
}

impl Keys {
    /// `false` if `key` was there already.
    fn insert(&mut self, key: u64) -> bool {
        if let Some(many) = &mut self.many {
            return many.insert(key);
        }
        if self.few[..self.len].contains(&key) {
            return false;
        }
        if self.len < self.few.len() {
            self.few[self.len] = key;
            self.len += 1;
        } else {
            let mut many: std::collections::HashSet<u64> = self.few.iter().copied().collect();
            many.insert(key);
            self.many = Some(many);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_passes_as_value_reads_it_and_a_key_twice_is_left_to_rmcp() {
        for ok in
            [r#"{}"#, r#"{"a":1,"b":{"a":1},"c":[{"a":1},{"a":2}]}"#, r#"{"\u00e9":1,"é2":2}"#]
        {
            assert!(is_object(ok), "{ok}");
            assert!(serde_json::from_str::<serde_json::Value>(ok).is_ok());
        }
        for left in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"x":{"b":1,"b":1}}"#,
            r#"{"n":1e400}"#,
            r#"{"s":"\ud800"}"#,
            "[]",
            "1",
            r#"{"a":1}{}"#,
        ] {
            assert!(!is_object(left), "{left}");
        }
        // Many keys: each once passes, one twice does not, at any position.
        let keys: Vec<String> = (0..40).map(|i| format!(r#""k{i}":{i}"#)).collect();
        assert!(is_object(&format!("{{{}}}", keys.join(","))));
        for twice in [0, 7, 8, 39] {
            let mut with = keys.clone();
            with.push(keys[twice].clone());
            assert!(!is_object(&format!("{{{}}}", with.join(","))), "key {twice} twice");
        }
    }
}
