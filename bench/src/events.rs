//! The cost of the live event stream: one `warden run` under a steady event load (servers that
//! change their tool list every 20 ms, so Warden re-lists them and emits `catalog_listed`),
//! measured with 0, 1 and 50 SSE subscribers on `/events`, in interleaved windows of the same
//! process. Loopback only; every window is bounded.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::proc::{self, CpuMeter};
use crate::quantile;

/// Servers producing the load, and how often each changes its tools.
const SERVERS: usize = 10;
const CHANGE_EVERY: &str = "20ms";
const CONFIGS: [usize; 3] = [0, 1, 50];

/// What one window measured.
#[derive(Default)]
struct Window {
    cpu: f64,
    rss_mib: f64,
    /// Events per second seen by one subscriber (the first).
    rate: Option<f64>,
    /// Event `at` → received by a subscriber, ms, every subscriber's every event.
    delivery_ms: Vec<f64>,
    /// `GET /livez` round trips during the window, ms.
    livez_ms: Vec<f64>,
    dropped: u64,
}

pub(crate) fn stream_cost(warden: &std::path::Path, rounds: usize, seconds: u64) -> String {
    let dir = tempfile::tempdir().unwrap();
    let servers: Vec<(String, String)> = (0..SERVERS)
        .map(|i| {
            let spec = crate::misbehave(warden, &["--tools-change-every", CHANGE_EVERY], "");
            (format!("load{i}"), spec)
        })
        .collect();
    let cfg = proc::write_config(dir.path(), &servers);
    let port = proc::free_port();
    let w = proc::run_warden(warden, dir.path(), &cfg, port);
    let pid = w.pid();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let results = rt.block_on(async {
        proc::wait_healthy(&base, Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut results: Vec<(usize, Window)> = vec![];
        for _ in 0..rounds {
            for subs in CONFIGS {
                results.push((subs, window(&base, pid, subs, seconds).await));
            }
        }
        results
    });
    drop(w);
    report(&results, rounds, seconds)
}

/// One measured window with `subs` subscribers connected.
async fn window(base: &str, pid: u32, subs: usize, seconds: u64) -> Window {
    let recording = Arc::new(AtomicBool::new(false));
    let delivery = Arc::new(Mutex::new(Vec::<f64>::new()));
    let first_count = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let mut tasks = vec![];
    for n in 0..subs {
        let res = reqwest::Client::new()
            .get(format!("{base}/events"))
            .send()
            .await
            .expect("subscribe to /events");
        assert!(res.status().is_success());
        let (recording, delivery, first_count, dropped) =
            (recording.clone(), delivery.clone(), first_count.clone(), dropped.clone());
        tasks.push(tokio::spawn(async move {
            read_stream(res, n == 0, &recording, &delivery, &first_count, &dropped).await
        }));
    }
    // Let the subscribers settle in.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let livez = Arc::new(Mutex::new(Vec::<f64>::new()));
    let prober = {
        let (url, recording, livez) = (format!("{base}/livez"), recording.clone(), livez.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let t = Instant::now();
                let ok = http.get(&url).send().await.is_ok_and(|r| r.status().is_success());
                if ok && recording.load(Ordering::Relaxed) {
                    livez.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let cpu = CpuMeter::start(pid);
    let t0 = Instant::now();
    recording.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    recording.store(false, Ordering::Relaxed);
    let cpu = cpu.percent();
    let elapsed = t0.elapsed().as_secs_f64();
    let rss_mib = proc::rss_mib(pid);
    prober.abort();
    for t in &tasks {
        t.abort();
    }
    // Let Warden notice the disconnects before the next window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delivery_ms = std::mem::take(&mut *delivery.lock().unwrap());
    let livez_ms = std::mem::take(&mut *livez.lock().unwrap());
    Window {
        cpu,
        rss_mib,
        rate: (subs > 0).then(|| first_count.load(Ordering::Relaxed) as f64 / elapsed),
        delivery_ms,
        livez_ms,
        dropped: dropped.load(Ordering::Relaxed),
    }
}

/// Reads one SSE stream; while recording, notes each event's delivery latency from its `at`.
async fn read_stream(
    mut res: reqwest::Response,
    first: bool,
    recording: &AtomicBool,
    delivery: &Mutex<Vec<f64>>,
    first_count: &AtomicU64,
    dropped: &AtomicU64,
) {
    let mut buf = String::new();
    let mut mine = vec![];
    while let Ok(Some(chunk)) = res.chunk().await {
        let now = chrono::Utc::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(nl) = buf.find('\n') {
            let line: String = buf.drain(..=nl).collect();
            let Some(data) = line.strip_prefix("data: ") else { continue };
            if data.contains(r#""kind":"dropped""#) {
                dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if !recording.load(Ordering::Relaxed) {
                continue;
            }
            // Only the timestamp is needed: no full JSON parse on the client's side.
            let at = data
                .split_once(r#""at":""#)
                .and_then(|(_, rest)| rest.split_once('"'))
                .and_then(|(t, _)| chrono::DateTime::parse_from_rfc3339(t).ok());
            if let Some(at) = at {
                let ms = (now - at.to_utc()).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                mine.push(ms);
                if first {
                    first_count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if mine.len() >= 256 {
            delivery.lock().unwrap().append(&mut mine);
        }
    }
    delivery.lock().unwrap().append(&mut mine);
}

fn report(results: &[(usize, Window)], rounds: usize, seconds: u64) -> String {
    let mut rows = String::new();
    let mut cpu_median = vec![];
    for subs in CONFIGS {
        let ws: Vec<&Window> = results.iter().filter(|(s, _)| *s == subs).map(|(_, w)| w).collect();
        let cpu: Vec<f64> = ws.iter().map(|w| w.cpu).collect();
        let rss: Vec<f64> = ws.iter().map(|w| w.rss_mib).collect();
        let rate: Vec<f64> = ws.iter().filter_map(|w| w.rate).collect();
        let delivery: Vec<f64> = ws.iter().flat_map(|w| w.delivery_ms.iter().copied()).collect();
        let livez: Vec<f64> = ws.iter().flat_map(|w| w.livez_ms.iter().copied()).collect();
        let dropped: u64 = ws.iter().map(|w| w.dropped).sum();
        let c = quantile(&cpu, 0.5);
        cpu_median.push(c);
        let or_dash = |xs: &[f64], q: f64| {
            if xs.is_empty() {
                "–".to_owned()
            } else {
                format!("{:.2}", quantile(xs, q))
            }
        };
        rows += &format!(
            "| {subs} | {c:.1} ({:.1}–{:.1}) | {:.1} | {} | {} / {} / {} | {:.2} / {:.2} | {dropped} |\n",
            cpu.iter().copied().fold(f64::INFINITY, f64::min),
            cpu.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            quantile(&rss, 0.5),
            if rate.is_empty() { "–".to_owned() } else { format!("{:.0}", quantile(&rate, 0.5)) },
            or_dash(&delivery, 0.5),
            or_dash(&delivery, 0.99),
            if delivery.is_empty() {
                "–".to_owned()
            } else {
                format!("{:.2}", delivery.iter().copied().fold(f64::NAN, f64::max))
            },
            quantile(&livez, 0.5),
            quantile(&livez, 0.99),
        );
    }
    let per_sub = (cpu_median[2] - cpu_median[0]) / 50.0;
    format!(
        "## Event stream: 0, 1 and 50 SSE subscribers under an event load, {rounds} rounds × {seconds} s\n\n\
         One `warden run` with {SERVERS} servers that change their tool list every {CHANGE_EVERY} \
         (Warden re-lists each and emits `catalog_listed`); the three subscriber counts take turns \
         in the same process, {rounds} windows each. Subscribers read `/events` over loopback in the \
         bench process; delivery = the event's `at` → the subscriber has its line.\n\n\
         | subscribers | Warden CPU, % of one core, median (min–max) | RSS, MiB | events/s per subscriber | delivery p50 / p99 / max, ms | `/livez` p50 / p99, ms | dropped |\n\
         |---|---|---|---|---|---|---|\n{rows}\n\
         50 subscribers add {:.1} points of one core over none ({per_sub:.3} per subscriber); \
         each event is serialized once and copied to each subscriber.\n\n",
        cpu_median[2] - cpu_median[0],
    )
}
