use bytes::BytesMut;
use http::{HeaderMap, HeaderValue};

use super::*;

#[test]
fn a_post_carries_its_headers_host_and_length_and_no_framing_of_the_callers() {
    let mut headers = HeaderMap::new();
    headers.insert("accept", HeaderValue::from_static("text/event-stream, application/json"));
    headers.insert("mcp-name", HeaderValue::from_static("echo"));
    headers.append("x-two", HeaderValue::from_static("a"));
    headers.append("x-two", HeaderValue::from_static("b"));
    headers.insert("content-length", HeaderValue::from_static("999"));
    headers.insert("host", HeaderValue::from_static("elsewhere"));
    headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    let mut out = Vec::new();
    post(&mut out, "/mcp?x=1", b"127.0.0.1:9", &headers, b"{\"a\":1}");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "POST /mcp?x=1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\naccept: text/event-stream, application/json\r\n\
         mcp-name: echo\r\nx-two: a\r\nx-two: b\r\ncontent-length: 7\r\n\r\n{\"a\":1}"
    );
}

/// Feeds `wire` to a head parser and body decoder split at `at` (two reads), then reads the
/// body to its end: the head's status, the body, and what is left (read or not).
fn read(wire: &[u8], at: usize) -> Result<(u16, Vec<u8>, BytesMut), String> {
    let mut buf = BytesMut::from(&wire[..at]);
    let mut rest = &wire[at..];
    let mut eof = false;
    let mut feed = |buf: &mut BytesMut, eof: &mut bool| {
        if rest.is_empty() {
            *eof = true;
        } else {
            buf.extend_from_slice(rest);
            rest = &[];
        }
    };
    let h = loop {
        if let Some(h) = head(&mut buf)? {
            break h;
        }
        assert!(!eof, "no head in {wire:?}");
        feed(&mut buf, &mut eof);
    };
    let mut body = Body::new(h.body);
    let mut got = Vec::new();
    loop {
        match body.decode(&mut buf, eof)? {
            Decoded::Data(d) => got.extend_from_slice(&d),
            Decoded::More => feed(&mut buf, &mut eof),
            Decoded::End => {
                feed(&mut buf, &mut eof);
                return Ok((h.status, got, buf));
            }
        }
    }
}

/// Every split of the message across two reads gives the same body.
fn every_split(wire: &str) -> (u16, String, String) {
    let whole = read(wire.as_bytes(), wire.len()).unwrap();
    for at in 0..wire.len() {
        let split = read(wire.as_bytes(), at).unwrap();
        assert_eq!(split.0, whole.0, "split at {at}");
        assert_eq!(split.1, whole.1, "split at {at}");
        assert_eq!(split.2, whole.2, "split at {at}");
    }
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    (whole.0, text(&whole.1), text(&whole.2))
}

#[test]
fn a_chunked_answer_is_read_whole_however_it_is_split_and_what_follows_is_left() {
    let wire = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
                5;ext=1\r\nhello\r\n7\r\n, world\r\nA\r\n\n\ndata: x\n\r\n0\r\nx-trailer: t\r\n\r\nNEXT";
    assert_eq!(every_split(wire), (200, "hello, world\n\ndata: x\n".to_owned(), "NEXT".to_owned()));
}

#[test]
fn a_length_answer_ends_at_its_length_and_an_interim_answer_is_skipped() {
    let wire =
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\ncontent-length: 4\r\n\r\nbodyNEXT";
    assert_eq!(every_split(wire), (202, "body".to_owned(), "NEXT".to_owned()));
    let empty = "HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n";
    assert_eq!(every_split(empty), (204, String::new(), String::new()));
}

#[test]
fn an_answer_without_length_ends_when_the_connection_does_and_is_not_reused() {
    let wire = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"a\":1}";
    assert_eq!(every_split(wire), (200, "{\"a\":1}".to_owned(), String::new()));
    let mut buf = BytesMut::from(wire.as_bytes());
    assert!(!head(&mut buf).unwrap().unwrap().reusable);
}

#[test]
fn which_connections_can_be_reused() {
    let reusable =
        |wire: &str| head(&mut BytesMut::from(wire.as_bytes())).unwrap().unwrap().reusable;
    assert!(reusable("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
    assert!(reusable("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"));
    assert!(!reusable(
        "HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n"
    ));
    assert!(!reusable("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
    assert!(!reusable("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n"));
}

#[test]
fn what_no_server_should_send_is_an_error_not_a_guess() {
    let fails = |wire: &str| read(wire.as_bytes(), wire.len()).unwrap_err();
    assert!(fails("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd")
        .contains("twice"));
    assert!(fails("HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n").contains("Content-Length"));
    assert!(fails("HTTP/1.1 200 OK\r\ncontent-length: +4\r\n\r\nabcd").contains("Content-Length"));
    assert!(
        fails("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n").contains("chunk size")
    );
    assert!(fails("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n")
        .contains("longer"));
    assert!(fails("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc").contains("closed before"));
    assert!(fails("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab")
        .contains("closed before"));
    assert!(fails("HTTP/1.1 101 Switching Protocols\r\n\r\n").contains("switched"));
    assert!(fails("HTTP/1.1 2x0 OK\r\n\r\n").contains("malformed"));
    let long = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD + 1));
    assert!(head(&mut BytesMut::from(long.as_bytes())).unwrap_err().contains("longer"));
    let mut line = BytesMut::from("f".repeat(MAX_LINE + 1).as_bytes());
    assert!(Body::new(Framing::Chunked).decode(&mut line, false).unwrap_err().contains("longer"));
}

#[test]
fn the_content_type_is_read_in_lower_case_and_is_empty_when_absent() {
    let content_type =
        |wire: &str| head(&mut BytesMut::from(wire.as_bytes())).unwrap().unwrap().content_type;
    assert_eq!(
        content_type(
            "HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream\r\ncontent-length: 0\r\n\r\n"
        ),
        "text/event-stream"
    );
    assert_eq!(content_type("HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"), "");
}
