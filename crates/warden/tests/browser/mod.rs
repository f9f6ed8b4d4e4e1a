//! A real browser for the dashboard tests, headless, driven through WebDriver with the
//! fantoccini client: Debian's `chromium` through `chromedriver` (packages `chromium` and
//! `chromium-driver`), or Debian's `firefox-esr` through `geckodriver` (built from crates.io);
//! `.ci/run` installs them. Nothing is downloaded at test time. The dashboard benchmark
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
    pub kind: Kind,
    driver: std::process::Child,
    _profile: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

fn find(env: &str, candidates: &[&str], packages: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists()).unwrap_or_else(|| {
        panic!("{} not found (set {env}): install {packages} (.ci/run does)", candidates[0])
    })
}

/// Which browser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Debian's `chromium` through `chromedriver` (package `chromium-driver`).
    Chromium,
    /// Debian's `firefox-esr` through `geckodriver` (built from crates.io by `.ci/run`).
    Firefox,
}

/// One browser at a time per test binary: each is a heavy process on a 2-core machine, and
/// the tests' time limits are for one.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Browser {
    /// A fresh headless browser; `dark` asks for `prefers-color-scheme: dark`.
    pub async fn start(kind: Kind, dark: bool) -> Self {
        let turn = ONE_AT_A_TIME.lock().await;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let profile = tempfile::tempdir().unwrap();
        let (driver_bin, caps) = match kind {
            Kind::Chromium => {
                let driver = find(
                    "CHROMEDRIVER",
                    &["/usr/bin/chromedriver"],
                    "the Debian package chromium-driver",
                );
                let chromium = find(
                    "CHROMIUM",
                    &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
                    "the Debian package chromium",
                );
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
                (driver, caps)
            }
            Kind::Firefox => {
                let home = std::env::var("HOME").unwrap_or_default();
                let cargo_bin = format!("{home}/.cargo/bin/geckodriver");
                let driver = find(
                    "GECKODRIVER",
                    &[&cargo_bin, "/usr/local/bin/geckodriver", "/usr/bin/geckodriver"],
                    "geckodriver (cargo install geckodriver)",
                );
                let firefox = find(
                    "FIREFOX",
                    &["/usr/bin/firefox-esr", "/usr/bin/firefox"],
                    "the Debian package firefox-esr",
                );
                // 0: dark, 1: light. No update checks, telemetry or other traffic off this machine.
                let caps = json!({
                    "browserName": "firefox",
                    "moz:firefoxOptions": {
                        "binary": firefox,
                        "args": ["-headless", "-width", "1400", "-height", "1000"],
                        "prefs": {
                            "layout.css.prefers-color-scheme.content-override": if dark { 0 } else { 1 },
                            "app.update.enabled": false,
                            "datareporting.policy.dataSubmissionEnabled": false,
                            "toolkit.telemetry.enabled": false,
                            "network.captive-portal-service.enabled": false,
                            "browser.safebrowsing.malware.enabled": false,
                            "browser.safebrowsing.phishing.enabled": false,
                        },
                    },
                });
                (driver, caps)
            }
        };
        let driver = {
            use std::os::unix::process::CommandExt;
            let mut c = std::process::Command::new(&driver_bin);
            c.arg(format!("--port={port}"));
            if kind == Kind::Firefox {
                // geckodriver needs a home for its profiles; keep them in ours.
                c.env("TMPDIR", profile.path());
            }
            c.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("{} does not start: {e}", driver_bin.display()))
        };
        let caps = caps.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
                Ok(c) => break c,
                Err(e) => {
                    assert!(started.elapsed() < Duration::from_secs(60), "no browser session: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        Self { client, driver, _profile: profile, kind, _turn: turn }
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

    /// Saves a screenshot under `target/dashboard-screenshots/` (kept as a CI artifact), named
    /// for the browser.
    pub async fn screenshot(&self, name: &str) {
        let name =
            format!("{}-{name}", if self.kind == Kind::Chromium { "chromium" } else { "firefox" });
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
