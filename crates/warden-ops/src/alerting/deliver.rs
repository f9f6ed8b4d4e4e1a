//! Delivery: the outbox is sent in order per receiver and group, with backoff, until each
//! notification is delivered or older than `max_delivery_age`; webhooks over HTTP, command
//! hooks as child processes without a shell.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use warden_config::{Receiver, ReceiverKind, WebhookFormat};
use warden_store::Claim;

use super::{Alerts, Outgoing, RETRY_FIRST, RETRY_MAX};

/// Resolves when the leadership changes (never, once nobody can change it).
async fn changed(leading: &mut warden_store::Leading) {
    if leading.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One attempt's end: the notification, whether its receiver is still configured, and how it
/// went.
type Attempted = (Outgoing, bool, Result<(), String>);

pub(super) async fn deliver_loop(
    alerts: Alerts,
    mut leading: warden_store::Leading,
    stop: CancellationToken,
) {
    let client = reqwest::Client::builder().build().expect("a default HTTP client builds");
    // Attempts under way, each settled as it ends: a receiver that answers slowly (or only at
    // its timeout) holds up its own notifications, never another receiver's.
    let mut attempts: FuturesUnordered<BoxFuture<'static, Attempted>> = FuturesUnordered::new();
    // Only the leader sends. A follower keeps nothing in memory: what is undelivered waits in
    // the store, and a replica that becomes the leader takes it from there.
    let mut was_leading = true;
    loop {
        let is_leading = *leading.borrow_and_update();
        if is_leading && !was_leading {
            alerts.take_over().await;
        } else if !is_leading && was_leading {
            alerts.lock().outbox.clear();
        }
        was_leading = is_leading;
        let max_age = alerts.settings.borrow().max_delivery_age;
        if !is_leading {
            // Attempts begun while leading still end, and are recorded.
            tokio::select! {
                () = stop.cancelled() => return finish(&alerts, attempts, max_age, false).await,
                () = changed(&mut leading) => {}
                Some(done) = attempts.next(), if !attempts.is_empty() => {
                    settle(&alerts, done, max_age, false).await;
                }
            }
            continue;
        }
        let next = alerts.lock().next_due();
        let sleep = match next {
            Some(due) => due.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            () = stop.cancelled() => return finish(&alerts, attempts, max_age, true).await,
            () = alerts.wake.notified() => {}
            () = tokio::time::sleep(sleep) => {}
            () = changed(&mut leading) => continue,
            Some(done) = attempts.next(), if !attempts.is_empty() => {
                settle(&alerts, done, max_age, true).await;
            }
        }
        // Due, and not behind an undelivered notification for the same receiver and group.
        let due = alerts.lock().take_due(Instant::now());
        // In a fleet, a row is sent only under this replica's claim (see `claim`).
        for o in due {
            match claim(&alerts.store, &o).await {
                Claim::Mine => {}
                Claim::Settled => continue,
                Claim::Held => {
                    alerts.lock().requeue(o, Instant::now() + CLAIM_RETRY);
                    continue;
                }
            }
            // Until its attempt ends, a notification is still undelivered (the API and
            // metrics show it); it leaves `sending` under the same lock that settles it.
            alerts.lock().sending.push(o.clone());
            let receiver =
                alerts.settings.borrow().receivers.iter().find(|r| r.name == o.receiver).cloned();
            let client = client.clone();
            attempts.push(Box::pin(async move {
                let result = match &receiver {
                    Some(r) => send(&client, r, &o.body).await,
                    None => Err("the receiver is no longer configured".to_owned()),
                };
                (o, receiver.is_some(), result)
            }));
        }
    }
}

/// On stop: lets the attempts under way end, and records them (a notification a receiver got
/// must not stay pending, to be sent again at the next start). Bounded by how long shutdown
/// waits for the alerting tasks.
async fn finish(
    alerts: &Alerts,
    mut attempts: FuturesUnordered<BoxFuture<'static, Attempted>>,
    max_age: Duration,
    leading: bool,
) {
    while let Some(done) = attempts.next().await {
        settle(alerts, done, max_age, leading).await;
    }
}

/// Records how an attempt went, and counts it: delivered, queued again after a backoff (if this
/// replica still leads: else the store keeps it for the leader), or given up on.
async fn settle(alerts: &Alerts, done: Attempted, max_age: Duration, leading: bool) {
    let (mut o, known, result) = done;
    o.attempts += 1;
    let wall = Utc::now();
    let (outcome, next) = match &result {
        Ok(()) => (Ok(()), None),
        Err(e) => {
            let too_old =
                wall - o.created > chrono::Duration::from_std(max_age).unwrap_or_default();
            let next = (known && !too_old).then(|| backoff(o.attempts));
            (Err(e.as_str()), next)
        }
    };
    if let Some(id) = o.id {
        let next_wall = next.map(|d| wall + chrono::Duration::from_std(d).unwrap_or_default());
        if let Err(e) = alerts.store.notification_attempted(id, outcome, next_wall, wall).await {
            tracing::warn!(error = %e, "could not record a delivery attempt");
        }
    }
    let mut s = alerts.lock();
    s.sending.retain(|x| x.seq != o.seq);
    match (result, next) {
        (Ok(()), _) => {
            s.delivered += 1;
            tracing::info!(receiver = %o.receiver, status = o.status, attempts = o.attempts, "alert notification delivered");
        }
        (Err(e), Some(delay)) => {
            s.failed_attempts += 1;
            tracing::warn!(receiver = %o.receiver, attempts = o.attempts, error = %e, retry_in_ms = delay.as_millis() as u64, "alert notification not delivered; will retry");
            if leading {
                o.last_error = Some(e);
                s.requeue(o, Instant::now() + delay);
            }
        }
        (Err(e), None) => {
            s.failed_attempts += 1;
            s.expired += 1;
            tracing::error!(receiver = %o.receiver, attempts = o.attempts, error = %e, "alert notification given up on (kept in the store as expired)");
        }
    }
}

/// How long a replica's claim on an outbox row runs: longer than any one send can take (a
/// receiver's timeout is at most 5 minutes, and sends run side by side), so a claim
/// never runs out while its send is under way. A send lost to a crash is retried by another
/// replica this long after.
const CLAIM_LEASE: Duration = Duration::from_secs(360);
/// When to look again at a row another replica claimed (or that could not be claimed).
const CLAIM_RETRY: Duration = Duration::from_secs(15);

/// Whether this replica may send `o`. On a shared database two replicas may both believe
/// they lead for the seconds before one steps down: each row is sent only under a claim in
/// the database, so never by both. A row that could not be claimed (the database did not
/// answer) waits. On SQLite one Warden sends everything; a row the store never took (no id)
/// is sent as it is.
async fn claim(store: &warden_store::Store, o: &Outgoing) -> Claim {
    let Some(id) = o.id.filter(|_| store.is_shared()) else { return Claim::Mine };
    match store.claim_notification(id, Utc::now(), CLAIM_LEASE).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "could not claim a notification to send; will try again");
            Claim::Held
        }
    }
}

/// 1 s, 2 s, 4 s … 5 min, ±20 %.
fn backoff(attempt: u32) -> Duration {
    let base = RETRY_FIRST.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(RETRY_MAX);
    base.mul_f64(rand::Rng::gen_range(&mut rand::thread_rng(), 0.8..=1.2))
}

/// One delivery attempt.
async fn send(client: &reqwest::Client, r: &Receiver, body: &Value) -> Result<(), String> {
    match &r.kind {
        ReceiverKind::Webhook { url, display_url, headers, format } => {
            let mut target = url.expose().to_owned();
            if *format == WebhookFormat::Alertmanager
                && !target.trim_end_matches('/').ends_with("/api/v2/alerts")
            {
                target = format!("{}/api/v2/alerts", target.trim_end_matches('/'));
            }
            let mut req = match format {
                // The routing key goes in the body at send time only: never in the outbox.
                WebhookFormat::PagerDuty { routing_key } => {
                    let mut with_key = body.clone();
                    with_key["routing_key"] = Value::String(routing_key.expose().to_owned());
                    client.post(&target).timeout(r.timeout).json(&with_key)
                }
                _ => client.post(&target).timeout(r.timeout).json(body),
            };
            for (k, v) in headers {
                req = req.header(k.as_str(), v.expose());
            }
            // Errors name the display URL only: the real one may hold a credential.
            match req.send().await {
                Ok(resp) if resp.status().is_success() => Ok(()),
                Ok(resp) => Err(format!("{display_url} answered {}", resp.status())),
                Err(e) if e.is_timeout() => {
                    Err(format!("{display_url} did not answer within {:?}", r.timeout))
                }
                Err(e) if e.is_connect() => Err(format!("cannot connect to {display_url}")),
                Err(_) => Err(format!("the request to {display_url} failed")),
            }
        }
        ReceiverKind::Email { .. } => super::email::send(r, body).await,
        ReceiverKind::Command { command, args, inherit_env } => {
            run_hook(command, args, *inherit_env, body, r.timeout).await
        }
    }
}

/// Runs a command hook without a shell: the payload on stdin, the status in the environment
/// (on top of the allow-list of `warden_core::child_env`, or Warden's whole environment with
/// `inherit_env`). At most [`HOOK_STDERR`] bytes of its stderr are kept (the rest is read and
/// dropped, so the hook never blocks on a full pipe); the first line of it goes into the error.
async fn run_hook(
    command: &str,
    args: &[String],
    inherit_env: bool,
    body: &Value,
    timeout: Duration,
) -> Result<(), String> {
    /// The most of a hook's stderr kept.
    const HOOK_STDERR: usize = 4 * 1024;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cmd = tokio::process::Command::new(command);
    warden_core::child_env::inherit(&mut cmd, inherit_env);
    let mut child = cmd
        .args(args)
        .env("WARDEN_ALERT_STATUS", body.get("status").and_then(Value::as_str).unwrap_or(""))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {command}: {e}"))?;
    let input = serde_json::to_vec(body).unwrap_or_default();
    let mut stderr = child.stderr.take();
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            // A hook that does not read its input is fine.
            let _ = stdin.write_all(&input).await;
        }
        let read = async {
            let (mut kept, mut total, mut buf) = (Vec::new(), 0usize, [0u8; 8192]);
            if let Some(err) = stderr.as_mut() {
                while let Ok(n @ 1..) = err.read(&mut buf).await {
                    let room = HOOK_STDERR.saturating_sub(kept.len()).min(n);
                    kept.extend_from_slice(&buf[..room]);
                    total += n;
                }
            }
            (kept, total > HOOK_STDERR)
        };
        let (status, (err, cut)) = tokio::join!(child.wait(), read);
        status.map(|s| (s, err, cut))
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok((status, _, _))) if status.success() => Ok(()),
        Ok(Ok((status, err, cut))) => {
            let err = String::from_utf8_lossy(&err);
            let first = err.lines().next().unwrap_or("").chars().take(200).collect::<String>();
            Err(format!(
                "{command} exited with {status}{}{}",
                if first.is_empty() { String::new() } else { format!(": {first}") },
                if cut {
                    format!(" (stderr over {} KiB, cut)", HOOK_STDERR / 1024)
                } else {
                    String::new()
                }
            ))
        }
        Ok(Err(e)) => Err(format!("{command}: {e}")),
        Err(_) => Err(format!("{command} did not finish within {timeout:?}")),
    }
}

#[cfg(test)]
mod hook_tests {
    use super::*;

    #[tokio::test]
    async fn a_hooks_stderr_is_kept_to_its_bound_and_named_when_cut() {
        let script = "head -c 20000000 /dev/zero | tr '\\0' x >&2; exit 3";
        let args = ["-c".to_owned(), script.to_owned()];
        let body = serde_json::json!({ "status": "firing" });
        let e = run_hook("/bin/sh", &args, false, &body, Duration::from_secs(30))
            .await
            .expect_err("exit 3");
        assert!(e.starts_with("/bin/sh exited with exit status: 3: xxx"), "{}", &e[..80]);
        assert!(e.ends_with(" (stderr over 4 KiB, cut)"), "{}", &e[e.len() - 80..]);
        assert!(e.len() < 400);
        let args = ["-c".to_owned(), "echo short >&2; exit 1".to_owned()];
        let e = run_hook("/bin/sh", &args, false, &body, Duration::from_secs(30)).await;
        assert_eq!(e.unwrap_err(), "/bin/sh exited with exit status: 1: short");
    }
}
