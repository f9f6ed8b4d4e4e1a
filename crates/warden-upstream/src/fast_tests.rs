//! The fast path against an in-process rmcp Streamable HTTP server, on a modern (2026-07-28,
//! stateless) and a legacy (`initialize`, session id) session.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use warden_core::InstanceId;

use crate::{Call, Connected, Connector, Progress, Relay, RemoteConnector, UpstreamError};

#[derive(Clone, Default)]
struct Upstream {
    legacy: bool,
    started: Arc<AtomicU32>,
    cancelled: Arc<AtomicU32>,
    /// Accepted TCP connections, and their sockets (to break them all: a killed server).
    accepted: Arc<AtomicUsize>,
    sockets: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

fn schema() -> Arc<serde_json::Map<String, Value>> {
    Arc::new(json!({"type": "object"}).as_object().unwrap().clone())
}

fn text(s: impl Into<String>) -> CallToolResponse {
    CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text(s)]))
}

impl ServerHandler for Upstream {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = ["echo", "progress", "wait", "fail", "refuse", "die"]
            .into_iter()
            .map(|n| Tool::new(n, n, schema()))
            .collect();
        Ok(ListToolsResult { tools, ..Default::default() })
    }

    async fn call_tool(
        &self,
        req: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match req.name.as_ref() {
            "echo" => Ok(text(
                req.arguments
                    .as_ref()
                    .and_then(|a| a.get("text"))
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            )),
            "progress" => {
                if let Some(t) = ctx.meta.get_progress_token() {
                    for i in 1..=3 {
                        let _ = ctx
                            .peer
                            .notify_progress(ProgressNotificationParam::new(
                                t.clone(),
                                f64::from(i),
                            ))
                            .await;
                    }
                }
                Ok(text("done"))
            }
            "wait" => {
                self.started.fetch_add(1, Ordering::SeqCst);
                tokio::select! {
                    _ = ctx.ct.cancelled() => {
                        self.cancelled.fetch_add(1, Ordering::SeqCst);
                        Err(ErrorData::internal_error("cancelled", None))
                    }
                    _ = tokio::time::sleep(Duration::from_secs(20)) => Ok(text("waited")),
                }
            }
            "fail" => {
                Ok(CallToolResponse::Complete(CallToolResult::error(vec![ContentBlock::text(
                    "tool error",
                )])))
            }
            "refuse" => Err(ErrorData::internal_error("refused", None)),
            "die" => {
                // Every connection breaks at once, as when the process is killed.
                for s in self.sockets.lock().unwrap().iter() {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(text("unreachable"))
            }
            other => Err(ErrorData::invalid_params(format!("unknown tool {other}"), None)),
        }
    }
}

async fn serve(up: Upstream) -> String {
    let handler = up.clone();
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let mut app = axum::Router::new().nest_service("/mcp", service);
    if up.legacy {
        // Refuses `server/discover` as servers before 2026-07-28 do (the TypeScript SDK's
        // answer), so the client falls back to `initialize`.
        app = app.layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| async move {
                if req.headers().get("mcp-method").is_some_and(|m| m == "server/discover") {
                    let body = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Bad Request: Server not initialized"}}"#;
                    return axum::response::Response::builder()
                        .status(400)
                        .header("content-type", "application/json")
                        .body(axum::body::Body::from(body))
                        .unwrap();
                }
                next.run(req).await
            },
        ));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let listener = axum::serve::ListenerExt::tap_io(listener, move |tcp| {
            up.accepted.fetch_add(1, Ordering::SeqCst);
            if let Ok(fd) = tcp.as_fd().try_clone_to_owned() {
                up.sockets.lock().unwrap().push(std::net::TcpStream::from(fd));
            }
        });
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/mcp")
}

async fn connect(url: &str) -> Connected {
    let text = json!({ "mcpServers": { "s": { "url": url } } }).to_string();
    let spec = warden_config::compile(&text, &|_| None).unwrap().config.servers.remove(0);
    let connector = RemoteConnector::new(spec, Relay::default());
    let c = connector.connect(InstanceId::new("s", 0), Duration::from_secs(10)).await.unwrap();
    // As the supervisor does before routing: the first listing.
    c.session.list_catalog(Duration::from_secs(10)).await.unwrap();
    c
}

fn call(tool: &str, args: Value, timeout: Duration) -> Call {
    Call::new("tools/call", Some(json!({ "name": tool, "arguments": args })), timeout)
}

/// Fast-path calls started on this thread (a test's own: its body runs on its thread).
fn fast_calls() -> u64 {
    crate::fast::FAST_CALLS.with(std::cell::Cell::get)
}

fn result_text(v: &crate::Reply) -> String {
    let v = v.value().unwrap();
    v["content"][0]["text"].as_str().unwrap_or_default().to_owned()
}

async fn both(test: impl Fn(bool) -> futures::future::BoxFuture<'static, ()>) {
    for legacy in [false, true] {
        tokio::time::timeout(Duration::from_secs(60), test(legacy))
            .await
            .unwrap_or_else(|_| panic!("timed out (legacy: {legacy})"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_take_the_fast_path_on_one_pooled_connection() {
    both(|legacy| {
        Box::pin(async move {
            let up = Upstream { legacy, ..Default::default() };
            let url = serve(up.clone()).await;
            let c = connect(&url).await;
            assert_eq!(c.info.modern, !legacy);
            let before_calls = fast_calls();
            let before_h1 = crate::fast::h1::H1_POSTS.with(std::cell::Cell::get);
            // Warm the pool, then count connections over 50 calls.
            let v = c.session.request(call("echo", json!({"text": "hi"}), Duration::from_secs(5)));
            assert_eq!(result_text(&v.await.unwrap()), "hi");
            let conns = up.accepted.load(Ordering::SeqCst);
            for i in 0..50 {
                let v = c
                    .session
                    .request(call("echo", json!({ "text": i.to_string() }), Duration::from_secs(5)))
                    .await
                    .unwrap();
                assert_eq!(result_text(&v), i.to_string());
            }
            assert_eq!(fast_calls(), before_calls + 51, "the calls took the fast path");
            let h1 = crate::fast::h1::H1_POSTS.with(std::cell::Cell::get) - before_h1;
            // (Unless the machine's environment names a proxy: then reqwest, which uses it.)
            let expected = if crate::fast::h1::allowed_by_env() { 51 } else { 0 };
            assert_eq!(h1, expected, "the fast path's calls went out on the in-task HTTP/1 client");
            let opened = up.accepted.load(Ordering::SeqCst) - conns;
            // Without pooling most calls would open one. rmcp's own standalone GET stream (legacy
            // sessions) may connect while the calls run: one more.
            assert!(opened <= 2, "50 sequential calls opened {opened} connections (legacy: {legacy})");

            // A tool error is the tool's answer; a JSON-RPC error is the server's.
            let v = c.session.request(call("fail", json!({}), Duration::from_secs(5))).await;
            assert_eq!(v.unwrap().value().unwrap()["isError"], json!(true));
            let e = c.session.request(call("refuse", json!({}), Duration::from_secs(5))).await;
            assert!(matches!(e, Err(UpstreamError::Server { code: -32603, ref message }) if message == "refused"), "{e:?}");
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_relayed_before_the_answer() {
    both(|legacy| {
        Box::pin(async move {
            let url = serve(Upstream { legacy, ..Default::default() }).await;
            let c = connect(&url).await;
            let before = fast_calls();
            let (tx, mut rx) = mpsc::unbounded_channel::<Progress>();
            let mut call = call("progress", json!({}), Duration::from_secs(5));
            call.progress = Some(tx);
            let v = c.session.request(call).await.unwrap();
            assert_eq!(result_text(&v), "done");
            assert!(fast_calls() > before);
            let mut got = vec![];
            while let Ok(p) = rx.try_recv() {
                got.push(p.progress);
            }
            assert_eq!(got, vec![1.0, 2.0, 3.0], "legacy: {legacy}");
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_reaches_the_server_and_a_deadline_ends_a_call() {
    both(|legacy| {
        Box::pin(async move {
            let up = Upstream { legacy, ..Default::default() };
            let url = serve(up.clone()).await;
            let c = connect(&url).await;
            let before = fast_calls();
            let cancel = CancellationToken::new();
            let mut wait = call("wait", json!({}), Duration::from_secs(30));
            wait.cancel = cancel.clone();
            let started = Arc::clone(&up.started);
            let canceller = tokio::spawn(async move {
                while started.load(Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                cancel.cancel();
            });
            let e = c.session.request(wait).await;
            assert!(matches!(e, Err(UpstreamError::Cancelled)), "{e:?}");
            canceller.await.unwrap();
            assert!(fast_calls() > before);
            let t = Instant::now();
            while up.cancelled.load(Ordering::SeqCst) == 0 {
                assert!(
                    t.elapsed() < Duration::from_secs(5),
                    "the server never heard (legacy: {legacy})"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }

            // The deadline: a timeout, on time.
            let t = Instant::now();
            let e = c.session.request(call("wait", json!({}), Duration::from_millis(300))).await;
            assert!(matches!(e, Err(UpstreamError::Timeout(_))), "{e:?}");
            assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
            // The session still works.
            let v = c.session.request(call("echo", json!({"text": "ok"}), Duration::from_secs(5)));
            assert_eq!(result_text(&v.await.unwrap()), "ok");
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_call_is_a_lost_connection() {
    both(|legacy| {
        Box::pin(async move {
            let url = serve(Upstream { legacy, ..Default::default() }).await;
            let c = connect(&url).await;
            let before = fast_calls();
            let t = Instant::now();
            let e = c.session.request(call("die", json!({}), Duration::from_secs(10))).await;
            assert!(fast_calls() > before);
            let e = e.unwrap_err();
            assert!(e.is_connection_loss(), "{e:?} (legacy: {legacy})");
            assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_answers_server_requests_keeps_rmcps_path_on_a_legacy_session() {
    both(|legacy| {
        Box::pin(async move {
            let url = serve(Upstream { legacy, ..Default::default() }).await;
            let c = connect(&url).await;
            let before = fast_calls();
            let mut echo = call("echo", json!({"text": "x"}), Duration::from_secs(5));
            echo.client_answers = true;
            let v = c.session.request(echo).await.unwrap();
            assert_eq!(result_text(&v), "x");
            if legacy {
                assert_eq!(fast_calls(), before, "the call took rmcp's path");
            } else {
                assert!(fast_calls() > before, "modern servers ask through the answer");
            }
        })
    })
    .await;
}
