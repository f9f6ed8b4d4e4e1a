//! One call's exchange on the fast path: the POST, its JSON or SSE answer read in the caller's
//! task (notifications and server requests on the way relayed), resumption with
//! `Last-Event-ID` when the server closes the stream early, and the errors.

use super::*;

/// An answer's body as it comes, from either client.
pub(super) type Chunks<'a> = BoxStream<'a, Result<bytes::Bytes, String>>;

/// One call's HTTP exchange.
pub(super) struct Exchange<'a> {
    pub(super) fast: &'a Fast,
    pub(super) template: &'a Template,
    pub(super) id: &'a str,
    pub(super) timeout: Duration,
    /// The latest the answer may come.
    pub(super) hard: Instant,
    /// Whether progress restarts the timeout.
    pub(super) watching: bool,
    /// The client session the call is for: what else arrives on its stream is that
    /// session's alone.
    pub(super) origin: Origin,
}

impl<'a> Exchange<'a> {
    pub(super) async fn run(
        &self,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<Reply, UpstreamError> {
        let mut limit = self.hard.min(Instant::now() + self.timeout);
        let (status, content_type, mut stream) = self.post(headers, body, limit).await?;
        let json = content_type.starts_with("application/json");
        if !(200..300).contains(&status) {
            return Err(self.failure(stream, status, json, limit).await);
        }
        if json {
            let bytes = self.body(stream, limit).await?;
            self.fast.activity.touch(bytes.len());
            return match self.answer(&bytes) {
                Ok(r) => r,
                Err(Err(e)) => Err(UpstreamError::Protocol(format!("unreadable answer: {e}"))),
                Err(Ok(_)) => Err(UpstreamError::Protocol("an answer to another request".into())),
            };
        }
        if !content_type.starts_with("text/event-stream") {
            let _ = self.body(stream, limit).await;
            return Err(if status == 202 {
                UpstreamError::Protocol("the request was accepted without an answer".into())
            } else {
                UpstreamError::Protocol(format!("unexpected content type {content_type:?}"))
            });
        }
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
                match self.answer(&event.data) {
                    Ok(result) => {
                        // Read the stream to its end, or hyper drops the connection instead of
                        // pooling it and the next call pays a new TCP handshake.
                        let _ = tokio::time::timeout(DRAIN, async {
                            while let Some(Ok(_)) = stream.next().await {}
                        })
                        .await;
                        return result;
                    }
                    Err(Err(_)) => {
                        tracing::warn!(target: "warden::upstream", "dropped an unparsable SSE message");
                    }
                    Err(Ok(message)) => {
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
                Ok(Some(Err(e))) => return Err(UpstreamError::Closed(Some(e))),
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

    /// POSTs the call: on the in-task HTTP/1 client when the upstream allows it (a redirect
    /// is repeated on reqwest, which follows it within the origin), else on reqwest. The
    /// answer's status, content type (lower case) and body.
    async fn post(
        &self,
        headers: HeaderMap,
        body: Vec<u8>,
        limit: Instant,
    ) -> Result<(u16, String, Chunks<'a>), UpstreamError> {
        let body = bytes::Bytes::from(body);
        let fast: &'a Fast = self.fast;
        if let Some(h1) = &fast.h1 {
            let answer = tokio::time::timeout_at(limit, h1.post(&headers, body.clone()))
                .await
                .map_err(|_| UpstreamError::Timeout(self.timeout))?
                .map_err(|e| match e {
                    // As `error::from_reqwest` classifies reqwest's connect timeout.
                    h1::Failure::ConnectTimeout => UpstreamError::Timeout(Duration::ZERO),
                    h1::Failure::Broken(why) => UpstreamError::Connect(why),
                })?;
            // A redirect: the POST is repeated on reqwest, which follows it within the origin
            // (a server that redirects a call has not run it).
            if !(300..400).contains(&answer.status) {
                return Ok((answer.status, answer.content_type, answer.body.boxed()));
            }
        }
        let send = fast.http.post(fast.uri.clone()).headers(headers).body(body).send();
        let resp = tokio::time::timeout_at(limit, send)
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))?
            .map_err(|e| crate::error::from_reqwest(&e))?;
        let content_type = content_type(resp.headers());
        Ok((resp.status().as_u16(), content_type, chunks(resp)))
    }

    /// Reopens the call's stream with `GET` and `Last-Event-ID`.
    pub(super) async fn resume(
        &self,
        from: &str,
        limit: Instant,
    ) -> Result<Chunks<'a>, UpstreamError> {
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
            let json = content_type(resp.headers()).starts_with("application/json");
            return Err(self.failure(chunks(resp), status, json, limit).await);
        }
        Ok(chunks(resp))
    }

    /// The call's result or error if the message in `bytes` answers it; else the message as a
    /// tree (or why it is not JSON).
    pub(super) fn answer(
        &self,
        bytes: &[u8],
    ) -> Result<Result<Reply, UpstreamError>, Result<Value, serde_json::Error>> {
        if let Some(m) = Message::read(bytes) {
            if !m.has_method() && m.id().as_deref() == Some(self.id) {
                return Ok(m.outcome());
            }
        }
        // Not ours, or a message the text reading leaves to the tree (a key given twice).
        let message: Value = serde_json::from_slice(bytes).map_err(Err)?;
        let ours = message.get("method").is_none()
            && message.get("id").and_then(Value::as_str) == Some(self.id);
        match message {
            Value::Object(m) if ours => Ok(outcome(m)),
            other => Err(Ok(other)),
        }
    }

    /// Reads a whole (bounded) body within `limit`.
    pub(super) async fn body(
        &self,
        mut stream: Chunks<'_>,
        limit: Instant,
    ) -> Result<Vec<u8>, UpstreamError> {
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
                Ok(Some(Err(e))) => return Err(UpstreamError::Closed(Some(e))),
            }
        }
    }

    /// Classifies an HTTP failure as rmcp's path does (see `error::classify_chain`).
    pub(super) async fn failure(
        &self,
        body: Chunks<'_>,
        status: u16,
        json: bool,
        limit: Instant,
    ) -> UpstreamError {
        let body = self.body(body, limit).await.unwrap_or_default();
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

/// A header map's `Content-Type`, lower case ("" without one).
fn content_type(headers: &HeaderMap) -> String {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase()
}

/// A reqwest answer's body as [`Chunks`].
fn chunks(resp: reqwest::Response) -> Chunks<'static> {
    resp.bytes_stream().map(|r| r.map_err(|e| reqwest_text(&e))).boxed()
}

/// Reads a body to its end without keeping it; past `max` bytes, stops with an error.
pub(super) async fn drain(resp: reqwest::Response, max: usize) -> Result<(), UpstreamError> {
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

/// A JSON-RPC answer's result, or its error as the server's.
pub(crate) fn outcome(mut answer: Map<String, Value>) -> Result<Reply, UpstreamError> {
    if let Some(e) = answer.remove("error") {
        return Err(server_error(&e));
    }
    answer
        .remove("result")
        .map(|r| Reply::from_value(&r))
        .ok_or_else(|| UpstreamError::Protocol("an answer with neither result nor error".into()))
}

/// A reqwest error's innermost cause (never the URL, which may hold a secret).
pub(super) fn reqwest_text(e: &reqwest::Error) -> String {
    let message = std::error::Error::source(e).map(crate::error::innermost).unwrap_or_default();
    if message.is_empty() {
        "the answer stream broke".into()
    } else {
        message
    }
}
