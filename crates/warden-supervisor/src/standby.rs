//! Standby control: a server with `"standby": true` keeps its last slot stopped until another
//! of its instances is predicted to fail (`draining`); then the standby is started (the
//! gateway already sends new calls elsewhere), and it is stopped again once no instance of its
//! server has been predicted to fail for [`STANDBY_COOLDOWN`]. Each start and stop is an
//! `operator_action` event saying why.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warden_core::{Event, EventBus, EventKind, InstanceState, TraceId};

use crate::{Command, ServerHandle};

/// A standby started for a predicted failure is stopped once no instance of its server has
/// been predicted to fail for this long.
pub const STANDBY_COOLDOWN: Duration = Duration::from_secs(300);

/// How often the instances' views are read.
const STEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct StandbyControl {
    /// Per server: when an instance was last seen predicted to fail.
    last_predicted: HashMap<String, Instant>,
}

/// Runs standby control over the servers with a standby (as each reload leaves them) until
/// `stop`.
pub fn spawn_standby_control(
    servers: crate::Views,
    bus: std::sync::Arc<EventBus>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut control = StandbyControl::default();
        let mut tick = tokio::time::interval(STEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {
                    let with_standby: Vec<ServerHandle> =
                        servers.handles().iter().filter(|h| h.spec.standby).cloned().collect();
                    control.step(Instant::now(), &with_standby, &bus).await;
                }
            }
        }
    })
}

impl StandbyControl {
    async fn step(&mut self, now: Instant, handles: &[ServerHandle], bus: &EventBus) {
        for h in handles {
            let views = h.views();
            let Some((index, standby)) = views.iter().enumerate().find(|(_, v)| v.standby) else {
                continue;
            };
            let failing: Vec<String> = views
                .iter()
                .filter(|v| !v.standby && v.draining)
                .map(|v| v.id.to_string())
                .collect();
            let action = if !failing.is_empty() {
                self.last_predicted.insert(h.spec.name.clone(), now);
                (standby.state == InstanceState::Stopped).then(|| {
                    (
                        Command::Start,
                        format!("standby started: {} predicted to fail", failing.join(", ")),
                    )
                })
            } else {
                let cooled = self
                    .last_predicted
                    .get(&h.spec.name)
                    .is_some_and(|t| now.duration_since(*t) >= STANDBY_COOLDOWN);
                (cooled && standby.state != InstanceState::Stopped).then(|| {
                    self.last_predicted.remove(&h.spec.name);
                    (Command::Stop, "standby stopped: no failure predicted for 5 min".to_owned())
                })
            };
            if let Some((cmd, why)) = action {
                if h.command(cmd, Some(index as u32)).await == 1 {
                    bus.emit(Event::new(
                        Some(standby.id.clone()),
                        TraceId::random(),
                        EventKind::OperatorAction { action: why },
                    ));
                }
            }
        }
    }
}
