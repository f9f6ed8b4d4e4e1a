//! What the two server-side fast lanes (`http_lane`, `stdio_lane`) share: reading the two
//! messages they act on, the calls in flight that a cancellation names, and running a call
//! through rmcp's own dispatch with the context rmcp would have built.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::model::{
    ClientJsonRpcMessage, ClientNotification, ClientRequest, GetMeta, JsonRpcMessage,
    JsonRpcNotification, JsonRpcRequest, RequestId, ServerJsonRpcMessage,
};
use rmcp::service::{Peer, RequestContext, RoleServer, Service};
use tokio_util::sync::CancellationToken;

use crate::handler::Handler;

/// The server lanes are on unless `WARDEN_SERVER_FAST_PATH=0` (for comparisons, and a way out).
pub(crate) fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("WARDEN_SERVER_FAST_PATH").map_or(true, |v| v != "0"))
}

/// A client message a lane acts on.
// Matched and consumed at once where it is read: boxing the request would only add an
// allocation to every lane call.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Taken {
    /// A `tools/call` request.
    Call { id: RequestId, request: ClientRequest },
    /// A `notifications/cancelled` naming a request.
    Cancel(RequestId),
}

/// `bytes` as one of the messages a lane acts on; anything else (most messages: a memchr
/// says so before any parsing) is `None`, for rmcp.
pub(crate) fn read(bytes: &[u8]) -> Option<Taken> {
    let call = memchr::memmem::find(bytes, b"\"tools/call\"").is_some();
    if !call && memchr::memmem::find(bytes, b"\"notifications/cancelled\"").is_none() {
        return None;
    }
    match serde_json::from_slice::<ClientJsonRpcMessage>(bytes).ok()? {
        JsonRpcMessage::Request(JsonRpcRequest {
            id,
            request: request @ ClientRequest::CallToolRequest(_),
            ..
        }) => Some(Taken::Call { id, request }),
        JsonRpcMessage::Notification(JsonRpcNotification {
            notification: ClientNotification::CancelledNotification(n),
            ..
        }) => n.params.request_id.map(Taken::Cancel),
        _ => None,
    }
}

/// One session's lane calls in flight, by the client's request id.
#[derive(Clone, Default)]
pub(crate) struct Calls(Arc<Mutex<HashMap<RequestId, CancellationToken>>>);

impl Calls {
    /// Registers call `id`; `None` if a call with that id is already in flight (then rmcp's
    /// rules apply to the request).
    pub(crate) fn begin(&self, id: &RequestId) -> Option<CancellationToken> {
        let mut calls = self.0.lock().expect("not poisoned");
        if calls.contains_key(id) {
            return None;
        }
        let ct = CancellationToken::new();
        calls.insert(id.clone(), ct.clone());
        Some(ct)
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
    request: &mut ClientRequest,
) -> RequestContext<RoleServer> {
    let mut ctx = RequestContext::new(id.clone(), peer);
    ctx.ct = ct;
    ctx.meta = std::mem::take(request.get_meta_mut());
    ctx
}

/// Runs `request` through rmcp's dispatch on `handler`, and returns its answer or error.
pub(crate) async fn run(
    handler: &Handler,
    id: RequestId,
    request: ClientRequest,
    ctx: RequestContext<RoleServer>,
) -> ServerJsonRpcMessage {
    match handler.handle_request(request, ctx).await {
        Ok(result) => ServerJsonRpcMessage::response(result, id),
        Err(error) => ServerJsonRpcMessage::error(error, Some(id)),
    }
}
