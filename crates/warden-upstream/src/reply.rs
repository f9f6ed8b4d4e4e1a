//! A server's answer kept as the JSON text it sent: [`Reply`] is a request's `result`, read
//! once to find its end and never built into a `serde_json::Value` tree on the way through.
//! Whoever needs it typed reads it from the text (the gateway reads a tool result straight
//! into rmcp's `CallToolResult`); what the hop itself looks at (`isError`, `resultType`) is
//! read by [`Reply::peek`] without allocating. [`Message`] reads a whole JSON-RPC message the
//! same way, for the upstream lanes that take answers off the wire.

use std::borrow::Cow;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::UpstreamError;

/// A request's `result`, as the server wrote it (one whole JSON value).
#[derive(Clone, Debug)]
pub struct Reply {
    raw: Box<RawValue>,
    /// What [`Reply::peek`] found, once it has looked.
    peek: OnceLock<Peek>,
}

/// What the hop reads of a result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peek {
    /// `isError` is `true`: the tool's answer is an error (not the server's failure).
    pub is_error: bool,
    /// `resultType` is `"input_required"` (protocol 2026-07-28): the server asks for input.
    pub input_required: bool,
}

impl Reply {
    pub fn from_raw(raw: Box<RawValue>) -> Self {
        Self { raw, peek: OnceLock::new() }
    }

    /// `value` as text (a `Value` always serializes).
    pub fn from_value(value: &Value) -> Self {
        Self::from_raw(serde_json::value::to_raw_value(value).unwrap_or_else(|_| null()))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.raw.get()
    }

    pub fn raw(&self) -> &RawValue {
        &self.raw
    }

    /// The result as a `Value` tree.
    pub fn value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(self.raw.get())
    }

    /// The result read as `T`, as from its tree: a key given twice has its last value (read
    /// from the text, serde's derive refuses it; the tree is built only then).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.raw.get())
            .or_else(|first| serde_json::from_value(self.value().map_err(|_| first)?))
    }

    /// `isError` and `resultType`, read as `Value::get` would read them (a key given twice:
    /// its last value; anything but an object: neither). Read once, on the first look.
    pub fn peek(&self) -> Peek {
        *self.peek.get_or_init(|| self.look())
    }

    fn look(&self) -> Peek {
        // Most results say neither: then no reading is needed. `"isError": true` and
        // `"resultType": "input_required"` can only be there if some key spelled out so is
        // followed by that value (anywhere: the reading below tells a top-level key from one
        // inside, or inside a string), or if a key is written with `\u` escapes.
        let bytes = self.raw.get().as_bytes();
        if !followed_by(bytes, crate::finder!(b"\"isError\""), b"true")
            && !followed_by(bytes, crate::finder!(b"\"resultType\""), b"\"input_required\"")
            && crate::finder!(b"\\u").find(bytes).is_none()
        {
            return Peek::default();
        }
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(rename = "isError", default, borrow)]
            is_error: Field<'a>,
            #[serde(rename = "resultType", default, borrow)]
            result_type: Field<'a>,
        }
        let read = |is_error: Option<&RawValue>, result_type: Option<&RawValue>| Peek {
            is_error: is_error.is_some_and(|r| r.get() == "true"),
            input_required: result_type.and_then(text).as_deref() == Some("input_required"),
        };
        match from_object::<Head>(bytes) {
            Some(h) => read(h.is_error.0, h.result_type.0),
            // A key twice (serde refuses it) or not an object: the tree says.
            None => {
                let v = self.value().unwrap_or_default();
                Peek {
                    is_error: v.get("isError").and_then(Value::as_bool) == Some(true),
                    input_required: v.get("resultType").and_then(Value::as_str)
                        == Some("input_required"),
                }
            }
        }
    }
}

impl Serialize for Reply {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(s)
    }
}

impl PartialEq<Value> for Reply {
    fn eq(&self, other: &Value) -> bool {
        self.value().is_ok_and(|v| v == *other)
    }
}

/// Whether `key`'s needle occurs in `text` followed by a colon and `value` (JSON whitespace
/// allowed around the colon).
fn followed_by(text: &[u8], key: &memchr::memmem::Finder<'_>, value: &[u8]) -> bool {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let len = key.needle().len();
    key.find_iter(text).any(|at| {
        let rest = &text[at + len..];
        let rest = &rest[rest.iter().take_while(|b| ws(b)).count()..];
        let Some(rest) = rest.strip_prefix(b":") else { return false };
        rest[rest.iter().take_while(|b| ws(b)).count()..].starts_with(value)
    })
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
}

/// A JSON string's text; `None` for any other value.
fn text(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Cow<str>>(raw.get()).ok()
}

/// A key's value when the key is there, whatever the value (`null` included, unlike an
/// `Option`, which reads `null` as absent).
#[derive(Default)]
struct Field<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&RawValue>::deserialize(d).map(|r| Field(Some(r)))
    }
}

/// One JSON-RPC message from a server, its members kept as text.
pub(crate) struct Message<'a> {
    id: Option<&'a RawValue>,
    method: Option<&'a RawValue>,
    result: Option<&'a RawValue>,
    error: Option<&'a RawValue>,
}

impl<'a> Message<'a> {
    /// `bytes` as a message whose keys each come once; `None` for anything else (a key given
    /// twice, not an object, not JSON), which the caller reads as a tree.
    pub(crate) fn read(bytes: &'a [u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Wire<'a> {
            #[serde(default, borrow)]
            id: Field<'a>,
            #[serde(default, borrow)]
            method: Field<'a>,
            #[serde(default, borrow)]
            result: Field<'a>,
            #[serde(default, borrow)]
            error: Field<'a>,
        }
        let w: Wire = from_object(bytes)?;
        Some(Self { id: w.id.0, method: w.method.0, result: w.result.0, error: w.error.0 })
    }

    /// Whether it has a `method` (a request or a notification), whatever its value.
    pub(crate) fn has_method(&self) -> bool {
        self.method.is_some()
    }

    /// Its `method` when that is a string.
    pub(crate) fn method(&self) -> Option<Cow<'a, str>> {
        self.method.and_then(text)
    }

    /// Its `id` when that is a string.
    pub(crate) fn id(&self) -> Option<Cow<'a, str>> {
        self.id.and_then(text)
    }

    /// As an answer: its `error` (given at all) as the server's, else its `result`.
    pub(crate) fn outcome(&self) -> Result<Reply, UpstreamError> {
        if let Some(e) = self.error {
            return Err(server_error(&serde_json::from_str(e.get()).unwrap_or_default()));
        }
        self.result.map(|r| Reply::from_raw(r.to_owned())).ok_or_else(|| {
            UpstreamError::Protocol("an answer with neither result nor error".into())
        })
    }
}

/// A `T` read from a JSON object only (serde's derive also reads a struct from an array).
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    struct Object<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(Object(std::marker::PhantomData))
}

/// `bytes`, all of them, as a `T` read from a JSON object.
fn from_object<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let t = object(&mut json).ok()?;
    json.end().ok()?;
    Some(t)
}

/// A JSON-RPC `error` member as the server's error.
pub(crate) fn server_error(e: &Value) -> UpstreamError {
    UpstreamError::Server {
        code: e.get("code").and_then(Value::as_i64).unwrap_or(-32603) as i32,
        message: e.get("message").and_then(Value::as_str).unwrap_or_default().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(s: &str) -> Reply {
        Reply::from_raw(RawValue::from_string(s.into()).unwrap())
    }

    #[test]
    fn peek_reads_what_value_get_reads() {
        let cases = [
            (r#"{"content":[],"isError":true}"#, Peek { is_error: true, input_required: false }),
            (r#"{"isError":false}"#, Peek::default()),
            (r#"{"isError":"true"}"#, Peek::default()),
            (r#"{"isError":null}"#, Peek::default()),
            (r#"{"isError":false,"isError":true}"#, Peek { is_error: true, input_required: false }),
            (r#"{"resultType":"input_required"}"#, Peek { is_error: false, input_required: true }),
            (
                r#"{"resultType":"input\u005frequired"}"#,
                Peek { is_error: false, input_required: true },
            ),
            (r#"{"resultType":"complete"}"#, Peek::default()),
            (r#"[true]"#, Peek::default()),
            (r#"null"#, Peek::default()),
            (r#"{"x":{"isError":true}}"#, Peek::default()),
            (r#"{"is\u0045rror":true}"#, Peek { is_error: true, input_required: false }),
            (
                r#"{"content":[{"text":"\u00e9"}],"isError":true}"#,
                Peek { is_error: true, input_required: false },
            ),
            (r#"{"content":[{"text":"a\nb"}]}"#, Peek::default()),
            (
                r#"{"content":[],"isError" :
 true}"#,
                Peek { is_error: true, input_required: false },
            ),
            (r#"{"content":[{"text":"\"isError\": true"}]}"#, Peek::default()),
            (
                r#"{"resultType": "input_required","inputRequests":{}}"#,
                Peek { is_error: false, input_required: true },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(reply(text).peek(), want, "{text}");
            let v: Value = serde_json::from_str(text).unwrap();
            let tree = Peek {
                is_error: v.get("isError").and_then(Value::as_bool) == Some(true),
                input_required: v.get("resultType").and_then(Value::as_str)
                    == Some("input_required"),
            };
            assert_eq!(tree, want, "the tree agrees on {text}");
        }
    }

    #[test]
    fn a_message_is_read_as_the_tree_reads_it() {
        let m =
            Message::read(br#"{"jsonrpc":"2.0","id":"warden-1","result":{"a":[1,2]}}"#).unwrap();
        assert!(!m.has_method());
        assert_eq!(m.id().as_deref(), Some("warden-1"));
        assert_eq!(m.outcome().unwrap().get(), r#"{"a":[1,2]}"#);
        // `null` counts as given: a null result is a result, a null error an error, a null
        // method a method.
        let m = Message::read(br#"{"id":"w","result":null,"method":null}"#).unwrap();
        assert!(m.has_method());
        assert_eq!(m.method(), None);
        assert_eq!(m.outcome().unwrap().get(), "null");
        let m = Message::read(br#"{"id":"w","result":1,"error":null}"#).unwrap();
        assert!(matches!(m.outcome(), Err(UpstreamError::Server { code: -32603, .. })));
        let m = Message::read(br#"{"id":"w","error":{"code":-32602,"message":"no"}}"#).unwrap();
        assert!(
            matches!(m.outcome(), Err(UpstreamError::Server { code: -32602, message }) if message == "no")
        );
        assert!(matches!(
            Message::read(br#"{"id":"w"}"#).unwrap().outcome(),
            Err(UpstreamError::Protocol(_))
        ));
        let m = Message::read(br#"{"id":7,"method":"notifications/progress","x":{}}"#).unwrap();
        assert_eq!(m.id(), None, "a number id is no lane's");
        assert_eq!(m.method().as_deref(), Some("notifications/progress"));
        let m = Message::read(br#"{"id":"w\u002d1","result":{}}"#).unwrap();
        assert_eq!(m.id().as_deref(), Some("w-1"));
        // Left to the tree: a key twice, not an object, not JSON.
        for bad in
            [&br#"{"id":"a","id":"b","result":1}"#[..], b"[\"w\",null,1]", b"{\"id\":", b"\"x\""]
        {
            assert!(Message::read(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_result_is_read_as_its_tree_would_be() {
        // A key given twice: its last value, as the tree has it (a derived struct read from
        // the text alone refuses it).
        let r = reply(
            r#"{"content":[{"type":"text","text":"a","text":"b"}],"isError":false,"isError":true}"#,
        );
        let typed: rmcp::model::CallToolResult = r.parse().unwrap();
        assert_eq!(typed.is_error, Some(true));
        assert_eq!(serde_json::to_value(&typed).unwrap()["content"][0]["text"], "b");
        assert!(reply(r#"{"content":"no"}"#).parse::<rmcp::model::CallToolResult>().is_err());
    }

    #[test]
    fn a_reply_keeps_the_servers_text() {
        let r = Message::read(br#"{"id":"w","result":{"text":"\u00e9","n":1e2}}"#)
            .unwrap()
            .outcome()
            .unwrap();
        assert_eq!(r.get(), r#"{"text":"\u00e9","n":1e2}"#);
        assert_eq!(r, json!({"text": "é", "n": 100.0}));
        assert_eq!(serde_json::to_string(&r).unwrap(), r.get());
        assert_eq!(Reply::from_value(&json!({"a": 1})).get(), r#"{"a":1}"#);
    }
}
