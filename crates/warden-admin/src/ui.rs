//! The dashboard: `GET /` (and `/ui/…`) serves a single page embedded in the binary
//! (`assets/`, compressed at build time by `build.rs`), which reads only the API and `/events`.
//!
//! The page itself holds nothing secret, so it answers without the token (the guard lets
//! `/`, `/ui` and `/ui/…` through); every request it makes carries the token the operator typed
//! in, as `Authorization`, never in a URL. Every answer here carries a strict
//! Content-Security-Policy (no inline script or style, nothing from another origin, no
//! framing), `X-Frame-Options: DENY`, `nosniff` and no referrer; assets revalidate by ETag.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub(crate) struct Asset {
    pub path: &'static str,
    pub mime: &'static str,
    pub raw: &'static [u8],
    pub gz: &'static [u8],
    pub etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// What the page may load and do: its own scripts, styles and API only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The routes of the page and its assets.
pub fn routes() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(asset))
}

/// Whether a path is the dashboard's (answered without the token).
pub fn is_page(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// The assets' total size, raw and compressed (the benchmark's budget is on the latter).
pub fn sizes() -> (usize, usize) {
    ASSETS.iter().fold((0, 0), |(r, g), a| (r + a.raw.len(), g + a.gz.len().min(a.raw.len())))
}

async fn index(headers: HeaderMap) -> Response {
    match find("index.html") {
        Some(a) => serve(a, &headers),
        None => secure(crate::api::error(StatusCode::NOT_FOUND, "the dashboard is not built in")),
    }
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    // A deep link (`/ui/servers/x`) gets the page; a missing file (with an extension) is a 404.
    let file = path.strip_prefix("assets/").unwrap_or(&path);
    match find(file) {
        Some(a) => serve(a, &headers),
        None if !file.rsplit('/').next().unwrap_or("").contains('.') => index(headers).await,
        None => {
            secure(crate::api::error(StatusCode::NOT_FOUND, format!("no dashboard file {path:?}")))
        }
    }
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

fn serve(a: &Asset, headers: &HeaderMap) -> Response {
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == a.etag || t.trim() == "*"));
    let gzip = a.gz.len() < a.raw.len() && accepts_gzip(headers);
    let mut r = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else if gzip {
        let mut r = a.gz.into_response();
        r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        a.raw.into_response()
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.mime));
    h.insert(header::ETAG, HeaderValue::from_static(a.etag));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    secure(r)
}

/// `Accept-Encoding` lists gzip with a non-zero weight.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (name.eq_ignore_ascii_case("gzip") || name == "*") && q > 0.0
        })
    })
}

fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        routes().oneshot(req.body(Body::empty()).expect("a request")).await.expect("infallible")
    }

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
        let r = get("/", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY].to_str().expect("ascii");
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.expect("a body");
        let html = String::from_utf8_lossy(&body);
        // No inline script: every <script> has a src.
        assert!(html.matches("<script").count() == html.matches("<script src=").count(), "{html}");
        for a in ASSETS.iter().filter(|a| a.path != "index.html") {
            let r = get(&format!("/ui/assets/{}", a.path), &[]).await;
            assert_eq!(r.status(), StatusCode::OK, "{}", a.path);
            assert_eq!(r.headers()[header::CONTENT_TYPE], a.mime);
        }
        // A deep link gets the page, a missing file a 404.
        assert_eq!(get("/ui/servers/alpha", &[]).await.status(), StatusCode::OK);
        assert_eq!(get("/ui/assets/nope.js", &[]).await.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn gzip_when_accepted_and_304_when_unchanged() {
        let plain = get("/ui/assets/js/app.js", &[]).await;
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let etag = plain.headers()[header::ETAG].to_str().expect("ascii").to_owned();
        let gz = get("/ui/assets/js/app.js", &[("accept-encoding", "br, gzip")]).await;
        assert_eq!(gz.headers()[header::CONTENT_ENCODING], "gzip");
        let refused = get("/ui/assets/js/app.js", &[("accept-encoding", "gzip;q=0")]).await;
        assert!(refused.headers().get(header::CONTENT_ENCODING).is_none());
        let again = get("/ui/assets/js/app.js", &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::X_FRAME_OPTIONS], "DENY");
    }

    #[test]
    fn the_assets_fit_the_budget() {
        // The budget: 200 KB compressed, everything included (uPlot too).
        let (raw, gz) = sizes();
        assert!(gz <= 200 * 1024, "{gz} bytes compressed ({raw} raw)");
    }
}
