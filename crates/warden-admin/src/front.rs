//! The listener's front door: a POST on an MCP session (`Mcp-Session-Id`) goes to the gateway's
//! fast lane before axum routes it and runs its middleware, once the guard's checks (Host,
//! Origin, token) have passed, as they pass for every route. Everything else, and whatever the
//! lane gives back, goes to the router unchanged, through the guard and the session layers.
//! The layers skipped only act on other requests (new sessions, `DELETE`, `GET` resumptions);
//! under callgrind, routing and those layers were ~26 k instructions of every proxied call.
//!
//! The listener's own HTTP/1 loop (`crate::h1`) offers the lane its requests itself, from the
//! head's bytes ([`Front`]'s door), and marks what it sends on ([`LaneTried`]); this door acts
//! for connections handed to hyper.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use futures::future::BoxFuture;
use tower::{Service, ServiceExt};

use crate::guard::{self, Guard};

#[derive(Clone)]
pub(crate) struct FrontDoor {
    pub(crate) door: LaneDoor,
    pub(crate) inner: Router,
}

/// What a listener serves: the router, and the fast lane's door for the listener's own
/// HTTP/1 loop (`crate::h1`), which offers the lane its requests before the router.
#[derive(Clone)]
pub struct Front {
    pub(crate) router: Router,
    pub(crate) lane: Option<LaneDoor>,
}

/// The fast lane's door: the guard's checks, then the gateway's lane.
#[derive(Clone)]
pub(crate) struct LaneDoor {
    pub(crate) guard: Guard,
    pub(crate) gateway: warden_gateway::Gateway,
    pub(crate) max_body: usize,
}

impl From<Router> for Front {
    /// The router alone (no lane).
    fn from(router: Router) -> Self {
        Self { router, lane: None }
    }
}

/// Marks a request the lane has already been offered (by `crate::h1`): the front door passes
/// it on to the routes.
#[derive(Clone, Copy)]
pub(crate) struct LaneTried;

/// What the fast lane may take: a POST within a session on an MCP endpoint, not offered to it
/// before.
fn for_the_lane(request: &Request) -> bool {
    request.extensions().get::<LaneTried>().is_none()
        && request.method() == axum::http::Method::POST
        && request.uri().path().ends_with("/mcp")
        && request.headers().contains_key("mcp-session-id")
}

impl Service<Request> for FrontDoor {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let inner = self.inner.clone();
        if !for_the_lane(&request) {
            return Box::pin(inner.oneshot(request));
        }
        let door = self.door.clone();
        Box::pin(async move {
            if let Some(refused) = guard::refuse(&door.guard, &request) {
                return Ok(refused);
            }
            match door.gateway.fast_lane(request, door.max_body).await {
                Ok(response) => Ok(response),
                Err(request) => inner.oneshot(request).await,
            }
        })
    }
}
