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

use crate::valid::{Any, Object, Str, DEPTH};

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
/// escapes, another `resultType`, or two) or, [`Checked::Here`], if the pass cannot tell rmcp
/// would read the result.
pub(crate) fn as_written(id: &RequestId, text: &str, checked: Checked) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    // No `resultType` key can be there without this text, or a key written with `\u`.
    let untyped = warden_upstream::finder!(b"\"resultType\"").find(bytes).is_none()
        && warden_upstream::finder!(b"\\u").find(bytes).is_none();
    let cut = if checked == Checked::Here || !untyped {
        let mut json = serde_json::Deserializer::from_str(text);
        let pass = Members { text, check: checked == Checked::Here };
        let cut = json.deserialize_map(pass).ok()?;
        json.end().ok()?;
        cut.map(|member| with_a_comma(bytes, member))
    } else {
        None
    };
    let mut out = Vec::with_capacity(text.len() + 48);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    serde_json::to_writer(&mut out, id).ok()?;
    out.extend_from_slice(b",\"result\":");
    match cut {
        Some((start, end)) => {
            out.extend_from_slice(&bytes[..start]);
            out.extend_from_slice(&bytes[end..]);
        }
        None => out.extend_from_slice(bytes),
    }
    out.push(b'}');
    Some(out)
}

/// The span of an object's member (from its key's opening quote to its value's end) widened
/// to take one comma next to it, so that the object stays JSON without it.
fn with_a_comma(bytes: &[u8], (mut start, mut end): (usize, usize)) -> (usize, usize) {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let next = end + bytes[end..].iter().take_while(|b| ws(b)).count();
    if bytes.get(next) == Some(&b',') {
        end = next + 1;
    } else {
        let before = start - bytes[..start].iter().rev().take_while(|b| ws(b)).count();
        if before > 0 && bytes[before - 1] == b',' {
            start = before - 1;
        }
    }
    (start, end)
}

/// Reads a result object's members in one pass, the values of the keys rmcp reads checked
/// (with `check`: refused if the pass cannot tell rmcp would read them) and the others
/// skipped, as rmcp skips them. Its value: the span of a `"resultType": "complete"` member in
/// `text`, to leave out.
struct Members<'t> {
    text: &'t str,
    check: bool,
}

/// The keys `CallToolResult` reads, as bits.
const CONTENT: u8 = 1;
const STRUCTURED: u8 = 2;
const IS_ERROR: u8 = 4;
const META: u8 = 8;
const RESULT_TYPE: u8 = 16;

impl<'de> Visitor<'de> for Members<'de> {
    type Value = Option<(usize, usize)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a tool result")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // Where a borrowed slice of the text starts in it.
        let at = |s: &str| s.as_ptr() as usize - self.text.as_ptr() as usize;
        let mut seen = 0u8;
        let mut cut = None;
        while let Some(key) = map.next_key::<&'de str>()? {
            let known = match key {
                "content" => CONTENT,
                "structuredContent" => STRUCTURED,
                "isError" => IS_ERROR,
                "_meta" => META,
                "resultType" => RESULT_TYPE,
                _ => 0,
            };
            if self.check && seen & known != 0 {
                return Err(de::Error::custom("a key twice"));
            }
            seen |= known;
            match known {
                RESULT_TYPE => {
                    let value = map.next_value::<&'de RawValue>()?.get();
                    if value != "\"complete\"" || cut.is_some() {
                        return Err(de::Error::custom("another resultType"));
                    }
                    // The key is borrowed, so written without escapes between its quotes.
                    cut = Some((at(key) - 1, at(value) + value.len()));
                }
                CONTENT if self.check => map.next_value_seed(Blocks)?,
                STRUCTURED if self.check => map.next_value_seed(Any(DEPTH))?,
                IS_ERROR if self.check => map.next_value_seed(Bool)?,
                META if self.check => map.next_value_seed(Object)?,
                _ => drop(map.next_value::<de::IgnoredAny>()?),
            }
        }
        // rmcp wants one of these: `structuredContent: null` is one; `isError: null` is none,
        // and is refused above (`Bool`), so rmcp's reading decides it.
        if self.check && seen & (CONTENT | STRUCTURED | IS_ERROR) == 0 {
            return Err(de::Error::custom("no tool result field"));
        }
        Ok(cut)
    }
}

/// `true` or `false`.
struct Bool;

impl<'de> DeserializeSeed<'de> for Bool {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_bool(self)
    }
}

impl Visitor<'_> for Bool {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a boolean")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
}

/// `content`: text blocks (`type`, `text`, an optional `_meta` object), each key once.
struct Blocks;

impl<'de> DeserializeSeed<'de> for Blocks {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

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

#[cfg(test)]
#[path = "written_tests.rs"]
mod tests;
