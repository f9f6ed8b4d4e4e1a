//! rmcp's HTTP client wrapped: every request rmcp sends on a session is recorded (its headers
//! and stamped metadata, the [`Template`] the fast path copies) and every byte counted as the
//! session's activity.

use super::*;

/// What rmcp sent with its latest request on this session: every header but the per-request
/// ones, and the protocol metadata it stamps on every request.
pub(crate) struct Template {
    pub(super) headers: HeaderMap,
    pub(super) meta: crate::relay::Stamped,
}

pub(super) type Slot = Arc<RwLock<Option<Arc<Template>>>>;

/// rmcp's HTTP client (reqwest), recording the session and headers of each request rmcp
/// sends, so the fast path sends exactly the same; and counting every message the server
/// sends back (answers, progress, notifications) as activity: busy is not hung.
#[derive(Clone)]
pub(crate) struct Tap {
    pub(super) inner: reqwest::Client,
    pub(super) template: Slot,
    pub(super) activity: Arc<Activity>,
}

impl Tap {
    pub(crate) fn new(inner: reqwest::Client, activity: Arc<Activity>) -> Self {
        Self { inner, template: Slot::default(), activity }
    }

    /// Counts an answer (or each message of an answer stream) as activity.
    pub(super) fn count(
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
    pub(super) fn count_stream(
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

    pub(super) fn record(
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
        let meta = crate::relay::Stamped::new(meta);
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
