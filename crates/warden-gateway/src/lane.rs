//! What the two server-side fast lanes (`http_lane`, `stdio_lane`) share: reading the two
//! messages they act on, the calls in flight that a cancellation names, and running a call as
//! rmcp's dispatch runs it, with the context rmcp would have built.

use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientJsonRpcMessage, ClientNotification,
    ClientRequest, ErrorData, JsonObject, JsonRpcMessage, JsonRpcNotification, JsonRpcVersion2_0,
    RequestId, RequestMetaObject, ServerJsonRpcMessage, ServerResult,
};
use rmcp::service::{Peer, RequestContext, RoleServer, Service};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use warden_upstream::{object, Reply};

use crate::handler::{Handler, ToolCall};
use crate::written::{as_written, Checked};

/// The server lanes are on unless `WARDEN_SERVER_FAST_PATH=0` (for comparisons, and a way out).
pub(crate) fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("WARDEN_SERVER_FAST_PATH").map_or(true, |v| v != "0"))
}

/// A client message a lane acts on.
pub(crate) enum Taken {
    /// A `tools/call` request.
    Call { id: RequestId, request: LaneCall },
    /// A `notifications/cancelled` naming a request.
    Cancel(RequestId),
}

/// `bytes` as one of the messages a lane acts on; anything else (most messages: a memchr
/// says so before any parsing) is `None`, for rmcp.
pub(crate) fn read(bytes: &[u8]) -> Option<Taken> {
    if warden_upstream::finder!(b"\"tools/call\"").find(bytes).is_some() {
        if let Some(taken) = read_call(bytes) {
            return Some(taken);
        }
    }
    // Only a cancellation is worth rmcp's (costly) reading here; a call the lane's own reading
    // declined is rmcp's to read when it serves it.
    warden_upstream::finder!(b"\"notifications/cancelled\"").find(bytes)?;
    match serde_json::from_slice::<ClientJsonRpcMessage>(bytes).ok()? {
        JsonRpcMessage::Notification(JsonRpcNotification {
            notification: ClientNotification::CancelledNotification(n),
            ..
        }) => n.params.request_id.map(Taken::Cancel),
        _ => None,
    }
}

/// A `tools/call` request as it is on the wire. rmcp's `ClientJsonRpcMessage` reads one
/// through an untagged enum of flattened structs (the message buffered, then tried shape by
/// shape): ~35 k instructions a call, the most expensive single step of a proxied call under
/// callgrind. This reads it in one pass into the same `CallToolRequest`, and takes only what
/// rmcp reads the same way: objects only (serde would also read a struct from an array, rmcp
/// does not), no key it does not know (serde skips an unknown key's value without checking its
/// UTF-8, escapes, number range or depth, where rmcp parses every value; a `result` or `error`
/// key, which rmcp's shape check refuses; `inputResponses`, with types of its own), and no key
/// twice (refused by serde here, as by rmcp). Anything else is read by rmcp.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCall<'a> {
    #[serde(rename = "jsonrpc")]
    _jsonrpc: JsonRpcVersion2_0,
    id: RequestId,
    #[serde(borrow)]
    method: std::borrow::Cow<'a, str>,
    #[serde(deserialize_with = "object", borrow)]
    params: WireParams<'a>,
}

/// `CallToolRequestParams` as the lane takes them (see [`WireCall`]); the arguments as the
/// client wrote them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WireParams<'a> {
    #[serde(rename = "_meta", default)]
    meta: Option<RequestMetaObject>,
    name: String,
    #[serde(default, borrow)]
    arguments: Option<&'a RawValue>,
    #[serde(default)]
    request_state: Option<String>,
}

/// A `tools/call` as a lane read it: what rmcp's `CallToolRequest` holds, with the arguments
/// kept as the client wrote them (checked as rmcp reads them: a JSON object `Value` reads,
/// each key once, so the text and rmcp's tree say the same).
pub(crate) struct LaneCall {
    name: String,
    arguments: Option<Arc<str>>,
    request_state: Option<String>,
    meta: Option<RequestMetaObject>,
}

impl LaneCall {
    /// As rmcp's request (its `_meta` in the extensions, as rmcp's reader puts it), for rmcp's
    /// dispatch.
    fn into_request(self) -> ClientRequest {
        let mut params = CallToolRequestParams::new(self.name);
        params.arguments = self.arguments.and_then(|a| serde_json::from_str::<JsonObject>(&a).ok());
        params.request_state = self.request_state;
        let mut request = CallToolRequest::new(params);
        if let Some(meta) = self.meta {
            request.extensions.insert(meta);
        }
        ClientRequest::CallToolRequest(request)
    }

    /// The call as the handler forwards it.
    fn into_tool_call(self) -> ToolCall {
        let mut params = CallToolRequestParams::new(self.name);
        params.request_state = self.request_state;
        ToolCall { params, arguments: self.arguments }
    }
}

/// `bytes` as a `tools/call` request, read as rmcp would read it (the request's `_meta` in its
/// extensions, as rmcp's `Request` deserializer puts it); `None` for anything else, or for
/// anything rmcp might read differently (rmcp then reads it itself).
fn read_call(bytes: &[u8]) -> Option<Taken> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let wire: WireCall = object(&mut json).ok()?;
    json.end().ok()?;
    if wire.method != "tools/call" {
        return None;
    }
    let WireParams { meta, name, arguments, request_state } = wire.params;
    // rmcp reads the arguments into a `JsonObject`: only what that reads passes.
    let arguments = match arguments {
        Some(raw) if !crate::valid::is_object(raw.get()) => return None,
        raw => raw.map(|r| Arc::<str>::from(r.get())),
    };
    Some(Taken::Call { id: wire.id, request: LaneCall { name, arguments, request_state, meta } })
}

/// One session's lane calls in flight, by the client's request id.
#[derive(Clone, Default)]
pub(crate) struct Calls(Arc<Mutex<foldhash::HashMap<RequestId, CancellationToken>>>);

impl Calls {
    /// Registers call `id`; `None` if a call with that id is already in flight (then rmcp's
    /// rules apply to the request).
    pub(crate) fn begin(&self, id: &RequestId) -> Option<CancellationToken> {
        let mut calls = self.0.lock().expect("not poisoned");
        match calls.entry(id.clone()) {
            std::collections::hash_map::Entry::Occupied(_) => None,
            std::collections::hash_map::Entry::Vacant(slot) => {
                Some(slot.insert(CancellationToken::new()).clone())
            }
        }
    }

    /// Cancels call `id`, if it is one of these.
    pub(crate) fn cancel(&self, id: &RequestId) -> bool {
        let ct = self.0.lock().expect("not poisoned").remove(id);
        ct.inspect(CancellationToken::cancel).is_some()
    }

    /// Ends call `id`; `false` if it was cancelled meanwhile (then it is not answered).
    pub(crate) fn finish(&self, id: &RequestId) -> bool {
        self.0.lock().expect("not poisoned").remove(id).is_some_and(|ct| !ct.is_cancelled())
    }

    pub(crate) fn cancel_all(&self) {
        self.0.lock().expect("not poisoned").values().for_each(CancellationToken::cancel);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.lock().expect("not poisoned").is_empty()
    }
}

/// The context rmcp would give the handler for `request` (its `_meta` moved into it).
pub(crate) fn context(
    id: &RequestId,
    peer: Peer<RoleServer>,
    ct: CancellationToken,
    request: &mut LaneCall,
) -> RequestContext<RoleServer> {
    let mut ctx = RequestContext::new(id.clone(), peer);
    ctx.ct = ct;
    ctx.meta = request.meta.take().unwrap_or_default();
    ctx
}

/// Runs `request` on `handler` for a session before 2026-07-28 and returns its answer as a
/// JSON-RPC message's text.
///
/// A call of a server's tool is dispatched here, as rmcp's dispatch does it for such a session
/// (no request-level protocol version in its `_meta`, no tasks), and the server's result goes
/// to the client as the server wrote it, once read as rmcp reads it (`CallToolResult`: a result
/// rmcp cannot read is the same internal error): no tree built back from it and serialized
/// again. Keys rmcp does not know are passed on, as a byte proxy passes them. A result that
/// says `resultType` (rmcp strips it for such a client), asks for input, or spans lines (the
/// stdio lane's answers are lines) is shaped by rmcp's types as before; anything else (one of
/// Warden's own tools, a request that names its protocol version) goes through rmcp's
/// dispatch.
pub(crate) async fn run(
    handler: &Handler,
    id: RequestId,
    request: LaneCall,
    ctx: RequestContext<RoleServer>,
) -> Vec<u8> {
    // A session that began with `initialize` has peer info (one on the inline lifecycle, where
    // every request must carry its metadata, has none); the lanes take only those.
    let direct = ctx.meta.protocol_version().is_none() && ctx.peer.peer_info().is_some();
    if direct && !handler.is_own_tool(&request.name) {
        return match handler.call(request.into_tool_call(), &ctx).await {
            Ok(reply) => passed(&id, &reply),
            Err(error) => message(&ServerJsonRpcMessage::error(error, Some(id))),
        };
    }
    // rmcp's dispatch of any request is a ~6 KB future: boxed, it does not make every call's
    // future that size (a lane call's future is moved into a box or a task).
    message(&match Box::pin(handler.handle_request(request.into_request(), ctx)).await {
        Ok(result) => ServerJsonRpcMessage::response(result, id),
        Err(error) => ServerJsonRpcMessage::error(error, Some(id)),
    })
}

/// The answer to call `id` with the server's `reply` (see [`run`]).
fn passed(id: &RequestId, reply: &Reply) -> Vec<u8> {
    let text = reply.get();
    let plain =
        !reply.peek().input_required && memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_none();
    // Most results: checked and passed on in one pass.
    if plain {
        if let Some(out) = as_written(id, text, Checked::Here) {
            return out;
        }
    }
    if let Err(error) = crate::handler::check_tool_result(reply) {
        return message(&ServerJsonRpcMessage::error(error, Some(id.clone())));
    }
    if plain {
        if let Some(out) = as_written(id, text, Checked::Already) {
            return out;
        }
    }
    // As rmcp's dispatch finishes a result for a client before 2026-07-28.
    let shaped = crate::handler::tool_response(reply).map(ServerResult::from).and_then(|mut r| {
        if matches!(r, ServerResult::InputRequiredResult(_)) {
            return Err(ErrorData::invalid_request(
                "InputRequiredResult requires negotiated protocol version 2026-07-28 or newer",
                None,
            ));
        }
        r.strip_result_type_for_legacy_peer();
        Ok(r)
    });
    message(&match shaped {
        Ok(result) => ServerJsonRpcMessage::response(result, id.clone()),
        Err(error) => ServerJsonRpcMessage::error(error, Some(id.clone())),
    })
}

/// `message` as text (a message rmcp built always serializes; if not, an internal error).
pub(crate) fn message(message: &ServerJsonRpcMessage) -> Vec<u8> {
    serde_json::to_vec(message).unwrap_or_else(|e| {
        tracing::warn!(target: "warden::gateway", error = %e, "an answer that cannot be written");
        let error = r#"{"code":-32603,"message":"an answer that cannot be written"}"#;
        format!(r#"{{"jsonrpc":"2.0","id":null,"error":{error}}}"#).into_bytes()
    })
}

#[cfg(test)]
mod tests {
    use rmcp::model::JsonRpcRequest;

    use super::*;

    /// What rmcp itself reads from `bytes`: the call's id, params and `_meta`.
    fn by_rmcp(bytes: &[u8]) -> Option<(RequestId, CallToolRequestParams, serde_json::Value)> {
        match serde_json::from_slice::<ClientJsonRpcMessage>(bytes).ok()? {
            JsonRpcMessage::Request(JsonRpcRequest {
                id,
                request: ClientRequest::CallToolRequest(r),
                ..
            }) => Some((
                id,
                r.params.clone(),
                serde_json::to_value(r.extensions.get::<RequestMetaObject>()).unwrap(),
            )),
            _ => None,
        }
    }

    fn by_lane(bytes: &[u8]) -> Option<(RequestId, CallToolRequestParams, serde_json::Value)> {
        let Taken::Call { id, request } = read_call(bytes)? else {
            panic!("read_call gives calls only")
        };
        let ClientRequest::CallToolRequest(r) = request.into_request() else {
            panic!("a call is a call")
        };
        Some((
            id,
            r.params.clone(),
            serde_json::to_value(r.extensions.get::<RequestMetaObject>()).unwrap(),
        ))
    }

    fn answer(id: RequestId, result: &str) -> serde_json::Value {
        let reply =
            Reply::from_raw(serde_json::value::RawValue::from_string(result.into()).unwrap());
        let bytes = passed(&id, &reply);
        assert!(!bytes.contains(&b'\n'), "one line: {}", String::from_utf8_lossy(&bytes));
        serde_json::from_slice(&bytes).expect("a JSON-RPC message")
    }

    #[test]
    fn a_servers_result_goes_to_the_client_as_written_once_rmcp_can_read_it() {
        // As written: key order, escapes and keys rmcp does not know are kept.
        let written = r#"{"content":[{"type":"text","text":"\u00e9 ok","x-vendor":1}],"isError":false,"x-extra":{"a":[1]}}"#;
        let reply =
            Reply::from_raw(serde_json::value::RawValue::from_string(written.into()).unwrap());
        let bytes = passed(&RequestId::Number(7), &reply);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            format!(r#"{{"jsonrpc":"2.0","id":7,"result":{written}}}"#)
        );
        let a = answer(RequestId::String("s-1".into()), r#"{"content":[]}"#);
        assert_eq!(
            a,
            serde_json::json!({"jsonrpc": "2.0", "id": "s-1", "result": {"content": []}})
        );
        // `resultType` is stripped for these clients, as rmcp strips it; a result written over
        // several lines is written again on one.
        let typed = answer(
            RequestId::Number(1),
            r#"{"resultType":"complete","content":[{"type":"text","text":"t"}]}"#,
        );
        assert_eq!(
            typed["result"],
            serde_json::json!({"content": [{"type": "text", "text": "t"}]})
        );
        let written = r#"{"content":[{"type":"text","text":"resultType"}],"resultType":"complete","structuredContent":{"resultType":"x"},"_meta":{}}"#;
        let reply =
            Reply::from_raw(serde_json::value::RawValue::from_string(written.into()).unwrap());
        let bytes = String::from_utf8(passed(&RequestId::Number(4), &reply)).unwrap();
        let want = r#"{"content":[{"type":"text","text":"resultType"}],"structuredContent":{"resultType":"x"},"_meta":{}}"#;
        assert_eq!(bytes, format!(r#"{{"jsonrpc":"2.0","id":4,"result":{want}}}"#));
        let escaped =
            answer(RequestId::Number(5), r#"{"content":[],"result\u0054ype":"complete"}"#);
        assert_eq!(escaped["result"], serde_json::json!({"content": []}));
        let lines = answer(RequestId::Number(2), "{\n  \"content\": [],\r\n  \"isError\": true\n}");
        assert_eq!(lines["result"], serde_json::json!({"content": [], "isError": true}));
        // What rmcp cannot read is the internal error it has always been.
        for unreadable in [r#"{"content":{}}"#, r#"{"content":[{"type":"nope"}]}"#, "[]"] {
            let a = answer(RequestId::Number(3), unreadable);
            assert_eq!(a["error"]["code"], -32603, "{unreadable}: {a}");
            let message = a["error"]["message"].as_str().unwrap();
            assert!(message.starts_with("unreadable tool result from the server"), "{message}");
            assert_eq!(a["id"], 3);
        }
    }

    /// The size of what `f` returns (a future, here), without calling it.
    fn output_size<'a, F, T>(_: F) -> usize
    where
        F: FnOnce(&'a Handler, RequestId, LaneCall, RequestContext<RoleServer>) -> T,
    {
        std::mem::size_of::<T>()
    }

    #[test]
    fn a_lane_calls_future_makes_no_room_for_rmcps_dispatch() {
        // Every lane call's future is moved into a box or a task (the desktop path's tokio
        // task is copied at each change of its stage): room for an await it almost never
        // reaches is paid on every call. rmcp's dispatch of any request alone is ~6 KB (with
        // it unboxed this is 6.5 KB); the plain call's path is 3.9 KB.
        let size = output_size(run);
        assert!(size < 5 * 1024, "lane::run's future is {size} bytes");
    }

    #[test]
    fn the_lane_reads_a_call_exactly_as_rmcp_does() {
        let same = [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#,
            r#"{"id":"abc","params":{"arguments":{"n":18446744073709551615,"m":-3,"f":1.5e300,"s":"\u00e9\n\"q\"","deep":[{"a":null},true]},"name":"e"},"method":"tools/call","jsonrpc":"2.0"}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"slow","_meta":{"progressToken":"p-1","io.example/x":{"y":1}},"arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"t","requestState":"s","arguments":null,"_meta":null}}"#,
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"t"}}"#,
        ];
        for m in same {
            let lane = by_lane(m.as_bytes());
            assert!(lane.is_some(), "the lane takes {m}");
            let rmcp = by_rmcp(m.as_bytes());
            assert_eq!(format!("{lane:?}"), format!("{rmcp:?}"), "{m}");
            assert_eq!(lane.as_ref().map(|l| &l.1), rmcp.as_ref().map(|r| &r.1));
            assert!(lane.unwrap().1.meta.is_none(), "`_meta` is in the extensions, as rmcp has it");
        }
        // Whatever the lane does not read, rmcp reads (or refuses) itself; none of these is a
        // call the lane would read differently.
        let left = [
            r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
            r#"{"id":1,"method":"tools/call","params":{"name":"echo"}}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"echo"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e"},"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e"},"error":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"tools/call"}}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"e"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"e"}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e"}}]"#,
            // Keys the lane does not know (rmcp ignores them; their values are rmcp's to check).
            r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"t","extra":1},"unknown":{"a":[1]}}"#,
            // Arrays for structs (serde's derive would read them; rmcp does not).
            r#"["2.0",1,"tools/call",{"name":"echo","arguments":{"text":"x"}}]"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[null,"echo",{"text":"x"}]}"#,
            // Values rmcp parses in full and refuses, in keys serde would only skip.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e"},"x":"\ud800"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e","x":1e400}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e","inputResponses":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e"}} x"#,
            // Arguments rmcp refuses: not an object, or a value `Value` does not read.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e","arguments":[1]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e","arguments":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e","arguments":{"n":1e400}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e","arguments":{"s":"\udc00"}}}"#,
            // A key twice (rmcp keeps one): its reading is rmcp's.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e","arguments":{"a":1,"a":2}}}"#,
        ];
        for m in left {
            assert!(by_lane(m.as_bytes()).is_none(), "the lane leaves {m} to rmcp");
        }
        // Invalid UTF-8 and nesting deeper than serde_json's limit in a key the lane does not
        // know: rmcp refuses both.
        let mut bad =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e"},"x":""#
                .to_vec();
        bad.extend_from_slice(b"\xff\"}");
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"e","x":{}{}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        for m in [bad, deep.into_bytes()] {
            assert!(by_rmcp(&m).is_none());
            assert!(by_lane(&m).is_none(), "{}", String::from_utf8_lossy(&m));
        }
        assert!(by_rmcp(left[5].as_bytes()).is_none(), "rmcp refuses a request with a result");
    }
}
