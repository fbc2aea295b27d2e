//! A steady load of known values for failover tests: client threads that each write keys of
//! their own (`load:T:N` = `vN`, never rewritten) and read back one they wrote before,
//! recording every acknowledged write, every error and when each request was sent. After the
//! load, [`Outcome::check`] reads every acknowledged write back and tells writes lost to
//! asynchronous replication (sent before the primary failed) from a proxy fault (sent after).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Client, Frame};

/// The words of shardis's error for a write whose outcome is unknown.
pub const OUTCOME_UNKNOWN: &str = "outcome unknown";

/// One acknowledged write.
#[derive(Clone, Debug)]
pub struct Acked {
    pub key: String,
    pub value: String,
    pub sent: Instant,
}

/// What the load saw.
#[derive(Default, Debug)]
pub struct Outcome {
    pub acked: Vec<Acked>,
    /// Writes answered with the "outcome unknown" error: (key, when sent).
    pub unknown: Vec<(String, Instant)>,
    /// Every other error reply: (command, reply).
    pub errors: Vec<(String, String)>,
    /// Reads answered with the "outcome unknown" error (must never happen).
    pub reads_unknown: usize,
    pub reads: u64,
    pub writes: u64,
}

/// Client threads running the load.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Outcome>>,
}

impl Load {
    /// Starts `threads` clients on `addr`, each sending one request at a time.
    pub fn start(addr: SocketAddr, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|t| {
                let stop = stop.clone();
                std::thread::spawn(move || run(addr, t, &stop))
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops the clients and merges what they saw.
    pub fn stop(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Outcome::default();
        for t in self.threads {
            let o = t.join().expect("a load thread panicked");
            all.acked.extend(o.acked);
            all.unknown.extend(o.unknown);
            all.errors.extend(o.errors);
            all.reads_unknown += o.reads_unknown;
            all.reads += o.reads;
            all.writes += o.writes;
        }
        all
    }
}

fn run(addr: SocketAddr, t: usize, stop: &AtomicBool) -> Outcome {
    let mut c = Client::connect(&addr.to_string());
    let mut o = Outcome::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("load:{t}:{n}");
        let value = format!("v{n}");
        let sent = Instant::now();
        o.writes += 1;
        match c.cmd_str(&["SET", &key, &value]) {
            Frame::Simple(ok) if ok == "OK" => o.acked.push(Acked { key, value, sent }),
            Frame::Error(e) if e.contains(OUTCOME_UNKNOWN) => o.unknown.push((key, sent)),
            other => o.errors.push(("SET".into(), format!("{other:?}"))),
        }
        // Read back a key written a little earlier (on any shard).
        if let Some(a) = o
            .acked
            .len()
            .checked_sub(1 + (n as usize % 7))
            .map(|i| o.acked[i].clone())
        {
            o.reads += 1;
            match c.cmd_str(&["GET", &a.key]) {
                Frame::Bulk(_) | Frame::Null => {}
                Frame::Error(e) if e.contains(OUTCOME_UNKNOWN) => o.reads_unknown += 1,
                other => o.errors.push(("GET".into(), format!("{other:?}"))),
            }
        }
    }
    o
}

/// Acknowledged writes missing after the load, by cause.
#[derive(Debug, Default)]
pub struct Lost {
    /// Sent before the primary failed: the replica may not have received them
    /// (asynchronous replication).
    pub replication: usize,
    /// Sent after the primary failed: they can only have gone to the new primary, so a
    /// missing one is a proxy fault.
    pub proxy: Vec<String>,
}

impl Outcome {
    /// Reads every acknowledged write back through `c`; `failed_at` is when the primary
    /// failed (killed, or the failover asked for).
    pub fn check(&self, c: &mut Client, failed_at: Instant) -> Lost {
        let mut lost = Lost::default();
        for a in &self.acked {
            let got = c.cmd_str(&["GET", &a.key]);
            if got == Frame::Bulk(a.value.clone().into_bytes()) {
                continue;
            }
            if a.sent < failed_at {
                lost.replication += 1;
            } else {
                lost.proxy.push(format!(
                    "{} sent {:?} after the failure: {got:?}",
                    a.key,
                    a.sent - failed_at
                ));
            }
        }
        lost
    }
}

/// Waits `d`, then returns: a pause in a test's load, named for what it waits for.
pub fn steady(d: Duration) {
    std::thread::sleep(d);
}
