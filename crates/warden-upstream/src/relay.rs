//! Traffic between a server and Warden's clients: calls forwarded with their progress and
//! cancellation, and what a server sends on its own (log messages, resource updates, and
//! requests such as sampling, elicitation and roots).
//!
//! Progress is exact: each forwarded call carries its own progress token upstream and a channel
//! back to the caller. Server-to-client *requests* carry no link to the call that caused them
//! on protocols before 2026-07-28, so the session hands the [`Downstream`] the client sessions
//! whose calls were in flight on the instance when the request arrived, and the gateway decides
//! (see `warden-gateway`). On 2026-07-28 a server asks through an `InputRequiredResult` instead,
//! which travels back as the call's answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use rmcp::model::{NumberOrString, ProgressToken};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use warden_core::InstanceId;

use crate::{BoxFuture, UpstreamError};

/// Who a forwarded call is for: a client session of the gateway (`0` is Warden itself).
pub type Origin = u64;

/// One request forwarded to a server.
pub struct Call {
    pub method: String,
    pub params: Option<Value>,
    /// A `tools/call`'s arguments as the client wrote them (the JSON text of an object), sent
    /// as they are: `params` then has no `arguments` of its own.
    pub arguments: Option<Arc<str>>,
    /// Per-request timeout; progress from the server restarts it, `deadline` bounds it.
    pub timeout: Duration,
    /// The latest the answer is still useful (the client's deadline).
    pub deadline: Option<tokio::time::Instant>,
    pub origin: Origin,
    /// Cancelled when the client gives up: the server hears `notifications/cancelled`.
    pub cancel: CancellationToken,
    /// Progress the server reports for this call.
    pub progress: Option<mpsc::UnboundedSender<Progress>>,
    /// Whether the client can answer a server's requests (it declared sampling, elicitation
    /// or roots). Such a call on a session before protocol 2026-07-28 stays on rmcp's path,
    /// which relays the requests the server may send while it runs.
    pub client_answers: bool,
}

impl Call {
    /// A call made by Warden itself, with no client waiting.
    pub fn new(method: impl Into<String>, params: Option<Value>, timeout: Duration) -> Self {
        Self {
            method: method.into(),
            params,
            arguments: None,
            timeout,
            deadline: None,
            origin: 0,
            cancel: CancellationToken::new(),
            progress: None,
            client_answers: false,
        }
    }
}

/// One `notifications/progress` for a forwarded call.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub progress: f64,
    pub total: Option<f64>,
    pub message: Option<String>,
}

impl Progress {
    /// The token and update of a `notifications/progress`'s params, if they are well formed.
    pub(crate) fn from_params(params: &Value) -> Option<(ProgressToken, Self)> {
        let token = serde_json::from_value(params.get("progressToken")?.clone()).ok()?;
        let progress = params.get("progress").and_then(Value::as_f64)?;
        Some((
            token,
            Self {
                progress,
                total: params.get("total").and_then(Value::as_f64),
                message: params.get("message").and_then(Value::as_str).map(str::to_owned),
            },
        ))
    }
}

/// What a server announces to its clients, not to Warden.
#[derive(Clone, Debug)]
pub enum Notice {
    /// `notifications/message` params, as the server sent them, and the client session whose
    /// call's stream carried it (`None`: a session-wide channel — stdio, the standalone stream
    /// — where the sender cannot be told apart).
    Log { params: Value, origin: Option<Origin> },
    /// `notifications/resources/updated` for this URI.
    ResourceUpdated(String),
}

/// Where server-initiated client traffic goes. The gateway implements it.
pub trait Downstream: Send + Sync + 'static {
    fn notice(&self, from: &InstanceId, notice: Notice);
    /// A request from the server (`sampling/createMessage`, `elicitation/create`,
    /// `roots/list`) with `params` as sent; `origins` are the client sessions whose calls were
    /// in flight on that instance when it arrived.
    fn request(
        &self,
        from: &InstanceId,
        origins: Vec<Origin>,
        method: &str,
        params: Value,
    ) -> BoxFuture<'static, Result<Value, UpstreamError>>;
}

/// What every connector of one Warden shares: the slot a gateway plugs its [`Downstream`]
/// into, and the runtimes a stdio child's output is read on.
#[derive(Clone, Default)]
pub struct Relay {
    downstream: Arc<RwLock<Option<Arc<dyn Downstream>>>>,
    homes: Arc<Homes>,
}

/// The runtimes of Warden's HTTP threads (`warden_admin::DataPlane`), taken in turn by stdio
/// children: a child's stdout is read on one of them, so a call served on that thread gets its
/// answer without a hand-off between threads. None: the connector's own runtime.
#[derive(Default)]
struct Homes {
    handles: OnceLock<Vec<tokio::runtime::Handle>>,
    next: AtomicUsize,
}

impl Relay {
    pub fn install(&self, downstream: Arc<dyn Downstream>) {
        *self.downstream.write().expect("not poisoned") = Some(downstream);
    }

    fn get(&self) -> Option<Arc<dyn Downstream>> {
        self.downstream.read().expect("not poisoned").clone()
    }

    /// Sets the runtimes stdio children's output is read on (once; later calls are ignored).
    pub fn set_homes(&self, handles: Vec<tokio::runtime::Handle>) {
        let _ = self.homes.handles.set(handles);
    }

    /// The runtime the next stdio child's output is read on, with its index among those set,
    /// if any is set.
    pub(crate) fn next_home(&self) -> Option<(usize, tokio::runtime::Handle)> {
        let handles = self.homes.handles.get().filter(|h| !h.is_empty())?;
        let n = self.homes.next.fetch_add(1, Ordering::Relaxed) % handles.len();
        Some((n, handles[n].clone()))
    }
}

/// Per-session bookkeeping shared by the session and its rmcp client handler.
pub(crate) struct Shared {
    pub(crate) instance: InstanceId,
    relay: Relay,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Calls in flight per origin.
    origins: foldhash::HashMap<Origin, usize>,
    /// Where each call's progress goes, and how many updates it has had.
    progress: foldhash::HashMap<ProgressToken, (mpsc::UnboundedSender<Progress>, u32)>,
}

/// Unregisters a forwarded call when it ends, however it ends.
pub(crate) struct InFlight<'a> {
    shared: &'a Shared,
    origin: Origin,
    token: Option<ProgressToken>,
}

impl InFlight<'_> {
    pub(crate) fn watches_progress(&self) -> bool {
        self.token.is_some()
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock().expect("not poisoned");
        if let Some(n) = state.origins.get_mut(&self.origin) {
            *n -= 1;
            if *n == 0 {
                state.origins.remove(&self.origin);
            }
        }
        if let Some(t) = &self.token {
            state.progress.remove(t);
        }
    }
}

impl Shared {
    pub(crate) fn new(instance: InstanceId, relay: Relay) -> Arc<Self> {
        Arc::new(Self { instance, relay, state: Mutex::default() })
    }

    pub(crate) fn begin(&self, origin: Origin) -> InFlight<'_> {
        *self.state.lock().expect("not poisoned").origins.entry(origin).or_default() += 1;
        InFlight { shared: self, origin, token: None }
    }

    pub(crate) fn watch_progress(
        &self,
        call: &mut InFlight<'_>,
        token: ProgressToken,
        to: mpsc::UnboundedSender<Progress>,
    ) {
        self.state.lock().expect("not poisoned").progress.insert(token.clone(), (to, 0));
        call.token = Some(token);
    }

    /// A forwarded call's params under Warden's own request `id`: the caller's `_meta` with
    /// `stamp` added (its keys win), and — when the caller wants progress — `id` as the
    /// progress token, its updates sent to `progress` while `call` lasts. Also returns whether
    /// progress is watched.
    pub(crate) fn outgoing<'s>(
        &self,
        call: &mut InFlight<'_>,
        id: &str,
        (params, arguments): (Option<Value>, Option<Arc<str>>),
        stamp: Option<&'s Stamped>,
        progress: Option<mpsc::UnboundedSender<Progress>>,
    ) -> (Outgoing<'s>, bool) {
        let mut params = match params {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        if arguments.is_some() {
            params.remove("arguments");
        }
        let mut meta = match params.remove("_meta") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let stamp = stamp.filter(|s| !s.text.is_empty());
        for k in stamp.iter().flat_map(|s| &s.keys) {
            meta.remove(k);
        }
        let watching = progress.is_some();
        if let Some(to) = progress {
            meta.insert("progressToken".into(), Value::String(id.to_owned()));
            self.watch_progress(call, ProgressToken(NumberOrString::String(id.into())), to);
        }
        (Outgoing { params, arguments, meta, stamp }, watching)
    }

    /// Whether the call has had progress updates.
    pub(crate) fn had_progress(&self, call: &InFlight<'_>) -> bool {
        self.progress_count(call) > 0
    }

    /// How many progress updates the call has had.
    pub(crate) fn progress_count(&self, call: &InFlight<'_>) -> u32 {
        let state = self.state.lock().expect("not poisoned");
        call.token.as_ref().and_then(|t| state.progress.get(t)).map_or(0, |(_, n)| *n)
    }

    pub(crate) fn progress(&self, token: &ProgressToken, p: Progress) {
        let mut state = self.state.lock().expect("not poisoned");
        if let Some((to, n)) = state.progress.get_mut(token) {
            *n += 1;
            let _ = to.send(p);
        }
    }

    pub(crate) fn notice(&self, notice: Notice) {
        if let Some(d) = self.relay.get() {
            d.notice(&self.instance, notice);
        }
    }

    pub(crate) async fn request(
        &self,
        method: &str,
        params: Value,
    ) -> Result<Value, UpstreamError> {
        let origins: Vec<Origin> = {
            let state = self.state.lock().expect("not poisoned");
            state.origins.keys().copied().filter(|o| *o != 0).collect()
        };
        self.request_for(origins, method, params).await
    }

    /// A server's request relayed to the sessions in `origins` (one, when it arrived on that
    /// session's call's stream).
    pub(crate) async fn request_for(
        &self,
        origins: Vec<Origin>,
        method: &str,
        params: Value,
    ) -> Result<Value, UpstreamError> {
        match self.relay.get() {
            Some(d) => d.request(&self.instance, origins, method, params).await,
            None => Err(UpstreamError::Server {
                code: rmcp::model::ErrorCode::METHOD_NOT_FOUND.0,
                message: format!("{method}: no MCP client is connected to Warden"),
            }),
        }
    }
}

/// `_meta` entries stamped on every request of a session (SEP-2575), kept as the JSON text of
/// the entries too: written into each request as they are, not cloned and serialized per call.
#[derive(Debug, Default)]
pub(crate) struct Stamped {
    keys: Vec<String>,
    /// `"key":value,…` without the braces; empty when there are none.
    text: String,
}

impl Stamped {
    pub(crate) fn new(map: Map<String, Value>) -> Self {
        let keys = map.keys().cloned().collect();
        let whole = Value::Object(map).to_string();
        let text = whole[1..whole.len() - 1].to_owned();
        Self { keys, text }
    }
}

/// A forwarded call's params, `_meta` apart (see [`Shared::outgoing`]).
pub(crate) struct Outgoing<'s> {
    pub(crate) params: Map<String, Value>,
    /// See [`Call::arguments`].
    arguments: Option<Arc<str>>,
    meta: Map<String, Value>,
    stamp: Option<&'s Stamped>,
}

/// A JSON-RPC request `id` for `method` with `params`, as the bytes to send (written straight
/// from its parts, no tree built for the envelope; the stamp spliced in as text).
pub(crate) fn request_bytes(
    id: &str,
    method: &str,
    params: &Outgoing<'_>,
) -> Result<Vec<u8>, UpstreamError> {
    #[derive(serde::Serialize)]
    struct Request<'a> {
        jsonrpc: &'static str,
        id: &'a str,
        method: &'a str,
        params: &'a Map<String, Value>,
    }
    let failed =
        |e: serde_json::Error| UpstreamError::Protocol(format!("cannot forward {method}: {e}"));
    // Room for the whole request at once (an envelope, a name, the arguments, the stamp, the
    // progress token): the spliced text would otherwise grow the buffer twice or three times.
    let room = 160
        + id.len()
        + method.len()
        + params.arguments.as_ref().map_or(0, |a| a.len())
        + params.stamp.map_or(0, |s| s.text.len())
        + 48 * (params.params.len() + params.meta.len());
    let mut out = Vec::with_capacity(room);
    serde_json::to_writer(
        &mut out,
        &Request { jsonrpc: "2.0", id, method, params: &params.params },
    )
    .map_err(failed)?;
    let meta = !params.meta.is_empty() || params.stamp.is_some();
    if !meta && params.arguments.is_none() {
        return Ok(out);
    }
    // `…"params":{…}}` loses its two closing braces; the arguments' text, then `_meta`, go
    // last in params.
    out.truncate(out.len() - 2);
    let mut empty = params.params.is_empty();
    if let Some(arguments) = &params.arguments {
        if !std::mem::take(&mut empty) {
            out.push(b',');
        }
        out.extend_from_slice(b"\"arguments\":");
        out.extend_from_slice(arguments.as_bytes());
    }
    if !meta {
        out.extend_from_slice(b"}}");
        return Ok(out);
    }
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(b"\"_meta\":{");
    let mut first = true;
    if let Some(s) = params.stamp {
        out.extend_from_slice(s.text.as_bytes());
        first = false;
    }
    for (k, v) in &params.meta {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, k).map_err(failed)?;
        out.push(b':');
        serde_json::to_writer(&mut out, v).map_err(failed)?;
    }
    out.extend_from_slice(b"}}}");
    Ok(out)
}

/// A call's params as one tree, its arguments' text read into it (for rmcp's path, which
/// takes a tree).
pub(crate) fn params_tree(
    params: Option<Value>,
    arguments: Option<Arc<str>>,
) -> Result<Option<Value>, UpstreamError> {
    let Some(arguments) = arguments else { return Ok(params) };
    let arguments: Value = serde_json::from_str(&arguments)
        .map_err(|e| UpstreamError::Protocol(format!("unreadable arguments: {e}")))?;
    let mut params = match params {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    params.insert("arguments".into(), arguments);
    Ok(Some(Value::Object(params)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The request as sent, read back; and how often `key` is written in it (once: a JSON
    /// reader would take either of two).
    fn sent(params: Value, stamp: Option<&Stamped>, progress: bool, key: &str) -> (Value, usize) {
        sent_with(params, None, stamp, progress, key)
    }

    fn sent_with(
        params: Value,
        arguments: Option<&str>,
        stamp: Option<&Stamped>,
        progress: bool,
        key: &str,
    ) -> (Value, usize) {
        let shared = Shared::new(InstanceId::new("s", 0), crate::Relay::default());
        let mut call = shared.begin(0);
        let to = progress.then(|| mpsc::unbounded_channel().0);
        let params = (Some(params), arguments.map(Arc::from));
        let (out, _) = shared.outgoing(&mut call, "w-1", params, stamp, to);
        let bytes = request_bytes("w-1", "tools/call", &out).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        (serde_json::from_str(&text).expect(&text), text.matches(key).count())
    }

    #[test]
    fn the_stamp_and_progress_token_join_the_callers_meta_and_the_stamp_wins() {
        let stamp = Stamped::new(
            json!({ "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientInfo": { "name": "warden" } })
            .as_object()
            .unwrap()
            .clone(),
        );
        let params = json!({ "name": "echo", "arguments": { "text": "x" },
            "_meta": { "io.modelcontextprotocol/protocolVersion": "1999", "trace": "t" } });
        let (v, times) = sent(params, Some(&stamp), true, "protocolVersion");
        assert_eq!(
            v,
            json!({ "jsonrpc": "2.0", "id": "w-1", "method": "tools/call", "params": {
                "name": "echo", "arguments": { "text": "x" }, "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientInfo": { "name": "warden" },
                    "trace": "t", "progressToken": "w-1" } } })
        );
        assert_eq!(times, 1);
        // Only the stamp, on empty params.
        let (v, _) = sent(json!({}), Some(&stamp), false, "");
        assert_eq!(v["params"]["_meta"]["io.modelcontextprotocol/clientInfo"]["name"], "warden");
        assert_eq!(v["params"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn without_meta_the_params_go_as_they_came() {
        let (v, _) = sent(json!({ "name": "echo" }), Some(&Stamped::default()), false, "");
        assert_eq!(
            v,
            json!({ "jsonrpc": "2.0", "id": "w-1", "method": "tools/call",
            "params": { "name": "echo" } })
        );
        let (v, _) = sent(json!({ "_meta": { "a": 1 } }), None, false, "");
        assert_eq!(v["params"], json!({ "_meta": { "a": 1 } }));
    }

    #[test]
    fn arguments_text_goes_into_params_as_written_beside_the_meta() {
        let args = r#"{"text":"x","z":1e2, "a":[1]}"#;
        let stamp =
            Stamped::new(json!({ "io.modelcontextprotocol/v": "1" }).as_object().unwrap().clone());
        for (params, stamp, progress) in [
            (json!({ "name": "echo" }), None, false),
            (json!({ "name": "echo" }), Some(&stamp), true),
            (json!({}), None, false),
            (json!({}), Some(&stamp), false),
            (
                json!({ "name": "echo", "arguments": { "old": 1 }, "_meta": { "t": 1 } }),
                None,
                false,
            ),
        ] {
            let (v, times) =
                sent_with(params.clone(), Some(args), stamp, progress, "\"arguments\"");
            assert_eq!(times, 1, "{params}");
            assert_eq!(v["params"]["arguments"], json!({ "text": "x", "z": 100.0, "a": [1] }));
            assert_eq!(v["params"]["name"], params["name"]);
            assert_eq!(v["params"]["_meta"]["t"], params["_meta"]["t"]);
            assert_eq!(v["params"]["_meta"]["progressToken"].as_str().is_some(), progress);
        }
        // The text as written, and rmcp's path reads it into the tree.
        let shared = Shared::new(InstanceId::new("s", 0), crate::Relay::default());
        let mut call = shared.begin(0);
        let (out, _) = shared.outgoing(&mut call, "w-1", (None, Some(Arc::from(args))), None, None);
        let bytes = request_bytes("w-1", "tools/call", &out).unwrap();
        assert!(String::from_utf8(bytes).unwrap().contains(args));
        let tree = params_tree(Some(json!({ "name": "e" })), Some(Arc::from(args))).unwrap();
        assert_eq!(
            tree,
            Some(json!({ "name": "e", "arguments": { "text": "x", "z": 100.0, "a": [1] } }))
        );
        assert!(params_tree(None, Some(Arc::from("{"))).is_err());
    }
}
