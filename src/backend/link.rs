//! A shared link: one long-lived pipelined connection to a backend, used by every session
//! that speaks its protocol. It opens the connection (handshake included), serves it with
//! [`super::pipe::serve`], and reconnects with backoff when it fails.
//!
//! A connection that fails its handshake, or dies within [`STABLE`] of opening, counts as a
//! failed attempt: the next one waits, doubling up to [`MAX_BACKOFF`], so a backend that
//! accepts and closes (at `maxclients`, or a port-forward with nothing behind it) costs one
//! attempt per backoff, not a tight loop. While the backend is down, requests are answered at
//! once with an error instead of waiting out the timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use super::BackendError;
use super::conn::{self, Target};
use super::hold::{Held, HoldSettings, HoldState, hold_until};
use super::pipe::{self, End, PipeInfo};
use super::{BackendState, Change, Request};
use crate::metrics::BackendMetrics;
use crate::protocol::out::Proto;

/// What a link warns about, for [`Spec::first_to_warn`].
#[derive(Clone, Copy)]
enum Warn {
    Ended = 0,
    Failing = 1,
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A connection that lived this long resets the backoff.
const STABLE: Duration = Duration::from_secs(1);
/// How often a backend that stays down is logged again at warning level.
const REMIND_EVERY: Duration = Duration::from_secs(30);

/// Consecutive failed connection attempts, for logging an outage without a line per retry.
#[derive(Default)]
struct Outage {
    failures: u32,
    last_warned: Option<Instant>,
}

/// What to log for one failed attempt.
#[derive(Debug, PartialEq, Eq)]
enum Log {
    First,
    Reminder,
    Quiet,
}

impl Outage {
    fn failed(&mut self, now: Instant) -> Log {
        self.failures = self.failures.saturating_add(1);
        let log = match self.last_warned {
            None => Log::First,
            Some(at) if now.saturating_duration_since(at) >= REMIND_EVERY => Log::Reminder,
            Some(_) => return Log::Quiet,
        };
        self.last_warned = Some(now);
        log
    }
}

/// A change of a backend's health, for the topology (auto_eject) to act on.
#[derive(Debug, Clone)]
pub struct HealthEvent {
    pub backend: String,
    pub change: Change,
}

/// Everything the connections of one backend need: where it is, its timeouts and health
/// settings, its state and metrics. Shared by its links, exclusive pool and hub.
pub struct Spec {
    pub name: String,
    pub address: String,
    pub target: Target,
    pub timeout: Duration,
    pub state: Arc<BackendState>,
    pub metrics: BackendMetrics,
    /// "NAME (ADDRESS)", for error replies.
    pub describe: String,
    pub timeout_reply: Bytes,
    /// PING an idle link this often; `None`: no health checks.
    pub health_interval: Option<Duration>,
    /// How long a backend marked down waits before it is probed again.
    pub retry_timeout: Duration,
    /// Where health changes are reported.
    pub events: Option<mpsc::UnboundedSender<HealthEvent>>,
    /// Bumped when the backend's host name resolves to other addresses: its connections
    /// finish what they were sent and reconnect.
    pub moves: watch::Sender<u64>,
    /// The addresses the host name resolved to last (for the DNS refresh to compare).
    pub resolved: std::sync::Mutex<Vec<std::net::SocketAddr>>,
    /// When one of this backend's links last logged that its connection ended, and that
    /// connecting failed (ms since the first): with a link per worker, an outage ends or
    /// fails them all at once, and it is said once.
    warned: [std::sync::atomic::AtomicU64; 2],
    /// How requests are held while the backend is away (a failover, a restart).
    pub hold: HoldSettings,
    /// Where keyed reads go (a Sentinel-managed shard's replicas, or its primary).
    pub read_from: crate::config::ReadFrom,
    pub hold_state: HoldState,
    /// Where the connections go instead of `target`'s host and port: the primary the
    /// sentinels name, or a failed cluster primary's successor.
    relocated: std::sync::Mutex<Option<(String, u16)>>,
    /// A planned failover is under way until then: the links hold what comes.
    paused: std::sync::Mutex<Option<Instant>>,
}

impl Spec {
    pub fn new(name: &str, address: &str, target: Target, timeout: Duration) -> Spec {
        Spec::with_metrics(name, address, target, timeout, BackendMetrics::new(name))
    }

    /// Like [`Spec::new`], with metric handles made by the caller (a cluster node's carry its
    /// role).
    pub fn with_metrics(
        name: &str,
        address: &str,
        target: Target,
        timeout: Duration,
        metrics: BackendMetrics,
    ) -> Spec {
        let describe = format!("{name} ({address})");
        let timeout_reply = Bytes::from(format!(
            "-ERR backend {describe} timed out after {} ms\r\n",
            timeout.as_millis()
        ));
        Spec {
            name: name.to_string(),
            address: address.to_string(),
            target,
            timeout,
            state: Arc::new(BackendState::new(name, address)),
            metrics,
            describe,
            timeout_reply,
            health_interval: None,
            retry_timeout: MAX_BACKOFF,
            events: None,
            moves: watch::channel(0).0,
            resolved: std::sync::Mutex::new(Vec::new()),
            warned: Default::default(),
            hold: HoldSettings::default(),
            read_from: crate::config::ReadFrom::Primary,
            hold_state: HoldState::default(),
            relocated: std::sync::Mutex::new(None),
            paused: std::sync::Mutex::new(None),
        }
    }

    /// Where connections go now: `target`, at the address it was relocated to if it was.
    pub fn target_now(&self) -> Target {
        let mut target = self.target.clone();
        if let Some((host, port)) = self.relocated() {
            target.host = host;
            target.port = port;
        }
        target
    }

    /// The host and port the backend was relocated to, if it was.
    pub fn relocated(&self) -> Option<(String, u16)> {
        self.relocated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `host:port` connections go to now.
    pub fn address_now(&self) -> String {
        match self.relocated() {
            Some((host, port)) if host.contains(':') => format!("[{host}]:{port}"),
            Some((host, port)) => format!("{host}:{port}"),
            None => self.address.clone(),
        }
    }

    /// Moves every connection of this backend to `host:port` (a new primary): each finishes
    /// what it sent and reconnects there, and what is held goes there. Lifts a pause.
    pub fn relocate(&self, host: &str, port: u16) {
        *self.relocated.lock().unwrap_or_else(|e| e.into_inner()) = Some((host.to_string(), port));
        self.state.set_primary(self.address_now());
        *self.paused.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.outage_over();
        self.moved();
    }

    /// A planned failover is under way: until `until` (or [`Spec::resume`], or a
    /// [`Spec::relocate`]), the links finish what they sent and hold what comes.
    pub fn pause(&self, until: Instant) {
        *self.paused.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
        self.moved();
    }

    /// Ends a pause (the failover was called off): the links reconnect where they were.
    pub fn resume(&self) {
        let was = self.paused.lock().unwrap_or_else(|e| e.into_inner()).take();
        if was.is_some() {
            self.moved();
        }
    }

    /// Until when the links hold, when a pause is in force.
    pub fn paused(&self) -> Option<Instant> {
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        match *paused {
            Some(until) if until > Instant::now() => Some(until),
            Some(_) => {
                *paused = None;
                None
            }
            None => None,
        }
    }

    /// True for the first of this backend's links to report a problem within a second (it
    /// logs at warn; the others at debug).
    fn first_to_warn(&self, what: Warn) -> bool {
        let warned = &self.warned[what as usize];
        use std::sync::atomic::Ordering;
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        // +1: 0 means never.
        let now = EPOCH
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64
            + 1;
        let last = warned.load(Ordering::Relaxed);
        (last == 0 || now.saturating_sub(last) >= 1000)
            && warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Tells every connection of this backend to move to the addresses its name resolves to
    /// now.
    pub fn moved(&self) {
        self.moves.send_modify(|epoch| *epoch += 1);
    }

    /// `-ERR backend NAME (ADDRESS) WHAT`.
    pub fn error_reply(&self, what: &str) -> Bytes {
        Bytes::from(format!("-ERR backend {} {what}\r\n", self.describe))
    }

    pub fn pipe_info(&self) -> PipeInfo<'_> {
        PipeInfo {
            spec: self,
            unblock: None,
            health: None,
        }
    }

    /// Counts a failure of any kind: the error metric, the last error, and the health count
    /// (logging and reporting the change when it marks the backend down).
    pub fn failed(&self, err: &BackendError) {
        let kind = err.kind();
        self.state.set_error(kind, err.to_string());
        self.metrics.error(kind);
        if let Some(change) = self.state.failed() {
            warn!(backend = %self.name, "marked down after {} consecutive failures (last: {err})", self.state.failures());
            self.report(change);
        }
    }

    /// Counts a success; logs and reports the end of a down period.
    #[inline]
    pub fn succeeded(&self) {
        if let Some(change) = self.state.succeeded() {
            info!(backend = %self.name, "up again");
            self.report(change);
        }
    }

    fn report(&self, change: Change) {
        if let Some(events) = &self.events {
            let _ = events.send(HealthEvent {
                backend: self.name.clone(),
                change,
            });
        }
    }

    fn set_connected(&self, up: bool) {
        if up {
            self.state.connection_opened();
        } else {
            self.state.connection_closed();
        }
        self.metrics.set_connections(self.state.connections());
        self.metrics.set_up(self.state.is_up());
    }
}

/// Longest wait between two connection attempts while requests are held: a primary back on
/// its address (a restart) is found within this.
const HOLD_RETRY: Duration = Duration::from_millis(100);

/// Runs one shared link of protocol `proto` until every sender is dropped.
pub async fn run(spec: Arc<Spec>, proto: Proto, mut rx: mpsc::Receiver<Request>) {
    let mut backoff = MIN_BACKOFF;
    let mut outage = Outage::default();
    let mut held = Held::default();
    let mut moves = spec.moves.subscribe();
    loop {
        moves.borrow_and_update();
        if let Some(until) = spec.paused() {
            // A planned failover is under way: hold what comes until it is over.
            if !hold_until(&spec, &mut rx, &mut held, &mut moves, until).await {
                return;
            }
            continue;
        }
        let err = match conn::open(&spec.target_now(), proto).await {
            Ok(conn) => {
                let opened = Instant::now();
                match connected(&spec, conn, &mut rx, &mut outage, &mut held, &mut moves).await {
                    End::Shutdown => return,
                    End::Moved => {
                        debug!(backend = %spec.name, "moving: reconnecting to {}", spec.address_now());
                        backoff = MIN_BACKOFF;
                        continue;
                    }
                    End::Failed(err) => {
                        if spec.first_to_warn(Warn::Ended) {
                            warn!(backend = %spec.name, "connection ended: {err}");
                        } else {
                            debug!(backend = %spec.name, "connection ended: {err}");
                        }
                        spec.failed(&err);
                    }
                }
                if !spec.hold.window.is_zero() {
                    spec.outage_began();
                }
                if opened.elapsed() >= STABLE {
                    // It worked for a while: reconnect at once.
                    backoff = MIN_BACKOFF;
                    continue;
                }
                // It died young: wait before reconnecting, as after a failed attempt, so a
                // backend that accepts and drops connections is not hammered.
                if !wait_or_hold(&spec, &mut rx, &mut held, &mut moves, backoff, None).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(e) => BackendError::from(e),
        };
        let wait = unavailable(&spec, &err, &mut outage, backoff);
        if !spec.hold.window.is_zero() {
            spec.outage_began();
        }
        let what = format!("is unavailable: {err}");
        if !wait_or_hold(&spec, &mut rx, &mut held, &mut moves, wait, Some(&what)).await {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Between two connection attempts: while the backend holds, holds what comes (trying again
/// within [`HOLD_RETRY`]); else answers it with an error at once for `wait`, as a backend that
/// is down does. `what`: the error's words (`None`: the connection was lost). False when the
/// link is done.
async fn wait_or_hold(
    spec: &Spec,
    rx: &mut mpsc::Receiver<Request>,
    held: &mut Held,
    moves: &mut watch::Receiver<u64>,
    wait: Duration,
    what: Option<&str>,
) -> bool {
    if spec.holding() {
        let until = Instant::now() + wait.min(HOLD_RETRY);
        return hold_until(spec, rx, held, moves, until).await;
    }
    let reply = pipe::error_reply(
        &spec.pipe_info(),
        what.unwrap_or("connection lost; reconnecting"),
    );
    held.fail_all(spec, &reply);
    answer_until(rx, &reply, Instant::now() + wait, moves).await
}

/// Serves a connection just opened until it ends.
async fn connected(
    spec: &Spec,
    conn: conn::Conn,
    rx: &mut mpsc::Receiver<Request>,
    outage: &mut Outage,
    held: &mut Held,
    moves: &mut watch::Receiver<u64>,
) -> End {
    spec.set_connected(true);
    spec.succeeded();
    spec.outage_over();
    if let Some(v) = conn.version {
        spec.state.set_version(v);
    }
    if let Ok(mut seen) = spec.resolved.lock() {
        // What the name resolved to when it connected, for the DNS refresh.
        *seen = conn.resolved.clone();
    }
    let address = spec.address_now();
    match outage.failures {
        0 => info!(backend = %spec.name, "connected to {address}"),
        n => info!(
            backend = %spec.name,
            "connected to {address} after {n} failed attempt(s)"
        ),
    }
    if !held.is_empty() {
        info!(backend = %spec.name, "sending {} held request(s) to {address}", held.len());
    }
    *outage = Outage::default();
    let info = PipeInfo {
        health: spec.health_interval,
        ..spec.pipe_info()
    };
    let hold = (!spec.hold.window.is_zero()).then_some(held);
    let end = pipe::serve(&info, &conn.stream, rx, Some(moves), hold).await;
    spec.set_connected(false);
    end
}

/// A connection could not be opened: counts it, logs it (once per outage, then a reminder
/// every [`REMIND_EVERY`]), and returns how long to answer requests with the error before
/// trying again: `retry_timeout` for a backend marked down, else `backoff`.
fn unavailable(
    spec: &Spec,
    err: &BackendError,
    outage: &mut Outage,
    backoff: Duration,
) -> Duration {
    // Every attempt is counted in the metrics and shown in /status; the log says once that
    // the backend is down and then reminds every REMIND_EVERY, instead of a line per retry.
    match outage.failed(Instant::now()) {
        Log::First | Log::Reminder if !spec.first_to_warn(Warn::Failing) => {
            debug!(backend = %spec.name, "{err}; retrying in {} ms", backoff.as_millis())
        }
        Log::First => warn!(
            backend = %spec.name,
            "{err}; retrying with backoff up to {} ms (repeats are logged at debug \
             level, with a reminder every {} s)",
            MAX_BACKOFF.as_millis(),
            REMIND_EVERY.as_secs()
        ),
        Log::Reminder => warn!(
            backend = %spec.name,
            "still unavailable after {} attempts: {err}", outage.failures
        ),
        Log::Quiet => {
            debug!(backend = %spec.name, "{err}; retrying in {} ms", backoff.as_millis())
        }
    }
    spec.failed(err);
    if spec.state.is_down() {
        spec.retry_timeout
    } else {
        backoff
    }
}

/// Answers every request with `reply` until `until`, or until the backend moves; false when
/// every sender is gone.
async fn answer_until(
    rx: &mut mpsc::Receiver<Request>,
    reply: &Bytes,
    until: Instant,
    moves: &mut watch::Receiver<u64>,
) -> bool {
    loop {
        tokio::select! {
            req = rx.recv() => match req {
                Some(req) => req.reply.send(reply.clone()),
                None => return false,
            },
            () = sleep_until(until) => return true,
            Ok(()) = moves.changed() => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_logged_once_then_reminded() {
        let t0 = Instant::now();
        let mut outage = Outage::default();
        assert_eq!(outage.failed(t0), Log::First);
        for ms in [50, 150, 350, 750, 1550, 29_000] {
            assert_eq!(outage.failed(t0 + Duration::from_millis(ms)), Log::Quiet);
        }
        assert_eq!(outage.failed(t0 + REMIND_EVERY), Log::Reminder);
        assert_eq!(
            outage.failed(t0 + REMIND_EVERY + Duration::from_secs(2)),
            Log::Quiet
        );
        assert_eq!(outage.failed(t0 + REMIND_EVERY * 2), Log::Reminder);
        assert_eq!(outage.failures, 10);
    }
}
