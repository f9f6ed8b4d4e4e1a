//! The operator API (`/api/...`): the server view, per-instance detail, actions on servers
//! and their failover, and history from the store. Every error is `{"error": {status,
//! message}}` — the same type the guard and the 404 fallback answer with, and bad query
//! parameters too ([`Params`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, State as AxState};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use warden_core::{Event, EventBus, EventKind, Timestamp, TraceId};
use warden_gateway::{FailoverAction, Gateway};
use warden_ops::parse_instant;
use warden_store::{MetricQuery, Store};
use warden_supervisor::{Command, ServerHandle};

/// What the API acts on.
#[derive(Clone)]
pub struct Api {
    /// Every server, as the last reload left them.
    pub servers: warden_supervisor::Views,
    /// Live reload: the record, and how to ask for one.
    pub config: warden_ops::reloads::ConfigStatus,
    pub gateway: Gateway,
    pub store: Store,
    pub bus: Arc<EventBus>,
}

/// The one error type of the API.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    (status, Json(json!({ "error": { "status": status.as_u16(), "message": message } })))
        .into_response()
}

/// Most rows a history query answers with (`?limit=`).
const MAX_LIMIT: i64 = 10_000;

/// `?limit=` of a history query: `default` when absent, within 1 and [`MAX_LIMIT`].
pub fn limit(given: Option<i64>, default: i64) -> i64 {
    given.unwrap_or(default).clamp(1, MAX_LIMIT)
}

/// A store query's rows turned into an answer by `ok`, or 503 when the database did not answer.
pub fn from_store<T, E: std::fmt::Display>(
    rows: Result<T, E>,
    ok: impl FnOnce(T) -> Response,
) -> Response {
    match rows {
        Ok(rows) => ok(rows),
        Err(e) => {
            error(StatusCode::SERVICE_UNAVAILABLE, format!("the database did not answer: {e}"))
        }
    }
}

/// Query parameters whose rejection is the one error type: 400, naming the parameter.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        match Query::<T>::try_from_uri(&parts.uri) {
            Ok(Query(t)) => Ok(Self(t)),
            Err(e) => Err(error(StatusCode::BAD_REQUEST, e.body_text())),
        }
    }
}

pub fn routes(api: Api) -> Router {
    Router::new()
        .route("/api/servers/{name}", get(server))
        .route("/api/servers/{name}/instances/{index}", get(instance))
        .route("/api/servers/{name}/{action}", post(act))
        .route("/api/failover/{name}/{action}", post(failover))
        .route("/api/reload", post(reload))
        .route("/api/failures", get(failures))
        .route("/api/metrics", get(metrics))
        .with_state(api)
}

/// `POST /api/reload`: reads the config file again and applies what changed (200 with the
/// diff), or changes nothing and answers 422 with every error.
async fn reload(AxState(api): AxState<Api>) -> Response {
    match api.config.reload("api").await {
        Ok(diff) => Json(diff).into_response(),
        Err(errors) => {
            let message =
                format!("config rejected; the running config stays: {}", errors.join("; "));
            let body = json!({
                "error": { "status": 422, "message": message, "errors": errors },
            });
            (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
        }
    }
}

impl Api {
    /// The server named `name`, or why not (a 404 message).
    fn handle(&self, name: &str) -> Result<ServerHandle, String> {
        self.servers.handle(name).ok_or_else(|| format!("no server named {name:?}"))
    }

    /// Records an operator action for the other replicas sharing the database (nothing
    /// with SQLite). A failure is logged: this replica has applied it already.
    async fn share(&self, server: &str, instance: Option<u32>, kind: &str, action: &str) {
        if !self.store.is_shared() {
            return;
        }
        if let Err(e) = self.store.record_fleet_command(server, instance, kind, action).await {
            tracing::warn!(error = %e, server, action, "the other replicas could not be told of an operator action");
        }
    }

    fn record(&self, what: String) {
        tracing::info!(action = %what, "operator action");
        self.bus.emit(Event::new(
            None,
            TraceId::random(),
            EventKind::OperatorAction { action: what },
        ));
    }
}

async fn server(AxState(api): AxState<Api>, Path(name): Path<String>) -> Response {
    match api.handle(&name) {
        // The whole view, so fallbacks and failover count exactly as in `/api/servers`.
        Ok(h) => {
            let all = api.servers.get();
            match all.servers.into_iter().find(|s| s.name == h.spec.name) {
                Some(view) => {
                    let mut v = json!(view);
                    // Each listed tool's categories (the config's, else the classifier's).
                    let tools: Vec<Value> = api
                        .gateway
                        .tool_docs()
                        .into_iter()
                        .filter(|d| d.server == view.name)
                        .map(|d| json!({ "name": d.tool, "categories": d.categories, "categorized_by": d.categorized_by }))
                        .collect();
                    v["tool_categories"] = json!(tools);
                    Json(v).into_response()
                }
                None => error(StatusCode::NOT_FOUND, format!("no server named {name:?}")),
            }
        }
        Err(m) => error(StatusCode::NOT_FOUND, m),
    }
}

/// One instance: its view, plus what the gateway knows (breaker, calls in flight).
async fn instance(
    AxState(api): AxState<Api>,
    Path((name, index)): Path<(String, usize)>,
) -> Response {
    let h = match api.handle(&name) {
        Ok(h) => h,
        Err(m) => return error(StatusCode::NOT_FOUND, m),
    };
    let Some(view) = h.views().into_iter().nth(index) else {
        return error(StatusCode::NOT_FOUND, format!("{name:?} has no instance {index}"));
    };
    let breaker = api.gateway.breakers().into_iter().find(|(id, _, _)| *id == view.id);
    let in_flight = h.link(index).map_or(0, |l| l.in_flight());
    let mut v = json!(view);
    v["breaker"] = json!({
        "state": breaker.as_ref().map(|b| b.1.as_str()),
        "opened": breaker.as_ref().map(|b| b.2),
    });
    v["in_flight"] = json!(in_flight);
    Json(v).into_response()
}

#[derive(Deserialize)]
struct Target {
    /// Only this instance (index), else all of the server's.
    instance: Option<u32>,
}

/// `restart`, `stop`, `start` or `reset` a server (or one instance with `?instance=N`).
async fn act(
    AxState(api): AxState<Api>,
    Path((name, action)): Path<(String, String)>,
    Params(t): Params<Target>,
) -> Response {
    let Some(cmd) = Command::parse(&action) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no action {action:?} (restart, stop, start, reset)"),
        );
    };
    let h = match api.handle(&name) {
        Ok(h) => h,
        Err(m) => return error(StatusCode::NOT_FOUND, m),
    };
    if let Some(i) = t.instance {
        if i as usize >= h.views().len() {
            return error(StatusCode::NOT_FOUND, format!("{name:?} has no instance {i}"));
        }
    }
    let sent = h.command(cmd, t.instance).await;
    if sent == 0 {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the instance is busy with earlier commands; try again",
        );
    }
    let target = t.instance.map_or(name.clone(), |i| format!("{name}#{i}"));
    api.record(format!("{action} {target}"));
    // In a fleet, every replica stops, starts or resets its own instances of the server too
    // (a restart stays this replica's: restarting every replica at once is an outage).
    if cmd != Command::Restart {
        api.share(&name, t.instance, "server", &action).await;
    }
    (StatusCode::ACCEPTED, Json(json!({ "server": name, "action": action, "instances": sent })))
        .into_response()
}

/// `enable`, `disable`, `trigger`, `test` or `restore` a server's failover.
async fn failover(
    AxState(api): AxState<Api>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let Some(a) = FailoverAction::parse(&action) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no failover action {action:?} (enable, disable, trigger, test, restore)"),
        );
    };
    if let Err(m) = api.handle(&name) {
        return error(StatusCode::NOT_FOUND, m);
    }
    match api.gateway.failover(&name, a).await {
        Ok(v) => {
            if a != FailoverAction::Test {
                api.record(format!("failover {action} {name}"));
                api.share(&name, None, "failover", &action).await;
            }
            Json(v).into_response()
        }
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

#[derive(Deserialize)]
struct History {
    server: Option<String>,
    limit: Option<i64>,
}

async fn failures(AxState(api): AxState<Api>, Params(q): Params<History>) -> Response {
    let rows = api.store.failures(q.server.as_deref(), limit(q.limit, 100)).await;
    from_store(rows, |rows| Json(json!({ "failures": rows })).into_response())
}

/// The metrics stored for each sample (`integration_health_metrics.metric_type`).
const METRICS: [&str; 4] = ["response_time", "error_rate", "availability", "throughput"];
/// The range `/api/metrics` answers for when no `since` is given.
const DEFAULT_RANGE: Duration = Duration::from_secs(3600);

#[derive(Deserialize)]
struct Range {
    since: Option<String>,
    until: Option<String>,
    server: Option<String>,
    instance: Option<String>,
    metric: Option<String>,
    step: Option<String>,
    limit: Option<i64>,
}

impl Range {
    /// The store query, or why not, naming the first bad parameter.
    fn query(self, now: Timestamp) -> Result<MetricQuery, String> {
        let until = self.until.as_deref().map_or(Ok(now), |t| parse_instant("until", t, now))?;
        let since = match self.since.as_deref() {
            Some(t) => parse_instant("since", t, now)?,
            None => until - chrono::Duration::from_std(DEFAULT_RANGE).expect("an hour fits"),
        };
        if until <= since {
            let at = |t: Timestamp| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            return Err(format!("until ({}) must be after since ({})", at(until), at(since)));
        }
        if let Some(m) = self.metric.as_deref().filter(|m| !METRICS.contains(m)) {
            return Err(format!("metric: {m:?} is not one of {}", METRICS.join(", ")));
        }
        let step = match self.step.as_deref() {
            None => None,
            Some(text) => match warden_config::parse_duration(text) {
                Ok(d) if d.as_secs() >= 1 && d.subsec_nanos() == 0 => Some(d),
                Ok(_) => return Err(format!("step: {text:?} must be whole seconds, at least 1s")),
                Err(e) => return Err(format!("step: {e}")),
            },
        };
        Ok(MetricQuery {
            since,
            until,
            server: self.server,
            instance: self.instance,
            metric: self.metric,
            step,
            limit: limit(self.limit, MAX_LIMIT),
        })
    }
}

/// `GET /api/metrics?since=&until=&server=&instance=&metric=&step=&limit=`: stored samples in
/// `[since, until)` (default: the last hour), one series per instance and metric, oldest point
/// first; each point `[t, value]`, or with `step` one bucket `[t, avg, min, max, count]`.
async fn metrics(AxState(api): AxState<Api>, Params(r): Params<Range>) -> Response {
    let q = match r.query(warden_core::now()) {
        Ok(q) => q,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    from_store(api.store.metric_range(&q).await, |found| {
        let series: Vec<_> = found
            .series
            .into_iter()
            .map(|s| {
                let points: Vec<serde_json::Value> = s
                    .points
                    .into_iter()
                    .map(|p| match q.step {
                        None => json!([p.at, p.avg]),
                        Some(_) => json!([p.at, p.avg, p.min, p.max, p.count]),
                    })
                    .collect();
                json!({ "server": s.server, "instance": s.instance, "metric": s.metric, "points": points })
            })
            .collect();
        Json(json!({
            "since": q.since,
            "until": q.until,
            "step": q.step.map(warden_config::format_duration),
            "columns": if q.step.is_some() { &["t", "avg", "min", "max", "count"][..] } else { &["t", "value"][..] },
            "series": series,
            "truncated": found.truncated,
        }))
        .into_response()
    })
}
