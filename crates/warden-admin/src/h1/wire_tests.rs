use super::*;

const CALL: &[u8] = b"POST /servers/up/mcp?x=1 HTTP/1.1\r\nHost: 127.0.0.1:7420\r\n\
Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n\
Mcp-Session-Id: s-1\r\nMCP-Protocol-Version: 2025-06-18\r\nContent-Length: 5\r\n\r\nhello";

fn head(bytes: &[u8]) -> Head {
    match read_head(bytes, 1 << 20) {
        Step::Head(h) => h,
        other => panic!("{other:?} for {}", String::from_utf8_lossy(bytes)),
    }
}

fn handed(bytes: &[u8], max_body: usize) -> bool {
    matches!(read_head(bytes, max_body), Step::Hyper)
}

#[test]
fn a_head_is_read_once_whole_and_says_how_long_its_body_is() {
    let at = CALL.len() - 5;
    for cut in 0..at {
        assert!(matches!(read_head(&CALL[..cut], 1 << 20), Step::Partial), "cut at {cut}");
    }
    for cut in at..=CALL.len() {
        let h = head(&CALL[..cut]);
        assert_eq!((h.len, h.body, h.close), (at, 5, false));
    }
    let get = head(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: keep-alive, Close\r\n\r\n");
    assert_eq!((get.body, get.close), (0, true));
    assert!(get.lane.is_none());
}

#[test]
fn what_the_loop_does_not_serve_goes_to_hyper() {
    let cases: [&[u8]; 12] = [
        b"GET / HTTP/1.0\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n",
        b"CONNECT x:1 HTTP/1.1\r\nhost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nconnection: upgrade\r\n\r\n",
        b"POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n",
        b"POST / HTTP/1.1\r\ncontent-length: +1\r\n\r\n",
        b"POST / HTTP/1.1\r\ncontent-length: \r\n\r\n",
        b"GET / HTTP/1.1\r\nbad header\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ];
    for c in cases {
        assert!(handed(c, 1 << 20), "{}", String::from_utf8_lossy(c));
    }
    // A body over the limit, and a head that never ends within the limit.
    assert!(handed(b"POST / HTTP/1.1\r\ncontent-length: 11\r\n\r\n", 10));
    assert!(!handed(b"POST / HTTP/1.1\r\ncontent-length: 10\r\n\r\n", 10));
    let endless = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(MAX_HEAD));
    assert!(handed(endless.as_bytes(), 1 << 20));
}

#[test]
fn a_post_in_a_session_on_an_mcp_endpoint_has_its_lane_headers_read() {
    let h = head(CALL);
    let spans = h.lane.as_ref().expect("a lane request");
    let lane = Lane { msg: CALL, spans };
    assert_eq!(lane.path(), Some("/servers/up/mcp"));
    let lh = lane.head(h.body).expect("text");
    assert_eq!(lh.session, "s-1");
    assert_eq!(lh.accept, Some("application/json, text/event-stream"));
    assert_eq!(lh.content_type, Some("application/json"));
    assert_eq!(lh.protocol_version, Some("2025-06-18"));
    assert_eq!(lh.length, Some(5));
    assert_eq!(lane.text("host"), Some("127.0.0.1:7420"));
    assert_eq!(lane.raw("origin"), None);
    assert_eq!(lane.raw("x-other"), None);
    // Not the lane's: no session, not a POST, not an MCP endpoint.
    for other in [
        &b"POST /mcp HTTP/1.1\r\ncontent-length: 0\r\n\r\n"[..],
        b"GET /mcp HTTP/1.1\r\nmcp-session-id: s\r\n\r\n",
        b"POST /api/x HTTP/1.1\r\nmcp-session-id: s\r\n\r\n",
        b"POST /mcp/x HTTP/1.1\r\nmcp-session-id: s\r\n\r\n",
    ] {
        assert!(head(other).lane.is_none(), "{}", String::from_utf8_lossy(other));
    }
    // A value that is not visible ASCII is no text (as `HeaderValue::to_str`).
    let odd = b"POST /mcp HTTP/1.1\r\nmcp-session-id: s\r\norigin: http://\xc3\xa9\r\n\r\n";
    let h = head(odd);
    let lane = Lane { msg: odd, spans: h.lane.as_ref().unwrap() };
    assert!(lane.raw("origin").is_some());
    assert_eq!(lane.text("origin"), None);
}

#[test]
fn a_request_for_the_router_keeps_every_header_and_its_body() {
    let msg = Bytes::from_static(
        b"POST /api/x?y=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 3\r\n\r\nabc",
    );
    let h = head(&msg);
    let req = request(&msg, h.len).expect("a request");
    assert_eq!(req.method(), Method::POST);
    assert_eq!(req.uri().path(), "/api/x");
    assert_eq!(req.uri().query(), Some("y=1"));
    let a: Vec<_> = req.headers().get_all("x-a").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(a, ["1", "2"]);
    assert_eq!(req.headers()["host"], "h");
    let body = futures::executor::block_on(http_body_util::BodyExt::collect(req.into_body()));
    assert_eq!(body.unwrap().to_bytes(), "abc");
}

fn parts(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
    let mut r = http::Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(()).unwrap().into_parts().0
}

fn written(p: &http::response::Parts, framing: Framing, close: bool) -> String {
    let mut out = Vec::new();
    answer_head(&mut out, p, framing, close);
    String::from_utf8(out).unwrap()
}

#[test]
fn an_answer_head_says_how_its_body_ends() {
    let json = parts(200, &[("content-type", "application/json"), ("transfer-encoding", "x")]);
    let f = framing(&json, Some(12));
    assert_eq!(f, Framing::Length(Some(12)));
    let text = written(&json, f, false);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"), "{text}");
    assert!(text.contains("\r\ncontent-length: 12\r\ndate: "), "{text}");
    assert!(!text.contains("transfer-encoding") && !text.contains("connection"), "{text}");
    assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
    // A stream is chunked; closing says so.
    let sse = parts(200, &[("content-type", "text/event-stream")]);
    assert_eq!(framing(&sse, None), Framing::Chunked);
    let text = written(&sse, Framing::Chunked, true);
    assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(text.ends_with("connection: close\r\n\r\n"), "{text}");
    // The answer's own length and date are kept; no body for 204, 304, 1xx.
    let own = parts(404, &[("content-length", "3"), ("date", "then")]);
    assert_eq!(framing(&own, Some(3)), Framing::Length(None));
    let text = written(&own, Framing::Length(None), false);
    assert_eq!(text, "HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\ndate: then\r\n\r\n");
    for status in [204, 304, 101] {
        let p = parts(status, &[("content-length", "0")]);
        assert_eq!(framing(&p, Some(0)), Framing::None);
        assert!(!written(&p, Framing::None, false).contains("content-length"));
    }
}

#[test]
fn chunks_are_framed_by_their_length_in_hex() {
    let mut out = Vec::new();
    chunk(&mut out, &[b'x'; 26]);
    chunk(&mut out, b"data: {}\n\n");
    out.extend_from_slice(LAST_CHUNK);
    let want = format!("1a\r\n{}\r\na\r\ndata: {{}}\n\n\r\n0\r\n\r\n", "x".repeat(26));
    assert_eq!(String::from_utf8(out).unwrap(), want);
}
