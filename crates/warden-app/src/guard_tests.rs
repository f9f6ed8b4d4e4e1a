//! The guard against cross-site requests, driven through the whole router: every
//! state-changing route refuses `Origin: null`, a foreign `Origin`, and a body that is not
//! declared as JSON (a web page can send those as "simple" requests, without a preflight).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;
use warden_store::Location;

use crate::{App, RunOptions};

/// Every state-changing route, as the router mounts it, with a concrete path to try.
const STATE_CHANGING: &[(&str, &str, &str)] = &[
    ("POST", "/api/servers/{name}/{action}", "/api/servers/s/stop"),
    ("POST", "/api/servers/{name}/{action}", "/api/servers/s/restart"),
    ("POST", "/api/failover/{name}/{action}", "/api/failover/s/trigger"),
    ("POST", "/api/reload", "/api/reload"),
    ("POST", "/api/silences", "/api/silences"),
    ("DELETE", "/api/silences/{id}", "/api/silences/1"),
    ("POST", "/api/tuning/apply", "/api/tuning/apply"),
    ("POST", "/api/tuning/set", "/api/tuning/set"),
    ("POST", "/api/tuning/reset", "/api/tuning/reset"),
    ("POST", "/api/tuning/{id}/revert", "/api/tuning/1/revert"),
];

/// Every `.rs` file under `dir`, read.
fn sources_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources_under(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(std::fs::read_to_string(&path).unwrap());
        }
    }
    out
}

/// The routes warden-admin mounts with `post(…)` or `delete(…)`, read from every file of its
/// source, so a new state-changing route cannot be added without this test knowing it.
#[test]
fn the_list_covers_every_state_changing_route_in_the_source() {
    let admin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../warden-admin/src");
    let sources = sources_under(&admin);
    assert!(sources.len() >= 10, "warden-admin's source was not found at {}", admin.display());
    let mut mounted = Vec::new();
    for src in &sources {
        for line in src.lines().map(str::trim) {
            let Some(rest) = line.strip_prefix(".route(\"") else { continue };
            let Some((path, handlers)) = rest.split_once('"') else { continue };
            if handlers.contains("post(") || handlers.contains("delete(") {
                mounted.push(path.to_owned());
            }
        }
    }
    assert!(mounted.len() >= 7, "the source scan found too little: {mounted:?}");
    for path in &mounted {
        assert!(
            STATE_CHANGING.iter().any(|(_, p, _)| p == path),
            "{path} changes state but is not tested for Origin and Content-Type"
        );
    }
}

async fn start() -> (App, tempfile::TempDir) {
    start_listening(None, None).await
}

/// Warden with one server that never starts, listening on `listen` (one HTTP thread) if given.
async fn start_listening(
    listen: Option<std::net::SocketAddr>,
    token: Option<&str>,
) -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"{ "mcpServers": { "s": { "command": "/nonexistent/warden-test", "restart": { "policy": "no" } } } }"#;
    let config = warden_config::compile(text, &|_| None).unwrap().config;
    let app = App::start(RunOptions {
        config,
        database: Location::Sqlite(dir.path().join("w.db")),
        listen,
        token: token.map(str::to_owned),
        connectors: None,
        http_threads: listen.map(|_| 1),
    })
    .await
    .unwrap();
    (app, dir)
}

async fn send(
    app: &App,
    method: &str,
    path: &str,
    origin: Option<&str>,
    ctype: Option<&str>,
) -> StatusCode {
    let mut req = Request::builder().method(method).uri(path).header("host", "127.0.0.1:7420");
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    if let Some(c) = ctype {
        req = req.header("content-type", c);
    }
    let body = if path == "/api/silences" && method == "POST" {
        r#"{"matchers": ["server=s"], "duration": "1h"}"#
    } else {
        "{}"
    };
    app.router().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changing_routes_refuse_cross_site_requests() {
    let (app, _dir) = start().await;
    for (method, _, path) in STATE_CHANGING {
        for origin in ["null", "http://evil.example", "https://127.0.0.1.evil.example"] {
            let code = send(&app, method, path, Some(origin), Some("application/json")).await;
            assert_eq!(code, StatusCode::FORBIDDEN, "{method} {path} with Origin {origin}");
        }
        for ctype in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
            let code = send(&app, method, path, None, ctype).await;
            assert_eq!(
                code,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{method} {path} with Content-Type {ctype:?}"
            );
        }
        // What Warden's own CLI and pages send passes the guard (the handler may still refuse
        // the request on its merits, but not with 403 or 415).
        for origin in [None, Some("http://127.0.0.1:7420"), Some("http://localhost:7420")] {
            let code =
                send(&app, method, path, origin, Some("application/json; charset=utf-8")).await;
            assert!(
                code != StatusCode::FORBIDDEN && code != StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{method} {path} from {origin:?}: {code}"
            );
        }
    }
    // Reads are not state-changing: no Content-Type needed, but a foreign page still may not
    // read them (nor the WebSocket).
    assert_eq!(send(&app, "GET", "/api/servers", None, None).await, StatusCode::OK);
    assert_eq!(send(&app, "GET", "/ws", Some("null"), None).await, StatusCode::FORBIDDEN);
    assert_eq!(send(&app, "GET", "/api/servers", Some("null"), None).await, StatusCode::FORBIDDEN);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_beyond_any_date_are_400_naming_the_field() {
    let (app, _dir) = start().await;
    for (body, field) in [
        (r#"{"matchers": ["server=s"], "duration": "300000y"}"#, "duration"),
        (r#"{"matchers": ["server=s"], "duration": "9999999999999999s"}"#, "duration"),
        (
            r#"{"matchers": ["server=s"], "starts_at": "+262000-01-01T00:00:00Z", "duration": "1h"}"#,
            "",
        ),
    ] {
        let req = Request::post("/api/silences")
            .header("host", "127.0.0.1:7420")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let res = app.router().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains(field), "{v}");
    }
    for path in [
        "/api/metrics?since=300000y",
        "/api/reports/capacity?since=300000y",
        "/api/alerts/history?since=300000y",
        "/api/events?since=300000y",
        "/api/tuning?since=300000y",
    ] {
        let req = Request::get(path).header("host", "127.0.0.1:7420").body(Body::empty()).unwrap();
        let code = app.router().oneshot(req).await.unwrap().status();
        assert!(code == StatusCode::BAD_REQUEST || code == StatusCode::OK, "{path}: {code}");
    }
    app.shutdown().await;
}

/// The status of `request` (raw HTTP/1.1, closed after its answer) sent to `addr`.
async fn raw_status(addr: std::net::SocketAddr, request: String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await.unwrap();
        out
    };
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), exchange).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {text}"))
}

/// A POST within an MCP session is read by the listener's own HTTP/1 loop and offered to the
/// fast lane from the head's bytes: the guard's Host, Origin and token checks hold there as on
/// every other route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_posts_on_the_listener_pass_the_guard_first() {
    let (app, _dir) = start_listening(Some("127.0.0.1:0".parse().unwrap()), Some("k")).await;
    let addr = app.http_addr().expect("listening");
    let post = |path: &str, extra: &str| {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;
        format!(
            "POST {path} HTTP/1.1\r\n{extra}mcp-session-id: s-1\r\ncontent-type: application/json\r\n\
             accept: application/json, text/event-stream\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
    };
    for path in ["/mcp", "/servers/s/mcp"] {
        let ok = "host: 127.0.0.1\r\nauthorization: Bearer k\r\n";
        let host = "host: evil.example\r\nauthorization: Bearer k\r\n";
        assert_eq!(raw_status(addr, post(path, host)).await, 403, "{path}: a foreign Host");
        let origin = format!("{ok}origin: http://evil.example\r\n");
        assert_eq!(raw_status(addr, post(path, &origin)).await, 403, "{path}: a foreign Origin");
        let null = format!("{ok}origin: null\r\n");
        assert_eq!(raw_status(addr, post(path, &null)).await, 403, "{path}: Origin null");
        let tokenless = "host: 127.0.0.1\r\n";
        assert_eq!(raw_status(addr, post(path, tokenless)).await, 401, "{path}: no token");
        let wrong = "host: 127.0.0.1\r\nauthorization: Bearer j\r\n";
        assert_eq!(raw_status(addr, post(path, wrong)).await, 401, "{path}: a wrong token");
        // Past the guard: an unknown session is rmcp's to refuse (not 401 or 403).
        let code = raw_status(addr, post(path, ok)).await;
        assert!(code != 401 && code != 403, "{path}: {code}");
    }
    app.shutdown().await;
}
