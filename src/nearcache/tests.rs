//! The cache's rules, on this test's thread: what a fill may store, what holds and
//! invalidations drop, the budget, expiry. The tracking connection against a real Redis is
//! tested in tests/nearcache.rs.

use std::time::Duration;

use super::*;
use crate::config::KeysConfig;
use crate::hotkeys::Shared;
use crate::protocol::command::lookup;
use crate::routing::Table;

struct Fixture {
    watch: Arc<Watch>,
    backends: Vec<Arc<Backend>>,
    frame: Vec<u8>,
    args: Vec<Range<usize>>,
    id: usize,
}

fn fixture(budget: usize) -> Fixture {
    let cfg = crate::config::Config::from_backends(&["127.0.0.1:1".into(), "127.0.0.1:2".into()])
        .unwrap();
    let (table, _rx) = Table::detached(&cfg.pools[0]);
    let settings = KeysConfig {
        near_cache: true,
        near_cache_bytes: budget,
        ..KeysConfig::default()
    };
    let watch = Watch::new(settings, Shared::new("main"));
    register(&watch);
    let (frame, args) = request(&["GET", "hot"]);
    Fixture {
        watch,
        backends: table.pools[0].backends.clone(),
        frame,
        args,
        id: lookup(b"get").unwrap().0,
    }
}

fn request(parts: &[&str]) -> (Vec<u8>, Vec<Range<usize>>) {
    let mut frame = Vec::new();
    let mut args = Vec::new();
    for p in parts {
        let start = frame.len();
        frame.extend_from_slice(p.as_bytes());
        args.push(start..frame.len());
    }
    (frame, args)
}

impl Fixture {
    /// Makes `key` a hot key of this worker, old enough to be filled.
    fn slot(&self, key: &str, rank: u32) -> u64 {
        let pool = self.watch.shared.id();
        let k = slot_key(pool, crate::hotkeys::key_hash(key.as_bytes()));
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            c.next_id += 1;
            let id = c.next_id;
            c.slots.insert(
                k,
                Slot {
                    id,
                    pool,
                    key: key.as_bytes().into(),
                    seq: 0,
                    holds: 0,
                    filling: false,
                    created: Instant::now() - Duration::from_secs(3600),
                    rank,
                    values: Vec::new(),
                },
            );
        });
        BUSY.with(|b| b.set(true));
        k
    }

    /// A fill of `key` as a miss would send it now.
    fn fill(&self, key: &str) -> tracker::Fill {
        let k = slot_key(
            self.watch.shared.id(),
            crate::hotkeys::key_hash(key.as_bytes()),
        );
        CACHE.with(|c| {
            let c = c.borrow();
            let slot = &c.slots[&k];
            tracker::Fill {
                slot: k,
                id: slot.id,
                seq: slot.seq,
                epoch: c.epoch,
                shape: shape(self.id, &self.frame, &self.args),
                frame: Bytes::new(),
            }
        })
    }

    fn addr(&self, b: usize) -> usize {
        Arc::as_ptr(&self.backends[b]) as usize
    }

    fn read(&self, key: &str, proto: Proto, backend: usize) -> Option<Bytes> {
        let (frame, args) = request(&["GET", key]);
        let r = Read {
            id: self.id,
            frame: &frame,
            args: &args,
            proto,
        };
        read(
            &self.watch,
            crate::hotkeys::key_hash(key.as_bytes()),
            key.as_bytes(),
            &r,
            &self.backends[backend],
        )
    }

    fn count(&self, what: Count) -> u64 {
        self.watch.shared.near.total(what)
    }
}

#[tokio::test]
async fn a_fill_is_served_until_invalidated() {
    let f = fixture(1 << 20);
    f.slot("hot", 0);
    let fill = f.fill("hot");
    filled(&fill, f.addr(0), b"$1\r\nv\r\n", -1, Instant::now());
    assert_eq!(
        f.read("hot", Proto::Resp2, 0).as_deref(),
        Some(&b"$1\r\nv\r\n"[..])
    );
    assert_eq!(
        f.read("hot", Proto::Resp3, 0).as_deref(),
        Some(&b"$1\r\nv\r\n"[..])
    );
    assert_eq!(f.count(Count::Hits), 2);
    // A read routed to another backend (the ring changed) is not answered from it.
    assert_eq!(f.read("hot", Proto::Resp2, 1), None);
    // Another key is not cached at all.
    assert_eq!(f.read("cold", Proto::Resp2, 0), None);
    invalidate(f.watch.shared.id(), [&b"hot"[..]].into_iter());
    assert_eq!(f.read("hot", Proto::Resp2, 0), None);
    assert_eq!(f.count(Count::Invalidations), 1);
    assert_eq!(CACHE.with(|c| c.borrow().bytes), 0);
}

#[tokio::test]
async fn a_fill_overtaken_by_an_invalidation_is_not_stored() {
    let f = fixture(1 << 20);
    f.slot("hot", 0);
    let fill = f.fill("hot");
    // The key changes while the fill is in flight: its reply may hold the old value.
    invalidate(f.watch.shared.id(), [&b"hot"[..]].into_iter());
    filled(&fill, f.addr(0), b"$3\r\nold\r\n", -1, Instant::now());
    assert_eq!(f.read("hot", Proto::Resp2, 0), None);
    // The next fill, sent after the invalidation, is.
    let fill = f.fill("hot");
    filled(&fill, f.addr(0), b"$3\r\nnew\r\n", -1, Instant::now());
    assert_eq!(
        f.read("hot", Proto::Resp2, 0).as_deref(),
        Some(&b"$3\r\nnew\r\n"[..])
    );
}

#[tokio::test]
async fn a_write_in_flight_holds_its_key() {
    let f = fixture(1 << 20);
    f.slot("hot", 0);
    filled(
        &f.fill("hot"),
        f.addr(0),
        b"$1\r\nv\r\n",
        -1,
        Instant::now(),
    );
    let before = f.fill("hot");
    let hold = hold_key(&f.watch, crate::hotkeys::key_hash(b"hot"), b"hot").unwrap();
    // Dropped at once, and nothing is served or stored while the write is in flight.
    assert_eq!(f.read("hot", Proto::Resp2, 0), None);
    filled(
        &f.fill("hot"),
        f.addr(0),
        b"$1\r\nv\r\n",
        -1,
        Instant::now(),
    );
    assert_eq!(f.read("hot", Proto::Resp2, 0), None);
    drop(hold);
    // A fill sent before the write may have read the old value: not stored.
    filled(&before, f.addr(0), b"$1\r\nv\r\n", -1, Instant::now());
    assert_eq!(f.read("hot", Proto::Resp2, 0), None);
    filled(
        &f.fill("hot"),
        f.addr(0),
        b"$1\r\nw\r\n",
        -1,
        Instant::now(),
    );
    assert_eq!(
        f.read("hot", Proto::Resp2, 0).as_deref(),
        Some(&b"$1\r\nw\r\n"[..])
    );
    // A transaction or script holds every key.
    let all = hold_all();
    assert_eq!(f.read("hot", Proto::Resp2, 0), None);
    let during = f.fill("hot");
    drop(all);
    filled(&during, f.addr(0), b"$1\r\nw\r\n", -1, Instant::now());
    assert_eq!(f.read("hot", Proto::Resp2, 0), None);
    // No key of another pool or worker is held by a hold of a key not cached here.
    assert!(hold_key(&f.watch, crate::hotkeys::key_hash(b"cold"), b"cold").is_none());
}

#[tokio::test]
async fn a_lost_connection_drops_its_values_only() {
    let f = fixture(1 << 20);
    f.slot("a", 0);
    f.slot("b", 1);
    filled(&f.fill("a"), f.addr(0), b":1\r\n", -1, Instant::now());
    filled(&f.fill("b"), f.addr(1), b":2\r\n", -1, Instant::now());
    flush_backend(f.addr(0), Count::Evictions);
    assert_eq!(f.read("a", Proto::Resp2, 0), None);
    assert_eq!(
        f.read("b", Proto::Resp2, 1).as_deref(),
        Some(&b":2\r\n"[..])
    );
    assert_eq!(f.count(Count::Evictions), 1);
}

#[tokio::test(start_paused = true)]
async fn values_expire_with_their_ttl_and_nulls_are_cached() {
    let f = fixture(1 << 20);
    f.slot("hot", 0);
    filled(
        &f.fill("hot"),
        f.addr(0),
        b"$1\r\nv\r\n",
        100,
        Instant::now(),
    );
    assert!(f.read("hot", Proto::Resp2, 0).is_some());
    tokio::time::advance(Duration::from_millis(101)).await;
    assert_eq!(f.read("hot", Proto::Resp2, 0), None);
    // A key about to expire (PTTL 0) is not stored; a missing one is, as a null.
    filled(&f.fill("hot"), f.addr(0), b"$1\r\nv\r\n", 0, Instant::now());
    assert_eq!(f.read("hot", Proto::Resp2, 0), None);
    filled(&f.fill("hot"), f.addr(0), b"_\r\n", -2, Instant::now());
    assert_eq!(
        f.read("hot", Proto::Resp2, 0).as_deref(),
        Some(&b"$-1\r\n"[..])
    );
    assert_eq!(
        f.read("hot", Proto::Resp3, 0).as_deref(),
        Some(&b"_\r\n"[..])
    );
    // Errors and replies of other shapes are never stored.
    filled(&f.fill("hot"), f.addr(0), b"-ERR x\r\n", -1, Instant::now());
    assert_eq!(
        f.read("hot", Proto::Resp2, 0).as_deref(),
        Some(&b"$-1\r\n"[..])
    );
}

#[tokio::test]
async fn the_budget_evicts_colder_keys_first() {
    let per_worker = 200 * crate::workers::count().max(1);
    let f = fixture(per_worker.max(1024));
    let budget = CACHE.with(|c| {
        c.borrow().pools[f.watch.shared.id()]
            .as_ref()
            .unwrap()
            .budget
    });
    let value = format!("${}\r\n{}\r\n", budget / 2, "x".repeat(budget / 2));
    f.slot("hot", 0);
    f.slot("warm", 1);
    filled(
        &f.fill("warm"),
        f.addr(0),
        value.as_bytes(),
        -1,
        Instant::now(),
    );
    assert!(f.read("warm", Proto::Resp2, 0).is_some());
    // The hotter key takes the room of the colder one.
    filled(
        &f.fill("hot"),
        f.addr(0),
        value.as_bytes(),
        -1,
        Instant::now(),
    );
    assert!(f.read("hot", Proto::Resp2, 0).is_some());
    assert!(f.read("warm", Proto::Resp2, 0).is_none());
    // Not the other way round.
    filled(
        &f.fill("warm"),
        f.addr(0),
        value.as_bytes(),
        -1,
        Instant::now(),
    );
    assert!(f.read("warm", Proto::Resp2, 0).is_none());
    assert!(f.read("hot", Proto::Resp2, 0).is_some());
    // A value larger than the whole budget is never stored.
    let huge = format!("${}\r\n{}\r\n", budget, "x".repeat(budget));
    filled(
        &f.fill("hot"),
        f.addr(0),
        huge.as_bytes(),
        -1,
        Instant::now(),
    );
    assert!(CACHE.with(|c| c.borrow().bytes) <= budget);
}
