//! The proxy's own answer to `INFO`: a `# Proxy` section, then one section per backend with the
//! figures taken from that backend's `INFO` text.

use std::fmt::Write as _;

use crate::server::ProxyState;

/// The figures shardis takes from one backend's `INFO` reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendInfo {
    /// `used_memory` (bytes), 0 if absent.
    pub used_memory: u64,
    /// Sum of `keys=` over every `dbN:` line of the `# Keyspace` section, 0 if none.
    pub keys: u64,
}

/// Parses the raw text of a Redis `INFO` reply. Unknown, malformed or non-UTF-8 lines are skipped.
pub fn parse_info(raw: &[u8]) -> BackendInfo {
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
        } else if in_keyspace && is_db_name(key) {
            info.keys = info.keys.saturating_add(db_keys(value));
        }
    }
    info
}

fn is_db_name(key: &str) -> bool {
    key.strip_prefix("db")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `keys` from a keyspace value such as `keys=3,expires=0,avg_ttl=0`.
fn db_keys(value: &str) -> u64 {
    value
        .split(',')
        .filter_map(|field| field.split_once('='))
        .find(|(k, _)| *k == "keys")
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Renders the proxy's `INFO` reply with CRLF line endings, like Redis.
///
/// `backend_info[i]`: the raw text of `INFO` from backend i (config order), or None if it failed.
pub fn render_info(state: &ProxyState, backend_info: &[Option<&[u8]>]) -> String {
    let up = state.backends.iter().filter(|b| b.is_up()).count();
    let mut out = String::with_capacity(256 + 96 * state.backends.len());
    // Writing to a String cannot fail; the results are ignored for that reason.
    let _ = write!(
        out,
        "# Proxy\r\n\
         shardis_version:{}\r\n\
         uptime_in_seconds:{}\r\n\
         connected_clients:{}\r\n\
         total_commands_processed:{}\r\n\
         backends_up:{}\r\n\
         backends_total:{}\r\n",
        env!("CARGO_PKG_VERSION"),
        state.started.elapsed().as_secs(),
        state.clients(),
        state.commands(),
        up,
        state.backends.len(),
    );
    for (i, backend) in state.backends.iter().enumerate() {
        let info = backend_info
            .get(i)
            .copied()
            .flatten()
            .map(parse_info)
            .unwrap_or_default();
        let _ = write!(
            out,
            "\r\n# Backend {}\r\n\
             address:{}\r\n\
             connected:{}\r\n\
             used_memory:{}\r\n\
             keys:{}\r\n",
            backend.name,
            backend.address,
            u8::from(backend.is_up()),
            info.used_memory,
            info.keys,
        );
    }
    out
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
        let info = parse_info(REDIS_7_0);
        assert_eq!(
            info,
            BackendInfo {
                used_memory: 1_016_104,
                keys: 5
            }
        );
    }

    #[test]
    fn parses_odd_input() {
        assert_eq!(parse_info(b""), BackendInfo::default());
        assert_eq!(
            parse_info(b"\xff\xfe\r\n:::\r\n#\r\n"),
            BackendInfo::default()
        );
        // db lines outside # Keyspace and look-alike keys are ignored; LF-only text is fine.
        let text = b"# Memory\nused_memory:12\nused_memory_human:12B\ndb0:keys=9\n\
                     # Keyspace\ndb0:keys=1,expires=0\ndbx:keys=5\ndb12:expires=1,keys=2\ndb1:keys=bad\n";
        assert_eq!(
            parse_info(text),
            BackendInfo {
                used_memory: 12,
                keys: 3
            }
        );
    }

    #[test]
    fn renders_proxy_and_backend_sections() {
        let s1 = Arc::new(BackendState::new("s1", "127.0.0.1:7001"));
        let s2 = Arc::new(BackendState::new("s2", "127.0.0.1:7002"));
        s1.connection_opened();
        let state = ProxyState::new("d".into(), vec![s1, s2]);
        state.client_connected();
        state.add_commands(7);
        let text = render_info(&state, &[Some(REDIS_7_0), None]);
        let expected = format!(
            "# Proxy\r\nshardis_version:{}\r\nuptime_in_seconds:0\r\nconnected_clients:1\r\n\
             total_commands_processed:7\r\nbackends_up:1\r\nbackends_total:2\r\n\
             \r\n# Backend s1\r\naddress:127.0.0.1:7001\r\nconnected:1\r\nused_memory:1016104\r\nkeys:5\r\n\
             \r\n# Backend s2\r\naddress:127.0.0.1:7002\r\nconnected:0\r\nused_memory:0\r\nkeys:0\r\n",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(text, expected);
        // A short backend_info slice counts as "failed" for the missing backends.
        assert!(render_info(&state, &[]).ends_with("used_memory:0\r\nkeys:0\r\n"));
    }
}
