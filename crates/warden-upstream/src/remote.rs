//! A remote server: Streamable HTTP through rmcp, or the legacy HTTP+SSE transport (2024-11-05)
//! for servers that do not speak Streamable HTTP yet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rmcp::model::ServerJsonRpcMessage;
use rmcp::service::{RoleClient, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use rmcp::transport::Transport;
use tokio::sync::mpsc;
use warden_config::{ProbeMethod, RemoteKind, Secret, ServerSpec, Transport as SpecTransport};
use warden_core::{FailureClass, InstanceId, Reason};

use crate::client::{self, Handler};
use crate::fast::{Fast, Tap};
use crate::relay::Shared;
use crate::sse::{Event, SseParser};
use crate::{
    Activity, BoxFuture, Call, Catalog, Connected, Connector, PeerInfo, Relay, Session,
    SessionEvent, UpstreamError, MAX_MESSAGE,
};

/// Connects remote servers (one instance per URL).
pub struct RemoteConnector {
    spec: ServerSpec,
    http: reqwest::Client,
    /// Configured URLs and header values with what may be shown instead: error text passes
    /// through these before it becomes a reason.
    secrets: Arc<Vec<(String, String)>>,
    relay: Relay,
}

impl RemoteConnector {
    pub fn new(spec: ServerSpec, relay: Relay) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(same_origin_redirects())
            .build()
            .expect("a default reqwest client builds");
        let mut secrets = Vec::new();
        if let SpecTransport::Remote { urls, display_urls, headers, .. } = &spec.transport {
            secrets.extend(urls.iter().cloned().zip(display_urls.iter().cloned()));
            for v in headers.values() {
                secrets.push((v.expose().to_owned(), "***".to_owned()));
                if let Some((_, token)) = v.expose().split_once(' ') {
                    secrets.push((token.to_owned(), "***".to_owned()));
                }
            }
        }
        // A URL shown as it is hides nothing.
        secrets.retain(|(secret, shown)| secret != shown);
        // Longest first, so a URL is replaced before a header value inside it.
        secrets.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Self { spec, http, secrets: Arc::new(secrets), relay }
    }
}

/// Redirects are followed only within the configured origin (scheme, host, port), at most 5:
/// every request to a remote server carries its configured headers, and reqwest keeps custom
/// ones (an `X-Api-Key`) across a redirect to another host.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else { return attempt.follow() };
        let origin = |u: &reqwest::Url| {
            format!(
                "{}://{}:{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port_or_known_default().unwrap_or(0)
            )
        };
        let (from, to) = (origin(first), origin(attempt.url()));
        if from != to {
            let why = format!(
                "a redirect from {from} to another origin ({to}) is refused: it would receive the configured headers"
            );
            attempt.error(why)
        } else if attempt.previous().len() > 5 {
            attempt.error("more than 5 redirects")
        } else {
            attempt.follow()
        }
    })
}

impl Connector for RemoteConnector {
    fn connect(
        &self,
        instance: InstanceId,
        deadline: Duration,
    ) -> BoxFuture<'_, Result<Connected, UpstreamError>> {
        Box::pin(async move {
            let SpecTransport::Remote { urls, headers, kind, .. } = &self.spec.transport else {
                return Err(UpstreamError::Protocol("not a remote server".into()));
            };
            let url = urls
                .get(instance.index() as usize)
                .ok_or_else(|| UpstreamError::Protocol("no URL for this instance".into()))?;
            let connected = match kind {
                RemoteKind::StreamableHttp => {
                    self.streamable(url, headers, deadline, &instance).await
                }
                RemoteKind::Sse => self.sse(url, headers, deadline, &instance).await,
                RemoteKind::Auto => {
                    match self.streamable(url, headers, deadline, &instance).await {
                        Err(e) if e.suggests_legacy_sse() => {
                            tracing::info!(instance = %instance, error = %e, "Streamable HTTP refused; trying legacy SSE");
                            self.sse(url, headers, deadline, &instance).await.map_err(|sse_err| {
                                // A refused endpoint is what the operator must see.
                                if sse_err.class() == FailureClass::ConnectionError
                                    && !matches!(sse_err, UpstreamError::ForeignEndpoint { .. })
                                {
                                    e
                                } else {
                                    sse_err
                                }
                            })
                        }
                        other => other,
                    }
                }
            };
            match connected {
                // Without secrets there is nothing to scrub: no layer (a box and a poll a call).
                Ok(mut c) if !self.secrets.is_empty() => {
                    c.session =
                        Box::new(Scrubbed { inner: c.session, secrets: Arc::clone(&self.secrets) });
                    Ok(c)
                }
                Ok(c) => Ok(c),
                Err(e) => Err(e.scrub(&self.secrets)),
            }
        })
    }
}

/// A session whose errors are scrubbed of secrets before anyone sees them.
struct Scrubbed {
    inner: Box<dyn Session>,
    secrets: Arc<Vec<(String, String)>>,
}

impl Session for Scrubbed {
    crate::pass_through!(inner: activity, pid, shutdown, kill);
    fn probe(
        &self,
        method: ProbeMethod,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Duration, UpstreamError>> {
        Box::pin(async move {
            self.inner.probe(method, timeout).await.map_err(|e| e.scrub(&self.secrets))
        })
    }

    fn list_catalog(&self, timeout: Duration) -> BoxFuture<'_, Result<Catalog, UpstreamError>> {
        Box::pin(async move {
            self.inner.list_catalog(timeout).await.map_err(|e| e.scrub(&self.secrets))
        })
    }

    fn request(&self, call: Call) -> BoxFuture<'_, Result<crate::Reply, UpstreamError>> {
        Box::pin(async move { self.inner.request(call).await.map_err(|e| e.scrub(&self.secrets)) })
    }
}

impl RemoteConnector {
    async fn streamable(
        &self,
        url: &str,
        headers: &std::collections::BTreeMap<String, Secret>,
        deadline: Duration,
        instance: &InstanceId,
    ) -> Result<Connected, UpstreamError> {
        let mut custom = HashMap::new();
        let mut auth = None;
        for (k, v) in headers {
            if k.eq_ignore_ascii_case("authorization") {
                // rmcp sends its auth header as `Bearer <token>`; any other scheme (Basic, …)
                // goes through untouched as a custom header.
                if let Some((scheme, token)) = v.expose().split_once(' ') {
                    if scheme.eq_ignore_ascii_case("bearer") {
                        auth = Some(token.trim().to_owned());
                        continue;
                    }
                }
            }
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| UpstreamError::Protocol(format!("header {k}: {e}")))?;
            let value = http::HeaderValue::from_str(v.expose())
                .map_err(|_| UpstreamError::Protocol(format!("header {k}: invalid value")))?;
            custom.insert(name, value);
        }
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned())
            .custom_headers(custom)
            // A restarted server loses our session: the supervisor re-initializes and records it.
            .reinit_on_expired_session(false)
            // rmcp queues calls past this many per session (16 by default); the gateway bounds
            // concurrency itself.
            .max_concurrent_requests(MAX_CONCURRENT_REQUESTS);
        if let Some(token) = auth {
            config = config.auth_header(token);
        }
        let activity = Arc::new(Activity::new());
        let tap = Tap::new(self.http.clone(), Arc::clone(&activity));
        let transport = StreamableHttpClientTransport::with_client(tap.clone(), config);
        let shared = Shared::new(instance.clone(), self.relay.clone());
        let mut fast = None;
        let mut connected =
            finish(transport, deadline, activity, Arc::clone(&shared), |info, events| {
                fast = if crate::fast_path_enabled() {
                    Fast::new(&tap, url, info.modern, Arc::clone(&shared), events.clone())
                } else {
                    None
                };
            })
            .await?;
        if let Some(fast) = fast {
            connected.session = Box::new(FastSession { inner: connected.session, fast });
        }
        Ok(connected)
    }

    async fn sse(
        &self,
        url: &str,
        headers: &std::collections::BTreeMap<String, Secret>,
        deadline: Duration,
        instance: &InstanceId,
    ) -> Result<Connected, UpstreamError> {
        let activity = Arc::new(Activity::new());
        let connect = LegacySse::connect(self.http.clone(), url, headers, Arc::clone(&activity));
        let transport = tokio::time::timeout(deadline, connect)
            .await
            .map_err(|_| UpstreamError::Timeout(deadline))??;
        let shared = Shared::new(instance.clone(), self.relay.clone());
        finish(transport, deadline, activity, shared, |_, _| {}).await
    }
}

/// Calls one rmcp client session may have in flight at once.
const MAX_CONCURRENT_REQUESTS: usize = 1024;

async fn finish<T, E, A>(
    transport: T,
    deadline: Duration,
    activity: Arc<Activity>,
    shared: Arc<Shared>,
    connected: impl FnOnce(&PeerInfo, &mpsc::Sender<SessionEvent>),
) -> Result<Connected, UpstreamError>
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let (events_tx, events_rx) = mpsc::channel(64);
    let (running, info) = client::handshake(
        Handler::new(events_tx.clone(), Arc::clone(&shared)),
        transport,
        deadline,
    )
    .await?;
    connected(&info, &events_tx);
    let peer = running.peer().clone();
    client::spawn_list_listener(&peer, &info, events_tx.clone());
    activity.touch(0);
    // Report a transport that ends on its own (the SSE stream closed, the worker gave up).
    let watch_peer = peer.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if events_tx.is_closed() {
                return;
            }
            if watch_peer.is_transport_closed() {
                let _ = events_tx
                    .send(SessionEvent::Closed(Reason::new(
                        FailureClass::ConnectionError,
                        "transport closed",
                    )))
                    .await;
                return;
            }
        }
    });
    let session = client::Core::new(running, info.clone(), activity, shared);
    Ok(Connected { session: Box::new(session), events: events_rx, info })
}

/// A Streamable HTTP session whose plain calls take the fast path (see [`crate::fast`]).
struct FastSession {
    inner: Box<dyn Session>,
    fast: Fast,
}

impl Session for FastSession {
    crate::pass_through!(inner: probe, activity, pid, shutdown, kill);

    fn list_catalog(&self, timeout: Duration) -> BoxFuture<'_, Result<Catalog, UpstreamError>> {
        Box::pin(async move {
            let catalog = self.inner.list_catalog(timeout).await?;
            self.fast.set_catalog(&catalog);
            Ok(catalog)
        })
    }

    fn request(&self, call: Call) -> BoxFuture<'_, Result<crate::Reply, UpstreamError>> {
        if self.fast.takes(&call) {
            Box::pin(self.fast.request(call))
        } else {
            self.inner.request(call)
        }
    }
}

/// The legacy HTTP+SSE client transport: `GET` an event stream whose first `endpoint` event
/// names the URL to `POST` messages to; answers arrive as `message` events.
struct LegacySse {
    http: reqwest::Client,
    endpoint: Arc<str>,
    headers: reqwest::header::HeaderMap,
    incoming: mpsc::Receiver<ServerJsonRpcMessage>,
    reader: tokio::task::JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SseError(String);

impl LegacySse {
    async fn connect(
        http: reqwest::Client,
        url: &str,
        headers: &std::collections::BTreeMap<String, Secret>,
        activity: Arc<Activity>,
    ) -> Result<Self, UpstreamError> {
        let mut map = reqwest::header::HeaderMap::new();
        for (k, v) in headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| UpstreamError::Protocol(format!("header {k}: {e}")))?;
            let value = reqwest::header::HeaderValue::from_str(v.expose())
                .map_err(|_| UpstreamError::Protocol(format!("header {k}: invalid value")))?;
            map.insert(name, value);
        }
        let resp = http
            .get(url)
            .headers(map.clone())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| crate::error::from_reqwest(&e))?;
        let status = resp.status().as_u16();
        match status {
            200..=299 => {}
            401 | 403 => return Err(UpstreamError::Auth(Some(status))),
            429 => return Err(UpstreamError::RateLimited),
            s => return Err(UpstreamError::HttpStatus(s)),
        }
        let base = resp.url().clone();
        let mut events = Box::pin(sse_events(resp.bytes_stream()));
        let endpoint = loop {
            match events.next().await {
                Some(event) if event.name == "endpoint" => {
                    let data = String::from_utf8_lossy(&event.data);
                    let endpoint = base
                        .join(data.trim())
                        .map_err(|e| UpstreamError::Protocol(format!("bad endpoint event: {e}")))?;
                    // Messages go out with the configured headers: only to the stream's origin.
                    if endpoint.origin() != base.origin() {
                        return Err(UpstreamError::ForeignEndpoint {
                            stream: base.origin().ascii_serialization(),
                            endpoint: endpoint.origin().ascii_serialization(),
                        });
                    }
                    break endpoint;
                }
                Some(_) => continue,
                None => {
                    return Err(UpstreamError::Protocol(
                        "SSE stream ended before the endpoint event".into(),
                    ))
                }
            }
        };
        let (tx, incoming) = mpsc::channel(256);
        let reader = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if event.name != "message" && !event.name.is_empty() {
                    continue;
                }
                if event.data.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                // Every message, answer or progress, shows the server at work.
                activity.touch(event.data.len());
                match serde_json::from_slice::<ServerJsonRpcMessage>(&event.data) {
                    Ok(msg) => {
                        if tx.send(msg).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(target: "warden::upstream", "dropped an unparsable SSE message: {e}")
                    }
                }
            }
        });
        Ok(Self { http, endpoint: endpoint.as_str().into(), headers: map, incoming, reader })
    }
}

impl Transport<RoleClient> for LegacySse {
    type Error = SseError;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl std::future::Future<Output = Result<(), SseError>> + Send + 'static {
        let req = self.http.post(&*self.endpoint).headers(self.headers.clone()).json(&item);
        async move {
            let resp = req.send().await.map_err(|e| SseError(e.without_url().to_string()))?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(SseError(format!("HTTP {}", resp.status().as_u16())))
            }
        }
    }

    fn receive(
        &mut self,
    ) -> impl std::future::Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        self.incoming.recv()
    }

    async fn close(&mut self) -> Result<(), SseError> {
        self.reader.abort();
        Ok(())
    }
}

/// Parses a byte stream as server-sent events (see [`crate::sse`]); ends at the stream's end,
/// a read error, or an event over [`MAX_MESSAGE`] bytes.
fn sse_events<S, B, E>(bytes: S) -> impl futures::Stream<Item = Event> + Send
where
    S: futures::Stream<Item = Result<B, E>> + Send + 'static,
    B: AsRef<[u8]> + Send,
    E: Send,
{
    futures::stream::unfold(
        (Box::pin(bytes), SseParser::new(MAX_MESSAGE), false),
        |(mut bytes, mut parser, mut done)| async move {
            loop {
                if let Some(event) = parser.next_event() {
                    return Some((event, (bytes, parser, done)));
                }
                if done {
                    return None;
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => {
                        if let Err(e) = parser.push(chunk.as_ref()) {
                            tracing::warn!(target: "warden::upstream", "{e}; closing the stream");
                            done = true;
                        }
                    }
                    _ => done = true,
                }
            }
        },
    )
}
