use rmcp::model::{CallToolResult, RequestId};
use serde_json::value::RawValue;
use warden_upstream::Reply;

use super::*;

/// Whether rmcp reads `text` as a tool result, as the lanes' full check reads it.
fn rmcp_reads(text: &str) -> bool {
    Reply::from_raw(RawValue::from_string(text.into()).unwrap()).parse::<CallToolResult>().is_ok()
}

fn here(text: &str) -> Option<String> {
    as_written(&RequestId::Number(1), text, Checked::Here).map(|b| String::from_utf8(b).unwrap())
}

fn already(text: &str) -> Option<String> {
    as_written(&RequestId::Number(1), text, Checked::Already).map(|b| String::from_utf8(b).unwrap())
}

/// Results the one pass takes: what servers write.
const TAKEN: &[&str] = &[
    r#"{"content":[{"type":"text","text":"x"}]}"#,
    r#"{"content":[{"type":"text","text":"Echo: x"}],"resultType":"complete"}"#,
    r#"{"resultType":"complete","content":[],"isError":true}"#,
    r#"{"content":[{"text":"\u00e9\n\"q\"\\","type":"text","_meta":{"k":[1,{"a":null}]}}]}"#,
    r#"{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"isError":false}"#,
    r#"{"structuredContent":{"n":18446744073709551615,"f":-1.5e300,"s":"\ud83d\ude00"}}"#,
    r#"{"structuredContent":null}"#,
    r#"{"isError":false}"#,
    r#"{"content":[],"_meta":{"io.example/x":{"y":[]}},"x-vendor":{"a":[1]}}"#,
    // Keys rmcp does not know are skipped by rmcp without being read, as here.
    r#"{"content":[],"x":1e400,"y":"\ud800","z":[[[]]]}"#,
    r#"{"content":[{"type":"te\u0078t","text":"x"}]}"#,
    r#" { "content" : [ { "type" : "text" , "text" : "spaced" } ] , "resultType" : "complete" } "#,
];

/// Results the pass leaves to rmcp's types, readable or not.
const LEFT: &[&str] = &[
    // Readable, but not what the pass knows.
    r#"{"content":[{"type":"text","text":"x","annotations":{"priority":0.5}}]}"#,
    r#"{"content":[{"type":"image","data":"AA==","mimeType":"image/png"}]}"#,
    r#"{"content":[{"type":"text","text":"x","x-vendor":1}]}"#,
    r#"{"content":[],"content":[]}"#,
    r#"{"content":[{"type":"text","text":"a","text":"b"}]}"#,
    r#"{"cont\u0065nt":[]}"#,
    r#"{"content":[],"result\u0054ype":"complete"}"#,
    r#"{"content":null,"isError":true}"#,
    r#"{"content":[],"isError":null}"#,
    r#"{"content":[],"_meta":null}"#,
    // Unreadable.
    r#"{"content":{}}"#,
    r#"{"content":[{"type":"nope"}]}"#,
    r#"{"content":[{"type":"text"}]}"#,
    r#"{"content":[{"type":"text","text":1}]}"#,
    r#"{"content":[{"type":"text","text":"\ud800"}]}"#,
    r#"{"content":[{"type":"text","text":"x","_meta":[]}]}"#,
    r#"{"structuredContent":1e400}"#,
    r#"{"structuredContent":{"s":"\udc00"}}"#,
    r#"{"content":[],"_meta":{"a":1e400}}"#,
    r#"{"content":[],"resultType":"input_required"}"#,
    r#"{"content":[],"isError":"yes"}"#,
    r#"{"_meta":{}}"#,
    r#"{"x":1}"#,
    r#"{}"#,
    "[]",
    r#""text""#,
];

#[test]
fn the_pass_takes_only_what_rmcp_reads_and_writes_what_the_full_check_would() {
    for text in TAKEN.iter().chain(LEFT) {
        let Some(out) = here(text) else { continue };
        assert!(rmcp_reads(text), "the pass took what rmcp refuses: {text}");
        assert_eq!(Some(&out), already(text).as_ref(), "{text}");
        assert!(!out.contains("resultType"), "{out}");
    }
    for text in TAKEN {
        assert!(here(text).is_some(), "the pass takes {text}");
    }
    for text in LEFT {
        assert!(here(text).is_none(), "the pass leaves {text} to rmcp");
    }
    // Both kinds are there: readable ones the pass leaves, and unreadable ones.
    assert!(LEFT.iter().any(|t| rmcp_reads(t)) && LEFT.iter().any(|t| !rmcp_reads(t)));
}

#[test]
fn the_text_goes_as_written_unless_result_type_is_left_out() {
    let spaced = TAKEN[TAKEN.len() - 1];
    let out = here(spaced).unwrap();
    assert_eq!(
        out,
        r#"{"jsonrpc":"2.0","id":1,"result": { "content" : [ { "type" : "text" , "text" : "spaced" } ]  } }"#
    );
    // First, between, last, alone: the member goes with one comma.
    let answer = |r: &str| format!(r#"{{"jsonrpc":"2.0","id":1,"result":{r}}}"#);
    for (written, left) in [
        (r#"{"resultType":"complete","content":[]}"#, r#"{"content":[]}"#),
        (
            r#"{"content":[],"resultType":"complete","isError":true}"#,
            r#"{"content":[],"isError":true}"#,
        ),
        (r#"{"content":[],"resultType":"complete"}"#, r#"{"content":[]}"#),
        ("{\"content\":[]\t,\r\n\"resultType\":\"complete\"}", "{\"content\":[]\t}"),
    ] {
        assert_eq!(here(written), Some(answer(left)), "{written}");
    }
    assert_eq!(already(r#"{"resultType":"complete"}"#), Some(answer("{}")));
    assert_eq!(already(r#"{"resultType":"complete","x":1,"resultType":"complete"}"#), None);
    let exact = r#"{ "content" : [ ] , "isError" : false }"#;
    assert_eq!(here(exact).unwrap(), format!(r#"{{"jsonrpc":"2.0","id":1,"result":{exact}}}"#));
}

#[test]
fn nesting_past_the_passs_depth_is_left_to_rmcp() {
    let nested =
        |n: usize| format!(r#"{{"structuredContent":{}{}}}"#, "[".repeat(n), "]".repeat(n));
    assert!(here(&nested(usize::from(DEPTH))).is_some());
    assert!(here(&nested(usize::from(DEPTH) + 1)).is_none());
    assert!(rmcp_reads(&nested(usize::from(DEPTH) + 1)), "rmcp reads it: the full check's to say");
    assert!(!rmcp_reads(&nested(200)));
    // A key rmcp does not know is skipped unread, however deep.
    let unknown = format!(r#"{{"content":[],"x":{}{}}}"#, "[".repeat(200), "]".repeat(200));
    assert!(rmcp_reads(&unknown) && here(&unknown).is_some());
}
