//! The OpenTelemetry exporter (cargo feature `otlp`): `warden run` with
//! OTEL_EXPORTER_OTLP_ENDPOINT sends its spans to a collector over OTLP/HTTP. The collector
//! here is a raw loopback HTTP listener. Run with `cargo test -p warden --features otlp --test
//! otlp` (scripts/test does).
#![cfg(feature = "otlp")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use rmcp::ServiceExt;

/// One HTTP request as the collector saw it.
struct Received {
    request_line: String,
    content_type: String,
    body: Vec<u8>,
}

/// Accepts connections on `listener`, answers each request 200 and hands it over.
fn collector(listener: TcpListener, tx: mpsc::Sender<Received>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                    return;
                }
                let (mut len, mut content_type) = (0usize, String::new());
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 {
                        return;
                    }
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (name, value) = h.split_once(':').unwrap_or((h, ""));
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => len = value.trim().parse().unwrap_or(0),
                        "content-type" => content_type = value.trim().to_owned(),
                        _ => {}
                    }
                }
                let mut body = vec![0u8; len];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let _ = (&stream).write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                let _ = tx.send(Received {
                    request_line: request_line.trim_end().into(),
                    content_type,
                    body,
                });
            }
        });
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn spans_reach_an_otlp_collector() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || collector(listener, tx));

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    // Fast probes: a probe span every half second.
    std::fs::write(
        &cfg,
        format!(
            r#"{{ "mcpServers": {{ "s": {} }} }}"#,
            misbehave(&[], &format!(", {FAST_HEALTH}"))
        ),
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(warden())
        .env("XDG_STATE_HOME", dir.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("WARDEN_TOKEN")
        .args(["run", "--listen", &format!("127.0.0.1:{port}"), "--log-dir", "none", "--db"])
        .arg(dir.path().join("w.db"))
        .arg("-c")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let wait_for_span = |name: &[u8]| {
        let start = Instant::now();
        loop {
            let left = Duration::from_secs(30).saturating_sub(start.elapsed());
            match rx.recv_timeout(left) {
                Ok(r) if contains(&r.body, name) => break Some(r),
                Ok(_) => {}
                Err(_) => break None,
            }
        }
    };
    let Some(got) = wait_for_span(b"mcp.probe") else {
        let _ = child.kill();
        panic!("no probe span exported within 30 s");
    };
    assert_eq!(got.request_line, "POST /v1/traces HTTP/1.1");
    assert_eq!(got.content_type, "application/x-protobuf");
    assert!(contains(&got.body, b"warden"), "the service name is warden");
    assert!(contains(&got.body, b"s#0"), "the probe span names its instance");

    // One span per gateway call.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let transport = StreamableHttpClientTransport::with_client(
            reqwest::Client::new(),
            StreamableHttpClientTransportConfig::with_uri(format!("http://127.0.0.1:{port}/mcp")),
        );
        let client = ().serve(transport).await.expect("the client connects");
        let args = serde_json::json!({ "text": "traced" }).as_object().unwrap().clone();
        let start = Instant::now();
        // The server may still be starting: retry until the call is routed.
        while client
            .peer()
            .call_tool(CallToolRequestParams::new("s__echo").with_arguments(args.clone()))
            .await
            .is_err()
        {
            assert!(start.elapsed() < Duration::from_secs(30), "the call never succeeded");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = client.cancel().await;
    });
    let Some(got) = wait_for_span(b"mcp.call") else {
        let _ = child.kill();
        panic!("no call span exported within 30 s");
    };
    assert!(contains(&got.body, b"s__echo") || contains(&got.body, b"echo"), "the tool is named");

    signal(child.id(), Signal::SIGTERM);
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(20), "warden did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
