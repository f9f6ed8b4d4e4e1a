//! One session of an instance, from its handshake to its end: probes, listings, calls'
//! reports and operator orders, raced against the process's exit so a crash is seen at once.

use super::*;

/// Lists a session's catalog under Warden's own deadline.
pub(super) fn list(session: &dyn Session) -> BoxFuture<'_, Result<Catalog, UpstreamError>> {
    Box::pin(async move {
        tokio::time::timeout(
            CATALOG_TIMEOUT + DEADLINE_MARGIN,
            session.list_catalog(CATALOG_TIMEOUT),
        )
        .await
        .unwrap_or(Err(UpstreamError::Timeout(CATALOG_TIMEOUT)))
    })
}

/// At most [`DIFF_NAMES`] names, then how many more there were.
pub(super) fn capped(mut names: Vec<String>) -> Vec<String> {
    if names.len() > DIFF_NAMES {
        let more = names.len() - DIFF_NAMES;
        names.truncate(DIFF_NAMES);
        names.push(format!("… and {more} more"));
    }
    names
}

pub(super) async fn wait_exited(
    events: &mut mpsc::Receiver<SessionEvent>,
    within: Duration,
) -> Option<ExitInfo> {
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(SessionEvent::Exited(e))) => return Some(e),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

impl Runner {
    pub(super) async fn run_session(&mut self, conn: Connected) -> End {
        let Connected { session, mut events, info } = conn;
        self.predictor_restart();
        let session: Arc<dyn Session> = Arc::from(session);
        // Routers reach the live session through the link while it lasts.
        self.ctx.link.set_session(Some(Arc::clone(&session)));
        let session: &dyn Session = &*session;
        let pid = session.pid();
        let protocol = info.protocol_version.clone();
        self.update(|v| {
            v.pid = pid;
            // An integration (a check) speaks no MCP.
            v.protocol_version = (!protocol.is_empty()).then_some(protocol);
        });
        if let Some(pid) = pid {
            self.emit(EventKind::ProcessStarted { pid });
        }
        self.emit(EventKind::Connected {
            protocol_version: info.protocol_version.clone(),
            server_name: info.server_name.clone(),
        });
        if let Some(t) = self.machine.on_connected() {
            self.apply(t);
        }
        let activity = session.activity();
        let spec = self.spec();
        let mut policy = self.ctx.tuning.borrow_and_update().health(&spec.health);
        let method = policy.method;
        let mut catalog: Option<BoxFuture<'_, Result<Catalog, UpstreamError>>> =
            Some(list(session));
        let mut relist = false;
        let mut next_hang_check = Instant::now() + Duration::from_secs(1);
        let mut probe: Option<BoxFuture<'_, Result<Duration, UpstreamError>>> = None;
        let mut probe_bytes_before = 0;
        let mut next_probe =
            Instant::now() + policy.interval.mul_f64(policy.jitter * rand::random::<f64>());
        let mut next_catalog = Instant::now() + policy.catalog_interval;
        let mut healthy_since: Option<Instant> = None;
        let mut serving_since: Option<Instant> = None;
        // When the calls settling now are read (see `InstanceLink`).
        let mut settle_at: Option<Instant> = None;

        let end = loop {
            let reset_after = self.spec().restart.reset_after;
            tokio::select! {
                biased;
                _ = self.ctx.shutdown.cancelled() => break End::Shutdown,
                ev = events.recv() => match ev {
                    Some(SessionEvent::Exited(exit)) => {
                        let reason = Reason::new(FailureClass::Crash, exit.describe());
                        // The incident opens first, so the exit is recorded under its trace id.
                        self.open_incident(&reason, RecoveryAction::Restart);
                        self.emit(EventKind::ProcessExited { exit: exit.clone() });
                        break End::Failed { reason, exit: Some(exit), action: RecoveryAction::Restart };
                    }
                    Some(SessionEvent::Closed(reason)) => break self.closed(&mut events, pid, reason).await,
                    Some(SessionEvent::ListChanged) => {
                        // A change announced during a listing gets a listing of its own.
                        if catalog.is_none() {
                            catalog = Some(list(session));
                        } else {
                            relist = true;
                        }
                    }
                    None => break End::Failed { reason: Reason::new(FailureClass::Crash, "session ended"), exit: None, action: self.restart_action() },
                },
                c = self.ctx.commands.recv() => match c {
                    Some(Command::Stop) => { self.operator(Command::Stop); break End::Stop }
                    Some(Command::Restart) => { self.operator(Command::Restart); break End::Restart }
                    Some(c @ Command::Reset) => self.operator(c),
                    Some(Command::Start) | None => {}
                },
                // A failure: read at once, with the calls that ended before it.
                Some(()) = self.ctx.failed.recv() => self.on_settled(),
                () = self.ctx.link.batch.notified(), if settle_at.is_none() => {
                    settle_at = Some(Instant::now() + super::link::SETTLE_WINDOW);
                }
                _ = sleep_until(settle_at.unwrap_or(next_hang_check)), if settle_at.is_some() => {
                    settle_at = None;
                    self.on_settled();
                }
                res = async { probe.as_mut().expect("guarded").await }, if probe.is_some() => {
                    probe = None;
                    match self.on_probe_result(res, activity.bytes() > probe_bytes_before, activity.since_last_byte()) {
                        Some(lost) => break self.closed(&mut events, pid, lost).await,
                        None => {
                            if should_kill_hung(&policy, activity.since_last_byte(), self.machine.probe_failures()) {
                                break self.hang(session, &mut events, activity.since_last_byte()).await;
                            }
                            next_probe = Instant::now() + next_probe_delay(&policy, self.machine.probe_failures(), rand::random());
                        }
                    }
                },
                res = async { catalog.as_mut().expect("guarded").await }, if catalog.is_some() => {
                    catalog = None;
                    self.on_catalog(res);
                    if std::mem::take(&mut relist) {
                        catalog = Some(list(session));
                    }
                },
                _ = sleep_until(next_probe), if probe.is_none() => {
                    probe_bytes_before = activity.bytes();
                    // Warden's own deadline: a probe stuck behind a full stdin pipe still ends.
                    let timeout = policy.timeout;
                    // For OpenTelemetry export (`warden --features otlp`); free when off.
                    let span = tracing::debug_span!(
                        target: "warden::trace",
                        "mcp.probe",
                        instance = %self.ctx.id,
                        method = ?method,
                        trace_id = self.incident.as_ref().map(|i| tracing::field::display(i.trace)),
                    );
                    probe = Some(Box::pin(tracing::Instrument::instrument(async move {
                        tokio::time::timeout(timeout + DEADLINE_MARGIN, session.probe(method, timeout))
                            .await
                            .unwrap_or(Err(UpstreamError::Timeout(timeout)))
                    }, span)));
                },
                _ = sleep_until(next_catalog), if catalog.is_none() => {
                    next_catalog = Instant::now() + policy.catalog_interval;
                    catalog = Some(list(session));
                },
                // The hang check runs on its own clock, not only when a probe ends.
                _ = sleep_until(next_hang_check) => {
                    next_hang_check = Instant::now() + Duration::from_secs(1);
                    if should_kill_hung(&policy, activity.since_last_byte(), self.machine.probe_failures()) {
                        break self.hang(session, &mut events, activity.since_last_byte()).await;
                    }
                },
                // Both read the calls up to now first: a batch must not add to a second
                // the predictor has closed.
                _ = sleep_until(self.next_sample) => {
                    self.on_settled();
                    self.sample();
                }
                _ = sleep_until(self.next_predict) => {
                    self.on_settled();
                    self.predict();
                }
                // Tuning changed the probe policy: the next probe follows it.
                Ok(()) = self.ctx.tuning.changed() => {
                    let spec = self.spec();
                    let (tuned, call_timeout) = {
                        let t = self.ctx.tuning.borrow_and_update();
                        (t.health(&spec.health), t.call_timeout(&spec))
                    };
                    if let Some(p) = self.predictor.as_mut() {
                        p.set_call_timeout(call_timeout);
                    }
                    if probe.is_none() && tuned.interval < policy.interval {
                        next_probe = next_probe.min(Instant::now() + tuned.interval);
                    }
                    policy = tuned;
                },
                // A live reload changed the server's policy in place.
                Ok(()) = self.ctx.spec.changed() => {
                    self.apply_spec();
                    let tuned = self.ctx.tuning.borrow().health(&self.spec().health);
                    if probe.is_none() && tuned.interval < policy.interval {
                        next_probe = next_probe.min(Instant::now() + tuned.interval);
                    }
                    policy = tuned;
                },
                _ = sleep_until(healthy_since.unwrap_or_else(Instant::now) + reset_after),
                    if healthy_since.is_some() && self.level > 0.0 => {}
            }
            // Sustained health resets the backoff.
            if self.machine.state() == InstanceState::Healthy {
                let since = *healthy_since.get_or_insert_with(Instant::now);
                if self.level > 0.0 && since.elapsed() >= self.spec().restart.reset_after {
                    self.level = 0.0;
                    self.update(|v| v.attempt = 0);
                }
            } else {
                healthy_since = None;
            }
            // Time served (healthy or warning) decays the backoff.
            let now = Instant::now();
            match (self.machine.state(), serving_since) {
                (InstanceState::Healthy | InstanceState::Warning, None) => {
                    serving_since = Some(now)
                }
                (InstanceState::Healthy | InstanceState::Warning, Some(_)) => {}
                (_, Some(since)) => {
                    self.served += now - since;
                    serving_since = None;
                }
                (_, None) => {}
            }
        };
        if let Some(since) = serving_since {
            self.served += Instant::now() - since;
        }
        drop(probe);
        drop(catalog);
        self.ctx.link.set_session(None);
        match &end {
            End::Shutdown | End::Stop | End::Restart => {
                let exit = session.shutdown(self.stop_policy()).await;
                if let Some(exit) = exit {
                    self.emit(EventKind::ProcessExited { exit: exit.clone() });
                    self.update(|v| v.last_exit = Some(exit));
                }
                self.update(|v| v.pid = None);
            }
            End::Failed { .. } => {
                // Whatever is left of it goes; the exit watcher also sweeps its process group.
                session.kill();
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    session.shutdown(StopPolicy { grace: Duration::ZERO, term: Duration::ZERO }),
                )
                .await;
            }
        }
        end
    }

    /// Kills a hung child and waits (briefly) for its exit status.
    pub(super) async fn hang(
        &mut self,
        session: &dyn Session,
        events: &mut mpsc::Receiver<SessionEvent>,
        silent: Duration,
    ) -> End {
        let pid = session.pid();
        self.emit(EventKind::HangKilled { silent_ms: silent.as_millis() as u64, pid });
        let reason = Reason::new(
            FailureClass::Hang,
            format!("no answer and no output for {}s", silent.as_secs()),
        );
        if pid.is_none() {
            return End::Failed { reason, exit: None, action: RecoveryAction::Reconnect };
        }
        session.kill();
        let exit = wait_exited(events, Duration::from_secs(2)).await;
        if let Some(exit) = &exit {
            self.emit(EventKind::ProcessExited { exit: exit.clone() });
        }
        End::Failed { reason, exit, action: RecoveryAction::KillAndRestart }
    }

    pub(super) fn on_probe_result(
        &mut self,
        res: Result<Duration, UpstreamError>,
        bytes_during: bool,
        since_last_byte: Duration,
    ) -> Option<Reason> {
        let now = Instant::now();
        self.update(|v| v.last_check = Some(warden_core::now()));
        match res {
            Ok(rtt) => {
                self.ctx.link.metrics.probe_ok(rtt);
                self.stats.record_ok(now, rtt);
                self.observe(now, false, Some(rtt), true);
                self.update(|v| v.latency_ms = Some(rtt.as_secs_f64() * 1000.0));
                if let Some(t) = self.machine.on_probe_ok(now) {
                    self.apply(t);
                }
                None
            }
            Err(e @ UpstreamError::Timeout(_)) => {
                let verdict = probe_timeout_verdict(
                    &self.spec().health,
                    bytes_during,
                    since_last_byte,
                    self.ctx.link.in_flight() > 0,
                );
                if verdict == ProbeVerdict::Busy {
                    tracing::debug!(instance = %self.ctx.id, "probe timed out while the server was sending; busy, not hung");
                    return None;
                }
                let timeout =
                    self.ctx.tuning.borrow().probe_timeout.unwrap_or(self.spec().health.timeout);
                self.observe(now, false, Some(timeout), false);
                self.probe_failed("ping", e.reason());
                None
            }
            Err(e) if e.is_connection_loss() => {
                let reason = e.reason();
                self.stats.record_error(now);
                self.emit(EventKind::ProbeFailed { method: "ping", reason: reason.clone() });
                if let Some(t) = self.machine.on_connection_lost(reason.clone()) {
                    self.apply(t);
                }
                // The session is gone: a remote server is reconnected, a child restarted.
                Some(reason)
            }
            Err(e) => {
                self.observe(now, false, None, false);
                self.probe_failed("ping", e.reason());
                None
            }
        }
    }

    /// The calls that ended since the last batch, in the order they ended.
    pub(super) fn on_settled(&mut self) {
        for report in self.ctx.link.take_settled() {
            self.on_call(report);
        }
    }

    /// A passive signal: how a real call ended.
    pub(super) fn on_call(&mut self, report: CallReport) {
        let now = report.at;
        match &report.outcome {
            // The server answered, even if the tool said no.
            CallOutcome::Ok | CallOutcome::Ignorable => {
                self.stats.record_ok(now, report.latency);
                self.observe(now, true, Some(report.latency), true);
            }
            CallOutcome::Failed(reason) => {
                self.stats.record_error(now);
                let timed_out = reason.class == warden_core::FailureClass::Timeout;
                self.observe(now, true, timed_out.then_some(report.latency), false);
            }
        }
        if let Some(t) = self.machine.on_call(report.outcome, now) {
            self.apply(t);
        }
    }

    pub(super) fn probe_failed(&mut self, method: &'static str, reason: Reason) {
        self.stats.record_error(Instant::now());
        self.emit(EventKind::ProbeFailed { method, reason: reason.clone() });
        match self.machine.on_probe_failed(reason.clone()) {
            Some(t) => self.apply(t),
            // Already warning or critical: the view says the latest error, not the first.
            None if matches!(
                self.view().state,
                InstanceState::Warning | InstanceState::Critical
            ) =>
            {
                self.update(|v| v.reason = Some(reason));
            }
            None => {}
        }
    }

    pub(super) fn on_catalog(&mut self, res: Result<Catalog, UpstreamError>) {
        match res {
            Ok(cat) => {
                let (changed, added, removed) = match &self.catalog {
                    Some(old) => {
                        let d = cat.diff(old);
                        (!d.is_empty(), d.added, d.removed)
                    }
                    None => (false, vec![], vec![]),
                };
                let (tools, resources, prompts) =
                    (cat.tools.len(), cat.resources.len(), cat.prompts.len());
                self.update(|v| {
                    v.tools = tools;
                    v.resources = resources;
                    v.prompts = prompts;
                });
                self.emit(EventKind::CatalogListed {
                    tools,
                    resources,
                    prompts,
                    changed,
                    added: capped(added),
                    removed: capped(removed),
                });
                self.ctx.link.set_catalog(Arc::new(cat.clone()));
                self.catalog = Some(cat);
            }
            Err(UpstreamError::Timeout(_)) if self.machine.state() == InstanceState::Critical => {}
            Err(e) => self.probe_failed("tools/list", e.reason()),
        }
    }
}
