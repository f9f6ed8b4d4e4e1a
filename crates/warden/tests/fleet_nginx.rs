//! The shipped nginx config (`deploy/nginx/warden-fleet.conf`) in front of three `warden run`
//! replicas on one real PostgreSQL (issue 16): nginx from the Debian packages, run without
//! root from a throw-away `nginx.conf` that includes the shipped file with this test's ports.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::fleet::*;
use common::*;
use warden_testkit::postgres::Postgres;

const NGINX: &str = "/usr/sbin/nginx";

/// nginx serving the shipped config on `front` in front of `replicas`, everything it writes
/// under `dir`.
fn nginx(dir: &Path, front: u16, replicas: &[u16]) -> tokio::process::Child {
    let shipped =
        std::fs::read_to_string(workspace_root().join("deploy/nginx/warden-fleet.conf")).unwrap();
    let mut conf = String::new();
    let mut k = 0;
    for line in shipped.lines() {
        let t = line.trim_start();
        if t.starts_with("listen 7420") {
            conf.push_str(&format!("    listen 127.0.0.1:{front};\n"));
        } else if t.starts_with("server 127.0.0.1:742") {
            let rest = t.split_once(' ').unwrap().1.split_once(' ').unwrap().1;
            conf.push_str(&format!("    server 127.0.0.1:{} {rest}\n", replicas[k]));
            k += 1;
        } else {
            conf.push_str(line);
            conf.push('\n');
        }
    }
    assert_eq!(k, 3, "the shipped config names three replicas");
    let d = dir.display();
    std::fs::write(dir.join("warden-fleet.conf"), conf).unwrap();
    let main = format!(
        "events {{}}\nhttp {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    \
         proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
         uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n    \
         include {d}/warden-fleet.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    tokio::process::Command::new(NGINX)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        // One process (no master): `kill_on_drop` kills all of nginx. With a master, the SIGKILL
        // left its worker running after the test (seen: one orphaned worker per CI run).
        .arg("-g")
        .arg(format!("daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log;"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Read-only calls through the shipped nginx config, from rmcp on a legacy and a 2026-07-28
/// session, while two of the three replicas are `kill -9`ed one after the other: none fails
/// after one retry 250 ms later (nginx passes a POST to the next replica when it could not
/// connect, and takes a replica out after it failed), and none takes longer than its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)] // each client's counts, for whoever reads the test log
async fn read_only_calls_through_the_shipped_nginx_config_survive_replicas_killed() {
    assert!(Path::new(NGINX).exists(), "nginx is missing: install nginx-light (.ci/run does)");
    let pg = Postgres::started().await;
    let url = pg.create_database("nginx");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut replicas = three_replicas(&config, &url, dir.path()).await;
    let ports: Vec<u16> = replicas
        .iter()
        .map(|(_, base)| base.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    let front = free_port();
    let ngx = dir.path().join("nginx");
    std::fs::create_dir_all(&ngx).unwrap();
    let _nginx = nginx(&ngx, front, &ports);
    let lb = format!("http://127.0.0.1:{front}");
    let started = Instant::now();
    while !matches!(reqwest::get(format!("{lb}/readyz")).await, Ok(r) if r.status() == 200) {
        assert!(
            started.elapsed() < LIMIT,
            "nginx did not come up: {:?}",
            std::fs::read_to_string(ngx.join("error.log"))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    healthy_on_every_replica(&replicas[0].1, "alpha").await;

    const DEADLINE: Duration = Duration::from_secs(10);
    let mcp = format!("{lb}/mcp");
    let until = Instant::now() + Duration::from_secs(14);
    let drive = |modern: bool| {
        let mcp = mcp.clone();
        tokio::spawn(async move {
            let mut c = client(&mcp, modern).await.expect("a session through nginx");
            let (mut calls, mut retried, mut failed, mut slowest) =
                (0_u64, 0_u64, Vec::new(), Duration::ZERO);
            while Instant::now() < until {
                let t = Instant::now();
                let mut outcome = tokio::time::timeout(DEADLINE, call(&c, calls)).await;
                if !matches!(outcome, Ok(Ok(()))) {
                    retried += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    if c.is_closed() {
                        c = client(&mcp, modern).await.expect("a new session through nginx");
                    }
                    outcome = tokio::time::timeout(DEADLINE, call(&c, calls)).await;
                }
                match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failed.push(format!("call {calls}: {e}")),
                    Err(_) => failed.push(format!("call {calls}: past the deadline")),
                }
                slowest = slowest.max(t.elapsed());
                calls += 1;
            }
            let _ = c.cancel().await;
            (calls, retried, failed, slowest)
        })
    };
    let clients = [(false, drive(false)), (true, drive(true))];
    for k in [0, 1] {
        tokio::time::sleep(Duration::from_secs(4)).await;
        signal(replicas[k].0.id().unwrap(), nix::sys::signal::Signal::SIGKILL);
        let _ = replicas[k].0.wait().await;
    }
    for (modern, task) in clients {
        let which = if modern { "2026-07-28" } else { "legacy" };
        let (calls, retried, failed, slowest) = task.await.unwrap();
        eprintln!(
            "rmcp {which} through nginx: {calls} calls, {retried} retried, slowest {slowest:?}"
        );
        assert!(calls > 50, "{which}: {calls} calls");
        assert!(failed.is_empty(), "{which}: {} of {calls} failed: {failed:#?}", failed.len());
        assert!(slowest < DEADLINE, "{which}: a call took {slowest:?}");
    }
    drop(replicas);
    drop(pg);
}
