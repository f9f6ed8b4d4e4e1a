//! Requests whose params rmcp cannot read. rmcp reads a request of a method it knows but whose
//! params do not fit that method's type (a `tools/call` whose name is not a string, whose
//! arguments are not an object, or with no params) as a request of an unknown method, and its
//! default answer is -32601 "method not found" with the method's name as the whole message. For
//! the methods Warden serves, the answer says what is wrong instead: -32602 (invalid params) and
//! why the params do not read.

use rmcp::model::{self as m, ConstString, CustomRequest, ErrorCode};
use rmcp::ErrorData;
use serde::de::DeserializeOwned;

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
