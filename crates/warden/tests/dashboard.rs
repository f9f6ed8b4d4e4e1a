//! The dashboard in real browsers (headless Debian chromium through chromedriver, Debian
//! firefox-esr through geckodriver) against a
//! real `warden run` supervising the misbehaving server: the overview lists every server and
//! follows a `kill -9` live without a reload; a restart button restarts the instance; a silence
//! made in the page is in the API; with a token the page asks for it and the API refuses
//! without; axe-core finds no serious violation on any page, in light and dark; and the strict
//! Content-Security-Policy is never violated. Screenshots go to target/dashboard-screenshots/.

mod browser;
mod common;

use std::time::{Duration, Instant};

use browser::{Browser, Kind};
use common::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(20);

/// Three misbehaving servers with fast probes and a 2 s first restart delay (so `offline` lasts
/// long enough to be seen), samples stored every second (for the charts), written to a config
/// file in `dir`.
fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    let slow_restart = r#""restart": { "backoff": { "initial": "2s", "max": "4s" } }"#;
    let server = |extra: &str| misbehave(&[], &format!(", {FAST_HEALTH}, {extra}"));
    let text = format!(
        r#"{{ "warden": {{ "metrics_interval": "1s" }},
             "mcpServers": {{ "alpha": {}, "beta": {}, "gamma": {} }} }}"#,
        server(slow_restart),
        server(slow_restart),
        server(slow_restart),
    );
    let path = dir.join("warden.json");
    std::fs::write(&path, text).unwrap();
    path
}

async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn pid(base: &str, server: &str) -> Option<u64> {
    get(base, &format!("/api/servers/{server}"), None).await.1["instances"][0]["pid"].as_u64()
}

/// Waits until every instance of every server is healthy, through the API.
async fn all_healthy(base: &str) {
    let started = Instant::now();
    loop {
        let (_, v) = get(base, "/api/servers", None).await;
        let servers = v["servers"].as_array().cloned().unwrap_or_default();
        if servers.len() == 3
            && servers
                .iter()
                .all(|s| s["instances"].as_array().unwrap().iter().all(|i| i["state"] == "healthy"))
        {
            return;
        }
        assert!(started.elapsed() < LIMIT, "not all healthy: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn accessible(b: &Browser, page: &str) {
    let found = b.accessibility_violations().await;
    assert!(found.is_empty(), "axe-core on {page}: {found:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_and_drives_a_live_warden_in_chromium() {
    shows_and_drives(Kind::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_and_drives_a_live_warden_in_firefox() {
    shows_and_drives(Kind::Firefox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_page_asks_for_it_in_chromium() {
    token_prompt(Kind::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_page_asks_for_it_in_firefox() {
    token_prompt(Kind::Firefox).await;
}

async fn shows_and_drives(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let (_warden, base) = run_warden(&config, dir.path(), &[]).await;
    all_healthy(&base).await;
    let b = Browser::start(kind, false).await;
    b.goto(&format!("{base}/")).await;

    // The overview lists every server, each instance healthy, with its PID.
    b.wait(
        "document.querySelectorAll('tbody[data-server] tr.instance[data-state=\"healthy\"]').length === 3",
        LIMIT,
        "three healthy instance rows",
    )
    .await;
    let names = b.eval("[...document.querySelectorAll('tbody[data-server]')].map(t => t.dataset.server).sort()").await;
    assert_eq!(names, serde_json::json!(["alpha", "beta", "gamma"]));
    b.wait("document.getElementById('live').dataset.state === 'live'", LIMIT, "the stream is live")
        .await;
    b.screenshot("overview").await;
    accessible(&b, "the overview").await;

    // kill -9 a child: its row turns offline, then healthy with a new PID, with no reload.
    b.eval("(window.wardenNotReloaded = true)").await;
    let old = pid(&base, "alpha").await.expect("alpha has a pid");
    let row = "document.querySelector('tr.instance[data-instance=\"alpha#0\"]')";
    signal(old as u32, nix::sys::signal::Signal::SIGKILL);
    b.wait(&format!("{row}.dataset.state === 'offline'"), Duration::from_secs(5), "alpha offline")
        .await;
    b.screenshot("overview-offline").await;
    b.wait(
        &format!("{row}.dataset.state === 'healthy' && {row}.dataset.pid !== '' && {row}.dataset.pid !== '{old}'"),
        LIMIT,
        "alpha healthy again with a new pid",
    )
    .await;
    assert_eq!(
        b.eval("window.wardenNotReloaded === true").await,
        Value::Bool(true),
        "the page reloaded"
    );
    let shown: u64 = b.eval(&format!("{row}.dataset.pid")).await.as_str().unwrap().parse().unwrap();
    assert_eq!(Some(shown), pid(&base, "alpha").await, "the page shows the new pid");

    // The restart button (confirmed in the dialog) restarts the instance: a new PID.
    let before = pid(&base, "beta").await.unwrap();
    b.click("button[data-action='restart'][data-target='beta#0']").await;
    b.wait("document.getElementById('confirm').open", LIMIT, "the confirmation dialog").await;
    b.screenshot("confirm-restart").await;
    b.click("#confirm-ok").await;
    let started = Instant::now();
    loop {
        if pid(&base, "beta").await.is_some_and(|p| p != before) {
            break;
        }
        assert!(started.elapsed() < LIMIT, "beta was not restarted by the button");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Recorded as any operator action is (the store writes in batches: poll).
    let started = Instant::now();
    loop {
        let (_, actions) = get(&base, "/api/events?kind=operator_action&limit=5", None).await;
        if actions.to_string().contains("restart beta#0") {
            break;
        }
        assert!(started.elapsed() < LIMIT, "not recorded: {actions}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The server page: instances, charts' containers, the incident of the kill, tools.
    b.goto(&format!("{base}/#/servers/alpha")).await;
    b.wait("document.querySelector('h1') && document.querySelector('h1').textContent.startsWith('alpha')", LIMIT, "the server page").await;
    b.wait(
        "document.body.textContent.includes('crash')",
        LIMIT,
        "the kill in the incident timeline",
    )
    .await;
    b.wait("document.querySelectorAll('code').length > 3", LIMIT, "the tools").await;
    // The charts are uPlot's, from stored samples; the period buttons redraw them.
    b.wait(
        "document.querySelectorAll('#c-lat .uplot canvas, #c-err .uplot canvas').length === 2",
        LIMIT,
        "two charts",
    )
    .await;
    b.click("button[data-range='24h']").await;
    b.wait("document.querySelector('#c-lat h3').textContent.includes('24h') && document.querySelector('#c-lat .uplot')", LIMIT, "the 24 h chart").await;
    b.screenshot("server").await;
    // A refused action shows the API's own words: alpha has no fallback to fail over to.
    b.click("button[data-action='failover-trigger']").await;
    b.wait("document.getElementById('confirm').open", LIMIT, "the failover dialog").await;
    b.click("#confirm-ok").await;
    let refusal = b
        .wait("document.querySelector('#toast .error') && document.querySelector('#toast .error').textContent", LIMIT, "the refusal")
        .await;
    assert!(refusal.as_str().unwrap().contains("refused — 409"), "{refusal}");
    accessible(&b, "the server page").await;

    // A silence made in the page is in the API, and expiring it there ends it.
    b.goto(&format!("{base}/#/alerts")).await;
    b.wait("document.getElementById('silence-form')", LIMIT, "the alerts page").await;
    accessible(&b, "the alerts page").await;
    b.type_into("#s-matchers", "server=alpha").await;
    b.type_into("#s-duration", "1h").await;
    b.type_into("#s-comment", "maintenance from the browser").await;
    b.click("#silence-form button[type='submit']").await;
    let started = Instant::now();
    let id = loop {
        let (_, v) = get(&base, "/api/silences", None).await;
        if let Some(s) = v["silences"]
            .as_array()
            .and_then(|l| l.iter().find(|s| s["comment"] == "maintenance from the browser"))
        {
            assert_eq!(s["matchers"][0]["name"], "server");
            assert_eq!(s["created_by"], "dashboard");
            break s["id"].as_str().unwrap().to_owned();
        }
        assert!(started.elapsed() < LIMIT, "the silence is not in /api/silences: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    b.wait(&format!("document.body.textContent.includes('{id}')"), LIMIT, "the silence listed")
        .await;
    b.screenshot("alerts").await;
    b.click(&format!("button[aria-label='Expire silence {id}']")).await;
    b.wait("document.getElementById('confirm').open", LIMIT, "the expire dialog").await;
    b.click("#confirm-ok").await;
    let started = Instant::now();
    while get(&base, "/api/silences", None).await.1["silences"]
        .as_array()
        .is_some_and(|l| !l.is_empty())
    {
        assert!(started.elapsed() < LIMIT, "the silence was not expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Reports, each kind.
    b.goto(&format!("{base}/#/reports?kind=failures&since=24h")).await;
    b.wait("document.body.textContent.includes('Top offenders')", LIMIT, "the failure report")
        .await;
    b.wait("document.body.textContent.includes('alpha#0')", LIMIT, "alpha among the offenders")
        .await;
    b.screenshot("reports").await;
    accessible(&b, "the reports page").await;
    for kind in ["availability", "capacity", "performance"] {
        b.goto(&format!("{base}/#/reports?kind={kind}&since=24h")).await;
        let failed = "document.querySelector('#report [role=alert]')";
        b.wait(
            &format!("document.body.textContent.includes('Generated') || {failed}"),
            LIMIT,
            kind,
        )
        .await;
        let error = b.eval(&format!("{failed} && {failed}.textContent")).await;
        assert_eq!(error, Value::Null, "the {kind} report failed to render");
    }

    let csp = b.csp_violations().await;
    assert!(csp.is_empty(), "Content-Security-Policy violations: {csp:?}");
    b.finish().await;
}

/// With a token, the page asks for it (in the dark scheme, checked too) and keeps it out of
/// URLs.
async fn token_prompt(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let secret = "s3cret-token-for-the-browser";
    let (_warden, base) = run_warden(&config, dir.path(), &[("WARDEN_TOKEN", secret)]).await;
    // The API refuses without the token; the page itself answers.
    assert_eq!(get(&base, "/api/servers", None).await.0, 401);
    assert_eq!(reqwest::get(format!("{base}/")).await.unwrap().status(), 200);
    let b = Browser::start(kind, true).await;
    b.goto(&format!("{base}/")).await;
    b.wait("!document.getElementById('login').hidden", LIMIT, "the token prompt").await;
    assert_eq!(
        b.eval("matchMedia('(prefers-color-scheme: dark)').matches").await,
        Value::Bool(true)
    );
    b.screenshot("token-prompt").await;
    accessible(&b, "the token prompt (dark)").await;

    b.type_into("#token", "wrong").await;
    b.click("#login-form button[type='submit']").await;
    b.wait(
        "document.getElementById('login-error').textContent.includes('refused')",
        LIMIT,
        "the refusal",
    )
    .await;

    b.type_into("#token", secret).await;
    b.click("#login-form button[type='submit']").await;
    b.wait(
        "document.querySelectorAll('tbody[data-server]').length === 3",
        LIMIT,
        "the overview after signing in",
    )
    .await;
    b.wait(
        "document.getElementById('live').dataset.state === 'live'",
        LIMIT,
        "the stream with the token",
    )
    .await;
    b.screenshot("overview-dark").await;
    accessible(&b, "the overview (dark)").await;
    // The token went in headers only: no URL the page loaded or requested holds it.
    let urls = b
        .eval("[location.href, ...performance.getEntriesByType('resource').map(e => e.name)].join(' ')")
        .await;
    assert!(!urls.as_str().unwrap().contains(secret), "the token is in a URL: {urls}");
    let csp = b.csp_violations().await;
    assert!(csp.is_empty(), "Content-Security-Policy violations: {csp:?}");
    b.finish().await;
}
