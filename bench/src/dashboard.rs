//! The dashboard, measured in the headless browser the tests use (Debian chromium through
//! chromedriver): the embedded assets' size, the first render of the overview with N servers,
//! how long a `kill -9` takes to show in the page, and a flood of events (500 a second by
//! default) fed for a long run into the page's event pipeline (the batching and rendering the
//! stream's events go through, and the per-server refreshes they cause against the live Warden),
//! with the frame rate and the JavaScript heap sampled throughout.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

#[path = "../../crates/warden/tests/browser/mod.rs"]
mod browser;

use crate::proc::{free_port, run_warden, wait_http, write_config};

pub(crate) struct Options {
    pub servers: usize,
    pub loads: usize,
    pub kills: usize,
    pub flood_seconds: u64,
    pub events_per_second: u64,
}

pub(crate) fn report(warden: &Path, o: &Options) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(warden, o))
}

fn median(xs: &[f64]) -> f64 {
    crate::quantile(xs, 0.5)
}

async fn run(warden: &Path, o: &Options) -> String {
    let (raw, gz) = warden_admin::ui::sizes();
    let dir = tempfile::tempdir().unwrap();
    let servers: Vec<(String, String)> =
        (0..o.servers).map(|i| (format!("s{i:03}"), crate::misbehave(warden, &[], ""))).collect();
    let cfg = write_config(dir.path(), &servers);
    let port = free_port();
    let _warden = run_warden(warden, dir.path(), &cfg, port);
    let base = format!("http://127.0.0.1:{port}");
    wait_http(&format!("{base}/livez")).await;
    let started = Instant::now();
    loop {
        let v: Value =
            reqwest::get(format!("{base}/api/servers")).await.unwrap().json().await.unwrap();
        let healthy = v["servers"]
            .as_array()
            .map_or(0, |l| l.iter().filter(|s| s["status"] == "healthy").count());
        if healthy == o.servers {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "only {healthy} healthy");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let b = browser::Browser::start(browser::Kind::Chromium, false).await;
    let n = o.servers;
    let rows = format!("document.querySelectorAll('tbody[data-server]').length === {n}");

    // First render: from navigation to the overview's rows for every server, fresh loads.
    let mut first = Vec::new();
    let mut dcl = Vec::new();
    for _ in 0..o.loads {
        b.goto("about:blank").await;
        b.goto(&format!("{base}/")).await;
        b.wait(&rows, Duration::from_secs(30), "every server row").await;
        let mark = b.eval("performance.getEntriesByName('warden-first-render')[0].startTime").await;
        first.push(mark.as_f64().unwrap());
        let nav =
            b.eval("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd").await;
        dcl.push(nav.as_f64().unwrap());
    }
    b.wait(
        "document.getElementById('live').dataset.state === 'live'",
        Duration::from_secs(10),
        "live",
    )
    .await;

    // kill -9 → the row shows offline: the page's own clock against the kill's, both epoch ms.
    let mut shown = Vec::new();
    for k in 0..o.kills {
        let name = format!("s{:03}", (k * 7) % n);
        let v: Value =
            reqwest::get(format!("{base}/api/servers/{name}")).await.unwrap().json().await.unwrap();
        let Some(pid) = v["instances"][0]["pid"].as_u64() else { continue };
        b.eval(&format!(
            "(() => {{ window.wardenSeen = null; const t = document.querySelector('tbody[data-server=\"{name}\"]');
               const o = new MutationObserver(() => {{ const r = t.querySelector('tr.instance');
                 if (r && r.dataset.state === 'offline' && !window.wardenSeen) {{ window.wardenSeen = Date.now(); o.disconnect(); }} }});
               o.observe(t, {{ subtree: true, childList: true, attributes: true }}); return true; }})()"
        ))
        .await;
        let at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as f64;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let seen = b.wait("window.wardenSeen", Duration::from_secs(10), "offline shown").await;
        shown.push(seen.as_f64().unwrap() - at);
        // Let it come back before the next kill.
        b.wait(
            &format!("document.querySelector('tbody[data-server=\"{name}\"] tr.instance').dataset.state === 'healthy'"),
            Duration::from_secs(30),
            "healthy again",
        )
        .await;
    }

    // The flood: events into the page's pipeline at a fixed rate; frames counted per second,
    // the heap and the DOM's size sampled every 10 s.
    let rate = o.events_per_second;
    b.eval(&format!(
        "(() => {{
           const s = window.wardenFlood = {{ fps: [], heap: [], nodes: [], sent: 0, stop: false }};
           let frames = 0, second = performance.now();
           const frame = now => {{ frames++; if (now - second >= 1000) {{ s.fps.push(frames * 1000 / (now - second)); frames = 0; second = now; }}
             if (!s.stop) requestAnimationFrame(frame); }};
           requestAnimationFrame(frame);
           // Paced by the clock, not by the timer's cadence: each tick sends what is due.
           let k = 0;
           const t0 = performance.now();
           s.tick = setInterval(() => {{
             const due = Math.floor({rate} * (performance.now() - t0) / 1000) - s.sent;
             const batch = [];
             for (let i = 0; i < due; i++, k++) {{
               const server = 's' + String(k % {n}).padStart(3, '0');
               const up = (k / {n} | 0) % 2 === 0;
               batch.push({{ kind: 'state_changed', server, instance: server + '#0', at: new Date().toISOString(),
                 message: up ? 'healthy → warning' : 'warning → healthy',
                 data: {{ from: up ? 'healthy' : 'warning', to: up ? 'warning' : 'healthy', reason: up ? 'flood' : null }} }});
             }}
             s.sent += batch.length;
             if (batch.length) window.wardenLive.deliver(batch);
           }}, 10);
           s.sample = setInterval(() => {{
             s.heap.push(performance.memory ? performance.memory.usedJSHeapSize : null);
             s.nodes.push(document.getElementsByTagName('*').length);
           }}, 10000);
           return true; }})()"
    ))
    .await;
    let flood_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(o.flood_seconds)).await;
    let elapsed = flood_started.elapsed().as_secs_f64();
    let result = b
        .eval(
            "(() => { const s = window.wardenFlood; s.stop = true; clearInterval(s.tick); clearInterval(s.sample);
               return { fps: s.fps, heap: s.heap, nodes: s.nodes, sent: s.sent, live: window.wardenLive.counters() }; })()",
        )
        .await;
    b.screenshot("bench-flood").await;
    b.finish().await;

    let fps: Vec<f64> = serde_json::from_value(result["fps"].clone()).unwrap_or_default();
    let heap: Vec<Option<f64>> = serde_json::from_value(result["heap"].clone()).unwrap_or_default();
    let nodes: Vec<f64> = serde_json::from_value(result["nodes"].clone()).unwrap_or_default();
    let sent = result["sent"].as_f64().unwrap_or(0.0);
    let batches = result["live"]["batches"].as_f64().unwrap_or(0.0);
    let heap: Vec<f64> = heap.into_iter().flatten().map(|b| b / 1_048_576.0).collect();
    // The first minute warms up (JIT, caches); growth is measured from there to the end.
    let warm = heap.get(5).or(heap.first()).copied().unwrap_or(0.0);
    let last = heap.last().copied().unwrap_or(0.0);
    let max = heap.iter().copied().fold(0.0, f64::max);
    let below_30 = fps.iter().filter(|f| **f < 30.0).count();
    let mut out = String::from("\n## Dashboard (headless Chromium, Debian package)\n\n");
    out += &format!(
        "Assets embedded in the binary: {:.1} KB raw, **{:.1} KB gzip** (budget 200 KB compressed).\n\n",
        raw as f64 / 1024.0,
        gz as f64 / 1024.0
    );
    out += &format!(
        "With {n} supervised servers (real `warden misbehave` children), {} fresh page loads:\n\n\
         | measure | median | max |\n|---|---|---|\n\
         | first render of every server row (from navigation) | {:.0} ms | {:.0} ms |\n\
         | DOMContentLoaded | {:.0} ms | {:.0} ms |\n\
         | `kill -9` of a child → its row offline ({} kills) | {:.0} ms | {:.0} ms |\n\n",
        o.loads,
        median(&first),
        first.iter().copied().fold(0.0, f64::max),
        median(&dcl),
        dcl.iter().copied().fold(0.0, f64::max),
        shown.len(),
        median(&shown),
        shown.iter().copied().fold(0.0, f64::max),
    );
    out += &format!(
        "Event flood: {:.0} events/s for {:.0} s into the page's event pipeline ({:.0} events in {:.0} render batches), \
         each causing the overview's per-server refresh against the live Warden:\n\n\
         | measure | value |\n|---|---|\n\
         | frames/s, median of 1 s windows | {:.1} |\n\
         | frames/s, 5th percentile / minimum | {:.1} / {:.1} |\n\
         | 1 s windows below 30 fps | {below_30} of {} |\n\
         | JS heap after the first minute → end (max) | {:.1} → {:.1} MB ({:.1} MB) |\n\
         | DOM elements, first sample → last | {:.0} → {:.0} |\n",
        sent / elapsed,
        elapsed,
        sent,
        batches,
        median(&fps),
        crate::quantile(&fps, 0.05),
        fps.iter().copied().fold(f64::INFINITY, f64::min),
        fps.len(),
        warm,
        last,
        max,
        nodes.first().copied().unwrap_or(0.0),
        nodes.last().copied().unwrap_or(0.0),
    );
    out
}
