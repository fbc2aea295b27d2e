//! Worker threads, thread-per-core: each worker runs its own single-threaded runtime, owns
//! its own links to every backend, and serves the client sessions handed to it, so a request
//! and its reply never cross threads. The main thread is worker 0: besides sessions it runs
//! the accept loop, the admin server, reloads and health checks.
//!
//! Accepted connections are handed off round-robin (accept-and-hand-off rather than one
//! SO_REUSEPORT listener per worker): the kernel spreads SO_REUSEPORT connections by a hash of
//! the peer address, which for a sidecar's few long-lived client connections can leave a
//! worker with none; round-robin gives each worker its share, and `max_clients` and the drain
//! on shutdown stay in one place.
//!
//! Outside [`start`] (unit tests, benches) there is one worker, the current runtime.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

static WORKERS: OnceLock<Box<[Handle]>> = OnceLock::new();

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The `threads` default: one worker per two cores, at least one. Measured on 2 cores
/// (`make bench-load`, README "Scaling"): two workers serve no more than one, because the
/// proxy shares the cores with its clients and backends, as a sidecar shares its pod's; the
/// second worker only doubles the backend links. Set `threads` for a dedicated machine.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// How many workers serve clients (1 until [`start`]).
pub fn count() -> usize {
    WORKERS.get().map_or(1, |w| w.len())
}

/// The worker the calling thread is (0 on the main thread and outside [`start`]). A session
/// never leaves its worker, so this is also the session's worker.
#[inline]
pub fn current() -> usize {
    INDEX.with(Cell::get)
}

/// The runtime of worker `w`, once started.
pub fn handle(w: usize) -> Option<&'static Handle> {
    WORKERS.get().and_then(|h| h.get(w))
}

/// Runs `future` on worker `w` (on the current runtime before [`start`]).
pub fn spawn_on<F>(w: usize, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match handle(w) {
        Some(h) => h.spawn(future),
        None => tokio::spawn(future),
    }
}

/// Starts `threads - 1` worker threads, each blocked in its own current-thread runtime, and
/// returns the runtime of worker 0 for the caller (the main thread) to run the proxy on.
/// Call once, before anything spawns backend links.
pub fn start(threads: usize) -> io::Result<Runtime> {
    let main = Builder::new_current_thread().enable_all().build()?;
    let mut handles = vec![main.handle().clone()];
    for w in 1..threads.max(1) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(format!("shardis-w{w}"))
            .spawn(move || {
                let runtime = match Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                INDEX.with(|i| i.set(w));
                let _ = tx.send(Ok(runtime.handle().clone()));
                // Serves whatever is spawned on it until the process exits.
                runtime.block_on(std::future::pending::<()>());
            })?;
        let handle = rx
            .recv()
            .map_err(|_| io::Error::other("a worker thread exited while starting"))??;
        handles.push(handle);
    }
    WORKERS
        .set(handles.into_boxed_slice())
        .map_err(|_| io::Error::other("workers already started"))?;
    Ok(main)
}
