//! Readers that tell, allocating nothing, whether serde_json would read a JSON value as rmcp's
//! types read it (`serde_json::Value`, a string, an object): for the lanes, which pass what
//! they check on as text.

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

/// Any JSON value `serde_json::Value` reads (numbers in range, strings with valid escapes, a
/// key given twice), up to this many levels deep; nothing is kept.
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
        while map.next_key_seed(Str(None))?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}
