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
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::relay::{Call, Notice, Origin, Progress, Shared};
use crate::reply::{server_error, Message};
use crate::sse::SseParser;
use crate::{Activity, Reply, SessionEvent, UpstreamError};

mod exchange;
pub(crate) mod h1;
mod h1_codec;
mod tap;

pub(crate) use exchange::outcome;
use exchange::*;
use tap::Slot;
pub(crate) use tap::{Tap, Template};

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
pub(crate) const STAMPED: [&str; 3] = [
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientInfo",
    "io.modelcontextprotocol/clientCapabilities",
];

#[cfg(test)]
thread_local! {
    /// Calls that took the fast path, started on this thread.
    pub(crate) static FAST_CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Sends calls of one session straight over HTTP.
pub(crate) struct Fast {
    http: reqwest::Client,
    uri: reqwest::Url,
    /// The in-task HTTP/1 client for calls, when the URL allows it.
    h1: Option<h1::H1>,
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
        let uri = reqwest::Url::parse(uri).ok()?;
        Some(Self {
            http: tap.inner.clone(),
            h1: h1::H1::for_url(&uri),
            uri,
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
    pub(crate) async fn request(&self, call: Call) -> Result<Reply, UpstreamError> {
        #[cfg(test)]
        FAST_CALLS.with(|c| c.set(c.get() + 1));
        let Call { method, params, arguments, timeout, deadline, origin, cancel, progress, .. } =
            call;
        let template = self
            .template
            .read()
            .expect("not poisoned")
            .clone()
            .ok_or_else(|| UpstreamError::Protocol("no session to send on".into()))?;
        let id = format!("warden-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let mut in_flight = self.shared.begin(origin);
        let (params, watching) = self.shared.outgoing(
            &mut in_flight,
            &id,
            (params, arguments),
            Some(&template.meta),
            progress,
        );
        let mut headers = template.headers.clone();
        if self.modern {
            if let Ok(v) = HeaderValue::from_str(&method) {
                headers.insert("mcp-method", v);
            }
            if let Some(v) = params
                .params
                .get("name")
                .and_then(Value::as_str)
                .and_then(|n| HeaderValue::from_str(n).ok())
            {
                headers.insert("mcp-name", v);
            }
        }
        let body = crate::relay::request_bytes(&id, &method, &params)?;
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
                if let Some((token, p)) = Progress::from_params(&params) {
                    self.shared.progress(&token, p);
                }
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
        let template =
            Template { headers: HeaderMap::new(), meta: crate::relay::Stamped::default() };
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
