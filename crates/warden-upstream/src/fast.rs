//! The fast path for remote Streamable HTTP sessions: a `tools/call` goes out as one reqwest
//! POST on the session rmcp negotiated (same session id, protocol headers and metadata), and
//! its SSE or JSON answer is read in the caller's task. rmcp's client machinery (a serde round
//! trip through `ClientRequest`/`ServerResult`, the service task, the transport worker's event
//! loop and a task per POST) cost ~70–80 µs per call (docs/perf/gateway-profile.md).
//!
//! Everything above the transport is unchanged: the caller sees the same [`UpstreamError`]s,
//! progress goes to the same sink, cancellation reaches the server (the POST is dropped; on a
//! legacy session `notifications/cancelled` is sent first, as rmcp does). What rmcp would do
//! for the rest of a call's stream is done here too: log messages, resource updates and list
//! changes go where the rmcp handler sends them, a server's request is relayed and answered,
//! and a stream the server closes early is resumed with `Last-Event-ID`.
//!
//! Calls that could need server→client requests (on a legacy session, for a client that can
//! answer them), tools that promote arguments to `Mcp-Param-*` headers, names that would need
//! Base64 in `Mcp-Name`, other methods, and calls before rmcp has sent its first request on the
//! session take rmcp's path.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use http::{HeaderName, HeaderValue};
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use rmcp::model::{ClientJsonRpcMessage, NumberOrString, ProgressToken};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::relay::{Call, Notice, Origin, Progress, Shared};
use crate::sse::SseParser;
use crate::{Activity, SessionEvent, UpstreamError};

const SESSION_ID: &str = "mcp-session-id";
const LAST_EVENT_ID: &str = "last-event-id";
/// How long the rest of an answered stream may take to end (normally it already has: the
/// closing chunk comes with the answer). Reading it to its end lets hyper pool the connection.
const DRAIN: Duration = Duration::from_millis(100);
/// Reconnects of a stream that ends before its answer, without an event in between.
const MAX_RESUMES: u32 = 3;
/// The largest JSON answer or error body read.
const MAX_BODY: usize = crate::MAX_MESSAGE;
/// The most of a reply to a posted notification or answer that is read: it carries nothing
/// (servers answer 202 with an empty body), so a longer one is an error.
const MAX_REPLY: usize = 4 * 1024 * 1024;

/// The `_meta` keys rmcp stamps on every request of a 2026-07-28 session (SEP-2575); others
/// (a subscription id, a log level) belong to the one request that carried them.
const STAMPED: [&str; 3] = [
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientInfo",
    "io.modelcontextprotocol/clientCapabilities",
];

/// What rmcp sent with its latest request on this session: every header but the per-request
/// ones, and the protocol metadata it stamps on every request.
pub(crate) struct Template {
    headers: HeaderMap,
    meta: Map<String, Value>,
}

type Slot = Arc<RwLock<Option<Arc<Template>>>>;

/// rmcp's HTTP client (reqwest), recording the session and headers of each request rmcp
/// sends, so the fast path sends exactly the same; and counting every message the server
/// sends back (answers, progress, notifications) as activity: busy is not hung.
#[derive(Clone)]
pub(crate) struct Tap {
    inner: reqwest::Client,
    template: Slot,
    activity: Arc<Activity>,
}

impl Tap {
    pub(crate) fn new(inner: reqwest::Client, activity: Arc<Activity>) -> Self {
        Self { inner, template: Slot::default(), activity }
    }

    /// Counts an answer (or each message of an answer stream) as activity.
    fn count(
        &self,
        response: Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>> {
        match response {
            Ok(StreamableHttpPostResponse::Json(message, session)) => {
                self.activity.touch(1);
                Ok(StreamableHttpPostResponse::Json(message, session))
            }
            Ok(StreamableHttpPostResponse::Sse(stream, session)) => {
                Ok(StreamableHttpPostResponse::Sse(self.count_stream(stream), session))
            }
            other => other,
        }
    }

    /// Counts each event that carries a message; keep-alive comments and empty priming events
    /// are the HTTP layer's, not the server's, and do not count.
    fn count_stream(
        &self,
        stream: BoxStream<'static, Result<sse_stream::Sse, SseError>>,
    ) -> BoxStream<'static, Result<sse_stream::Sse, SseError>> {
        let activity = Arc::clone(&self.activity);
        stream
            .inspect(move |event| {
                if let Ok(sse_stream::Sse { data: Some(data), .. }) = event {
                    if !data.trim().is_empty() {
                        activity.touch(data.len());
                    }
                }
            })
            .boxed()
    }

    fn record(
        &self,
        message: &ClientJsonRpcMessage,
        session_id: Option<&Arc<str>>,
        auth: Option<&String>,
        custom: &HashMap<HeaderName, HeaderValue>,
    ) {
        let ClientJsonRpcMessage::Request(_) = message else { return };
        let Ok(v) = serde_json::to_value(message) else { return };
        if v.get("method").and_then(Value::as_str) == Some("initialize") {
            // Sent before the session exists.
            return;
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream, application/json"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(token) = auth {
            let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) else { return };
            headers.insert(AUTHORIZATION, value);
        }
        for (k, v) in custom {
            let n = k.as_str();
            if n == "mcp-method" || n == "mcp-name" || n.starts_with("mcp-param-") {
                continue;
            }
            headers.insert(k.clone(), v.clone());
        }
        if let Some(s) = session_id {
            let Ok(value) = HeaderValue::from_str(s) else { return };
            headers.insert(SESSION_ID, value);
        }
        let meta = v
            .pointer("/params/_meta")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| STAMPED.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        *self.template.write().expect("not poisoned") = Some(Arc::new(Template { headers, meta }));
    }
}

impl StreamableHttpClient for Tap {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>> {
        self.record(&message, session_id.as_ref(), auth_header.as_ref(), &custom_headers);
        let response =
            self.inner.post_message(uri, message, session_id, auth_header, custom_headers).await;
        self.count(response)
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>> {
        self.record(&message, session_id.as_ref(), auth_header.as_ref(), &custom_headers);
        let response = self
            .inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        self.count(response)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<reqwest::Error>> {
        self.inner.delete_session(uri, session_id, auth_header, custom_headers).await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<
        BoxStream<'static, Result<sse_stream::Sse, SseError>>,
        StreamableHttpError<reqwest::Error>,
    > {
        let stream = self
            .inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await?;
        Ok(self.count_stream(stream))
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<
        BoxStream<'static, Result<sse_stream::Sse, SseError>>,
        StreamableHttpError<reqwest::Error>,
    > {
        let stream = self
            .inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await?;
        Ok(self.count_stream(stream))
    }
}

#[cfg(test)]
thread_local! {
    /// Calls that took the fast path, started on this thread.
    pub(crate) static FAST_CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Sends calls of one session straight over HTTP.
pub(crate) struct Fast {
    http: reqwest::Client,
    uri: reqwest::Url,
    template: Slot,
    /// Protocol 2026-07-28: no session, `Mcp-Method`/`Mcp-Name` headers, cancellation by
    /// dropping the request, and server requests only as `InputRequiredResult` answers.
    modern: bool,
    shared: Arc<Shared>,
    events: mpsc::Sender<SessionEvent>,
    /// The session's liveness: every message on a call's stream counts.
    activity: Arc<Activity>,
    /// Tools whose input schema promotes arguments to `Mcp-Param-*` headers (SEP-2243).
    header_tools: RwLock<HashSet<String>>,
    next: AtomicU64,
}

/// Whether a name can go into `Mcp-Name` as is (rmcp Base64-encodes anything else).
fn plain_header_value(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
        && !(s.starts_with("=?base64?") && s.ends_with("?="))
}

impl Fast {
    pub(crate) fn new(
        tap: &Tap,
        uri: &str,
        modern: bool,
        shared: Arc<Shared>,
        events: mpsc::Sender<SessionEvent>,
    ) -> Option<Self> {
        Some(Self {
            http: tap.inner.clone(),
            uri: reqwest::Url::parse(uri).ok()?,
            template: Arc::clone(&tap.template),
            modern,
            shared,
            events,
            activity: Arc::clone(&tap.activity),
            header_tools: RwLock::default(),
            next: AtomicU64::new(1),
        })
    }

    /// Remembers which tools rmcp must send (their calls carry `Mcp-Param-*` headers).
    pub(crate) fn set_catalog(&self, catalog: &crate::Catalog) {
        let set = catalog
            .tools
            .iter()
            .filter(|t| {
                t.raw.get("inputSchema").is_some_and(|s| s.to_string().contains("x-mcp-header"))
            })
            .map(|t| t.name.clone())
            .collect();
        *self.header_tools.write().expect("not poisoned") = set;
    }

    /// Whether this call takes the fast path.
    pub(crate) fn takes(&self, call: &Call) -> bool {
        if call.method != "tools/call" || (call.client_answers && !self.modern) {
            return false;
        }
        if self.template.read().expect("not poisoned").is_none() {
            return false;
        }
        let Some(name) = call.params.as_ref().and_then(|p| p.get("name")).and_then(Value::as_str)
        else {
            return false;
        };
        !self.modern
            || (plain_header_value(name)
                && !self.header_tools.read().expect("not poisoned").contains(name))
    }

    /// Forwards one call (see the module documentation).
    pub(crate) async fn request(&self, call: Call) -> Result<Value, UpstreamError> {
        #[cfg(test)]
        FAST_CALLS.with(|c| c.set(c.get() + 1));
        let Call { method, params, timeout, deadline, origin, cancel, progress, .. } = call;
        let template = self
            .template
            .read()
            .expect("not poisoned")
            .clone()
            .ok_or_else(|| UpstreamError::Protocol("no session to send on".into()))?;
        let id = format!("warden-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let mut params = match params {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let mut meta = match params.remove("_meta") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        for (k, v) in &template.meta {
            meta.insert(k.clone(), v.clone());
        }
        let mut in_flight = self.shared.begin(origin);
        let watching = progress.is_some();
        if let Some(to) = progress {
            meta.insert("progressToken".into(), json!(id));
            let token = ProgressToken(NumberOrString::String(id.as_str().into()));
            self.shared.watch_progress(&mut in_flight, token, to);
        }
        if !meta.is_empty() {
            params.insert("_meta".into(), Value::Object(meta));
        }
        let mut headers = template.headers.clone();
        if self.modern {
            if let Ok(v) = HeaderValue::from_str(&method) {
                headers.insert("mcp-method", v);
            }
            if let Some(v) = params
                .get("name")
                .and_then(Value::as_str)
                .and_then(|n| HeaderValue::from_str(n).ok())
            {
                headers.insert("mcp-name", v);
            }
        }
        let body = serde_json::to_vec(&json!({
            "jsonrpc": "2.0", "id": id, "method": method, "params": params,
        }))
        .map_err(|e| UpstreamError::Protocol(format!("cannot forward {method}: {e}")))?;
        let now = Instant::now();
        // Like rmcp: a call that reports progress is bounded by its deadline, and each update
        // restarts its timeout; any other by its timeout.
        let hard = if watching {
            now + deadline.map_or(timeout * 10, |d| d.saturating_duration_since(now))
        } else {
            now + timeout
        };
        let exchange =
            Exchange { fast: self, template: &template, id: &id, timeout, hard, watching, origin };
        let work = exchange.run(headers, body);
        tokio::pin!(work);
        let result = tokio::select! {
            r = &mut work => r,
            _ = cancel.cancelled() => {
                if !self.modern {
                    // The answer stream stays open until the notification is sent.
                    let note = json!({
                        "jsonrpc": "2.0",
                        "method": "notifications/cancelled",
                        "params": { "requestId": id, "reason": "cancelled by the client" },
                    });
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        self.post_message(&template, &note),
                    )
                    .await;
                }
                Err(UpstreamError::Cancelled)
            }
        };
        drop(in_flight);
        result
    }

    /// POSTs a notification or an answer on the session; the body is read to its end.
    async fn post_message(
        &self,
        template: &Template,
        message: &Value,
    ) -> Result<(), UpstreamError> {
        let body =
            serde_json::to_vec(message).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        let resp = self
            .http
            .post(self.uri.clone())
            .headers(template.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(|e| crate::error::from_reqwest(&e))?;
        let status = resp.status().as_u16();
        let read = drain(resp, MAX_REPLY).await;
        if !(200..300).contains(&status) {
            return Err(UpstreamError::HttpStatus(status));
        }
        read
    }

    /// A server's message on a call's stream that is not the call's answer: it belongs to the
    /// session that made the call (`origin`), never to the others.
    async fn other(&self, template: &Template, origin: Origin, message: Value) {
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            // An answer to something else: not ours to route.
            return;
        };
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        if let Some(rid) = message.get("id") {
            // A request of the server (sampling, elicitation, roots): relayed as rmcp's
            // handler would, and answered on the session.
            let answer = match self.shared.request_for(vec![origin], method, params).await {
                Ok(v) => json!({ "jsonrpc": "2.0", "id": rid, "result": v }),
                Err(UpstreamError::Server { code, message }) => {
                    json!({ "jsonrpc": "2.0", "id": rid, "error": { "code": code, "message": message } })
                }
                Err(e) => json!({
                    "jsonrpc": "2.0", "id": rid,
                    "error": { "code": rmcp::model::ErrorCode::INTERNAL_ERROR.0, "message": e.to_string() },
                }),
            };
            if let Err(e) = self.post_message(template, &answer).await {
                tracing::debug!(error = %e, method, "could not answer the server's request");
            }
            return;
        }
        match method {
            "notifications/progress" => {
                // Only this call's token reaches this stream; `Shared` routes it to its sink.
                let Ok(token) = serde_json::from_value::<ProgressToken>(
                    params.get("progressToken").cloned().unwrap_or(Value::Null),
                ) else {
                    return;
                };
                let Some(progress) = params.get("progress").and_then(Value::as_f64) else { return };
                self.shared.progress(
                    &token,
                    Progress {
                        progress,
                        total: params.get("total").and_then(Value::as_f64),
                        message: params.get("message").and_then(Value::as_str).map(str::to_owned),
                    },
                );
            }
            "notifications/message" => {
                self.shared.notice(Notice::Log { params, origin: Some(origin) })
            }
            "notifications/resources/updated" => {
                if let Some(uri) = params.get("uri").and_then(Value::as_str) {
                    self.shared.notice(Notice::ResourceUpdated(uri.to_owned()));
                }
            }
            "notifications/tools/list_changed"
            | "notifications/prompts/list_changed"
            | "notifications/resources/list_changed" => {
                let _ = self.events.try_send(SessionEvent::ListChanged);
            }
            _ => {}
        }
    }
}

/// One call's HTTP exchange.
struct Exchange<'a> {
    fast: &'a Fast,
    template: &'a Template,
    id: &'a str,
    timeout: Duration,
    /// The latest the answer may come.
    hard: Instant,
    /// Whether progress restarts the timeout.
    watching: bool,
    /// The client session the call is for: what else arrives on its stream is that
    /// session's alone.
    origin: Origin,
}

impl Exchange<'_> {
    async fn run(&self, headers: HeaderMap, body: Vec<u8>) -> Result<Value, UpstreamError> {
        let mut limit = self.hard.min(Instant::now() + self.timeout);
        let send = self.fast.http.post(self.fast.uri.clone()).headers(headers).body(body).send();
        let resp = tokio::time::timeout_at(limit, send)
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))?
            .map_err(|e| crate::error::from_reqwest(&e))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let json = content_type.starts_with("application/json");
        if !(200..300).contains(&status) {
            return Err(self.failure(resp, status, json, limit).await);
        }
        if json {
            let bytes = self.body(resp, limit).await?;
            self.fast.activity.touch(bytes.len());
            let message: Value = serde_json::from_slice(&bytes)
                .map_err(|e| UpstreamError::Protocol(format!("unreadable answer: {e}")))?;
            return match self.answer(message) {
                Ok(r) => r,
                Err(_) => Err(UpstreamError::Protocol("an answer to another request".into())),
            };
        }
        if !content_type.starts_with("text/event-stream") {
            let _ = self.body(resp, limit).await;
            return Err(if status == 202 {
                UpstreamError::Protocol("the request was accepted without an answer".into())
            } else {
                UpstreamError::Protocol(format!("unexpected content type {content_type:?}"))
            });
        }
        let mut stream = resp.bytes_stream().boxed();
        let mut parser = SseParser::new(MAX_BODY);
        let mut last_event: Option<String> = None;
        let mut retry = Duration::from_secs(1);
        let mut resumes = 0;
        loop {
            while let Some(event) = parser.next_event() {
                if let Some(id) = event.id {
                    last_event = Some(id);
                    resumes = 0;
                }
                if let Some(ms) = event.retry {
                    retry = Duration::from_millis(ms);
                }
                if event.data.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                // An answer, progress, a log line: the server is working, not hung.
                self.fast.activity.touch(event.data.len());
                let Ok(message) = serde_json::from_slice::<Value>(&event.data) else {
                    tracing::warn!(target: "warden::upstream", "dropped an unparsable SSE message");
                    continue;
                };
                match self.answer(message) {
                    Ok(result) => {
                        // Read the stream to its end, or hyper drops the connection instead of
                        // pooling it and the next call pays a new TCP handshake.
                        let _ = tokio::time::timeout(DRAIN, async {
                            while let Some(Ok(_)) = stream.next().await {}
                        })
                        .await;
                        return result;
                    }
                    Err(message) => {
                        let progress = message.get("method").and_then(Value::as_str)
                            == Some("notifications/progress");
                        // A server's request waits on a client (a person, for an
                        // elicitation): never past the call's own deadline.
                        let other = self.fast.other(self.template, self.origin, message);
                        if tokio::time::timeout_at(self.hard, other).await.is_err() {
                            return Err(UpstreamError::Timeout(self.timeout));
                        }
                        if progress && self.watching {
                            limit = self.hard.min(Instant::now() + self.timeout);
                        }
                    }
                }
            }
            match tokio::time::timeout_at(limit, stream.next()).await {
                Err(_) => return Err(UpstreamError::Timeout(self.timeout)),
                Ok(Some(Ok(chunk))) => {
                    parser.push(&chunk).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                }
                Ok(Some(Err(e))) => {
                    return Err(UpstreamError::Closed(Some(reqwest_text(&e))));
                }
                Ok(None) => {
                    // The server closed the stream before the answer: resume it (SEP-1699),
                    // if it gave an event id to resume from.
                    let Some(from) = last_event.clone() else {
                        return Err(UpstreamError::Closed(Some(
                            "the answer stream ended before the answer".into(),
                        )));
                    };
                    if resumes >= MAX_RESUMES {
                        return Err(UpstreamError::Closed(Some(
                            "the answer stream kept ending before the answer".into(),
                        )));
                    }
                    resumes += 1;
                    if tokio::time::timeout_at(limit, tokio::time::sleep(retry)).await.is_err() {
                        return Err(UpstreamError::Timeout(self.timeout));
                    }
                    stream = self.resume(&from, limit).await?;
                    parser = SseParser::new(MAX_BODY);
                }
            }
        }
    }

    /// Reopens the call's stream with `GET` and `Last-Event-ID`.
    async fn resume(
        &self,
        from: &str,
        limit: Instant,
    ) -> Result<BoxStream<'static, reqwest::Result<bytes::Bytes>>, UpstreamError> {
        let mut headers = self.template.headers.clone();
        headers.remove(CONTENT_TYPE);
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Ok(v) = HeaderValue::from_str(from) {
            headers.insert(LAST_EVENT_ID, v);
        }
        let send = self.fast.http.get(self.fast.uri.clone()).headers(headers).send();
        let resp = tokio::time::timeout_at(limit, send)
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))?
            .map_err(|e| crate::error::from_reqwest(&e))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let json = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            return Err(self.failure(resp, status, json, limit).await);
        }
        Ok(resp.bytes_stream().boxed())
    }

    /// The call's result or error if `message` answers it; else the message back.
    fn answer(&self, message: Value) -> Result<Result<Value, UpstreamError>, Value> {
        let ours = message.get("method").is_none()
            && message.get("id").and_then(Value::as_str) == Some(self.id);
        if !ours {
            return Err(message);
        }
        let Value::Object(mut m) = message else { unreachable!("has an id") };
        if let Some(e) = m.remove("error") {
            return Ok(Err(server_error(&e)));
        }
        Ok(m.remove("result").ok_or_else(|| {
            UpstreamError::Protocol("an answer with neither result nor error".into())
        }))
    }

    /// Reads a whole (bounded) body within `limit`.
    async fn body(
        &self,
        resp: reqwest::Response,
        limit: Instant,
    ) -> Result<Vec<u8>, UpstreamError> {
        let mut stream = resp.bytes_stream();
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout_at(limit, stream.next()).await {
                Err(_) => return Err(UpstreamError::Timeout(self.timeout)),
                Ok(None) => return Ok(out),
                Ok(Some(Ok(chunk))) => {
                    if out.len() + chunk.len() > MAX_BODY {
                        return Err(UpstreamError::Protocol(format!(
                            "an answer over {MAX_BODY} bytes"
                        )));
                    }
                    out.extend_from_slice(&chunk);
                }
                Ok(Some(Err(e))) => return Err(UpstreamError::Closed(Some(reqwest_text(&e)))),
            }
        }
    }

    /// Classifies an HTTP failure as rmcp's path does (see `error::classify_chain`).
    async fn failure(
        &self,
        resp: reqwest::Response,
        status: u16,
        json: bool,
        limit: Instant,
    ) -> UpstreamError {
        let body = self.body(resp, limit).await.unwrap_or_default();
        match status {
            401 | 403 => return UpstreamError::Auth(Some(status)),
            429 => return UpstreamError::RateLimited,
            404 if self.template.headers.contains_key(SESSION_ID) => {
                return UpstreamError::Closed(Some("session expired".into()))
            }
            _ => {}
        }
        if json {
            if let Some(e) =
                serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("error").cloned())
            {
                return server_error(&e);
            }
        }
        UpstreamError::HttpStatus(status)
    }
}

/// Reads a body to its end without keeping it; past `max` bytes, stops with an error.
async fn drain(resp: reqwest::Response, max: usize) -> Result<(), UpstreamError> {
    let mut stream = resp.bytes_stream();
    let mut read = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| UpstreamError::Closed(Some(reqwest_text(&e))))?;
        read += chunk.len();
        if read > max {
            return Err(UpstreamError::Protocol(format!("a reply over {} MiB", max >> 20)));
        }
    }
    Ok(())
}

fn server_error(e: &Value) -> UpstreamError {
    UpstreamError::Server {
        code: e.get("code").and_then(Value::as_i64).unwrap_or(-32603) as i32,
        message: e.get("message").and_then(Value::as_str).unwrap_or_default().to_owned(),
    }
}

/// A reqwest error's innermost cause (never the URL, which may hold a secret).
fn reqwest_text(e: &reqwest::Error) -> String {
    let mut message = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = cur {
        message = s.to_string();
        cur = s.source();
    }
    if message.is_empty() {
        "the answer stream broke".into()
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reply_to_a_posted_message_is_read_only_up_to_its_bound() {
        let app = axum::Router::new()
            .route("/mcp", axum::routing::post(|| async { vec![b'x'; MAX_REPLY + 1024 * 1024] }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/mcp", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let tap = Tap::new(reqwest::Client::new(), Arc::new(Activity::new()));
        let shared = Shared::new(warden_core::InstanceId::new("s", 0), crate::Relay::default());
        let (events, _rx) = mpsc::channel(1);
        let fast = Fast::new(&tap, &uri, true, shared, events).unwrap();
        let template = Template { headers: HeaderMap::new(), meta: Map::new() };
        let note = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled" });
        let e = fast.post_message(&template, &note).await.expect_err("too long");
        assert_eq!(e.to_string(), "protocol error: a reply over 4 MiB");
    }

    #[test]
    fn header_values_that_rmcp_would_encode_are_not_plain() {
        assert!(plain_header_value("echo"));
        assert!(!plain_header_value("é"));
        assert!(!plain_header_value("a b"));
        assert!(!plain_header_value("=?base64?abc?="));
    }
}
