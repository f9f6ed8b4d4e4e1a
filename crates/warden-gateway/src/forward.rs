//! Sending one client request to a server: pick an instance, forward with the client's
//! progress and cancellation, account the outcome (passive health, breaker, latency), and retry
//! once elsewhere when that is safe, inside the retry budget and the original deadline.
//! Identical concurrent calls to safe tools share one upstream call; tools the operator marks
//! cacheable are answered from a TTL cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{ErrorCode, ProgressNotificationParam};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::ErrorData;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use warden_core::{FailureClass, InstanceId, Reason};
use warden_supervisor::CallOutcome;
use warden_upstream::{Call, Origin, Reply, UpstreamError};

use crate::route::{Table, Unavailable};
use crate::{UNAVAILABLE, UPSTREAM_FAILED};

/// JSON-RPC code rmcp and the specification use for a cancelled request.
const CANCELLED: i32 = -32800;

pub(crate) fn unavailable(u: Unavailable) -> ErrorData {
    ErrorData::new(
        ErrorCode(UNAVAILABLE),
        format!("server {:?} is unavailable: {}", u.server, u.reason),
        Some(json!({ "server": u.server, "reason": u.reason, "retry_after_ms": u.retry_after_ms })),
    )
}

pub(crate) fn failed(server: &str, e: &UpstreamError) -> ErrorData {
    if matches!(e, UpstreamError::Cancelled) {
        return ErrorData::new(ErrorCode(CANCELLED), "request cancelled", None);
    }
    ErrorData::new(
        ErrorCode(UPSTREAM_FAILED),
        format!("server {server:?} failed: {e}"),
        Some(json!({ "server": server, "reason": e.reason(), "retry_after_ms": 1000 })),
    )
}

/// What to forward.
pub(crate) struct Request<'a> {
    /// The server the client named.
    pub(crate) server: &'a str,
    pub(crate) method: &'static str,
    /// Params with names already as the server knows them.
    pub(crate) params: Value,
    /// A `tools/call`'s arguments, the JSON text of an object (`params` has none then).
    pub(crate) arguments: Option<Arc<str>>,
    /// For `tools/call`: the tool, which the chosen instance must offer.
    pub(crate) tool: Option<&'a str>,
}

/// Removes what must not travel upstream from a client's params: protocol metadata that rmcp
/// sets per session (it differs by negotiated version) and the client's own progress token
/// (Warden's replaces it and is mapped back).
pub(crate) fn clean_params(mut params: Value) -> Value {
    if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
        meta.retain(|k, _| k != "progressToken" && !k.starts_with("io.modelcontextprotocol/"));
        if meta.is_empty() {
            params.as_object_mut().map(|p| p.remove("_meta"));
        }
    }
    params
}

/// Whether the client can answer a server's requests (it declared sampling, elicitation or
/// roots): then a call's result may derive from that session's answers.
pub(crate) fn client_answers(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.peer.peer_info().is_some_and(|p| declares_answers(&p.capabilities))
}

/// Whether these client capabilities include sampling, elicitation or roots.
pub(crate) fn declares_answers(c: &rmcp::model::ClientCapabilities) -> bool {
    c.sampling.is_some() || c.elicitation.is_some() || c.roots.is_some()
}

/// Whether a server's JSON-RPC error is the caller's doing rather than the server's failing.
fn callers_mistake(code: i32) -> bool {
    code == ErrorCode::INVALID_PARAMS.0
        || code == ErrorCode::METHOD_NOT_FOUND.0
        || code == ErrorCode::INVALID_REQUEST.0
        || code == ErrorCode::RESOURCE_NOT_FOUND.0
}

/// Forwards `req` (see [`forward_attempts`]) and counts a `tools/call` in the named server's
/// tool usage. An error there is a failure for the server's sake (Warden's unavailable and
/// failed codes, or the server's own JSON-RPC error); `isError` results, the caller's mistakes
/// and cancellations are calls, not errors. Latency is as the client sees it, retry included.
pub(crate) async fn forward(
    routes: &Table,
    req: &Request<'_>,
    ctx: &RequestContext<RoleServer>,
    origin: Origin,
) -> Result<Reply, ErrorData> {
    let (Some(tool), Some(server)) = (req.tool, routes.server(req.server)) else {
        return forward_attempts(routes, req, ctx, origin, &mut false).await;
    };
    let started = Instant::now();
    let args = crate::usage::fingerprint(req.arguments.as_deref());
    let mut offered = false;
    let result = forward_attempts(routes, req, ctx, origin, &mut offered).await;
    let failed =
        result.as_ref().is_err_and(|e| e.code.0 != CANCELLED && !callers_mistake(e.code.0));
    // A call refused before reaching an instance counts if the server offered the tool when
    // last listed (a name no server offers is the caller's mistake, and not kept).
    if offered || (failed && server.tool(tool).is_some()) {
        server.usage.record(tool, started.elapsed(), failed, args);
    }
    result
}

/// Forwards `req` and returns the server's result as JSON; sets `offered` once an instance
/// offering the tool is chosen. One `mcp.call` span per call, for OpenTelemetry export
/// (`warden --features otlp`); it costs a level check when that is off.
#[tracing::instrument(
    level = "debug",
    target = "warden::trace",
    name = "mcp.call",
    skip_all,
    fields(server = req.server, method = req.method, tool = req.tool),
    err(Display, level = "debug")
)]
async fn forward_attempts(
    routes: &Table,
    req: &Request<'_>,
    ctx: &RequestContext<RoleServer>,
    origin: Origin,
    offered: &mut bool,
) -> Result<Reply, ErrorData> {
    let started = Instant::now();
    let named = routes.server(req.server);
    if let Some(s) = named {
        s.budget.lock().expect("not poisoned").deposit();
    }
    let client_answers = client_answers(ctx);
    let mut tried: Vec<InstanceId> = Vec::new();
    let mut last: Option<UpstreamError> = None;
    let mut deadline: Option<Instant> = None;
    for attempt in 0..2 {
        let exclude: Vec<&InstanceId> = tried.iter().collect();
        let pick = match routes.pick(req.server, &exclude) {
            Ok(p) => p,
            Err(u) if attempt == 0 => {
                if let Some(s) = named {
                    s.metrics.unavailable();
                }
                return Err(unavailable(u));
            }
            // No other instance for the retry: report the failure that made us retry.
            Err(_) => {
                return Err(failed(req.server, last.as_ref().expect("a retry follows a failure")))
            }
        };
        // The tool as the instance listed it. An instance that just connected may not have
        // been listed yet: the call goes to it all the same (the server decides), but is not
        // repeated elsewhere since nothing says the tool is safe to repeat.
        let (entry, unlisted) = match req.tool {
            Some(tool) => match pick.instance.link.catalog() {
                Some(catalog) => {
                    let entry = catalog.tools.iter().find(|t| t.name == tool).cloned();
                    if entry.is_none() {
                        // Not a call: give the breaker's trial back.
                        pick.instance.record(None);
                        return Err(ErrorData::invalid_params(
                            format!("unknown tool {tool:?}"),
                            None,
                        ));
                    }
                    *offered = true;
                    (entry, false)
                }
                None => (None, true),
            },
            None => (None, false),
        };
        if let Some(s) = named.filter(|s| !std::ptr::eq(*s, pick.serving)) {
            s.metrics.failover(&pick.serving.spec.name);
        }
        // Read-only protocol methods are always safe to repeat; tools only when marked so.
        let safe = !unlisted && entry.as_ref().is_none_or(|t| pick.serving.safe_tool(t));
        let timeout = pick.serving.call_timeout();
        let deadline = *deadline.get_or_insert(started + timeout);
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            pick.instance.record(None);
            let e = last.take().unwrap_or(UpstreamError::Timeout(timeout));
            return Err(failed(req.server, &e));
        }
        // Progress is relayed by this task while it waits for the answer: no task per call
        // (rmcp clients put a progress token on every request, most never see an update).
        let (progress, mut updates) = match ctx.meta.get_progress_token() {
            Some(token) => {
                let (tx, rx) = mpsc::unbounded_channel::<warden_upstream::Progress>();
                (Some(tx), Some((token, rx)))
            }
            None => (None, None),
        };
        let call = Call {
            method: req.method.to_owned(),
            params: Some(req.params.clone()),
            arguments: req.arguments.clone(),
            timeout: remaining,
            deadline: Some(deadline),
            origin,
            cancel: ctx.ct.clone(),
            progress,
            client_answers,
        };
        let guard = pick.instance.link.begin_call();
        let sent = Instant::now();
        let (result, rtt) = match &mut updates {
            None => {
                let r = pick.session.request(call).await;
                (r, sent.elapsed())
            }
            Some((token, rx)) => {
                let answer = pick.session.request(call);
                tokio::pin!(answer);
                let done = loop {
                    tokio::select! {
                        biased;
                        r = &mut answer => break (r, sent.elapsed()),
                        Some(p) = rx.recv() => relay_progress(ctx, token, p).await,
                    }
                };
                // Every update that arrived before the answer goes out before it.
                while let Ok(p) = rx.try_recv() {
                    relay_progress(ctx, token, p).await;
                }
                done
            }
        };
        drop(guard);
        let link = &pick.instance.link;
        match result {
            Ok(value) => {
                // isError is the tool's answer, not the server's failure.
                let tool_error = value.peek().is_error;
                link.report(rtt, if tool_error { CallOutcome::Ignorable } else { CallOutcome::Ok });
                pick.instance.ewma.lock().expect("not poisoned").observe(rtt);
                pick.instance.record(Some(true));
                return Ok(value);
            }
            Err(UpstreamError::Cancelled) => {
                pick.instance.record(None);
                return Err(failed(req.server, &UpstreamError::Cancelled));
            }
            Err(UpstreamError::Server { code, message }) => {
                if callers_mistake(code) {
                    link.report(rtt, CallOutcome::Ignorable);
                    pick.instance.record(None);
                } else {
                    link.report(
                        rtt,
                        CallOutcome::Failed(Reason::new(
                            FailureClass::ServerError,
                            format!("{code}: {message}"),
                        )),
                    );
                    // The server answered: it is alive, and its answer goes to the client as is.
                    pick.instance.record(Some(false));
                }
                pick.instance.ewma.lock().expect("not poisoned").observe(rtt);
                return Err(ErrorData::new(ErrorCode(code), message, None));
            }
            Err(e) => {
                link.report(rtt, CallOutcome::Failed(e.reason()));
                pick.instance.record(Some(false));
                let budget =
                    pick.serving.budget.lock().expect("not poisoned").withdraw(Instant::now());
                if attempt == 0 && safe && budget && Instant::now() < deadline {
                    tracing::info!(server = %req.server, method = req.method, instance = %pick.instance.id, error = %e, "retrying on another instance");
                    if let Some(s) = named {
                        s.metrics.retry();
                    }
                    tried.push(pick.instance.id.clone());
                    last = Some(e);
                    continue;
                }
                if attempt == 0 && safe && !budget {
                    if let Some(s) = named {
                        s.metrics.retry_denied();
                    }
                    tracing::warn!(server = %req.server, "retry budget exhausted; not retrying");
                }
                return Err(failed(req.server, &e));
            }
        }
    }
    Err(failed(req.server, last.as_ref().expect("two attempts end in a failure")))
}

type Shared = Option<Result<Reply, ErrorData>>;

/// Identical calls in flight at once share one upstream call.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, watch::Receiver<Shared>>>,
    /// How many calls were answered by another call's result.
    pub(crate) joined: std::sync::atomic::AtomicU64,
}

/// Removes a leader's entry however the leader ends (answered, failed, dropped).
struct Leader<'a> {
    flights: &'a Flights,
    key: String,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.flights.map.lock().expect("not poisoned").remove(&self.key);
    }
}

impl Flights {
    /// Runs `call` unless an identical one is in flight, in which case its result is shared.
    /// A follower whose leader was cancelled or dropped runs its own call.
    pub(crate) async fn run<F>(
        &self,
        key: String,
        cancel: &tokio_util::sync::CancellationToken,
        call: impl FnOnce() -> F,
    ) -> Result<Reply, ErrorData>
    where
        F: std::future::Future<Output = Result<Reply, ErrorData>>,
    {
        let follow = {
            let mut map = self.map.lock().expect("not poisoned");
            match map.get(&key) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    map.insert(key.clone(), rx);
                    Ok(tx)
                }
            }
        };
        match follow {
            Ok(tx) => {
                let leader = Leader { flights: self, key };
                let result = call().await;
                drop(leader);
                let _ = tx.send(Some(result.clone()));
                result
            }
            Err(mut rx) => {
                let shared = tokio::select! {
                    r = rx.wait_for(Option::is_some) => r.ok().and_then(|v| v.clone()),
                    _ = cancel.cancelled() => {
                        return Err(ErrorData::new(ErrorCode(CANCELLED), "request cancelled", None));
                    }
                };
                match shared {
                    Some(Err(e)) if e.code.0 == CANCELLED => call().await,
                    Some(r) => {
                        self.joined.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        r
                    }
                    None => call().await,
                }
            }
        }
    }
}

/// Results of tools the operator marked cacheable, fresh for their TTL.
#[derive(Default)]
pub(crate) struct ResultCache {
    map: Mutex<HashMap<String, (Instant, Reply)>>,
    pub(crate) hits: std::sync::atomic::AtomicU64,
}

const CACHE_CAP: usize = 10_000;

impl ResultCache {
    pub(crate) fn get(&self, key: &str) -> Option<Reply> {
        let map = self.map.lock().expect("not poisoned");
        let (until, v) = map.get(key)?;
        (Instant::now() < *until).then(|| {
            self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            v.clone()
        })
    }

    pub(crate) fn put(&self, key: String, ttl: Duration, value: Reply) {
        let now = Instant::now();
        let mut map = self.map.lock().expect("not poisoned");
        if map.len() >= CACHE_CAP {
            map.retain(|_, (until, _)| *until > now);
            if map.len() >= CACHE_CAP {
                map.clear();
            }
        }
        map.insert(key, (now + ttl, value));
    }
}

/// Sends one progress update to the client under its own token (a gone client is ignored): on
/// the HTTP lane's own answer stream for a call the lane runs, else through rmcp's peer (which
/// puts it on the call's stream).
async fn relay_progress(
    ctx: &RequestContext<RoleServer>,
    token: &rmcp::model::ProgressToken,
    p: warden_upstream::Progress,
) {
    let mut note = ProgressNotificationParam::new(token.clone(), p.progress);
    note.total = p.total;
    note.message = p.message;
    match ctx.extensions.get::<crate::http_lane::LaneContext>() {
        Some(lane) => {
            let _ = lane.progress.send(note);
        }
        None => {
            let _ = ctx.peer.notify_progress(note).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_params_strips_protocol_meta_and_the_progress_token() {
        let p = json!({"name": "t", "_meta": {"progressToken": 7, "io.modelcontextprotocol/protocolVersion": "x", "trace": "keep"}});
        assert_eq!(clean_params(p), json!({"name": "t", "_meta": {"trace": "keep"}}));
        let p = json!({"name": "t", "_meta": {"progressToken": 7}});
        assert_eq!(clean_params(p), json!({"name": "t"}));
    }

    #[tokio::test(start_paused = true)]
    async fn identical_calls_share_one_upstream_call() {
        let flights = Flights::default();
        let calls = std::sync::atomic::AtomicU32::new(0);
        let never = tokio_util::sync::CancellationToken::new();
        let call = || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(Reply::from_value(&json!({"n": 1})))
        };
        let (a, b, c) = tokio::join!(
            flights.run("k".into(), &never, call),
            flights.run("k".into(), &never, call),
            flights.run("other".into(), &never, call),
        );
        assert_eq!(a.unwrap(), json!({"n": 1}));
        assert_eq!(b.unwrap(), json!({"n": 1}));
        assert!(c.is_ok());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2, "k once, other once");
        assert_eq!(flights.joined.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Afterwards the key is free again.
        flights.run("k".into(), &never, call).await.unwrap();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_of_a_cancelled_leader_calls_itself() {
        let flights = Flights::default();
        let never = tokio_util::sync::CancellationToken::new();
        let leader = async {
            flights
                .run("k".into(), &never, || async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err(ErrorData::new(ErrorCode(CANCELLED), "request cancelled", None))
                })
                .await
        };
        let follower = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            flights.run("k".into(), &never, || async { Ok(Reply::from_value(&json!("own"))) }).await
        };
        let (l, f) = tokio::join!(leader, follower);
        assert!(l.is_err());
        assert_eq!(f.unwrap(), json!("own"));
    }

    #[tokio::test(start_paused = true)]
    async fn cached_results_expire() {
        let cache = ResultCache::default();
        cache.put("k".into(), Duration::from_secs(30), Reply::from_value(&json!(1)));
        assert_eq!(cache.get("k").unwrap(), json!(1));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(cache.get("k").is_none());
    }
}
