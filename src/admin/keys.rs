//! What the admin server shows of keys and load: `GET /admin/hotkeys?pool=P&n=20`,
//! `GET /admin/bigkeys[?pool=P]`, the hot-key and near-cache families of `/metrics`, and the
//! per-backend load balance of `/status`.
//!
//! `/admin/hotkeys` and `/admin/bigkeys` show key names as clients sent them: whoever can reach
//! the admin listener can read them (README, "Hot keys and big keys").

use serde_json::{Value, json};

use super::http::Response;
use crate::hotkeys::Watch;
use crate::hotkeys::report::{self, View};
use crate::routing::{Pool, Table};
use crate::state::ProxyState;

/// Hot keys listed when the request does not say.
const DEFAULT_N: usize = 20;

/// The value of `name` in a query string.
fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

fn names(pool: &Pool) -> Vec<&str> {
    pool.backends
        .iter()
        .map(|b| b.state.name.as_str())
        .collect()
}

/// The watched pools the request is about: the one `?pool=` names, else every one.
fn pools<'t>(table: &'t Table, query: &str) -> Result<Vec<(&'t Pool, &'t Watch)>, Response> {
    let watched = table
        .pools
        .iter()
        .filter_map(|p| p.watch.as_deref().map(|w| (p, w)));
    match param(query, "pool") {
        None => Ok(watched.collect()),
        Some(name) => {
            let found: Vec<_> = watched.filter(|(p, _)| p.name == name).collect();
            if found.is_empty() {
                let known: Vec<&str> = table.pools.iter().map(|p| p.name.as_str()).collect();
                return Err(Response::json(
                    404,
                    &json!({ "error": format!("no pool {name:?}"), "pools": known }),
                ));
            }
            Ok(found)
        }
    }
}

fn no_table() -> Response {
    Response::json(503, &json!({ "error": "no routing table yet" }))
}

/// `GET /admin/hotkeys?pool=P&n=N`: one pool's hottest keys; without `pool`, the only pool's,
/// or every pool's in a list.
pub fn hotkeys(state: &ProxyState, query: &str) -> Response {
    let Some(table) = state.table() else {
        return no_table();
    };
    let n = match param(query, "n").map(str::parse::<usize>) {
        None => DEFAULT_N,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return Response::json(400, &json!({ "error": "n must be a whole number" }));
        }
    };
    let pools = match pools(&table, query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut all: Vec<Value> = pools
        .iter()
        .map(|(p, w)| report::json(w, &names(p), n))
        .collect();
    if all.len() == 1 {
        return Response::json(200, &all.remove(0));
    }
    Response::json(200, &json!({ "pools": all }))
}

/// `GET /admin/bigkeys[?pool=P]`: every watched pool's big keys (or one pool's).
pub fn bigkeys(state: &ProxyState, query: &str) -> Response {
    let Some(table) = state.table() else {
        return no_table();
    };
    match pools(&table, query) {
        Ok(pools) => {
            let all: Vec<Value> = pools.iter().map(|(_, w)| report::bigkeys_json(w)).collect();
            Response::json(200, &json!({ "pools": all }))
        }
        Err(r) => r,
    }
}

/// The families `/metrics` adds for hot keys and the near cache.
pub fn metrics(state: &ProxyState) -> String {
    let Some(table) = state.table() else {
        return String::new();
    };
    let pools: Vec<(&Watch, Vec<&str>)> = table
        .pools
        .iter()
        .filter_map(|p| p.watch.as_deref().map(|w| (w, names(p))))
        .collect();
    report::render_metrics(&pools)
}

/// `/status`'s `load_balance`: per pool, each backend's share of the requests (since start, and
/// recent from the hot-key sketch) against the share its ring or slot map gives it.
pub fn balance(state: &ProxyState) -> Vec<Value> {
    let Some(table) = state.table() else {
        return Vec::new();
    };
    table.pools.iter().map(pool_balance).collect()
}

fn pool_balance(pool: &Pool) -> Value {
    let expected = pool.expected_shares();
    let requests: Vec<u64> = pool
        .backends
        .iter()
        .map(|b| b.spec.metrics.requests())
        .collect();
    let total: u64 = requests.iter().sum();
    let recent = pool
        .watch
        .as_deref()
        .filter(|w| w.settings.hotkeys_sample > 0)
        .map(View::of);
    let recent_total = recent
        .as_ref()
        .map_or(0.0, |v| v.backends.iter().sum::<f64>());
    let backends: Vec<Value> = pool
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let share = ratio(requests[i] as f64, total as f64);
            let recent_share = recent
                .as_ref()
                .filter(|_| recent_total > 0.0)
                .and_then(|v| ratio(v.backends.get(i).copied().unwrap_or(0.0), recent_total));
            let expected_share = expected.get(i).copied().unwrap_or(0.0);
            let seen = recent_share.or(share);
            json!({
                "name": b.state.name,
                "expected_share": round(expected_share),
                "requests": requests[i],
                "share": share.map(round),
                "recent_share": recent_share.map(round),
                "skew": seen.and_then(|s| ratio(s, expected_share)).map(round),
            })
        })
        .collect();
    json!({ "pool": pool.name, "requests": total, "backends": backends })
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

fn round(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        assert_eq!(param("pool=main&n=5", "n"), Some("5"));
        assert_eq!(param("pool=main&n=5", "pool"), Some("main"));
        assert_eq!(param("n", "n"), Some(""));
        assert_eq!(param("", "pool"), None);
    }
}
