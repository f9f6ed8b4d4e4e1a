//! A stdio server: a child process in its own process group, spoken to over stdin/stdout.
//!
//! Three small tasks watch each child: one waits for it to exit (and then kills whatever is
//! left of its process group), one taps stdout (counting bytes for liveness, dropping lines
//! that are not JSON, noticing EOF at once) and feeds the rest to rmcp through an in-memory
//! pipe, and one logs stderr under the server's name, rate-limited.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use warden_config::{ServerSpec, Transport};
use warden_core::{ExitInfo, FailureClass, InstanceId, Reason};

use crate::client::{self, Handler};
use crate::lines::read_line;
use crate::relay::{Call, Shared};
use crate::stdio_lane::{self, Lane, Pending};
use crate::{
    Activity, BoxFuture, Connected, Connector, Relay, Session, SessionEvent, StopPolicy,
    UpstreamError,
};

/// Longest stdout line accepted (a large tool list is one line).
const MAX_LINE: usize = crate::MAX_MESSAGE;

/// Starts stdio servers.
pub struct StdioConnector {
    spec: ServerSpec,
    relay: Relay,
}

impl StdioConnector {
    pub fn new(spec: ServerSpec, relay: Relay) -> Self {
        Self { spec, relay }
    }
}

impl Connector for StdioConnector {
    fn connect(
        &self,
        instance: InstanceId,
        deadline: Duration,
    ) -> BoxFuture<'_, Result<Connected, UpstreamError>> {
        Box::pin(connect(&self.spec, &self.relay, instance, deadline))
    }
}

async fn connect(
    spec: &ServerSpec,
    relay: &Relay,
    instance: InstanceId,
    deadline: Duration,
) -> Result<Connected, UpstreamError> {
    let Transport::Stdio { command, args, env, cwd, inherit_env, .. } = &spec.transport else {
        return Err(UpstreamError::Protocol("not a stdio server".into()));
    };
    let mut cmd = Command::new(command);
    // Not Warden's secrets, nor another server's: the allow-list, then the server's own env.
    warden_core::child_env::inherit(&mut cmd, *inherit_env);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v.expose())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so wrappers (npx, uvx, sh -c) and their children stop together.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child =
        cmd.spawn().map_err(|source| UpstreamError::Spawn { command: command.clone(), source })?;
    let pid = child.id().unwrap_or(0);
    let activity = Arc::new(Activity::new());
    let (events_tx, events_rx) = mpsc::channel(64);
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");

    tokio::spawn(log_stderr(instance.clone(), stderr, Arc::clone(&activity)));
    let shared = Shared::new(instance.clone(), relay.clone());
    let pending = Arc::new(Pending::default());
    let (rmcp_side, tap_side) = tokio::io::duplex(1024 * 1024);
    let (rmcp_read, _unused_write) = tokio::io::split(rmcp_side);
    let (rmcp_write, lane_out) = stdio_lane::wire(stdin);
    let tap = Tap { instance, activity: Arc::clone(&activity), events: events_tx.clone() };
    let lane_side = (Arc::clone(&pending), Arc::clone(&shared));
    let home = relay.next_home();
    match &home {
        // Read where calls are served (`Relay::set_homes`): the pipe moves to that runtime's
        // reactor. Failing that, nothing is read at all: the start fails (and is retried).
        Some((_, home)) => {
            let moved = stdout.into_owned_fd().and_then(|fd| {
                let _in_home = home.enter();
                tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
            });
            let stdout = moved.map_err(|e| {
                UpstreamError::Protocol(format!("cannot read the server's stdout: {e}"))
            })?;
            home.spawn(tap_stdout(tap, stdout, tap_side, lane_side));
        }
        None => {
            tokio::spawn(tap_stdout(tap, stdout, tap_side, lane_side));
        }
    }
    let (exit_tx, exit_rx) = watch::channel(None);
    // From here on, dropping the guard (an aborted start, a dropped session) kills the group.
    let guard = GroupGuard { pid, exit: exit_rx.clone() };
    tokio::spawn(wait_exit(child, pid, exit_tx, events_tx.clone()));

    let handler = Handler::new(events_tx.clone(), Arc::clone(&shared));
    match client::handshake(handler, (rmcp_read, rmcp_write), deadline).await {
        Ok((running, info)) => {
            client::spawn_list_listener(running.peer(), &info, events_tx);
            let mut lane = Lane::new(lane_out, info.modern, pending, Arc::clone(&shared));
            lane.home = home.map(|(n, _)| n);
            let core = client::Core::new(running, info.clone(), activity, shared);
            let session = StdioSession { core, lane, guard };
            Ok(Connected { session: Box::new(session), events: events_rx, info })
        }
        Err(err) => {
            // Explain a start-up failure by how the process ended, if it did.
            let mut exit = exit_rx;
            let ended =
                tokio::time::timeout(Duration::from_millis(200), exit.wait_for(Option::is_some))
                    .await;
            drop(guard);
            match ended {
                Ok(Ok(e)) => {
                    let e = e.clone().expect("waited for Some");
                    // Say what the handshake saw too: a clean exit is often the server seeing
                    // its stdin closed after the handshake failed for another reason.
                    Err(UpstreamError::Exited(format!(
                        "{} during start-up (the handshake: {err})",
                        e.describe()
                    )))
                }
                _ => Err(err),
            }
        }
    }
}

fn kill_group(pid: u32, signal: Signal) -> bool {
    pid != 0 && killpg(Pid::from_raw(pid as i32), signal).is_ok()
}

/// Signals a child's process group only while its leader has not been reaped: once the exit is
/// recorded the pid may be reused (the exit watcher has already swept the group by then).
fn signal_live_group(pid: u32, exit: &watch::Receiver<Option<ExitInfo>>, signal: Signal) {
    if exit.borrow().is_none() {
        kill_group(pid, signal);
    }
}

/// Kills the process group when dropped, so no path (an aborted start, a session dropped
/// without a stop, a task aborted at shutdown) leaves a child behind.
struct GroupGuard {
    pid: u32,
    exit: watch::Receiver<Option<ExitInfo>>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        signal_live_group(self.pid, &self.exit, Signal::SIGKILL);
    }
}

async fn wait_exit(
    mut child: Child,
    pid: u32,
    exit_tx: watch::Sender<Option<ExitInfo>>,
    events: mpsc::Sender<SessionEvent>,
) {
    let status = child.wait().await;
    let info = match status {
        Ok(s) => {
            ExitInfo { code: s.code(), signal: s.signal(), at: warden_core::now(), pid: Some(pid) }
        }
        Err(_) => ExitInfo { code: None, signal: None, at: warden_core::now(), pid: Some(pid) },
    };
    // The server is gone; nothing it started may outlive it.
    kill_group(pid, Signal::SIGKILL);
    let _ = exit_tx.send(Some(info.clone()));
    let _ = events.send(SessionEvent::Exited(info)).await;
}

/// Who a stdout tap reports to.
struct Tap {
    instance: InstanceId,
    activity: Arc<Activity>,
    events: mpsc::Sender<SessionEvent>,
}

/// Copies JSON lines from the child's stdout to rmcp, except the lane's answers and progress
/// (handed to their calls); counts every byte as liveness; drops (and reports) lines that are
/// not JSON; reports EOF at once, and fails the lane's waiting calls.
async fn tap_stdout<R: AsyncRead + Unpin>(
    tap: Tap,
    stdout: R,
    mut to_rmcp: tokio::io::DuplexStream,
    (lane, shared): (Arc<Pending>, Arc<Shared>),
) {
    let Tap { instance, activity, events } = tap;
    let _close = CloseOnDrop(Arc::clone(&lane));
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::with_capacity(4096);
    let mut limiter = LineLimiter::default();
    let mut garbage: u64 = 0;
    let reason = loop {
        line.clear();
        match read_line(&mut reader, &mut line, MAX_LINE, &activity).await {
            Ok((0, _)) => break Reason::new(FailureClass::Crash, "stdout closed"),
            Ok((_, cut)) => {
                let first = line.iter().copied().find(|b| !b.is_ascii_whitespace());
                match first {
                    Some(b'{') if !cut && lane.take(&line, &shared) => {}
                    Some(b'{') | Some(b'[') if !cut => {
                        if !line.ends_with(b"\n") {
                            line.push(b'\n');
                        }
                        if to_rmcp.write_all(&line).await.is_err() {
                            // rmcp closed its side: the session is over (a stop, or rmcp quit).
                            let reason =
                                Reason::new(FailureClass::ProtocolError, "the MCP session ended");
                            let _ = events.try_send(SessionEvent::Closed(reason));
                            return;
                        }
                    }
                    None => {}
                    Some(_) => {
                        garbage += 1;
                        if let Some(suppressed) = limiter.allow(Instant::now()) {
                            let text = String::from_utf8_lossy(&line);
                            tracing::warn!(target: "warden::upstream", instance = %instance, garbage_lines = garbage, suppressed,
                                "dropped a non-JSON line on stdout: {}", truncate(text.trim_end(), 200));
                        }
                    }
                }
            }
            Err(e) => break Reason::new(FailureClass::ProtocolError, format!("stdout: {e}")),
        }
    };
    let _ = events.send(SessionEvent::Closed(reason)).await;
}

/// Fails the lane's waiting calls when the tap ends, however it ends.
struct CloseOnDrop(Arc<Pending>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

async fn log_stderr(
    instance: InstanceId,
    stderr: tokio::process::ChildStderr,
    activity: Arc<Activity>,
) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut limiter = LineLimiter::default();
    loop {
        line.clear();
        match read_line(&mut reader, &mut line, 64 * 1024, &activity).await {
            Ok((0, _)) | Err(_) => return,
            Ok(_) => {
                if let Some(suppressed) = limiter.allow(Instant::now()) {
                    let text = String::from_utf8_lossy(&line);
                    if suppressed > 0 {
                        tracing::info!(target: "warden::stderr", instance = %instance, suppressed, "{}", truncate(text.trim_end(), 1000));
                    } else {
                        tracing::info!(target: "warden::stderr", instance = %instance, "{}", truncate(text.trim_end(), 1000));
                    }
                }
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// At most 20 lines a second per stream; the next line let through says how many were dropped.
#[derive(Default)]
struct LineLimiter {
    window: Option<Instant>,
    count: u32,
    suppressed: u64,
}

impl LineLimiter {
    const PER_SECOND: u32 = 20;

    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.window {
            Some(start) if now.duration_since(start) < Duration::from_secs(1) => {}
            _ => {
                self.window = Some(now);
                self.count = 0;
            }
        }
        self.count += 1;
        if self.count > Self::PER_SECOND {
            self.suppressed += 1;
            None
        } else {
            Some(std::mem::take(&mut self.suppressed))
        }
    }
}

struct StdioSession {
    core: client::Core,
    lane: Lane,
    guard: GroupGuard,
}

impl Session for StdioSession {
    crate::pass_through!(core: probe, list_catalog, activity);

    fn request(&self, call: Call) -> BoxFuture<'_, Result<crate::Reply, UpstreamError>> {
        if self.lane.takes(&call) {
            Box::pin(self.lane.request(call))
        } else {
            self.core.request(call)
        }
    }

    fn pid(&self) -> Option<u32> {
        Some(self.guard.pid)
    }

    fn shutdown(&self, policy: StopPolicy) -> BoxFuture<'static, Option<ExitInfo>> {
        let close = self.core.close(policy.grace);
        let exit = self.guard.exit.clone();
        let pid = self.guard.pid;
        Box::pin(async move {
            let wait_until = |deadline: tokio::time::Instant| {
                let mut exit = exit.clone();
                async move {
                    let got =
                        tokio::time::timeout_at(deadline, exit.wait_for(Option::is_some)).await;
                    got.ok().and_then(|e| e.ok().and_then(|e| e.clone()))
                }
            };
            // 1. Close stdin (ending the rmcp service drops the pipe); `grace` in all.
            let grace_end = Instant::now() + policy.grace;
            close.await;
            if let Some(e) = wait_until(grace_end).await {
                return Some(e);
            }
            // 2. SIGTERM the group (and SIGCONT, so a stopped process can act on it).
            signal_live_group(pid, &exit, Signal::SIGTERM);
            signal_live_group(pid, &exit, Signal::SIGCONT);
            if let Some(e) = wait_until(Instant::now() + policy.term).await {
                return Some(e);
            }
            // 3. SIGKILL.
            signal_live_group(pid, &exit, Signal::SIGKILL);
            wait_until(Instant::now() + Duration::from_secs(5)).await
        })
    }

    fn kill(&self) {
        signal_live_group(self.guard.pid, &self.guard.exit, Signal::SIGKILL);
    }
}
