//! Integration checks against real commands, ports and URLs.

use super::*;

fn connector(text: &str) -> CheckConnector {
    let lookup = |name: &str| (name == "K").then(|| "hidden-value-42".to_owned());
    let loaded = warden_config::compile(text, &lookup).expect("valid");
    CheckConnector::new(loaded.config.servers[0].clone())
}

fn id() -> InstanceId {
    InstanceId::new("x", 0)
}

#[tokio::test]
async fn a_failing_command_reports_its_exit_code_and_last_stderr_line_scrubbed() {
    let c = connector(
        r#"{ "integrations": { "x": { "command": "/bin/sh",
             "args": ["-c", "echo first >&2; echo \"bad $K\" >&2; exit 3"],
             "env": { "K": "${env:K}" } } } }"#,
    );
    let e = c.connect(id(), Duration::from_secs(5)).await.err().expect("fails");
    assert_eq!(e.class(), FailureClass::ServerError);
    assert_eq!(e.to_string(), "exit code 3: bad ***");
}

#[tokio::test]
async fn a_huge_stderr_line_without_newline_is_cut_at_its_bound() {
    let c = connector(
        r#"{ "integrations": { "x": { "command": "/bin/sh",
             "args": ["-c", "head -c 20000000 /dev/zero | tr '\\0' x >&2; exit 3"] } } }"#,
    );
    let e = c.connect(id(), Duration::from_secs(20)).await.err().expect("fails");
    let text = e.to_string();
    assert!(text.starts_with("exit code 3: xxx"), "{}", shorten(&text, 100));
    assert!(text.ends_with("(a stderr line over 4 KiB, cut)"), "{}", shorten(&text, 100));
    assert!(text.len() < 1000);
}

#[tokio::test]
async fn a_passing_check_is_a_session_with_no_catalog_that_takes_no_calls() {
    let c = connector(r#"{ "integrations": { "x": { "command": "/bin/true" } } }"#);
    let conn = c.connect(id(), Duration::from_secs(5)).await.expect("passes");
    let s = conn.session;
    assert!(s.pid().is_none());
    let before = s.activity().bytes();
    let rtt = s.probe(ProbeMethod::Auto, Duration::from_secs(5)).await.expect("passes");
    assert!(rtt < Duration::from_secs(5));
    assert!(s.activity().bytes() > before, "an answer is activity");
    assert!(s.list_catalog(Duration::from_secs(1)).await.unwrap().tools.is_empty());
    let e = s.probe(ProbeMethod::Auto, Duration::from_millis(1)).await;
    assert!(e.is_ok() || matches!(e, Err(UpstreamError::Timeout(_))));
    s.kill();
    let e = s.probe(ProbeMethod::Auto, Duration::from_secs(5)).await.expect_err("stopped");
    assert!(matches!(e, UpstreamError::Closed(_)), "{e}");
}

#[tokio::test]
async fn a_command_that_cannot_start_is_a_connection_error() {
    let c = connector(r#"{ "integrations": { "x": { "command": "/nonexistent/check" } } }"#);
    let e = c.connect(id(), Duration::from_secs(5)).await.err().expect("fails");
    assert!(e.is_connection_loss(), "{e}");
    assert_eq!(e.class(), FailureClass::ConnectionError);
}

#[tokio::test]
async fn a_refused_port_is_a_lost_connection_and_a_timeout_is_a_timeout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c =
        connector(&format!(r#"{{ "integrations": {{ "x": {{ "tcp": "127.0.0.1:{port}" }} }} }}"#));
    let e = c.connect(id(), Duration::from_secs(5)).await.err().expect("refused");
    assert!(e.is_connection_loss(), "{e}");
    let c = connector(&format!(
        r#"{{ "integrations": {{ "x": {{ "http": "http://127.0.0.1:{port}/?k=${{env:K}}" }} }} }}"#
    ));
    let e = c.connect(id(), Duration::from_secs(5)).await.err().expect("refused");
    assert!(e.is_connection_loss(), "{e}");
    assert!(!e.to_string().contains("hidden-value-42"), "{e}");
    let c = connector(r#"{ "integrations": { "x": { "command": "/bin/sleep", "args": ["5"] } } }"#);
    let started = Instant::now();
    let e = c.connect(id(), Duration::from_millis(200)).await.err().expect("too slow");
    assert!(matches!(e, UpstreamError::Timeout(_)), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn helpers() {
    assert!(json_equal(&serde_json::json!(1), &serde_json::json!(1.0)));
    assert!(!json_equal(&serde_json::json!("1"), &serde_json::json!(1)));
    assert_eq!(shorten("abcdef", 4), "abc…");
    assert_eq!(shorten("abc", 4), "abc");
    assert_eq!(password_of("postgres://u:p%40ss@h:5432/db").as_deref(), Some("p%40ss"));
    assert_eq!(password_of("postgres://u@h/db"), None);
}
