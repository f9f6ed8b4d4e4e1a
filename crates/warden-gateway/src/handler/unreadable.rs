//! Requests whose params rmcp cannot read. rmcp reads a request of a method it knows but whose
//! params do not fit that method's type (a `tools/call` whose name is not a string, whose
//! arguments are not an object, or with no params) as a request of an unknown method, and its
//! default answer is -32601 "method not found" with the method's name as the whole message. For
//! the methods Warden serves, the answer says what is wrong instead: -32602 (invalid params) and
//! why the params do not read.
//!
//! Some input rmcp cannot read as a message at all — text that is not JSON, JSON that is not a
//! JSON-RPC message, a request whose params or `_meta` are not an object, or whose id is
//! neither a number nor a string. Its transports answer that with a plain-text 415 over HTTP,
//! and over stdio with an error naming no request (or nothing, for text that is not JSON), so
//! a client's call waits for its timeout. [`refusal`] is the JSON-RPC error to answer instead:
//! under the request's id when it reads.

use rmcp::model::{self as m, ClientJsonRpcMessage, ConstString, CustomRequest, ErrorCode};
use rmcp::model::{NumberOrString, RequestId};
use rmcp::ErrorData;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The error to answer a message rmcp cannot read, and the request's id if it reads.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) id: Option<RequestId>,
    pub(crate) error: ErrorData,
}

impl Refusal {
    /// The JSON-RPC error response (`"id": null` when the id does not read).
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let id = self.id.as_ref().map_or(Value::Null, |id| id.clone().into_json_value());
        let answer = serde_json::json!({ "jsonrpc": "2.0", "id": id, "error": self.error });
        serde_json::to_vec(&answer).unwrap_or_default()
    }
}

/// What to answer `bytes` (one message as a client sent it), or `None` if rmcp reads it.
pub(crate) fn refusal(bytes: &[u8]) -> Option<Refusal> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if serde_json::from_slice::<ClientJsonRpcMessage>(bytes).is_ok() {
        return None;
    }
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            let error = ErrorData::parse_error(format!("Parse error: {e}"), None);
            return Some(Refusal { id: None, error });
        }
    };
    let request = value.as_object().and_then(|o| {
        let id = match o.get("id")? {
            Value::Number(n) => NumberOrString::Number(n.as_i64()?),
            Value::String(s) => NumberOrString::String(s.as_str().into()),
            _ => return None,
        };
        Some((id, o.get("method")?.as_str()?, o))
    });
    let Some((id, method, request)) = request else {
        let error = ErrorData::invalid_request(
            "Invalid request: not a JSON-RPC 2.0 request, notification or response (one \
             object, with an id that is a number or a string)",
            None,
        );
        return Some(Refusal { id: None, error });
    };
    let error = if request.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        ErrorData::invalid_request(format!("{method}: \"jsonrpc\" must be \"2.0\""), None)
    } else if let Some(why) = why(method, request.get("params")) {
        ErrorData::invalid_params(format!("{method}: {why}"), None)
    } else {
        ErrorData::invalid_request(format!("{method}: the request does not read as MCP's"), None)
    };
    Some(Refusal { id: Some(id), error })
}

/// The answer to `request`, which rmcp read as a custom request.
pub(super) fn refused(request: &CustomRequest) -> ErrorData {
    let method = request.method.as_str();
    match why(method, request.params.as_ref()) {
        Some(why) => ErrorData::invalid_params(format!("{method}: {why}"), None),
        // Not a method Warden serves (or params that do read): rmcp's own answer.
        None => ErrorData::new(ErrorCode::METHOD_NOT_FOUND, method.to_owned(), None),
    }
}

/// Why `params` do not read as `method`'s, for the client methods Warden serves; `None` for
/// other methods, or if they do read.
fn why(method: &str, params: Option<&serde_json::Value>) -> Option<String> {
    fn reading<R: DeserializeOwned>(
        method: &str,
        params: Option<&serde_json::Value>,
    ) -> Option<String> {
        let mut whole = serde_json::Map::new();
        whole.insert("method".into(), method.into());
        if let Some(p) = params {
            whole.insert("params".into(), p.clone());
        }
        serde_json::from_value::<R>(whole.into()).err().map(|e| e.to_string())
    }
    macro_rules! served {
        ($($kind:ty => $request:ty),* $(,)?) => {
            $(if method == <$kind as ConstString>::VALUE {
                return reading::<$request>(method, params);
            })*
        };
    }
    served!(
        m::CallToolRequestMethod => m::CallToolRequest,
        m::ListToolsRequestMethod => m::ListToolsRequest,
        m::GetPromptRequestMethod => m::GetPromptRequest,
        m::ListPromptsRequestMethod => m::ListPromptsRequest,
        m::ReadResourceRequestMethod => m::ReadResourceRequest,
        m::ListResourcesRequestMethod => m::ListResourcesRequest,
        m::ListResourceTemplatesRequestMethod => m::ListResourceTemplatesRequest,
        m::SubscribeRequestMethod => m::SubscribeRequest,
        m::UnsubscribeRequestMethod => m::UnsubscribeRequest,
        m::CompleteRequestMethod => m::CompleteRequest,
        m::SetLevelRequestMethod => m::SetLevelRequest,
        m::InitializeResultMethod => m::InitializeRequest,
    );
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn custom(method: &str, params: Option<serde_json::Value>) -> CustomRequest {
        CustomRequest::new(method, params)
    }

    #[test]
    fn a_served_method_with_params_that_do_not_read_is_refused_as_invalid_params() {
        for params in
            [Some(json!({ "name": 5 })), Some(json!({ "name": "echo", "arguments": [1] })), None]
        {
            let e = refused(&custom("tools/call", params.clone()));
            assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{params:?}: {e:?}");
            assert!(e.message.starts_with("tools/call: "), "{e:?}");
            assert!(e.message.len() > "tools/call: ".len(), "says why: {e:?}");
        }
        let e = refused(&custom("prompts/get", Some(json!({ "name": ["x"] }))));
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{e:?}");
        let e = refused(&custom("resources/read", Some(json!({}))));
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{e:?}");
        assert!(e.message.contains("uri"), "names the missing field: {e:?}");
    }

    #[test]
    fn a_message_rmcp_cannot_read_is_refused_under_its_id_when_that_reads() {
        let ok = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        assert!(refusal(ok).is_none());
        assert!(refusal(&[b"\xEF\xBB\xBF".as_slice(), ok].concat()).is_none(), "a BOM");
        let r = refusal(b"{bad").unwrap();
        assert_eq!((r.id, r.error.code), (None, ErrorCode::PARSE_ERROR));
        for bad in [&b"[1,2]"[..], br#"{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}"#] {
            let r = refusal(bad).unwrap();
            assert_eq!((r.id.clone(), r.error.code), (None, ErrorCode::INVALID_REQUEST));
            let v: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
            assert_eq!(v["id"], serde_json::Value::Null, "{v}");
            assert!(v.as_object().unwrap().contains_key("id"), "{v}");
        }
        let r = refusal(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"e","_meta":5}}"#,
        )
        .unwrap();
        assert_eq!(r.id, Some(RequestId::Number(7)));
        assert_eq!(r.error.code, ErrorCode::INVALID_PARAMS);
        assert!(r.error.message.starts_with("tools/call: "), "{:?}", r.error);
        let v: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!((v["id"].clone(), v["error"]["code"].clone()), (json!(7), json!(-32602)));
        let r = refusal(br#"{"jsonrpc":"1.0","id":"a","method":"tools/list"}"#).unwrap();
        assert_eq!(r.id, Some(RequestId::String("a".into())));
        assert_eq!(r.error.code, ErrorCode::INVALID_REQUEST);
        assert!(r.error.message.contains("jsonrpc"), "{:?}", r.error);
    }

    #[test]
    fn other_methods_and_params_that_read_keep_rmcps_answer() {
        for (method, params) in [
            ("vendor/thing", Some(json!({ "a": 1 }))),
            ("tools/list", None),
            ("tools/call", Some(json!({ "name": "echo", "arguments": { "x": 1 } }))),
        ] {
            let e = refused(&custom(method, params));
            assert_eq!(e.code, ErrorCode::METHOD_NOT_FOUND, "{method}: {e:?}");
            assert_eq!(e.message, method);
        }
    }
}
