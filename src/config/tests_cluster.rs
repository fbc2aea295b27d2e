//! Configuration tests: Redis Cluster pools.

use std::time::Duration;

use super::tests::{assert_problem, with_pool};
use super::*;

#[test]
fn cluster_pools_take_seeds_and_refuse_ring_settings() {
    let cluster = |lines: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:6380\"\n[[pools]]\nkind = \"cluster\"\n\
             seeds = [\"127.0.0.1:7000\", \"redis-1.example:7001\"]\n{lines}\n"
        )
    };
    let c = Config::parse(&cluster(
        "read_from = \"prefer_replica\"\nrefresh_interval_ms = 2000",
    ))
    .unwrap();
    let p = &c.pools[0];
    let cc = p.cluster.as_ref().unwrap();
    assert_eq!(cc.seeds.len(), 2);
    assert_eq!(cc.read_from, ReadFrom::PreferReplica);
    assert_eq!(cc.refresh_interval, Duration::from_millis(2000));
    assert!(p.backends.is_empty());
    let c = Config::parse(&cluster("")).unwrap();
    let cc = c.pools[0].cluster.as_ref().unwrap();
    assert_eq!(cc.read_from, ReadFrom::Primary);
    assert_eq!(cc.refresh_interval, Duration::from_millis(5000));
    assert!(c.describe().contains("kind                     cluster"));
    // The JSON of /admin/config reads back as the same configuration.
    let v = c.to_json();
    assert_eq!(v["pools"][0]["kind"], "cluster");
    assert_eq!(v["pools"][0]["seeds"][1], "redis-1.example:7001");
    let mut file = v.clone();
    file.as_object_mut().unwrap().remove("digest");
    assert_eq!(Config::parse(&toml::to_string(&file).unwrap()).unwrap(), c);

    assert_problem(
        &cluster("backends = [{ address = \"127.0.0.1:7001\" }]"),
        "pools[0].backends: is not used by a cluster pool",
    );
    assert_problem(
        &cluster("db = 2"),
        "pools[0].db: a Redis Cluster has only database 0",
    );
    assert_problem(
        &cluster("hash_tag = \"{}\""),
        "pools[0].hash_tag: is not used",
    );
    assert_problem(
        &cluster("read_from = \"any\""),
        "pools[0].read_from: unknown value \"any\"; valid: primary, replica, prefer_replica",
    );
    assert_problem(
        &cluster("refresh_interval_ms = 10"),
        "pools[0].refresh_interval_ms",
    );
    assert_problem(
        "[server]\nlisten = \"127.0.0.1:6380\"\n[[pools]]\nkind = \"cluster\"\n",
        "pools[0].seeds: a cluster pool needs at least one seed node",
    );
    assert_problem(
        "[server]\nlisten = \"127.0.0.1:6380\"\n[[pools]]\nkind = \"cluster\"\n\
         seeds = [\"127.0.0.1:7000\", \"127.0.0.1:7000\", \"nope\"]\n",
        "pools[0].seeds[1]: 127.0.0.1:7000 is listed twice",
    );
    assert_problem(
        &with_pool("seeds = [\"127.0.0.1:7000\"]"),
        "pools[0].seeds: is a setting of cluster pools",
    );
    assert_problem(
        &with_pool("kind = \"sentinel\""),
        "pools[0].kind: unknown pool kind \"sentinel\"; valid: hashed, cluster",
    );
}
