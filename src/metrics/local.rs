//! The latency histograms and the command counters, recorded per worker into fixed buckets and
//! merged when `/metrics` is scraped.
//!
//! The Prometheus exporter keeps every histogram sample until its next upkeep (about 38 bytes a
//! request, given back only after the upkeep), and its counters are one atomic every worker
//! writes. Here each series holds, per worker, one cache line of bucket counts (the
//! [`LATENCY_BUCKETS`] plus +Inf), their sum and the error count: a request adds to its own
//! worker's line, memory does not grow with traffic, and the scrape adds the lines up. The
//! names, labels and buckets are the exporter's; [`render`] writes them in its text format
//! after the exporter's own output.
//!
//! Series register with the registry current when they are made: the global one, or one a
//! test installs for its thread ([`with_registry`]), as the `metrics` crate does with local
//! recorders.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use super::LATENCY_BUCKETS;
use super::{BACKEND_REQUEST_DURATION_SECONDS, COMMAND_DURATION_SECONDS, COMMANDS_TOTAL};

const BUCKETS: usize = LATENCY_BUCKETS.len();

/// The bucket bounds in nanoseconds, for an integer comparison per sample.
fn bounds_ns() -> &'static [u64; BUCKETS] {
    static BOUNDS: OnceLock<[u64; BUCKETS]> = OnceLock::new();
    BOUNDS.get_or_init(|| {
        let mut ns = [0u64; BUCKETS];
        for (b, s) in ns.iter_mut().zip(LATENCY_BUCKETS) {
            *b = (s * 1e9).round() as u64;
        }
        ns
    })
}

/// What a series measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// `shardis_command_duration_seconds` and `shardis_commands_total`; label `command`.
    Command,
    /// `shardis_backend_request_duration_seconds`; labels `backend` (and `role`).
    Backend,
}

/// One worker's counts of one series: a cache line of its own.
#[repr(align(64))]
#[derive(Default)]
struct Shard {
    /// Samples per bucket (not cumulative); the last is +Inf.
    buckets: [AtomicU64; BUCKETS + 1],
    sum_ns: AtomicU64,
    /// Commands answered with an error (command series only).
    errors: AtomicU64,
}

/// One labelled series: a latency histogram (and, for commands, the error count), per worker.
pub struct Series {
    family: Family,
    /// The labels as rendered between braces: `command="get"`.
    labels: String,
    shards: Box<[Shard]>,
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Series({:?} {{{}}})", self.family, self.labels)
    }
}

impl Series {
    /// The series of `family` with `labels` (`(name, value)` pairs) in the current registry:
    /// the live one with these labels if there is one (a backend rebuilt by a reload keeps
    /// counting where it was, and no series is rendered twice), else a new one.
    pub fn new(family: Family, labels: &[(&str, &str)]) -> Arc<Series> {
        let mut text = String::new();
        for (i, (name, value)) in labels.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            let _ = write!(text, "{name}=\"{}\"", escape(value));
        }
        current().get_or_add(family, text)
    }

    /// Records one sample, and with `error` one failed command.
    #[inline]
    pub fn record(&self, elapsed: Duration, error: bool) {
        let worker = crate::workers::current();
        let Some(shard) = self.shards.get(worker).or_else(|| self.shards.first()) else {
            return;
        };
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = bounds_ns().partition_point(|&b| b < ns);
        // Relaxed: each counter is read only by a scrape, which needs no order between them.
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        shard.sum_ns.fetch_add(ns, Ordering::Relaxed);
        if error {
            shard.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Samples recorded, over every worker.
    pub fn count(&self) -> u64 {
        self.totals().0.iter().sum()
    }

    /// The counts summed over the workers: per bucket, the sum in nanoseconds, the errors.
    fn totals(&self) -> ([u64; BUCKETS + 1], u64, u64) {
        let mut buckets = [0u64; BUCKETS + 1];
        let (mut sum, mut errors) = (0u64, 0u64);
        for shard in self.shards.iter() {
            for (total, b) in buckets.iter_mut().zip(&shard.buckets) {
                *total += b.load(Ordering::Relaxed);
            }
            sum = sum.wrapping_add(shard.sum_ns.load(Ordering::Relaxed));
            errors += shard.errors.load(Ordering::Relaxed);
        }
        (buckets, sum, errors)
    }
}

/// The series to render. Only a series's creation and a scrape take the lock.
#[derive(Default)]
pub struct Registry {
    series: Mutex<Vec<Weak<Series>>>,
}

impl Registry {
    fn get_or_add(&self, family: Family, labels: String) -> Arc<Series> {
        let mut all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|s| s.strong_count() > 0);
        if let Some(live) = all
            .iter()
            .filter_map(Weak::upgrade)
            .find(|s| s.family == family && s.labels == labels)
        {
            return live;
        }
        let shards = (0..crate::workers::count().max(1))
            .map(|_| Shard::default())
            .collect();
        let series = Arc::new(Series {
            family,
            labels,
            shards,
        });
        all.push(Arc::downgrade(&series));
        series
    }

    /// Every live series of this registry, in the Prometheus text format, families in a fixed
    /// order and series sorted by labels within each.
    pub fn render(&self) -> String {
        let mut live: Vec<Arc<Series>> = match self.series.lock() {
            Ok(all) => all.iter().filter_map(Weak::upgrade).collect(),
            Err(_) => Vec::new(),
        };
        live.sort_by(|a, b| (a.family, &a.labels).cmp(&(b.family, &b.labels)));
        let mut out = String::new();
        let commands: Vec<&Arc<Series>> = live
            .iter()
            .filter(|s| s.family == Family::Command)
            .collect();
        let backends: Vec<&Arc<Series>> = live
            .iter()
            .filter(|s| s.family == Family::Backend)
            .collect();
        histogram(
            &mut out,
            COMMAND_DURATION_SECONDS,
            "Time from reading a client command to having its reply ready, by command.",
            &commands,
        );
        let _ = writeln!(
            out,
            "# HELP {COMMANDS_TOTAL} Client commands answered, by command and result (ok or error).\n\
             # TYPE {COMMANDS_TOTAL} counter"
        );
        for s in &commands {
            let (buckets, _, errors) = s.totals();
            let count: u64 = buckets.iter().sum();
            let labels = &s.labels;
            let _ = writeln!(
                out,
                "{COMMANDS_TOTAL}{{{labels},result=\"ok\"}} {}",
                count - errors.min(count)
            );
            let _ = writeln!(
                out,
                "{COMMANDS_TOTAL}{{{labels},result=\"error\"}} {errors}"
            );
        }
        histogram(
            &mut out,
            BACKEND_REQUEST_DURATION_SECONDS,
            "Time from writing a request to a backend to reading its reply, by backend.",
            &backends,
        );
        out
    }
}

/// One histogram family: HELP, TYPE, then per series its cumulative buckets, sum and count.
fn histogram(out: &mut String, name: &str, help: &str, series: &[&Arc<Series>]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for s in series {
        let (buckets, sum_ns, _) = s.totals();
        let labels = &s.labels;
        let mut cumulative = 0u64;
        for (i, n) in buckets.iter().enumerate() {
            cumulative += n;
            match LATENCY_BUCKETS.get(i) {
                Some(le) => {
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", sum_ns as f64 / 1e9);
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// A label value escaped as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

thread_local! {
    static LOCAL: RefCell<Option<Arc<Registry>>> = const { RefCell::new(None) };
}

/// The process's registry, which `/metrics` renders.
pub fn global() -> Arc<Registry> {
    static GLOBAL: OnceLock<Arc<Registry>> = OnceLock::new();
    GLOBAL.get_or_init(Arc::default).clone()
}

/// The registry series made now register with: the thread's own, in [`with_registry`], else
/// the global one.
fn current() -> Arc<Registry> {
    LOCAL.with(|l| l.borrow().clone()).unwrap_or_else(global)
}

/// Runs `f` with `registry` as the thread's registry (tests, like the `metrics` crate's
/// `with_local_recorder`).
pub fn with_registry<T>(registry: &Arc<Registry>, f: impl FnOnce() -> T) -> T {
    let previous = LOCAL.with(|l| l.replace(Some(registry.clone())));
    let out = f();
    LOCAL.with(|l| *l.borrow_mut() = previous);
    out
}

/// `/metrics`: the exporter's text, then this module's families.
pub fn render(handle: &metrics_exporter_prometheus::PrometheusHandle) -> String {
    let mut text = handle.render();
    text.push_str(&global().render());
    text
}
