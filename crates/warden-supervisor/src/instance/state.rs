//! Publishing: state changes (each one update of the view), incidents, events.

use super::*;

/// Views published half-updated (tests only): see [`consistent`].
#[cfg(test)]
static INCONSISTENT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[cfg(test)]
pub(crate) fn inconsistent_views() -> u32 {
    INCONSISTENT.load(Ordering::SeqCst)
}

/// A view that could only be seen between two halves of one change.
#[cfg(test)]
pub(super) fn consistent(v: &InstanceView, probation: bool) -> bool {
    match v.state {
        InstanceState::Failed => v.next_retry_at.is_some() == probation,
        InstanceState::Starting => v.next_retry_at.is_none(),
        InstanceState::Offline => v.pid.is_none(),
        _ => true,
    }
}

impl Runner {
    pub(super) fn apply(&mut self, t: Transition) {
        self.set_state(t.to, t.reason);
    }

    pub(super) fn set_state(&mut self, to: InstanceState, reason: Option<Reason>) {
        self.set_state_with(to, reason, |_| {});
    }

    /// Changes the state and, in the same single update of the view, whatever else belongs to
    /// the change (a retry time, an exit, a cleared pid): a reader never sees half of it.
    pub(super) fn set_state_with(
        &mut self,
        to: InstanceState,
        reason: Option<Reason>,
        also: impl FnOnce(&mut InstanceView),
    ) {
        let from = self.view().state;
        let now = Instant::now();
        self.stats.observe_state(now, to.is_routable());
        let snap = self.stats.snapshot(now);
        if from == to {
            self.update(|v| {
                v.reason = reason;
                v.stats = snap;
                also(v);
            });
            return;
        }
        if to == InstanceState::Critical {
            if let Some(r) = &reason {
                self.open_incident(r, RecoveryAction::SelfRecovered);
            }
        }
        let wall = warden_core::now();
        let r2 = reason.clone();
        self.update(|v| {
            v.state = to;
            v.since = wall;
            v.reason = r2;
            v.stats = snap;
            also(v);
        });
        self.emit(EventKind::StateChanged { from, to, reason });
        if to == InstanceState::Healthy {
            self.probation_try = false;
            if let Some(i) = self.incident.take() {
                let action = i.action.unwrap_or(RecoveryAction::SelfRecovered);
                let downtime_seconds = now.duration_since(i.opened).as_secs_f64();
                self.emit_traced(
                    i.trace,
                    EventKind::Recovered { class: i.class, action, downtime_seconds },
                );
            }
        }
    }

    /// Opens an incident (a failure row) unless one is open; a later, stronger action
    /// (restart after a self-recovery wait) replaces the recorded one.
    pub(super) fn open_incident(&mut self, reason: &Reason, action: RecoveryAction) {
        match self.incident.as_mut() {
            Some(i) => {
                if action != RecoveryAction::SelfRecovered
                    && i.action != Some(RecoveryAction::Operator)
                {
                    i.action = Some(action);
                }
                // The incident got worse in kind (a stall that became a hang kill, a crash):
                // that is a failure of its own, recorded under the same trace.
                if i.class != reason.class {
                    i.class = reason.class;
                    let trace = i.trace;
                    let context = format!("state {}; escalated", self.view().state);
                    self.emit_traced(trace, EventKind::Failure { reason: reason.clone(), context });
                }
            }
            None => {
                let trace = TraceId::random();
                self.incident = Some(Incident {
                    trace,
                    class: reason.class,
                    opened: Instant::now(),
                    action: (action != RecoveryAction::SelfRecovered).then_some(action),
                });
                let context = format!("state {}", self.view().state);
                self.emit_traced(trace, EventKind::Failure { reason: reason.clone(), context });
            }
        }
    }

    pub(super) fn view(&self) -> InstanceView {
        self.ctx.view.borrow().clone()
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut InstanceView)) {
        let restarts = self.restarts;
        #[cfg(test)]
        let probation = self.spec().restart.probation.is_some();
        self.ctx.view.send_modify(|v| {
            f(v);
            v.restarts = restarts;
            #[cfg(test)]
            if !consistent(v, probation) {
                INCONSISTENT.fetch_add(1, Ordering::SeqCst);
                tracing::error!(view = ?v, "a view was published half-updated");
            }
        });
    }

    pub(super) fn emit(&self, kind: EventKind) {
        let trace = self.incident.as_ref().map_or(self.session_trace, |i| i.trace);
        self.emit_traced(trace, kind);
    }

    pub(super) fn emit_traced(&self, trace: TraceId, kind: EventKind) {
        self.ctx.bus.emit(Event::new(Some(self.ctx.id.clone()), trace, kind));
    }
}
