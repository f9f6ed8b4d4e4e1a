//! `warden run --stdio` beside a Warden that already runs: rather than a second set of
//! children (and a listener that cannot bind), the new process bridges its stdin/stdout to the
//! running Warden's `/mcp` ([`warden_gateway::bridge_stdio`]).

use std::net::SocketAddr;
use std::time::Duration;

/// How long a running Warden has to answer `GET /health` before we start our own.
const PROBE: Duration = Duration::from_millis(800);
/// Whether a Warden answers at `addr`: `GET /health` (open without a token) gives Warden's
/// health document (a `status` and a `version`).
pub(crate) async fn warden_answers(addr: SocketAddr) -> bool {
    if addr.port() == 0 {
        return false;
    }
    let Ok(client) = reqwest::Client::builder().timeout(PROBE).no_proxy().build() else {
        return false;
    };
    let Ok(res) = client.get(format!("http://{addr}/health")).send().await else {
        return false;
    };
    let Ok(body) = res.json::<serde_json::Value>().await else { return false };
    body.get("status").is_some_and(serde_json::Value::is_string)
        && body.get("version").is_some_and(serde_json::Value::is_string)
}
