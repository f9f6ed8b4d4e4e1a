//! A real browser for the dashboard tests: Debian's `chromium`, headless, driven through
//! `chromedriver` (packages `chromium` and `chromium-driver`, which `.ci/run` installs) with the
//! fantoccini WebDriver client. Nothing is downloaded at test time. The dashboard benchmark
//! (`bench/src/dashboard.rs`) includes this file too.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// The workspace (the directory with Cargo.lock): this file also serves the benchmark.
fn workspace_root() -> PathBuf {
    let mut p = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !p.join("Cargo.lock").exists() {
        assert!(p.pop(), "no Cargo.lock above {}", env!("CARGO_MANIFEST_DIR"));
    }
    p
}

/// chromedriver (in its own process group, so chromium goes with it) and a session.
pub struct Browser {
    pub client: Client,
    driver: std::process::Child,
    _profile: tempfile::TempDir,
}

fn find(env: &str, candidates: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists()).unwrap_or_else(|| {
        panic!(
            "{} not found (set {env}): install the Debian packages chromium and chromium-driver \
             (.ci/run does)",
            candidates[0]
        )
    })
}

impl Browser {
    /// A fresh headless browser; `dark` asks for `prefers-color-scheme: dark`.
    pub async fn start(dark: bool) -> Self {
        let driver_bin = find("CHROMEDRIVER", &["/usr/bin/chromedriver"]);
        let chromium = find("CHROMIUM", &["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = {
            use std::os::unix::process::CommandExt;
            std::process::Command::new(&driver_bin)
                .arg(format!("--port={port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .spawn()
                .expect("chromedriver starts")
        };
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1400,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if dark {
            args.push("--blink-settings=preferredColorScheme=0".into());
            args.push("--force-dark-mode".into());
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let caps = caps.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
                Ok(c) => break c,
                Err(e) => {
                    assert!(started.elapsed() < Duration::from_secs(30), "no browser session: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        Self { client, driver, _profile: profile }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Evaluates `return (expr)` in the page.
    pub async fn eval(&self, expr: &str) -> Value {
        self.client.execute(&format!("return ({expr});"), vec![]).await.unwrap()
    }

    /// Polls `expr` every 50 ms until it is truthy; panics with `what` after `limit`.
    pub async fn wait(&self, expr: &str, limit: Duration, what: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = self.eval(expr).await;
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return v;
            }
            if started.elapsed() > limit {
                self.screenshot(&format!("timeout-{}", what.replace(' ', "-"))).await;
                panic!("{what}: not within {limit:?} ({expr} = {v})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        self.client.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    /// Saves a screenshot under `target/dashboard-screenshots/` (kept as a CI artifact).
    pub async fn screenshot(&self, name: &str) {
        if let Ok(png) = self.client.screenshot().await {
            let dir = workspace_root().join("target/dashboard-screenshots");
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join(format!("{name}.png")), png);
        }
    }

    /// axe-core's serious and critical violations on the page as it is now.
    pub async fn accessibility_violations(&self) -> Vec<String> {
        let axe = workspace_root().join("tests/npm/node_modules/axe-core/axe.min.js");
        let source = std::fs::read_to_string(&axe).unwrap_or_else(|_| {
            panic!("{} is missing: run `npm ci --prefix tests/npm`", axe.display())
        });
        self.client.execute(&format!("{source}\nreturn true;"), vec![]).await.unwrap();
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] }).then(r => done(
                   r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map(n => n.target.join(' ')).slice(0, 3).join('; ')}`)),
                   e => done([`axe failed: ${e}`]));",
                vec![],
            )
            .await
            .unwrap();
        serde_json::from_value(found).unwrap()
    }

    /// The Content-Security-Policy violations the page recorded (app.js keeps them).
    pub async fn csp_violations(&self) -> Vec<String> {
        serde_json::from_value(
            self.eval("window.wardenCspViolations || ['app.js did not run']").await,
        )
        .unwrap()
    }

    /// Ends the session; dropping then ends chromedriver and the browser.
    pub async fn finish(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test: end chromedriver and the browser it started (their group).
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.driver.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.driver.wait();
    }
}
