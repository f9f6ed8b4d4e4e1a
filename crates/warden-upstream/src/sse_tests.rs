//! The SSE parser: the spec's line endings and fields, its bound, linear work however the
//! stream is split, and property tests (any bytes, any split → the same events, no panic).

use std::time::{Duration, Instant};

use proptest::prelude::*;
use rmcp::model::ServerJsonRpcMessage;

use crate::sse::{Event, SseParser, TooLarge};

/// Every event of `chunks` fed in order, or the error that stopped it.
fn parse(chunks: &[&[u8]], max: usize) -> (Vec<Event>, Option<TooLarge>) {
    let mut p = SseParser::new(max);
    let mut out = Vec::new();
    for c in chunks {
        let pushed = p.push(c);
        while let Some(e) = p.next_event() {
            out.push(e);
        }
        if let Err(e) = pushed {
            return (out, Some(e));
        }
    }
    (out, None)
}

fn data(e: &Event) -> &str {
    std::str::from_utf8(&e.data).unwrap()
}

#[test]
fn events_split_across_chunks_with_every_line_ending() {
    let (events, err) = parse(
        &[
            b"data:\nid: 0/0\nretry: 3000\n\nevent: message\ndata: {\"a\"",
            b":1}\r\n\r\ndata: x\rdata: y\r\r",
        ],
        1024,
    );
    assert!(err.is_none());
    assert_eq!(events[0], Event { id: Some("0/0".into()), retry: Some(3000), ..Event::default() });
    assert_eq!((events[1].name.as_str(), data(&events[1])), ("message", "{\"a\":1}"));
    assert_eq!(data(&events[2]), "x\ny");
    assert_eq!(events.len(), 3);
    // CRLF split between chunks, a CRLF line then an LF blank line, comments, unknown fields.
    let (events, _) = parse(&[b": hi\nfoo: bar\ndata: a\r", b"\n\ndata: b\r\n\n"], 1024);
    assert_eq!(events.iter().map(data).collect::<Vec<_>>(), ["a", "b"]);
    // An empty chunk between a CR and its LF (a body stream may yield one) changes nothing.
    let (events, _) = parse(&[b"data: a\r", b"", b"\ndata: b\n\n"], 1024);
    assert_eq!(events.iter().map(data).collect::<Vec<_>>(), ["a\nb"]);
    // A comment alone is no event; an unfinished event at the end is dropped.
    let (events, _) = parse(&[b": keep-alive\n\ndata: never ended\n"], 1024);
    assert!(events.is_empty());
}

#[test]
fn an_event_over_the_limit_is_an_error_naming_it_and_memory_stays_bounded() {
    // A line that never ends, byte by byte.
    let mut p = SseParser::new(1000);
    let mut failed = None;
    for i in 0..5000 {
        if let Err(e) = p.push(b"x") {
            failed = Some((i, e));
            break;
        }
    }
    let (at, e) = failed.expect("refused");
    assert!(at <= 1000, "refused once over the limit, at byte {at}");
    assert_eq!(e.to_string(), "an SSE event over 1000 bytes");
    // Many data lines that never end the event, in one huge chunk.
    let chunk = b"data: 0123456789\n".repeat(1000);
    let (events, err) = parse(&[&chunk], 1000);
    assert!(events.is_empty());
    assert_eq!(err, Some(TooLarge { limit: 1000 }));
    // Events each under the limit in one chunk far over it are fine.
    let chunk = b"data: 0123456789\n\n".repeat(1000);
    let (events, err) = parse(&[&chunk], 100);
    assert_eq!((events.len(), err), (1000, None));
}

#[test]
fn byte_by_byte_and_one_huge_chunk_give_the_same_events_in_linear_time() {
    // 40,000 events, ~2 MB: a parser that rescans or shifts its buffer per event does
    // ~40,000 × 1 MB of work here and takes minutes; a linear one, well under a second.
    let mut stream = Vec::new();
    for i in 0..40_000 {
        stream.extend_from_slice(
            format!("id: {i}\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"m{i}\"}}\n\n").as_bytes(),
        );
    }
    let started = Instant::now();
    let (whole, err) = parse(&[&stream], crate::MAX_MESSAGE);
    assert!(err.is_none());
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    let (by_byte, err) = parse(&bytes, crate::MAX_MESSAGE);
    assert!(err.is_none());
    let elapsed = started.elapsed();
    assert_eq!(whole.len(), 40_000);
    assert_eq!(whole, by_byte);
    assert_eq!(whole[39_999].id.as_deref(), Some("39999"));
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

/// Splits `bytes` at the given cut points (taken modulo its length; repeats give empty chunks).
fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> =
        cuts.iter().map(|c| if bytes.is_empty() { 0 } else { c % (bytes.len() + 1) }).collect();
    // Repeated cuts make empty chunks, which a body stream may yield too.
    at.sort_unstable();
    let mut out = Vec::new();
    let mut from = 0;
    for a in at {
        out.push(&bytes[from..a]);
        from = a;
    }
    out.push(&bytes[from..]);
    out
}

/// Bytes that look like an SSE stream: fields, line endings, JSON and noise.
fn sse_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"event: endpoint".to_vec()),
        Just(b"id: 7".to_vec()),
        Just(b"retry: 1000".to_vec()),
        Just(b": comment".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#.to_vec()),
        Just(br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":2}}"#.to_vec()),
        proptest::collection::vec(any::<u8>(), 0..16),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Any split of the same bytes gives the same events (and the same verdict on the bound);
    /// nothing panics, and no event holds more than the limit.
    #[test]
    fn any_split_gives_the_same_events(
        bytes in prop_oneof![sse_like(), proptest::collection::vec(any::<u8>(), 0..512)],
        cuts in proptest::collection::vec(0usize..600, 0..24),
        max in prop_oneof![Just(64usize), Just(4096usize)],
        empties in any::<bool>(),
    ) {
        let (whole, whole_err) = parse(&[&bytes], max);
        let mut chunks = split(&bytes, &cuts);
        if empties {
            chunks = chunks.into_iter().flat_map(|c| [c, &[][..]]).collect();
        }
        let (parts, parts_err) = parse(&chunks, max);
        prop_assert_eq!(whole_err.is_some(), parts_err.is_some());
        if whole_err.is_none() {
            prop_assert_eq!(&whole, &parts);
        }
        for e in whole.iter().chain(&parts) {
            prop_assert!(e.data.len() <= max);
            // What a transport does with an event's data: an error or a message, never a panic.
            let _ = serde_json::from_slice::<ServerJsonRpcMessage>(&e.data);
        }
    }
}
