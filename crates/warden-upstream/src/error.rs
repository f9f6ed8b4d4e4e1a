//! Upstream failures, classified by cause (by type, never by error text).

use std::time::Duration;

use rmcp::service::{ClientInitializeError, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpError;
use warden_core::{FailureClass, Reason};

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not start {command:?}: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("no answer within {}ms", .0.as_millis())]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("authentication required or refused{}", .0.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Auth(Option<u16>),
    #[error("rate limited (HTTP 429)")]
    RateLimited,
    #[error("server error {code}: {message}")]
    Server { code: i32, message: String },
    #[error("HTTP {0}")]
    HttpStatus(u16),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("connection closed{}", .0.as_ref().map(|s| format!(": {s}")).unwrap_or_default())]
    Closed(Option<String>),
    /// The child process ended (during start-up, or under a request).
    #[error("{0}")]
    Exited(String),
    /// A legacy SSE stream named a message endpoint on another origin: it would receive the
    /// configured headers (API keys included), so it is refused. Only origins are shown.
    #[error("connection refused: the SSE stream at {stream} named an endpoint on another origin, {endpoint}; its messages would carry the configured headers")]
    ForeignEndpoint { stream: String, endpoint: String },
    /// The client gave up on the call; the server was told.
    #[error("cancelled by the client")]
    Cancelled,
    /// An integration's check failed (not an MCP server): classified by the check itself.
    #[error("{message}")]
    Check { class: FailureClass, message: String },
}

impl UpstreamError {
    pub fn class(&self) -> FailureClass {
        match self {
            Self::Spawn { .. } | Self::Connect(_) | Self::ForeignEndpoint { .. } => {
                FailureClass::ConnectionError
            }
            Self::Timeout(_) => FailureClass::Timeout,
            Self::Auth(_) => FailureClass::Authentication,
            Self::RateLimited => FailureClass::RateLimit,
            Self::Server { .. } | Self::HttpStatus(_) => FailureClass::ServerError,
            Self::Protocol(_) => FailureClass::ProtocolError,
            Self::Closed(_) | Self::Exited(_) => FailureClass::Crash,
            // Never recorded: the gateway counts a cancelled call as no signal about the server.
            Self::Cancelled => FailureClass::Timeout,
            Self::Check { class, .. } => *class,
        }
    }

    pub fn reason(&self) -> Reason {
        Reason::new(self.class(), self.to_string())
    }

    /// Whether the connection itself is gone (refused, reset, closed): no point in probing on.
    pub fn is_connection_loss(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::Closed(_) | Self::Exited(_))
    }

    /// Whether this failure suggests the remote endpoint does not speak Streamable HTTP
    /// (so the legacy SSE transport is worth a try).
    pub(crate) fn suggests_legacy_sse(&self) -> bool {
        matches!(self, Self::HttpStatus(404 | 405) | Self::Protocol(_))
    }

    /// Replaces every secret (a configured URL, a header value) in the error's text with its
    /// display form, so a reason can be logged, stored and served.
    pub(crate) fn scrub(self, secrets: &[(String, String)]) -> Self {
        let clean = |mut s: String| {
            for (secret, shown) in secrets {
                if !secret.is_empty() && s.contains(secret.as_str()) {
                    s = s.replace(secret.as_str(), shown);
                }
            }
            s
        };
        match self {
            Self::Connect(m) => Self::Connect(clean(m)),
            Self::Server { code, message } => Self::Server { code, message: clean(message) },
            Self::Protocol(m) => Self::Protocol(clean(m)),
            Self::Closed(m) => Self::Closed(m.map(clean)),
            Self::Exited(m) => Self::Exited(clean(m)),
            Self::Check { class, message } => Self::Check { class, message: clean(message) },
            other => other,
        }
    }

    pub(crate) fn from_service(e: ServiceError, timeout: Duration) -> Self {
        match e {
            ServiceError::McpError(d) => {
                Self::Server { code: d.code.0, message: d.message.to_string() }
            }
            ServiceError::Timeout { .. } => Self::Timeout(timeout),
            ServiceError::TransportClosed | ServiceError::Cancelled { .. } => Self::Closed(None),
            ServiceError::TransportSend(t) => {
                classify_chain(&*t.error).unwrap_or_else(|| Self::Connect(t.error.to_string()))
            }
            other => Self::Protocol(other.to_string()),
        }
    }

    pub(crate) fn from_init(e: ClientInitializeError, timeout: Duration) -> Self {
        if e.is_authorization_required() {
            return Self::Auth(Some(401));
        }
        match e {
            ClientInitializeError::TransportError { error, context } => {
                classify_chain(&*error.error)
                    .unwrap_or_else(|| Self::Connect(format!("{context}: {}", error.error)))
            }
            ClientInitializeError::ConnectionClosed(what) => Self::Closed(Some(what)),
            ClientInitializeError::JsonRpcError(d) => {
                Self::Server { code: d.code.0, message: d.message.to_string() }
            }
            ClientInitializeError::Cancelled => Self::Timeout(timeout),
            ClientInitializeError::LegacyFallbackFailed { fallback, .. } => {
                Self::from_init(*fallback, timeout)
            }
            other => Self::Protocol(other.to_string()),
        }
    }
}

/// Walks an error's source chain for the types that tell us the cause.
fn classify_chain(top: &(dyn std::error::Error + 'static)) -> Option<UpstreamError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(top);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
            match h {
                StreamableHttpError::HttpStatus(s) if s.status == 429 => {
                    return Some(UpstreamError::RateLimited)
                }
                StreamableHttpError::HttpStatus(s) => {
                    return Some(UpstreamError::HttpStatus(s.status))
                }
                StreamableHttpError::AuthRequired(_)
                | StreamableHttpError::InsufficientScope(_) => {
                    return Some(UpstreamError::Auth(None))
                }
                StreamableHttpError::Client(r) => return Some(from_reqwest(r)),
                StreamableHttpError::SessionExpired => {
                    return Some(UpstreamError::Closed(Some("session expired".into())))
                }
                StreamableHttpError::UnexpectedServerResponse(m) => {
                    return Some(
                        status_from_text(m)
                            .unwrap_or_else(|| UpstreamError::Protocol(m.to_string())),
                    )
                }
                StreamableHttpError::UnexpectedContentType(ct) => {
                    return Some(UpstreamError::Protocol(format!("unexpected content type {ct:?}")))
                }
                _ => {}
            }
        }
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            return Some(from_reqwest(r));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                BrokenPipe
                    | ConnectionReset
                    | ConnectionRefused
                    | ConnectionAborted
                    | UnexpectedEof
                    | NotConnected
            ) {
                return Some(UpstreamError::Closed(Some(io.to_string())));
            }
        }
        cur = e.source();
    }
    None
}

/// Classifies a reqwest error. Its text never carries the URL (which may hold a secret).
pub(crate) fn from_reqwest(r: &reqwest::Error) -> UpstreamError {
    if let Some(status) = r.status() {
        return match status.as_u16() {
            401 | 403 => UpstreamError::Auth(Some(status.as_u16())),
            429 => UpstreamError::RateLimited,
            s => UpstreamError::HttpStatus(s),
        };
    }
    if r.is_timeout() {
        return UpstreamError::Timeout(Duration::ZERO);
    }
    let mut message = std::error::Error::source(r).map(innermost).unwrap_or_default();
    if message.is_empty() {
        message =
            if r.is_connect() { "connection refused".into() } else { "request failed".into() };
    }
    UpstreamError::Connect(message)
}

/// The text of `e`'s innermost cause (`e`'s own if it has none). For a reqwest error, pass its
/// `source()`: reqwest's own text names the URL, which may hold a secret.
pub(crate) fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(s) = cur.source() {
        cur = s;
    }
    cur.to_string()
}

/// rmcp's reqwest client reports non-2xx answers without a JSON-RPC body only as text of the form
/// `HTTP 404 Not Found: …`; this recovers the status code from that fixed prefix.
fn status_from_text(m: &str) -> Option<UpstreamError> {
    let status: u16 = m.strip_prefix("HTTP ")?.get(..3)?.parse().ok()?;
    Some(match status {
        401 | 403 => UpstreamError::Auth(Some(status)),
        429 => UpstreamError::RateLimited,
        s => UpstreamError::HttpStatus(s),
    })
}
