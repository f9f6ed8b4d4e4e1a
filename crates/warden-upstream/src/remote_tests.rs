//! The legacy HTTP+SSE transport against small hand-written servers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use serde_json::json;
use warden_core::{FailureClass, InstanceId};

use crate::{Connector, Relay, RemoteConnector, UpstreamError};

/// Serves `GET /sse` announcing `endpoint` (formatted with the server's own address), and
/// counts every request that reaches it.
async fn serve_sse(
    endpoint: impl Fn(std::net::SocketAddr) -> String,
) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let body = format!("event: endpoint\ndata: {}\n\n", endpoint(addr));
    let counted = Arc::clone(&hits);
    let app = axum::Router::new()
        .route(
            "/sse",
            axum::routing::get(move || async move {
                // The stream stays open after the endpoint event, as a real server's does.
                let stream = futures::stream::once(async move {
                    Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(body))
                })
                .chain(futures::stream::pending());
                ([("content-type", "text/event-stream")], axum::body::Body::from_stream(stream))
                    .into_response()
            }),
        )
        .fallback(|| async { axum::http::StatusCode::ACCEPTED })
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                counted.fetch_add(1, Ordering::SeqCst);
                next.run(req)
            },
        ));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/sse"), hits)
}

use futures::StreamExt;

async fn connect(
    url: &str,
    transport: Option<&str>,
    deadline: Duration,
) -> Result<(), UpstreamError> {
    let mut server = json!({ "url": url, "headers": { "X-Api-Key": "secret-123" } });
    if let Some(t) = transport {
        server["transport"] = json!(t);
    }
    let text = json!({ "mcpServers": { "s": server } }).to_string();
    let spec = warden_config::compile(&text, &|_| None).unwrap().config.servers.remove(0);
    let connector = RemoteConnector::new(spec, Relay::default());
    connector.connect(InstanceId::new("s", 0), deadline).await.map(|_| ())
}

#[tokio::test]
async fn an_sse_endpoint_on_another_origin_is_refused_before_any_message_is_sent() {
    // The foreign server: a different port on the same host is another origin.
    let (foreign, foreign_hits) = serve_sse(|_| "unused".into()).await;
    let foreign_base = foreign.trim_end_matches("/sse").to_owned();
    let (url, _) = serve_sse(move |_| format!("{foreign_base}/messages?session=1")).await;
    let stream_origin = url.trim_end_matches("/sse").to_owned();
    let foreign_origin = foreign.trim_end_matches("/sse").to_owned();
    // Both the explicit legacy transport and the fallback from Streamable HTTP refuse it.
    for transport in [Some("sse"), None] {
        let e = connect(&url, transport, Duration::from_secs(5)).await.expect_err("refused");
        assert_eq!(e.class(), FailureClass::ConnectionError, "{e}");
        let text = e.to_string();
        assert!(text.contains(&stream_origin) && text.contains(&foreign_origin), "{text}");
        assert!(!text.contains("secret-123") && !text.contains("session=1"), "{text}");
    }
    assert_eq!(foreign_hits.load(Ordering::SeqCst), 0, "nothing was sent to the other origin");
}

#[tokio::test]
async fn an_sse_endpoint_on_the_same_origin_is_used() {
    // Relative and absolute forms on the stream's own origin pass the check (the handshake
    // then times out: this server never answers, which is not what is tested here).
    for endpoint in [
        Box::new(|_| "/messages?session=1".to_owned()) as Box<dyn Fn(_) -> String + Send>,
        Box::new(|a| format!("http://{a}/messages?session=1")),
    ] {
        let (url, hits) = serve_sse(endpoint).await;
        let e =
            connect(&url, Some("sse"), Duration::from_millis(500)).await.expect_err("no answer");
        assert!(!matches!(e, UpstreamError::ForeignEndpoint { .. }), "{e}");
        assert!(hits.load(Ordering::SeqCst) >= 2, "the initialize request was posted");
    }
}
