//! The fleet (issue 16): three `warden run` replicas against one, each behind its own HAProxy
//! (Debian's), on one PostgreSQL (Debian's, started here), the same upstream program
//! (`warden misbehave`, one stdio child per replica) and the same client, measured in
//! interleaved rounds; then client-visible errors while replicas are killed, the leader's
//! failover time, and the database writes a replica makes (for docs/scale.md).

use std::path::Path;
use std::time::{Duration, Instant};

use warden_testkit::postgres::Postgres;

use crate::gateway::{client, echo};
use crate::proc::{free_port, CpuMeter, Proc};
use crate::quantile;

const HAPROXY: &str = "/usr/sbin/haproxy";
/// A call that has not answered in this long counts as an error.
const CALL_DEADLINE: Duration = Duration::from_secs(10);

struct Fleet {
    /// `(process, port, id)` of each replica.
    replicas: Vec<(Proc, u16, String)>,
    _haproxy: Proc,
    /// The load balancer's aggregated MCP endpoint.
    mcp: String,
    database: String,
}

fn replica(warden: &Path, cfg: &Path, url: &str, state: &Path, id: &str, port: u16) -> Proc {
    Proc(
        std::process::Command::new(warden)
            .args(["run", "--log-level", "warn", "--listen", &format!("127.0.0.1:{port}"), "-c"])
            .arg(cfg)
            .env("WARDEN_DB", url)
            .env("WARDEN_REPLICA", id)
            .env("XDG_STATE_HOME", state)
            .env("WARDEN_LOG_DIR", "none")
            .env_remove("WARDEN_TOKEN")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// HAProxy in front of `ports`: the shipped config's balancing, checks and Host rewrite.
fn haproxy(dir: &Path, name: &str, front: u16, ports: &[u16]) -> Proc {
    let servers: String =
        ports.iter().enumerate().map(|(k, p)| format!("    server w{k} 127.0.0.1:{p}\n")).collect();
    let cfg = format!(
        "defaults\n    mode http\n    option http-keep-alive\n    timeout connect 5s\n    \
         timeout client 5m\n    timeout server 5m\n\nfrontend f\n    bind 127.0.0.1:{front}\n    \
         default_backend b\n\nbackend b\n    balance leastconn\n    option httpchk GET /readyz\n    \
         http-check send ver HTTP/1.1 hdr Host 127.0.0.1\n    retries 3\n    option redispatch 1\n    \
         retry-on conn-failure empty-response response-timeout\n    \
         http-request disable-l7-retry unless METH_GET || METH_HEAD || METH_OPTIONS\n    \
         http-request set-header Host 127.0.0.1\n    default-server check inter 2s fastinter 500ms downinter 1s fall 3 rise 2 \
         observe layer7 error-limit 1 on-error mark-down\n{servers}"
    );
    let path = dir.join(format!("{name}.cfg"));
    std::fs::write(&path, cfg).unwrap();
    Proc(
        std::process::Command::new(HAPROXY)
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn start(warden: &Path, pg: &Postgres, dir: &Path, name: &str, n: usize) -> Fleet {
    let url = pg.create_database(name);
    let database = url.rsplit('/').next().unwrap().to_owned();
    let cfg = dir.join(format!("{name}.json"));
    let exe = serde_json::to_string(&warden.display().to_string()).unwrap();
    std::fs::write(
        &cfg,
        format!(r#"{{ "mcpServers": {{ "up": {{ "command": {exe}, "args": ["misbehave"] }} }} }}"#),
    )
    .unwrap();
    let replicas: Vec<(Proc, u16, String)> = (0..n)
        .map(|k| {
            let (port, id) = (free_port(), format!("{name}-{k}"));
            let p = replica(warden, &cfg, &url, &dir.join(&id), &id, port);
            (p, port, id)
        })
        .collect();
    let front = free_port();
    let ports: Vec<u16> = replicas.iter().map(|r| r.1).collect();
    let haproxy = haproxy(dir, name, front, &ports);
    Fleet { replicas, _haproxy: haproxy, mcp: format!("http://127.0.0.1:{front}/mcp"), database }
}

async fn ready(url: &str) {
    let start = Instant::now();
    while !reqwest::get(url).await.is_ok_and(|r| r.status() == 200) {
        assert!(start.elapsed() < Duration::from_secs(60), "{url} never ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Transactions committed in `database` so far (PostgreSQL's own statistics).
fn transactions(pg: &Postgres, database: &str) -> f64 {
    let q = format!("SELECT xact_commit FROM pg_stat_database WHERE datname = '{database}'");
    pg.query("postgres", &q).parse().unwrap_or(f64::NAN)
}

/// Rows in the tables a replica fills as it runs.
fn rows(pg: &Postgres, database: &str) -> f64 {
    let q =
        "SELECT (SELECT count(*) FROM integration_health_metrics) + (SELECT count(*) FROM events)";
    pg.query(database, q).parse().unwrap_or(f64::NAN)
}

/// `clients` sessions calling `up__echo` back to back for `secs`: calls/s, errors, the
/// replicas' CPU µs per call, and the same above what they spend idle (`idle` cores: their
/// heartbeats, views, probes and samples, which a call does not cost).
async fn load(f: &Fleet, clients: usize, secs: u64, idle: f64) -> (f64, u64, f64, f64) {
    let mut sessions = vec![];
    for _ in 0..clients {
        sessions.push(client(&f.mcp).await);
    }
    let meters: Vec<CpuMeter> = f.replicas.iter().map(|r| CpuMeter::start(r.0.pid())).collect();
    let started = Instant::now();
    let mut tasks = vec![];
    for s in sessions {
        tasks.push(tokio::spawn(async move {
            let (mut calls, mut errors) = (0_u64, 0_u64);
            let call = echo_up();
            while started.elapsed() < Duration::from_secs(secs) {
                match tokio::time::timeout(CALL_DEADLINE, s.peer().call_tool(call.clone())).await {
                    Ok(Ok(_)) => calls += 1,
                    _ => errors += 1,
                }
            }
            let _ = s.cancel().await;
            (calls, errors)
        }));
    }
    let (mut calls, mut errors) = (0, 0);
    for t in tasks {
        let (c, e) = t.await.unwrap();
        calls += c;
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_s: f64 = meters.iter().map(|m| m.percent() / 100.0 * elapsed).sum();
    let per_call = |s: f64| s * 1e6 / calls.max(1) as f64;
    (calls as f64 / elapsed, errors, per_call(cpu_s), per_call(cpu_s - idle * elapsed))
}

fn echo_up() -> rmcp::model::CallToolRequestParams {
    let mut c = echo();
    c.name = "up__echo".into();
    c
}

pub(crate) fn report(warden: &Path, rounds: usize, secs: u64) -> String {
    if !Path::new(HAPROXY).exists() {
        return "\n## Fleet\n\nSkipped: haproxy is not installed (Debian package haproxy).\n"
            .into();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::init(warden_testkit::postgres::PASSWORD);
    pg.wait_ready();
    let mut three = start(warden, &pg, dir.path(), "three", 3);
    let one = start(warden, &pg, dir.path(), "one", 1);
    let mut out =
        String::from("\n## Fleet (three replicas vs one, behind HAProxy, one PostgreSQL)\n\n");
    rt.block_on(async {
        for f in [&three, &one] {
            for (_, port, _) in &f.replicas {
                ready(&format!("http://127.0.0.1:{port}/readyz")).await;
            }
            ready(&f.mcp.replace("/mcp", "/readyz")).await;
        }
        // Warm up: the children up, HAProxy's checks passed, every replica seen a session.
        for f in [&three, &one] {
            load(f, 8, 3, 0.0).await;
        }
        eprintln!("fleet: warmed up; measuring idle writes for 60 s");
        // Idle writes: transactions and rows a minute, per replica (nothing called).
        let (t3, r3, t1, r1) = (
            transactions(&pg, &three.database),
            rows(&pg, &three.database),
            transactions(&pg, &one.database),
            rows(&pg, &one.database),
        );
        let meters: Vec<Vec<CpuMeter>> = [&three, &one]
            .iter()
            .map(|f| f.replicas.iter().map(|r| CpuMeter::start(r.0.pid())).collect())
            .collect();
        tokio::time::sleep(Duration::from_secs(60)).await;
        // Cores each fleet's replicas spend idle, all together.
        let idle_cores: Vec<f64> =
            meters.iter().map(|m| m.iter().map(|m| m.percent() / 100.0).sum()).collect();
        let idle3 = (transactions(&pg, &three.database) - t3) / 3.0;
        let idle1 = transactions(&pg, &one.database) - t1;
        let rows3 = (rows(&pg, &three.database) - r3) / 3.0;
        let rows1 = rows(&pg, &one.database) - r1;

        let mut table: Vec<[Vec<f64>; 2]> = vec![Default::default(); 6];
        let mut errors = [0_u64; 2];
        // One replica at a third of the 8-client load: what each of three replicas carries.
        let mut third: [Vec<f64>; 2] = Default::default();
        let tx_before = [transactions(&pg, &three.database), transactions(&pg, &one.database)];
        let mut calls_total = [0.0_f64; 2];
        for round in 0..rounds {
            eprintln!("fleet: load round {}/{rounds}", round + 1);
            for (k, f) in [&three, &one].into_iter().enumerate() {
                for (row, clients) in [8_usize, 32].into_iter().enumerate() {
                    let (rate, e, cpu, above_idle) = load(f, clients, secs, idle_cores[k]).await;
                    table[row * 2][k].push(rate);
                    table[row * 2 + 1][k].push(cpu);
                    table[4 + row][k].push(above_idle);
                    errors[k] += e;
                    calls_total[k] += rate * secs as f64;
                }
                if k == 1 {
                    let (rate, _, cpu, _) = load(f, 3, secs, idle_cores[1]).await;
                    third[0].push(rate);
                    third[1].push(cpu);
                    calls_total[1] += rate * secs as f64;
                }
            }
        }
        // Minutes each fleet was under load: two points a round (three for one replica).
        let loaded = |k: usize| rounds as f64 * (2 + k) as f64 * secs as f64 / 60.0;
        let per_call = |k: usize, idle_per_min: f64, n: f64, db: &str| {
            let tx = transactions(&pg, db) - tx_before[k] - idle_per_min * n * loaded(k);
            tx / calls_total[k]
        };
        let pc3 = per_call(0, idle3, 3.0, &three.database);
        let pc1 = per_call(1, idle1, 1.0, &one.database);
        let med = |v: &Vec<f64>| quantile(v, 0.5);
        out += &format!(
            "{rounds} interleaved rounds of {secs} s per point, medians; `up__echo` through \
             HAProxy's aggregated `/mcp`; CPU is the replicas' own (user + system), summed.\n\n\
             | | three replicas | one replica | ratio |\n|---|---|---|---|\n"
        );
        let names = ["calls/s, 8 clients", "Warden CPU µs per call, 8 clients", "calls/s, 32 clients", "Warden CPU µs per call, 32 clients", "Warden CPU µs per call above idle, 8 clients", "Warden CPU µs per call above idle, 32 clients"];
        for (row, name) in names.iter().enumerate() {
            let (a, b) = (med(&table[row][0]), med(&table[row][1]));
            out += &format!("| {name} | {a:.0} | {b:.0} | {:.2}× |\n", a / b);
        }
        out += &format!(
            "| client errors under load | {} | {} | |\n\
             | database transactions per replica-minute, idle | {idle3:.0} | {idle1:.0} | |\n\
             | rows written per replica-minute, idle (1 instance, samples every 10 s, events) | {rows3:.0} | {rows1:.0} | |\n\
             | database transactions per call, under load | {pc3:.4} | {pc1:.4} | |\n\n\
             One replica at a third of the 8-client load (3 clients, what each of three replicas \
             carries): {:.0} calls/s, **{:.0} µs CPU per call**.\n\n\
             Idle, the replicas spend {:.1} % of a core together (three) and {:.1} % (one): \
             heartbeats, views, probes and samples. \"Above idle\" subtracts that from the CPU \
             under load: what the calls themselves cost.\n\n",
            errors[0],
            errors[1],
            med(&third[0]),
            med(&third[1]),
            idle_cores[0] * 100.0,
            idle_cores[1] * 100.0
        );

        eprintln!("fleet: replicas killed under load");
        // Replicas killed under load: 8 clients for 20 s, a replica kill -9ed every 5 s and
        // started again; errors as the client sees them, then after one retry 250 ms later.
        let url3 = pg.url(&three.database);
        let started = Instant::now();
        let mut sessions = vec![];
        for _ in 0..8 {
            sessions.push(client(&three.mcp).await);
        }
        let mut tasks = vec![];
        for s in sessions {
            tasks.push(tokio::spawn(async move {
                let (mut calls, mut raw, mut failed) = (0_u64, 0_u64, 0_u64);
                let once = async || {
                    matches!(
                        tokio::time::timeout(CALL_DEADLINE, s.peer().call_tool(echo_up())).await,
                        Ok(Ok(_))
                    )
                };
                while started.elapsed() < Duration::from_secs(20) {
                    calls += 1;
                    if !once().await {
                        raw += 1;
                        // As clients retry: after a short pause (see fleet_chaos.rs).
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        if !once().await {
                            failed += 1;
                        }
                    }
                }
                (calls, raw, failed)
            }));
        }
        for victim in 0..3 {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let (p, port, id) = &mut three.replicas[victim];
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.pid() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = p.0.wait();
            let cfg = dir.path().join("three.json");
            *p = replica(warden, &cfg, &url3, &dir.path().join(&*id), id, *port);
        }
        let (mut calls, mut raw, mut failed) = (0, 0, 0);
        for t in tasks {
            let (c, r, f) = t.await.unwrap();
            calls += c;
            raw += r;
            failed += f;
        }
        out += &format!(
            "Three replicas, 8 clients for 20 s, a replica `kill -9`ed every 5 s (3 kills) and \
             started again: {calls} calls, {raw} errors as the client saw them, {failed} after \
             one retry 250 ms later.\n\n"
        );

        eprintln!("fleet: the leader killed, 3 times");
        // The leader killed: how long until another replica leads.
        for (_, port, _) in &three.replicas {
            ready(&format!("http://127.0.0.1:{port}/readyz")).await;
        }
        let mut times = vec![];
        for _ in 0..3 {
            let doc = |port: u16| async move {
                reqwest::get(format!("http://127.0.0.1:{port}/api/servers?scope=fleet"))
                    .await
                    .ok()?
                    .json::<serde_json::Value>()
                    .await
                    .ok()
            };
            let mut leader = None;
            let waited = Instant::now();
            while leader.is_none() && waited.elapsed() < Duration::from_secs(30) {
                for (k, (_, port, _)) in three.replicas.iter().enumerate() {
                    if doc(*port).await.is_some_and(|d| d["leading"] == true) {
                        leader = Some(k);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let Some(k) = leader else { break };
            let killed = Instant::now();
            let (p, port, id) = &mut three.replicas[k];
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.pid() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = p.0.wait();
            let (dead_port, dead_id) = (*port, id.clone());
            'wait: while killed.elapsed() < Duration::from_secs(30) {
                for (j, (_, port, _)) in three.replicas.iter().enumerate() {
                    if j != k && doc(*port).await.is_some_and(|d| d["leading"] == true) {
                        times.push(killed.elapsed().as_secs_f64());
                        break 'wait;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let cfg = dir.path().join("three.json");
            three.replicas[k].0 =
                replica(warden, &cfg, &url3, &dir.path().join(&dead_id), &dead_id, dead_port);
            ready(&format!("http://127.0.0.1:{dead_port}/readyz")).await;
        }
        out += &format!(
            "Leader killed (`kill -9`), 3 times: another replica led after {} s (median {:.1} s; \
             target ≤ 10 s).\n",
            times.iter().map(|t| format!("{t:.1}")).collect::<Vec<_>>().join(", "),
            quantile(&times, 0.5)
        );
        let rss: Vec<String> = three
            .replicas
            .iter()
            .map(|r| format!("{:.0}", crate::proc::rss_mib(r.0.pid())))
            .collect();
        out += &format!("Replica RSS at the end: {} MiB.\n", rss.join(", "));
    });
    drop(three);
    drop(one);
    drop(pg);
    out
}
