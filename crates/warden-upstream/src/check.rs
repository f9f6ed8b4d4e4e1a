//! Integrations that are not MCP servers: an HTTP endpoint, a TCP port, a command's exit code,
//! a PostgreSQL or SQLite connection. Each is one [`Session`] whose probe runs the check, so the
//! supervisor watches it with the same states, incidents, alerts and reports as a server.
//!
//! `connect()` runs one check and succeeds only if it passes within the start-up deadline, so a
//! target that is down is `offline` and retried with backoff, like a remote server. Failures are
//! classified by cause: refused or unreachable is a lost connection (`connection_error`, the
//! instance goes offline and reconnects); no answer in time is `timeout`; HTTP 401/403 or a
//! refused PostgreSQL login `authentication`; 429 `rate_limit`; an unexpected status, exit code
//! or SQL error `server_error`; a body that is not JSON or a field that does not match
//! `protocol_error`. Messages are short and never carry a configured secret.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use sqlx::{ConnectOptions, Connection};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warden_config::{CheckSpec, CommandCheck, HttpCheck, HttpMethod, ProbeMethod, ServerSpec};
use warden_core::{ExitInfo, FailureClass, InstanceId};

use crate::lines::{last_line, MAX_STDERR_LINE};
use crate::{
    Activity, BoxFuture, Call, Catalog, Connected, Connector, PeerInfo, Session, StopPolicy,
    UpstreamError,
};

/// Most of a body read for a JSON field; more is a protocol error.
const MAX_BODY: usize = 1024 * 1024;
/// Longest stderr line shown in a reason.
const MAX_STDERR: usize = 200;
/// Longest field value shown in a reason.
const MAX_VALUE: usize = 80;

/// Connects (= runs a first check) to an integration.
pub struct CheckConnector {
    inner: Arc<Checker>,
}

impl CheckConnector {
    pub fn new(spec: ServerSpec) -> Self {
        Self { inner: Arc::new(Checker::new(spec)) }
    }
}

impl Connector for CheckConnector {
    fn connect(
        &self,
        _instance: InstanceId,
        deadline: Duration,
    ) -> BoxFuture<'_, Result<Connected, UpstreamError>> {
        Box::pin(async move {
            // The sender stays with the session: a closed channel would mean "session ended".
            let (events, rx) = mpsc::channel(1);
            let session = CheckSession {
                checker: Arc::clone(&self.inner),
                activity: Arc::new(Activity::new()),
                stop: CancellationToken::new(),
                _events: events,
            };
            session.run(deadline).await?;
            let info = PeerInfo {
                protocol_version: String::new(),
                server_name: format!("{} {}", self.inner.check.kind(), self.inner.check.target()),
                server_version: String::new(),
                modern: false,
            };
            Ok(Connected { session: Box::new(session), events: rx, info })
        })
    }
}

/// What one check needs: the spec, an HTTP client, and the secrets to scrub from messages.
struct Checker {
    name: String,
    check: CheckSpec,
    http: reqwest::Client,
    /// Secret values with what may be shown instead, longest first.
    secrets: Vec<(String, String)>,
}

impl Checker {
    fn new(spec: ServerSpec) -> Self {
        let warden_config::Transport::Check(check) = spec.transport else {
            panic!("CheckConnector needs an integration (Transport::Check)");
        };
        // No redirects (a 301 is an answer to report) and no idle connections kept: every
        // check opens a new one, so a dead listener is noticed at once.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .build()
            .expect("a default reqwest client builds");
        let mut secrets = Vec::new();
        let hidden = |v: &str| (v.to_owned(), "***".to_owned());
        match &check {
            CheckSpec::Http(h) | CheckSpec::Llm(h) => {
                secrets.push((h.url.expose().to_owned(), h.display_url.clone()));
                for v in h.headers.values() {
                    secrets.push(hidden(v.expose()));
                    if let Some((_, token)) = v.expose().split_once(' ') {
                        secrets.push(hidden(token.trim()));
                    }
                }
            }
            CheckSpec::Command(c) => {
                secrets.extend(c.env.values().map(|v| hidden(v.expose())));
                for (arg, shown) in c.args.iter().zip(&c.display_args) {
                    if arg != shown {
                        secrets.push((arg.clone(), shown.clone()));
                    }
                }
            }
            CheckSpec::Postgres { url, display } => {
                secrets.push((url.expose().to_owned(), display.clone()));
                if let Some(p) = password_of(url.expose()) {
                    secrets.push(hidden(&p));
                }
            }
            CheckSpec::Tcp { .. } | CheckSpec::Sqlite { .. } => {}
        }
        secrets.retain(|(s, _)| !s.is_empty());
        secrets.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Self { name: spec.name, check, http, secrets }
    }

    fn scrub(&self, mut s: String) -> String {
        for (secret, shown) in &self.secrets {
            if s.contains(secret.as_str()) {
                s = s.replace(secret.as_str(), shown);
            }
        }
        s
    }

    async fn check(&self, timeout: Duration) -> Result<(), UpstreamError> {
        match &self.check {
            CheckSpec::Http(h) | CheckSpec::Llm(h) => self.http(h, timeout).await,
            CheckSpec::Tcp { address } => tcp(address).await,
            CheckSpec::Command(c) => self.command(c).await,
            CheckSpec::Postgres { url, .. } => self.postgres(url.expose(), timeout).await,
            CheckSpec::Sqlite { path } => sqlite(path, timeout).await,
        }
    }

    async fn http(&self, h: &HttpCheck, timeout: Duration) -> Result<(), UpstreamError> {
        let method = match h.method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Head => reqwest::Method::HEAD,
        };
        let mut req = self.http.request(method, h.url.expose()).timeout(timeout);
        for (k, v) in &h.headers {
            req = req.header(k.as_str(), v.expose());
        }
        let mut resp = req.send().await.map_err(|e| reqwest_error(&e, timeout))?;
        let status = resp.status().as_u16();
        let expected = if h.expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            h.expect_status.contains(&status)
        };
        if !expected {
            let wanted = match h.expect_status.as_slice() {
                [] => "2xx".to_owned(),
                list => list.iter().map(u16::to_string).collect::<Vec<_>>().join(", "),
            };
            let message = format!("HTTP {status} (expected {wanted})");
            let class = match status {
                401 | 403 => FailureClass::Authentication,
                429 => FailureClass::RateLimit,
                _ => FailureClass::ServerError,
            };
            return Err(UpstreamError::Check { class, message });
        }
        let Some(field) = &h.json_field else { return Ok(()) };
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| reqwest_error(&e, timeout))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY {
                return Err(protocol(format!("body is larger than {} KiB", MAX_BODY / 1024)));
            }
        }
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| protocol(format!("body is not JSON ({e})")))?;
        let name = &field.shown;
        let Some(value) = json.pointer(&field.pointer) else {
            return Err(protocol(format!("json field {name} is missing")));
        };
        match &h.json_equals {
            Some(want) if !json_equal(value, want) => Err(protocol(format!(
                "json field {name} is {} (expected {})",
                shorten(&value.to_string(), MAX_VALUE),
                shorten(&want.to_string(), MAX_VALUE)
            ))),
            Some(_) => Ok(()),
            None if matches!(value, serde_json::Value::Null | serde_json::Value::Bool(false)) => {
                Err(protocol(format!("json field {name} is {value}")))
            }
            None => Ok(()),
        }
    }

    async fn command(&self, c: &CommandCheck) -> Result<(), UpstreamError> {
        let mut cmd = tokio::process::Command::new(&c.command);
        // The allow-list (or everything, with `inherit_env`), then the check's own env.
        warden_core::child_env::inherit(&mut cmd, c.inherit_env);
        cmd.args(&c.args)
            .envs(c.env.iter().map(|(k, v)| (k, v.expose())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: a timeout or a dropped check kills everything it started.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &c.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| {
            UpstreamError::Connect(self.scrub(format!("could not start {:?}: {e}", c.command)))
        })?;
        // Declared after `child`, so dropped first: the group is killed while its leader is
        // not yet reaped (its pid cannot have been reused).
        let group = GroupGuard(child.id().unwrap_or(0));
        let stderr = child.stderr.take().expect("stderr is piped");
        let last_line = tokio::spawn(last_line(stderr));
        let status = child.wait().await;
        // Whatever it left running in its group goes too.
        drop(group);
        let status = status.map_err(|e| UpstreamError::Connect(format!("wait failed: {e}")))?;
        let (stderr, cut) = tokio::time::timeout(Duration::from_millis(200), last_line)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let mut stderr = shorten(&self.scrub(stderr), MAX_STDERR);
        if cut {
            stderr.push_str(&format!(" (a stderr line over {} KiB, cut)", MAX_STDERR_LINE / 1024));
        }
        match status.code() {
            Some(code) if code == c.expect_exit => Ok(()),
            Some(code) => {
                let expected = if c.expect_exit == 0 {
                    String::new()
                } else {
                    format!(" (expected {})", c.expect_exit)
                };
                let message = if stderr.is_empty() {
                    format!("exit code {code}{expected}")
                } else {
                    format!("exit code {code}{expected}: {stderr}")
                };
                Err(UpstreamError::Check { class: FailureClass::ServerError, message })
            }
            None => {
                use std::os::unix::process::ExitStatusExt;
                let exit = ExitInfo {
                    code: None,
                    signal: status.signal(),
                    at: warden_core::now(),
                    pid: None,
                };
                Err(UpstreamError::Check {
                    class: FailureClass::ServerError,
                    message: exit.describe(),
                })
            }
        }
    }

    async fn postgres(&self, url: &str, timeout: Duration) -> Result<(), UpstreamError> {
        let options: sqlx::postgres::PgConnectOptions =
            url.parse().map_err(|_| UpstreamError::Check {
                class: FailureClass::ConnectionError,
                message: "the postgres URL is not valid".into(),
            })?;
        let options = options.application_name("warden").disable_statement_logging();
        // A fresh connection per check (no pool): the check proves a new one works.
        let mut conn = sqlx::postgres::PgConnection::connect_with(&options)
            .await
            .map_err(|e| self.sql_error(e, timeout))?;
        let result = sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| self.sql_error(e, timeout));
        // A polite goodbye, off the check's clock.
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.close()).await;
        });
        result.map(|_| ())
    }

    fn sql_error(&self, e: sqlx::Error, timeout: Duration) -> UpstreamError {
        sql_error(e, timeout, |s| self.scrub(s))
    }
}

fn protocol(message: String) -> UpstreamError {
    UpstreamError::Check { class: FailureClass::ProtocolError, message }
}

/// Equal JSON values; numbers compare by value (`1` equals `1.0`).
fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a, b) {
        (serde_json::Value::Number(x), serde_json::Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// At most `max` characters, with `…` when cut.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

/// A send or body error. Its text is taken from the source chain, which never holds the URL.
fn reqwest_error(e: &reqwest::Error, timeout: Duration) -> UpstreamError {
    if e.is_timeout() {
        return UpstreamError::Timeout(timeout);
    }
    match crate::error::from_reqwest(e) {
        UpstreamError::Timeout(_) => UpstreamError::Timeout(timeout),
        other => other,
    }
}

async fn tcp(address: &str) -> Result<(), UpstreamError> {
    let addrs: Vec<_> = tokio::net::lookup_host(address)
        .await
        .map_err(|e| UpstreamError::Connect(format!("cannot resolve {address}: {e}")))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    Err(UpstreamError::Connect(last.unwrap_or_else(|| format!("{address} has no address"))))
}

async fn sqlite(path: &Path, timeout: Duration) -> Result<(), UpstreamError> {
    // Never created: a missing file is a target that is not there.
    if !path.exists() {
        return Err(UpstreamError::Connect(format!("{}: no such file", path.display())));
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false)
        .busy_timeout(timeout)
        .disable_statement_logging();
    let mut conn = sqlx::sqlite::SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| sql_error(e, timeout, |s| s))?;
    // Reads the schema: a file that is not a database fails here.
    let result = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sqlite_master")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| sql_error(e, timeout, |s| s));
    let _ = conn.close().await;
    result.map(|_| ())
}

/// Classifies a database error by its kind and SQLSTATE (or SQLite result code).
fn sql_error(e: sqlx::Error, timeout: Duration, scrub: impl Fn(String) -> String) -> UpstreamError {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            // PostgreSQL: 28P01 invalid password, 28000 invalid authorization (pg_hba).
            if code.starts_with("28") {
                return UpstreamError::Check {
                    class: FailureClass::Authentication,
                    message: format!("authentication failed (SQLSTATE {code})"),
                };
            }
            // SQLite: 14 SQLITE_CANTOPEN (gone, or not readable).
            if code == "14" {
                return UpstreamError::Connect(shorten(&scrub(db.message().to_owned()), 200));
            }
            let message = shorten(&scrub(db.message().to_owned()), 200);
            UpstreamError::Check {
                class: FailureClass::ServerError,
                message: if code.is_empty() { message } else { format!("{message} ({code})") },
            }
        }
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            UpstreamError::Timeout(timeout)
        }
        sqlx::Error::Io(io) => UpstreamError::Connect(scrub(io.to_string())),
        sqlx::Error::Tls(t) => UpstreamError::Connect(scrub(format!("TLS: {t}"))),
        sqlx::Error::Protocol(p) => protocol(shorten(&scrub(p), 200)),
        sqlx::Error::Configuration(_) => UpstreamError::Check {
            class: FailureClass::ConnectionError,
            message: "the connection settings are not valid".into(),
        },
        other => UpstreamError::Check {
            class: FailureClass::ServerError,
            message: shorten(&scrub(other.to_string()), 200),
        },
    }
}

/// The password in a `postgres://user:password@…` URL.
fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    userinfo.split_once(':').map(|(_, p)| p.to_owned()).filter(|p| !p.is_empty())
}

/// Kills a command's whole process group when dropped (a timeout, a stopped session).
struct GroupGuard(u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.0 != 0 {
            let _ = killpg(Pid::from_raw(self.0 as i32), Signal::SIGKILL);
        }
    }
}

/// One integration's live "session": each probe runs the check.
struct CheckSession {
    checker: Arc<Checker>,
    activity: Arc<Activity>,
    /// Cancelled by `kill()`/`shutdown()`: a check in progress ends (its command is killed).
    stop: CancellationToken,
    /// Never sends; held so the supervisor's receiver stays open while the session lives.
    _events: mpsc::Sender<crate::SessionEvent>,
}

impl CheckSession {
    /// Runs the check within `timeout`; every answer, good or bad, counts as activity.
    async fn run(&self, timeout: Duration) -> Result<Duration, UpstreamError> {
        let started = Instant::now();
        let result = tokio::select! {
            r = tokio::time::timeout(timeout, self.checker.check(timeout)) => {
                r.unwrap_or(Err(UpstreamError::Timeout(timeout)))
            }
            _ = self.stop.cancelled() => Err(UpstreamError::Closed(Some("stopped".into()))),
        };
        if !matches!(result, Err(UpstreamError::Timeout(_))) {
            self.activity.touch(1);
        }
        if let Err(e) = &result {
            tracing::debug!(server = %self.checker.name, error = %e, "check failed");
        }
        result.map(|()| started.elapsed())
    }
}

impl Session for CheckSession {
    fn probe(
        &self,
        _method: ProbeMethod,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Duration, UpstreamError>> {
        Box::pin(self.run(timeout))
    }

    fn list_catalog(&self, _timeout: Duration) -> BoxFuture<'_, Result<Catalog, UpstreamError>> {
        Box::pin(async { Ok(Catalog::default()) })
    }

    fn request(&self, call: Call) -> BoxFuture<'_, Result<crate::Reply, UpstreamError>> {
        let name = self.checker.name.clone();
        Box::pin(async move {
            Err(UpstreamError::Protocol(format!(
                "{name} is an integration, not an MCP server: it takes no {:?}",
                call.method
            )))
        })
    }

    fn activity(&self) -> Arc<Activity> {
        Arc::clone(&self.activity)
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    fn shutdown(&self, _policy: StopPolicy) -> BoxFuture<'static, Option<ExitInfo>> {
        self.stop.cancel();
        Box::pin(async { None })
    }

    fn kill(&self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
