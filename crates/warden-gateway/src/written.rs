//! A server's `tools/call` result passed to the client as the server wrote it (see
//! `lane::run`): the JSON-RPC answer written around the result's text, less a top-level
//! `"resultType": "complete"`, which rmcp strips for a client before 2026-07-28.
//!
//! The result must still be one rmcp reads as a `CallToolResult`. Reading it as rmcp does
//! builds every content block only to drop it; [`Checked::Here`] instead tells, in the same
//! pass that finds `resultType`, that rmcp would read it, for the results nearly every server
//! writes (text blocks, `structuredContent`, `isError`, `_meta`), allocating nothing. Whatever
//! that pass is not sure of (other block types, annotations, a key given twice or written with
//! escapes, deep nesting) is `None`, and read by rmcp's types as before: the pass accepts only
//! what rmcp accepts.

use rmcp::model::RequestId;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Whether the result has been read as rmcp reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Checked {
    /// It has: only `resultType` is looked for.
    Already,
    /// Not yet: the pass checks it, and is `None` for anything it cannot tell rmcp would read.
    Here,
}

/// The answer to call `id` with the result `text` as the server wrote it, less a top-level
/// `"resultType": "complete"`; `None` if that cannot be done on the text (a key written with
/// escapes, another `resultType`) or, [`Checked::Here`], if the pass cannot tell rmcp would
/// read the result.
pub(crate) fn as_written(id: &RequestId, text: &str, checked: Checked) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() + 48);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    serde_json::to_writer(&mut out, id).ok()?;
    out.extend_from_slice(b",\"result\":");
    let bytes = text.as_bytes();
    // No `resultType` key can be there without this text, or a key written with `\u`.
    let untyped = warden_upstream::finder!(b"\"resultType\"").find(bytes).is_none()
        && warden_upstream::finder!(b"\\u").find(bytes).is_none();
    if checked == Checked::Here || !untyped {
        let start = out.len();
        let mut json = serde_json::Deserializer::from_str(text);
        let pass = Members { out: &mut out, check: checked == Checked::Here };
        let dropped = json.deserialize_map(pass).ok()?;
        json.end().ok()?;
        if !dropped {
            // Nothing left out: the text exactly as written.
            out.truncate(start);
            out.extend_from_slice(bytes);
        }
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'}');
    Some(out)
}

/// Writes the members of a result object to `out` in their order, values as written, less
/// `"resultType": "complete"`; with `check`, refuses what it cannot tell rmcp would read.
/// Its value: whether `resultType` was left out.
struct Members<'o> {
    out: &'o mut Vec<u8>,
    check: bool,
}

/// The keys `CallToolResult` reads, as bits.
const CONTENT: u8 = 1;
const STRUCTURED: u8 = 2;
const IS_ERROR: u8 = 4;
const META: u8 = 8;
const RESULT_TYPE: u8 = 16;

impl<'de> Visitor<'de> for Members<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a tool result")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut seen = 0u8;
        let mut dropped = false;
        let mut first = true;
        self.out.push(b'{');
        while let Some(key) = map.next_key::<&'de str>()? {
            let value = map.next_value::<&'de RawValue>()?;
            let known = match key {
                "content" => CONTENT,
                "structuredContent" => STRUCTURED,
                "isError" => IS_ERROR,
                "_meta" => META,
                "resultType" => RESULT_TYPE,
                _ => 0,
            };
            if self.check && known != 0 {
                if seen & known != 0 || !readable(known, value.get()) {
                    return Err(de::Error::custom("not sure"));
                }
                seen |= known;
            }
            if known == RESULT_TYPE {
                if value.get() != "\"complete\"" {
                    return Err(de::Error::custom("another resultType"));
                }
                dropped = true;
                continue;
            }
            if !std::mem::take(&mut first) {
                self.out.push(b',');
            }
            self.out.push(b'"');
            self.out.extend_from_slice(key.as_bytes());
            self.out.extend_from_slice(b"\":");
            self.out.extend_from_slice(value.get().as_bytes());
        }
        // rmcp wants one of these (`isError: null` is none of them, `structuredContent: null`
        // is one; neither `null` passes here).
        if self.check && seen & (CONTENT | STRUCTURED | IS_ERROR) == 0 {
            return Err(de::Error::custom("no tool result field"));
        }
        self.out.push(b'}');
        Ok(dropped)
    }
}

/// Whether rmcp reads `raw` as the value of the `CallToolResult` key `known`.
fn readable(known: u8, raw: &str) -> bool {
    let mut json = serde_json::Deserializer::from_str(raw);
    match known {
        CONTENT => json.deserialize_seq(Blocks).is_ok(),
        STRUCTURED => Any(DEPTH).deserialize(&mut json).is_ok(),
        IS_ERROR => raw == "true" || raw == "false",
        META => raw.starts_with('{') && Any(DEPTH).deserialize(&mut json).is_ok(),
        _ => raw == "\"complete\"",
    }
}

/// How deep the pass follows a value; deeper is left to rmcp, whose reader stops at 127
/// levels in all (the result object itself is one).
const DEPTH: u8 = 64;

/// `content`: text blocks (`type`, `text`, an optional `_meta` object), each key once.
struct Blocks;

impl<'de> Visitor<'de> for Blocks {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("text blocks")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Block)?.is_some() {}
        Ok(())
    }
}

struct Block;

impl<'de> DeserializeSeed<'de> for Block {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Block {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a text block")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut kind, mut text, mut meta) = (false, false, false);
        while let Some(key) = map.next_key::<&'de str>()? {
            let seen = match key {
                "type" => {
                    map.next_value_seed(Str(Some("text")))?;
                    &mut kind
                }
                "text" => {
                    map.next_value_seed(Str(None))?;
                    &mut text
                }
                "_meta" => {
                    map.next_value_seed(Object)?;
                    &mut meta
                }
                _ => return Err(de::Error::custom("not a plain text block")),
            };
            if std::mem::replace(seen, true) {
                return Err(de::Error::custom("a key twice"));
            }
        }
        if kind && text {
            Ok(())
        } else {
            Err(de::Error::custom("not a text block"))
        }
    }
}

/// A string (read in full, so escapes are checked as rmcp checks them), equal to the one
/// given if there is one.
struct Str(Option<&'static str>);

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
struct Object;

impl<'de> DeserializeSeed<'de> for Object {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(Any(DEPTH))
    }
}

/// Any JSON value `serde_json::Value` reads (numbers in range, strings with valid escapes, a
/// key given twice), up to this many levels deep; nothing is kept.
#[derive(Clone, Copy)]
struct Any(u8);

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

#[cfg(test)]
#[path = "written_tests.rs"]
mod tests;
