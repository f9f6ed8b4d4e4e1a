//! End to end: `GET /metrics` on a real listener, with real children (`warden misbehave`), a
//! real MCP client through the gateway, and a child killed with SIGKILL.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use rmcp::ServiceExt;
use warden_app::{App, RunOptions};
use warden_core::InstanceState;
use warden_store::Location;

const LIMIT: Duration = Duration::from_secs(90);
const TOKEN: &str = "metrics-test-token-0123456789";

/// The value of the sample `name` whose labels are exactly `labels` (in any order).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
        if n != name {
            return None;
        }
        let mut got: Vec<&str> =
            rest.trim_end_matches('}').split(',').filter(|s| !s.is_empty()).collect();
        let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        got.sort_unstable();
        want.sort_unstable();
        (got == want).then(|| value.parse().expect("a number"))
    })
}

/// Every metric name in an exposition: families (`# TYPE`) and samples.
fn exported_names(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(rest) => rest.split(' ').next(),
            None if l.starts_with('#') => None,
            None => l.split(['{', ' ']).next(),
        })
        .map(str::to_owned)
        .collect()
}

/// Every `warden_…` metric name a shipped file mentions.
fn mentioned_names(text: &str) -> std::collections::BTreeSet<String> {
    let is_name = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    let mut out = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("warden_") {
        let before = rest[..at].chars().next_back();
        let name: String = rest[at..].chars().take_while(|c| is_name(*c)).collect();
        if !before.is_some_and(|c| is_name(c) || c == '-') {
            out.insert(name.clone());
        }
        rest = &rest[at + name.len()..];
    }
    out
}

fn inst<'a>(server: &'a str, instance: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("server", server), ("server_instance", instance)]
}

fn and<'a>(mut l: Vec<(&'a str, &'a str)>, k: &'a str, v: &'a str) -> Vec<(&'a str, &'a str)> {
    l.push((k, v));
    l
}

struct Scraper {
    http: reqwest::Client,
    url: String,
}

impl Scraper {
    async fn get(&self, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(&self.url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("the metrics endpoint answers")
    }

    async fn text(&self) -> String {
        let res = self.get(Some(TOKEN)).await;
        assert_eq!(res.status(), 200);
        res.text().await.unwrap()
    }

    /// Scrapes until `name{labels}` reaches `at_least`, failing after 30 s.
    async fn until(&self, name: &str, labels: &[(&str, &str)], at_least: f64) -> String {
        let start = Instant::now();
        loop {
            let text = self.text().await;
            let v = sample(&text, name, labels);
            if v.is_some_and(|v| v >= at_least) {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name}{labels:?} did not reach {at_least} (now {v:?}):\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_a_call_a_failover_and_an_error_appear_in_metrics() {
    tokio::time::timeout(LIMIT, async {
        let fast = format!(", {FAST_HEALTH}, {FAST_RESTART}");
        let cfg = config(&[
            ("m", misbehave(&[], &fast)),
            ("flaky", misbehave(&["--error-rate", "1"], &fast)),
            (
                "dead",
                misbehave(
                    &["--exit-on-start"],
                    r#", "fallback": ["m"], "restart": { "policy": "no" }"#,
                ),
            ),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let app = App::start(RunOptions {
            config: cfg,
            database: Location::Sqlite(dir.path().join("w.db")),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            token: Some(TOKEN.into()),
            connectors: None,
            http_threads: None,
        })
        .await
        .unwrap();
        let addr = app.http_addr().unwrap();
        let scraper =
            Scraper { http: reqwest::Client::new(), url: format!("http://{addr}/metrics") };

        // Guarded like every route but the probes; OpenMetrics text.
        assert_eq!(scraper.get(None).await.status(), 401);
        let res = scraper.get(Some(TOKEN)).await;
        assert_eq!(res.status(), 200);
        let ctype = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ctype.starts_with("application/openmetrics-text; version=1.0.0"), "{ctype}");

        let wait_healthy = |name: &'static str| {
            let app = &app;
            async move {
                let start = Instant::now();
                while app.registry().server(name).unwrap().views()[0].state
                    != InstanceState::Healthy
                {
                    assert!(start.elapsed() < Duration::from_secs(30), "{name} is not healthy");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        wait_healthy("m").await;
        wait_healthy("flaky").await;
        let text = scraper.until("warden_instance_up", &inst("m", "m#0"), 1.0).await;
        assert_eq!(
            sample(&text, "warden_instance_state", &and(inst("m", "m#0"), "state", "healthy")),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "warden_instance_state", &and(inst("m", "m#0"), "state", "offline")),
            Some(0.0)
        );
        assert_eq!(sample(&text, "warden_instance_restarts_total", &inst("m", "m#0")), Some(0.0));
        assert_eq!(
            sample(
                &text,
                "warden_instance_failures_total",
                &and(inst("m", "m#0"), "class", "crash")
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "warden_breaker_state", &and(inst("m", "m#0"), "state", "closed")),
            Some(1.0)
        );
        assert_eq!(sample(&text, "warden_breaker_ejections_total", &inst("m", "m#0")), Some(0.0));
        assert_eq!(sample(&text, "warden_calls_in_flight", &inst("m", "m#0")), Some(0.0));
        assert_eq!(sample(&text, "warden_server_up", &[("server", "m")]), Some(1.0));
        assert_eq!(sample(&text, "warden_up", &[]), Some(1.0));
        assert_eq!(sample(&text, "warden_store_degraded", &[]), Some(0.0));

        // Calls through the gateway: one served, one failing on the server, one failed over.
        let transport = StreamableHttpClientTransport::with_client(
            reqwest::Client::new(),
            StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"))
                .auth_header(TOKEN),
        );
        let client = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("metrics-test", "0"),
        )
        .serve(transport)
        .await
        .expect("the client connects");
        let echo = |tool: &str| {
            let args = serde_json::json!({ "text": "hi" }).as_object().unwrap().clone();
            CallToolRequestParams::new(tool.to_owned()).with_arguments(args)
        };
        client.peer().call_tool(echo("m__echo")).await.expect("m answers");
        assert!(
            client.peer().call_tool(echo("flaky__echo")).await.is_err(),
            "flaky fails every call"
        );
        client.peer().call_tool(echo("dead__echo")).await.expect("the fallback answers for dead");

        let text =
            scraper.until("warden_call_duration_seconds_count", &inst("m", "m#0"), 2.0).await;
        let inf = sample(
            &text,
            "warden_call_duration_seconds_bucket",
            &and(inst("m", "m#0"), "le", "+Inf"),
        );
        assert_eq!(inf, Some(2.0), "both calls m served are in the histogram");
        assert!(
            sample(&text, "warden_call_duration_seconds_sum", &inst("m", "m#0")).unwrap() > 0.0
        );
        assert_eq!(
            sample(
                &text,
                "warden_call_errors_total",
                &and(inst("m", "m#0"), "class", "server_error")
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                "warden_call_errors_total",
                &and(inst("flaky", "flaky#0"), "class", "server_error")
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "warden_failovers_total", &[("server", "dead"), ("fallback", "m")]),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "warden_server_up", &[("server", "dead")]),
            Some(1.0),
            "served by its fallback"
        );
        assert_eq!(
            sample(&text, "warden_server_status", &[("server", "dead"), ("status", "degraded")]),
            Some(1.0)
        );
        assert_eq!(sample(&text, "warden_instance_up", &inst("dead", "dead#0")), Some(0.0));
        assert!(
            sample(&text, "warden_probe_duration_seconds_count", &inst("m", "m#0")).unwrap() >= 1.0
        );

        // Kill the child: the crash, the incident and the restart are counted.
        let pid = app.registry().server("m").unwrap().views()[0].pid.expect("m runs");
        signal(pid, Signal::SIGKILL);
        let text = scraper.until("warden_instance_restarts_total", &inst("m", "m#0"), 1.0).await;
        assert_eq!(sample(&text, "warden_instance_restarts_total", &inst("m", "m#0")), Some(1.0));
        assert_eq!(
            sample(
                &text,
                "warden_instance_failures_total",
                &and(inst("m", "m#0"), "class", "crash")
            ),
            Some(1.0)
        );
        let text = scraper
            .until("warden_incidents_total", &and(inst("m", "m#0"), "class", "crash"), 1.0)
            .await;
        assert_eq!(
            sample(&text, "warden_incidents_total", &and(inst("m", "m#0"), "class", "crash")),
            Some(1.0)
        );
        // And /metrics agrees with the server view.
        let view = app.registry().server("m").unwrap().views()[0].clone();
        assert!(
            view.restarts >= 1 && view.last_exit.as_ref().is_some_and(|e| e.signal == Some(9)),
            "{view:?}"
        );
        wait_healthy("m").await;
        let text = scraper.until("warden_instance_up", &inst("m", "m#0"), 1.0).await;

        // The shipped rules and dashboard use only names Warden exports.
        let exported = exported_names(&text);
        for file in ["deploy/prometheus/warden-rules.yml", "deploy/grafana/warden-dashboard.json"] {
            let shipped = std::fs::read_to_string(workspace_root().join(file)).unwrap();
            let mentioned = mentioned_names(&shipped);
            assert!(mentioned.len() >= 10, "{file} mentions {mentioned:?}");
            let unknown: Vec<&String> = mentioned.difference(&exported).collect();
            assert!(unknown.is_empty(), "{file} uses names /metrics does not export: {unknown:?}");
        }

        drop(client);
        app.shutdown().await;
    })
    .await
    .expect("the test finished within its time limit");
}
