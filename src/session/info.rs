//! The proxy's own answer to `INFO`: a `# Proxy` section, one section per backend (with its
//! pool) with the figures taken from that backend's `INFO` text, and a `# Keyspace` section
//! summing the keyspaces of the pools that serve keys, each read in its pool's database;
//! `INFO <section> ...` picks some of them.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::backend::BackendState;
use crate::protocol::parse_version;
use crate::routing::Table;
use crate::state::ProxyState;

/// One backend as `INFO` shows it.
pub struct InfoBackend<'a> {
    pub state: Arc<BackendState>,
    /// Its pool's name and database.
    pub pool: &'a str,
    pub db: u32,
    /// Its pool serves keys (one that only mirrors holds copies: left out of `# Keyspace`).
    pub serves: bool,
    /// The text of its `INFO` reply, if it answered (a cluster replica is not asked).
    pub text: Option<&'a [u8]>,
}

/// Every backend of `table` (each pool's, a cluster's replicas after its primaries) with the
/// `INFO` text `texts` holds for it (indexed like [`Table::backends`]).
pub fn info_backends<'a>(table: &'a Table, texts: &[Option<&'a [u8]>]) -> Vec<InfoBackend<'a>> {
    let mut out = Vec::new();
    for (p, pool) in table.pools.iter().enumerate() {
        let first = table.first_of(p);
        for (i, state) in pool.states().enumerate() {
            out.push(InfoBackend {
                state,
                pool: &pool.name,
                db: pool.db,
                serves: pool.serves,
                text: if i < pool.backends.len() {
                    texts.get(first + i).copied().flatten()
                } else {
                    None
                },
            });
        }
    }
    out
}

/// The figures shardis takes from one backend's `INFO` reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendInfo {
    /// `used_memory` (bytes), 0 if absent.
    pub used_memory: u64,
    /// Sum of `keys=` over every `dbN:` line of the `# Keyspace` section, 0 if none.
    pub keys: u64,
    /// `keys=` and `expires=` of the database shardis serves (`db0`, or the pool's `db`), 0 if
    /// absent.
    pub db_keys: u64,
    pub db_expires: u64,
    /// `redis_version` as major, minor, patch, if the backend gave a readable one.
    pub redis_version: Option<[u32; 3]>,
}

/// Which sections `INFO` renders, as a bit set.
pub type InfoSections = u16;
pub const INFO_PROXY: InfoSections = 1;
pub const INFO_BACKENDS: InfoSections = 2;
pub const INFO_KEYSPACE: InfoSections = 4;
pub const INFO_CLIENTS: InfoSections = 8;
/// A cluster pool's slot map and counters (nothing for a hashed pool).
pub const INFO_CLUSTER: InfoSections = 16;
/// `# Memory` (`number_of_cached_scripts`: the proxy's script cache).
pub const INFO_MEMORY: InfoSections = 32;
/// `# CPU`: the proxy process's CPU time.
pub const INFO_CPU: InfoSections = 64;
/// `# Stats` (`total_error_replies`) and `# Errorstats`.
pub const INFO_ERRORS: InfoSections = 128;
/// Each watched pool's hottest keys (`INFO hotkeys`, or `all`).
pub const INFO_HOTKEYS: InfoSections = 256;
/// Each watched pool's big keys (`INFO bigkeys`, or `all`).
pub const INFO_BIGKEYS: InfoSections = 512;
/// `INFO`.
pub const INFO_ALL: InfoSections =
    INFO_PROXY | INFO_CLIENTS | INFO_BACKENDS | INFO_CLUSTER | INFO_KEYSPACE;
/// `INFO default`.
pub const INFO_DEFAULT: InfoSections = INFO_ALL | INFO_MEMORY | INFO_CPU | INFO_ERRORS;
/// `INFO all` and `INFO everything`: the default sections, and the key-watch ones.
pub const INFO_EVERYTHING: InfoSections = INFO_DEFAULT | INFO_HOTKEYS | INFO_BIGKEYS;

/// The sections named by `INFO`'s arguments (case-insensitive); none named means all. An
/// unknown name adds nothing, so `INFO nosuch` is empty, as in Redis.
pub fn info_sections<'a>(names: impl IntoIterator<Item = &'a [u8]>) -> InfoSections {
    let mut any = false;
    let mut set = 0;
    for name in names {
        any = true;
        let lower = name.to_ascii_lowercase();
        set |= match lower.as_slice() {
            b"default" => INFO_DEFAULT,
            b"all" | b"everything" => INFO_EVERYTHING,
            b"hotkeys" => INFO_HOTKEYS,
            b"bigkeys" => INFO_BIGKEYS,
            b"memory" => INFO_MEMORY,
            b"cpu" => INFO_CPU,
            b"stats" | b"errorstats" => INFO_ERRORS,
            // The proxy is the server the client talks to.
            b"proxy" | b"server" => INFO_PROXY,
            b"backends" => INFO_BACKENDS,
            b"keyspace" => INFO_KEYSPACE,
            b"clients" => INFO_CLIENTS,
            b"cluster" => INFO_CLUSTER,
            _ => 0,
        };
    }
    if any { set } else { INFO_ALL }
}

/// Parses the raw text of a Redis `INFO` reply; `db` is the database shardis serves. Unknown,
/// malformed or non-UTF-8 lines are skipped.
pub fn parse_info(raw: &[u8], db: u32) -> BackendInfo {
    let served = format!("db{db}");
    let mut info = BackendInfo::default();
    let mut in_keyspace = false;
    for line in raw.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let line = line.trim_end_matches('\r');
        if let Some(section) = line.strip_prefix('#') {
            in_keyspace = section.trim().eq_ignore_ascii_case("keyspace");
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key == "used_memory" {
            info.used_memory = value.trim().parse().unwrap_or(0);
        } else if key == "redis_version" {
            info.redis_version = parse_version(value);
        } else if in_keyspace && is_db_name(key) {
            let keys = db_field(value, "keys");
            info.keys = info.keys.saturating_add(keys);
            if key == served {
                info.db_keys = keys;
                info.db_expires = db_field(value, "expires");
            }
        }
    }
    info
}

fn is_db_name(key: &str) -> bool {
    key.strip_prefix("db")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// One field (`keys`, `expires`) of a keyspace value such as `keys=3,expires=0,avg_ttl=0`.
fn db_field(value: &str, name: &str) -> u64 {
    value
        .split(',')
        .filter_map(|field| field.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Renders the proxy's `INFO` reply with CRLF line endings, like Redis: the `sections` asked
/// for, in the order Proxy, Clients, Backend ..., Cluster (a cluster pool only), Keyspace,
/// separated by blank lines.
///
/// `backends`: every backend, with its pool and its `INFO` text; `db`: the database clients
/// see (the catch-all pool's).
pub fn render_info(
    state: &ProxyState,
    backends: &[InfoBackend<'_>],
    sections: InfoSections,
    db: u32,
) -> String {
    let up = backends.iter().filter(|b| b.state.is_up()).count();
    let mut out = String::with_capacity(256 + 96 * backends.len());
    let infos: Vec<BackendInfo> = backends
        .iter()
        .map(|b| {
            b.text
                .map(|text| parse_info(text, b.db))
                .unwrap_or_default()
        })
        .collect();
    // Writing to a String cannot fail; the results are ignored for that reason.
    if sections & INFO_PROXY != 0 {
        proxy_section(&mut out, state, &infos, up, backends.len());
    }
    if sections & INFO_CLIENTS != 0 {
        separate(&mut out);
        // As Redis names them, for tools (and Redis's own tests) that wait on them.
        let blocked = state
            .clients
            .all()
            .iter()
            .filter(|c| c.is_blocked())
            .count();
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nblocked_clients:{blocked}\r\n",
            state.client_count()
        );
    }
    if sections & INFO_BACKENDS != 0 {
        for (backend, info) in backends.iter().zip(&infos) {
            separate(&mut out);
            let _ = write!(
                out,
                "# Backend {}\r\n\
                 pool:{}\r\n\
                 address:{}\r\n\
                 connected:{}\r\n\
                 used_memory:{}\r\n\
                 keys:{}\r\n",
                backend.state.name,
                backend.pool,
                backend.state.address,
                u8::from(backend.state.is_up()),
                info.used_memory,
                info.keys,
            );
        }
    }
    if sections & INFO_CLUSTER != 0
        && let Some(text) = state.cluster_info()
    {
        separate(&mut out);
        out.push_str(&text);
    }
    keys_sections(&mut out, state, sections);
    process_sections(&mut out, state, sections);
    if sections & INFO_KEYSPACE != 0 {
        separate(&mut out);
        out.push_str("# Keyspace\r\n");
        // shardis serves one database (each pool's own); like Redis, an empty keyspace has
        // no db line. Pools that only mirror hold copies.
        let served = || backends.iter().zip(&infos).filter(|(b, _)| b.serves);
        let keys: u64 = served().map(|(_, i)| i.db_keys).sum();
        let expires: u64 = served().map(|(_, i)| i.db_expires).sum();
        if keys > 0 {
            let _ = write!(out, "db{db}:keys={keys},expires={expires},avg_ttl=0\r\n");
        }
    }
    out
}

/// `# Memory`, `# CPU` and `# Stats`/`# Errorstats`: the proxy process's own figures.
fn process_sections(out: &mut String, state: &ProxyState, sections: InfoSections) {
    if sections & INFO_MEMORY != 0 {
        separate(out);
        let _ = write!(
            out,
            "# Memory\r\nnumber_of_cached_scripts:{}\r\n",
            state.scripting.engine.cached_scripts()
        );
    }
    if sections & INFO_CPU != 0 {
        separate(out);
        let (user, sys) = cpu_seconds();
        let _ = write!(
            out,
            "# CPU\r\nused_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\n"
        );
    }
    if sections & INFO_ERRORS != 0 {
        separate(out);
        let _ = write!(
            out,
            "# Stats\r\ntotal_error_replies:{}\r\n\r\n# Errorstats\r\n",
            state.errors.total()
        );
        state.errors.render(out);
    }
}

/// `# Hotkeys` and `# Bigkeys`: each watched pool's hottest keys and big keys.
fn keys_sections(out: &mut String, state: &ProxyState, sections: InfoSections) {
    if sections & (INFO_HOTKEYS | INFO_BIGKEYS) == 0 {
        return;
    }
    let Some(table) = state.table() else {
        return;
    };
    let watched: Vec<_> = table
        .pools
        .iter()
        .filter_map(|p| p.watch.as_deref().map(|w| (p, w)))
        .collect();
    if sections & INFO_HOTKEYS != 0 {
        separate(out);
        out.push_str("# Hotkeys\r\n");
        for (pool, watch) in &watched {
            let names: Vec<&str> = pool
                .backends
                .iter()
                .map(|b| b.state.name.as_str())
                .collect();
            crate::hotkeys::report::info_hotkeys(out, watch, &names);
        }
    }
    if sections & INFO_BIGKEYS != 0 {
        separate(out);
        out.push_str("# Bigkeys\r\n");
        for (_, watch) in &watched {
            crate::hotkeys::report::info_bigkeys(out, watch);
        }
    }
}

/// The proxy process's user and system CPU time in seconds, from `/proc/self/stat` (Linux;
/// zero elsewhere).
fn cpu_seconds() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    let after = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, in clock ticks (USER_HZ, 100 on
    // Linux).
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) / 100.0, ticks(12) / 100.0)
}

/// A blank line between two sections.
fn separate(out: &mut String) {
    if !out.is_empty() {
        out.push_str("\r\n");
    }
}

/// `# Proxy`: shardis's own figures, and the Redis version clients can count on.
fn proxy_section(out: &mut String, state: &ProxyState, infos: &[BackendInfo], up: usize, n: usize) {
    let _ = write!(out, "# Proxy\r\n");
    // What clients can count on through the proxy is what the oldest backend has; tools that
    // check the server version (`INFO server`) read this.
    if let Some([major, minor, patch]) = infos.iter().filter_map(|i| i.redis_version).min() {
        let _ = write!(out, "redis_version:{major}.{minor}.{patch}\r\n");
    }
    let _ = write!(
        out,
        "shardis_version:{}\r\n\
         uptime_in_seconds:{}\r\n\
         connected_clients:{}\r\n\
         total_commands_processed:{}\r\n\
         backends_up:{}\r\n\
         backends_total:{}\r\n",
        env!("CARGO_PKG_VERSION"),
        state.started.elapsed().as_secs(),
        state.client_count(),
        state.commands(),
        up,
        n,
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::BackendState;

    /// `INFO` from redis-server 7.0 with keys in db0 (3) and db3 (2).
    const REDIS_7_0: &[u8] = include_bytes!("testdata/redis-7.0-info.txt");

    #[test]
    fn parses_real_redis_info() {
        let info = parse_info(REDIS_7_0, 0);
        assert_eq!(
            info,
            BackendInfo {
                used_memory: 1_016_104,
                keys: 5,
                db_keys: 3,
                db_expires: 0,
                redis_version: Some([7, 0, 15])
            }
        );
    }

    #[test]
    fn parses_odd_input() {
        assert_eq!(parse_info(b"", 0), BackendInfo::default());
        assert_eq!(
            parse_info(b"\xff\xfe\r\n:::\r\n#\r\n", 0),
            BackendInfo::default()
        );
        // db lines outside # Keyspace and look-alike keys are ignored; LF-only text is fine.
        let text = b"# Memory\nused_memory:12\nused_memory_human:12B\ndb0:keys=9\n\
                     # Keyspace\ndb0:keys=1,expires=0\ndbx:keys=5\ndb12:expires=1,keys=2\ndb1:keys=bad\n";
        assert_eq!(
            parse_info(text, 0),
            BackendInfo {
                used_memory: 12,
                keys: 3,
                db_keys: 1,
                db_expires: 0,
                redis_version: None
            }
        );
    }

    /// Backends s1 (up) and s2 of pool "main" with `texts`, in database `db`.
    fn two<'a>(texts: &[Option<&'a [u8]>], db: u32) -> Vec<InfoBackend<'a>> {
        let s1 = Arc::new(BackendState::new("s1", "127.0.0.1:7001"));
        let s2 = Arc::new(BackendState::new("s2", "127.0.0.1:7002"));
        s1.connection_opened();
        [s1, s2]
            .into_iter()
            .enumerate()
            .map(|(i, state)| InfoBackend {
                state,
                pool: "main",
                db,
                serves: true,
                text: texts.get(i).copied().flatten(),
            })
            .collect()
    }

    #[test]
    fn renders_proxy_and_backend_sections() {
        let state = ProxyState::new("d".into(), vec![]);
        state.clients.insert(crate::clients::Clients::detached(1));
        state.add_commands(7);
        let text = render_info(&state, &two(&[Some(REDIS_7_0), None], 0), INFO_ALL, 0);
        let expected = format!(
            "# Proxy\r\nredis_version:7.0.15\r\nshardis_version:{}\r\nuptime_in_seconds:0\r\nconnected_clients:1\r\n\
             total_commands_processed:7\r\nbackends_up:1\r\nbackends_total:2\r\n\
             \r\n# Clients\r\nconnected_clients:1\r\nblocked_clients:0\r\n\
             \r\n# Backend s1\r\npool:main\r\naddress:127.0.0.1:7001\r\nconnected:1\r\nused_memory:1016104\r\nkeys:5\r\n\
             \r\n# Backend s2\r\npool:main\r\naddress:127.0.0.1:7002\r\nconnected:0\r\nused_memory:0\r\nkeys:0\r\n\
             \r\n# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(text, expected);
        // A backend without a text counts as "failed".
        assert!(
            render_info(&state, &two(&[], 0), INFO_BACKENDS, 0)
                .ends_with("used_memory:0\r\nkeys:0\r\n")
        );
        // One section alone, or none for an unknown name.
        assert_eq!(
            render_info(&state, &two(&[Some(REDIS_7_0)], 0), INFO_KEYSPACE, 0),
            "# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n"
        );
        assert_eq!(
            render_info(&state, &two(&[], 0), INFO_KEYSPACE, 0),
            "# Keyspace\r\n"
        );
        // With a pool's `db`, its line is the one read.
        assert_eq!(
            render_info(&state, &two(&[Some(REDIS_7_0)], 3), INFO_KEYSPACE, 3),
            "# Keyspace\r\ndb3:keys=2,expires=1,avg_ttl=0\r\n"
        );
        assert_eq!(render_info(&state, &two(&[], 0), 0, 0), "");
    }

    #[test]
    fn keyspace_sums_each_serving_pool_in_its_own_database() {
        let state = ProxyState::new("d".into(), vec![]);
        // Pool "a" in db 0 (3 keys), pool "b" in db 3 (2 keys), a mirror pool (left out).
        let mut list = two(&[Some(REDIS_7_0)], 0);
        list.truncate(1);
        let mut b = two(&[Some(REDIS_7_0)], 3);
        b[0].pool = "b";
        let mut shadow = two(&[Some(REDIS_7_0)], 0);
        shadow[0].pool = "shadow";
        shadow[0].serves = false;
        list.push(b.remove(0));
        list.push(shadow.remove(0));
        assert_eq!(
            render_info(&state, &list, INFO_KEYSPACE, 0),
            "# Keyspace\r\ndb0:keys=5,expires=1,avg_ttl=0\r\n"
        );
        assert!(render_info(&state, &list, INFO_BACKENDS, 0).contains("pool:shadow"));
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("7.0.15"), Some([7, 0, 15]));
        assert_eq!(parse_version("6.2"), Some([6, 2, 0]));
        assert_eq!(parse_version("255.255.255\r"), Some([255, 255, 255]));
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("7.x.1"), None);
        // The oldest backend's version is the proxy's.
        let state = ProxyState::new("d".into(), vec![]);
        let texts = [
            Some(&b"redis_version:7.2.4\r\n"[..]),
            Some(&b"redis_version:6.2.14\r\n"[..]),
        ];
        let text = render_info(&state, &two(&texts, 0), INFO_PROXY, 0);
        assert!(
            text.starts_with("# Proxy\r\nredis_version:6.2.14\r\n"),
            "{text}"
        );
        let text = render_info(&state, &two(&[None, None], 0), INFO_PROXY, 0);
        assert!(!text.contains("redis_version"), "{text}");
    }

    #[test]
    fn section_names() {
        let sections = |names: &[&str]| info_sections(names.iter().map(|n| n.as_bytes()));
        assert_eq!(sections(&[]), INFO_ALL);
        assert_eq!(sections(&["everything"]), INFO_EVERYTHING);
        assert_eq!(
            sections(&["hotkeys", "bigkeys"]),
            INFO_HOTKEYS | INFO_BIGKEYS
        );
        assert_eq!(sections(&["Default"]), INFO_DEFAULT);
        assert_eq!(sections(&["KEYSPACE"]), INFO_KEYSPACE);
        assert_eq!(sections(&["clients"]), INFO_CLIENTS);
        assert_eq!(sections(&["proxy", "backends"]), INFO_PROXY | INFO_BACKENDS);
        assert_eq!(sections(&["server"]), INFO_PROXY);
        assert_eq!(sections(&["memory"]), INFO_MEMORY);
        assert_eq!(sections(&["nosuch"]), 0);
        let state = ProxyState::new("d".into(), vec![]);
        state.errors.count(b"-ERR x\r\n");
        let text = render_info(&state, &[], INFO_MEMORY | INFO_CPU | INFO_ERRORS, 0);
        assert!(
            text.starts_with(
                "# Memory\r\nnumber_of_cached_scripts:0\r\n\r\n# CPU\r\nused_cpu_sys:"
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                "total_error_replies:1\r\n\r\n# Errorstats\r\nerrorstat_ERR:count=1\r\n"
            ),
            "{text}"
        );
    }
}
