//! INFO answered by the proxy: a `# Proxy` section (version, uptime, clients, commands, backends
//! up/total), then one section per backend whose figures come from that backend's own INFO.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::ops::{NAMES, backends, start_redises, wait_for};
use common::{Client, Frame, Shardis, shardis_config};

/// INFO's sections by header (`Proxy`, `Backend s1`, ...), each as field -> value.
fn sections(c: &mut Client) -> Vec<(String, HashMap<String, String>)> {
    sections_of(c, &["INFO"])
}

/// The sections of the reply to `info` (`INFO` with arguments).
fn sections_of(c: &mut Client, info: &[&str]) -> Vec<(String, HashMap<String, String>)> {
    let text = c.cmd_str(info).as_text();
    assert!(
        text.contains("\r\n"),
        "INFO lines end with CRLF like Redis': {text:?}"
    );
    let mut out: Vec<(String, HashMap<String, String>)> = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if let Some(header) = line.strip_prefix("# ") {
            out.push((header.to_string(), HashMap::new()));
        } else {
            let (k, v) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("not field:value: {line:?}"));
            out.last_mut()
                .unwrap_or_else(|| panic!("a field before any section: {line:?}"))
                .1
                .insert(k.to_string(), v.to_string());
        }
    }
    out
}

fn num(section: &HashMap<String, String>, field: &str) -> u64 {
    section
        .get(field)
        .unwrap_or_else(|| panic!("no {field} in {section:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{field} is not a number in {section:?}"))
}

#[test]
fn info_has_a_proxy_section_and_one_section_per_backend() {
    let mut redises = start_redises(3);
    let shardis = Shardis::start(&shardis_config(&backends(&redises), ""));
    let mut c = shardis.client();
    for i in 0..30 {
        assert_eq!(
            c.cmd_str(&["SET", &format!("key:{i}"), "v"]),
            Frame::Simple("OK".into())
        );
    }
    let mut other = shardis.client();
    assert_eq!(other.cmd_str(&["PING"]), Frame::Simple("PONG".into()));

    assert_eq!(c.cmd_str(&["EXPIRE", "key:0", "1000"]), Frame::Integer(1));
    let info = sections(&mut c);
    let names: Vec<&str> = info.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        names,
        [
            "Proxy",
            "Clients",
            "Backend s1",
            "Backend s2",
            "Backend s3",
            "Keyspace"
        ]
    );
    let proxy = &info[0].1;
    assert_eq!(proxy["shardis_version"], env!("CARGO_PKG_VERSION"));
    // The backends' Redis version (all the same here), for tools that check it.
    let direct = redises[0].client().cmd_str(&["INFO", "server"]).as_text();
    let version = direct
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .expect("redis_version in the backend's INFO");
    assert_eq!(proxy["redis_version"], version.trim());
    assert!(num(proxy, "uptime_in_seconds") < 3600);
    assert_eq!(num(proxy, "connected_clients"), 2);
    // 30 SETs, 1 PING, 1 EXPIRE and this INFO.
    assert_eq!(num(proxy, "total_commands_processed"), 33);
    assert_eq!(num(proxy, "backends_up"), 3);
    assert_eq!(num(proxy, "backends_total"), 3);

    let mut total = 0;
    for (i, redis) in redises.iter().enumerate() {
        let section = &info[i + 2].1;
        assert_eq!(section["address"], redis.addr());
        assert_eq!(num(section, "connected"), 1);
        assert!(num(section, "used_memory") > 100_000, "{section:?}");
        let dbsize = match redis.client().cmd_str(&["DBSIZE"]) {
            Frame::Integer(n) => n as u64,
            other => panic!("DBSIZE: {other:?}"),
        };
        assert_eq!(num(section, "keys"), dbsize, "keys of {}", NAMES[i]);
        total += dbsize;
    }
    assert_eq!(total, 30);
    // The keyspace clients see: database 0 of every backend together.
    assert_eq!(info[5].1["db0"], "keys=30,expires=1,avg_ttl=0");

    // A dead backend: counted down, its section says so and has no figures.
    redises[2].kill();
    let info = wait_for(Duration::from_secs(10), "backends_up to drop", || {
        let info = sections(&mut c);
        (num(&info[0].1, "backends_up") == 2).then_some(info)
    });
    assert_eq!(num(&info[0].1, "backends_total"), 3);
    let s3 = &info[4].1;
    assert_eq!(
        (
            num(s3, "connected"),
            num(s3, "used_memory"),
            num(s3, "keys")
        ),
        (0, 0, 0)
    );
    assert_eq!(num(&info[2].1, "connected"), 1);
    // The connection that asked is still fine.
    assert_eq!(c.cmd_str(&["PING"]), Frame::Simple("PONG".into()));
}

#[test]
fn info_sections_can_be_asked_for_by_name() {
    let redises = start_redises(2);
    let shardis = Shardis::start(&shardis_config(&backends(&redises), ""));
    let mut c = shardis.client();
    let names = |c: &mut Client, info: &[&str]| -> Vec<String> {
        sections_of(c, info).into_iter().map(|(h, _)| h).collect()
    };
    let plain = ["Proxy", "Clients", "Backend s1", "Backend s2", "Keyspace"];
    assert_eq!(names(&mut c, &["INFO"]), plain);
    let default = [
        "Proxy",
        "Clients",
        "Backend s1",
        "Backend s2",
        "Memory",
        "CPU",
        "Stats",
        "Errorstats",
        "Keyspace",
    ];
    assert_eq!(names(&mut c, &["INFO", "default"]), default);
    // `everything` adds the key-watch sections.
    let everything = [
        "Proxy",
        "Clients",
        "Backend s1",
        "Backend s2",
        "Hotkeys",
        "Bigkeys",
        "Memory",
        "CPU",
        "Stats",
        "Errorstats",
        "Keyspace",
    ];
    assert_eq!(names(&mut c, &["INFO", "everything"]), everything);
    assert_eq!(
        names(&mut c, &["INFO", "hotkeys", "bigkeys"]),
        ["Hotkeys", "Bigkeys"]
    );
    assert_eq!(names(&mut c, &["INFO", "proxy"]), ["Proxy"]);
    assert_eq!(
        names(&mut c, &["INFO", "Backends"]),
        ["Backend s1", "Backend s2"]
    );
    assert_eq!(
        names(&mut c, &["INFO", "KEYSPACE", "proxy"]),
        ["Proxy", "Keyspace"]
    );
    // An empty keyspace has no db line, as in Redis.
    let keyspace = sections_of(&mut c, &["INFO", "keyspace"]);
    assert!(keyspace[0].1.is_empty(), "{keyspace:?}");
    assert_eq!(c.cmd_str(&["SET", "k", "v"]), Frame::Simple("OK".into()));
    let keyspace = sections_of(&mut c, &["INFO", "keyspace"]);
    assert_eq!(keyspace[0].1["db0"], "keys=1,expires=0,avg_ttl=0");
    // A section shardis does not have: an empty reply, as Redis gives for an unknown section.
    assert_eq!(c.cmd_str(&["INFO", "nosuch"]), Frame::Bulk(Vec::new()));
}
