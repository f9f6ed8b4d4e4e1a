//! `warden check`: start (or connect) every server, probe it until its state settles, report,
//! and stop everything. For cron, CI and Nagios-style monitors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_config::{Config, RestartMode};
use warden_core::{EventBus, InstanceState};
use warden_supervisor::{ConnectorFactory, Overview, Registry, SupervisorOptions};

pub struct CheckOptions {
    /// Only these servers (all when empty).
    pub servers: Vec<String>,
    /// Give up waiting for states to settle after this long.
    pub timeout: Duration,
    pub connectors: Option<ConnectorFactory>,
}

/// A state that will not change without more time: healthy, or clearly not.
fn settled(s: InstanceState) -> bool {
    !matches!(s, InstanceState::Starting | InstanceState::Warning)
}

/// Runs a one-shot check. Restarts are off and probes are fast: a check reports what it finds.
pub async fn check(mut config: Config, options: CheckOptions) -> Overview {
    if !options.servers.is_empty() {
        config.servers.retain(|s| options.servers.contains(&s.name));
    }
    for s in &mut config.servers {
        s.restart.mode = RestartMode::Never;
        s.restart.stop_grace = Duration::from_millis(500);
        s.health.interval = Duration::from_millis(250);
        s.health.edge_interval = Duration::from_millis(250);
        s.health.jitter = 0.0;
        s.health.startup_timeout = s.health.startup_timeout.min(options.timeout);
    }
    let bus = EventBus::new(None);
    let registry = Registry::start(
        &config,
        options.connectors.unwrap_or_else(|| crate::real_connectors(Default::default())),
        Arc::clone(&bus),
        SupervisorOptions {
            metrics_interval: Duration::from_secs(3600),
            samples: None,
            metrics: Default::default(),
            seeds: Default::default(),
            stopped: Default::default(),
        },
    );
    // A timeout past any representable instant (`--timeout 300000y`) is no deadline at all.
    let deadline = Instant::now().checked_add(options.timeout);
    loop {
        let overview = registry.overview();
        let all_settled =
            overview.servers.iter().flat_map(|s| &s.instances).all(|i| settled(i.state));
        if all_settled || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let overview = registry.overview();
    let deadline = registry.stop_deadline();
    registry.shutdown(deadline).await;
    overview
}
