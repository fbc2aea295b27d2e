//! Unit tests for parsing and validation (kept apart so `validate.rs` stays small).

use super::*;

const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:6380"

[[pools]]
backends = [{ address = "127.0.0.1:7001" }]
"#;

/// A valid config with `pool_lines` added to the pool and two backends s1, s2.
pub(super) fn with_pool(pool_lines: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:6380\"\n[[pools]]\n{pool_lines}\n\
         backends = [{{ name = \"s1\", address = \"127.0.0.1:7001\" }}, \
         {{ name = \"s2\", address = \"127.0.0.1:7002\" }}]\n"
    )
}

/// The problems reported for `text`; panics if it parses or fails for another reason.
fn problems(text: &str) -> Vec<String> {
    match Config::parse(text) {
        Err(ConfigError::Invalid(p)) => p,
        other => panic!("expected validation problems, got {other:?}"),
    }
}

pub(super) fn assert_problem(text: &str, expected: &str) {
    let p = problems(text);
    assert!(
        p.iter().any(|line| line.contains(expected)),
        "no problem containing {expected:?} in {p:#?}"
    );
}

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::parse(MINIMAL).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:6380".parse().unwrap());
    assert_eq!(c.server.max_clients, 10_000);
    assert_eq!(c.server.max_pipeline, 1024);
    assert_eq!(c.server.max_request_bytes, 512 * 1024 * 1024);
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(5));
    assert_eq!(c.server.slowlog, None);
    assert_eq!(c.server.threads, None);
    assert_eq!(c.server.client_read_ahead_bytes, 1024 * 1024);
    assert_eq!(c.server.client_memory_limit_bytes, Some(32 * 1024 * 1024));
    assert_eq!(
        c.server.max_client_memory,
        Some(super::default_max_client_memory() as usize)
    );
    assert_eq!(c.admin.listen, DEFAULT_ADMIN_LISTEN.parse().unwrap());
    assert!(!c.admin.allow_mutations);
    let p = &c.pools[0];
    assert_eq!(p.name, "main");
    assert_eq!(p.distribution, DistributionKind::Ketama);
    assert_eq!(p.hash, HashKind::Fnv1a64);
    assert_eq!(p.hash_tag, None);
    assert_eq!(p.timeout, Duration::from_millis(1000));
    assert_eq!(p.connect_timeout, Duration::from_millis(1000));
    assert_eq!(p.connections_per_backend.get(), 1);
    // twemproxy's default name: the address as written.
    assert_eq!(p.backends[0].name, "127.0.0.1:7001");
    assert_eq!(p.backends[0].weight.get(), 1);
    assert_eq!(c.digest.len(), 32);
}

#[test]
fn every_key_is_read() {
    let c = Config::parse(
        r#"
        [server]
        listen = "0.0.0.0:0"
        max_clients = 5
        max_pipeline = 7
        max_request_bytes = 1000
        shutdown_grace_ms = 0
        slowlog_ms = 25
        threads = 3
        [admin]
        listen = "[::1]:9000"
        allow_mutations = true
        [[pools]]
        name = "cache"
        distribution = "maglev"
        hash = "murmur"
        hash_tag = "$$"
        timeout_ms = 300
        connect_timeout_ms = 50
        connections_per_backend = 64
        backends = [
          { name = "a", address = "redis-a.svc:6379", weight = 3 },
          { name = "b", address = "[::1]:6379" },
        ]
        "#,
    )
    .unwrap();
    assert_eq!(c.server.max_clients, 5);
    assert_eq!(c.server.max_pipeline, 7);
    assert_eq!(c.server.max_request_bytes, 1000);
    assert_eq!(c.server.shutdown_grace, Duration::ZERO);
    assert_eq!(c.server.slowlog, Some(Duration::from_millis(25)));
    assert_eq!(c.server.threads.map(NonZeroUsize::get), Some(3));
    assert_eq!(c.admin.listen, "[::1]:9000".parse().unwrap());
    assert!(c.admin.allow_mutations);
    let p = &c.pools[0];
    assert_eq!(
        (p.name.as_str(), p.distribution, p.hash),
        ("cache", DistributionKind::Maglev, HashKind::Murmur)
    );
    assert_eq!(p.hash_tag, HashTag::parse("$$"));
    assert_eq!(p.timeout, Duration::from_millis(300));
    assert_eq!(p.connect_timeout, Duration::from_millis(50));
    assert_eq!(p.connections_per_backend.get(), 64);
    assert_eq!(p.backends[0].address.to_string(), "redis-a.svc:6379");
    assert_eq!(p.backends[0].weight.get(), 3);
    assert_eq!(p.backends[1].address.host, "::1");
    assert_eq!(p.ring().len(), 2);
}

#[test]
fn unknown_keys_are_problems_named_by_their_path() {
    assert_problem(
        &with_pool("hashtag = \"{}\""),
        "pools[0].hashtag: unknown key",
    );
    assert_problem(
        &MINIMAL.replace("[[pools]]", "[[pools]]\nwieght = 1"),
        "pools[0].wieght: unknown key",
    );
    assert_problem(
        "[server]\nlisten = \"127.0.0.1:1\"\nport = 5\n[[pools]]\nbackends = [{ address = \"h:1\" }]",
        "server.port: unknown key",
    );
    assert_problem(
        &with_pool("").replace("name = \"s2\"", "name = \"s2\", wieght = 2"),
        "pools[0].backends[1].wieght: unknown key",
    );
    assert_problem(
        &format!("[srever]\n{}", with_pool("")),
        "srever: unknown key",
    );
    assert_problem(
        &with_pool("").replace(
            "[server]\n",
            "[admin]\nlisten = \"127.0.0.1:2\"\nport = 1\n[server]\n",
        ),
        "admin.port: unknown key",
    );
}

#[test]
fn wrong_types_are_syntax_errors() {
    let e = Config::parse(&with_pool("timeout_ms = \"fast\"")).unwrap_err();
    assert_eq!(e.kind(), "syntax");
    let e = Config::parse("[server\n").unwrap_err();
    assert_eq!(e.kind(), "syntax");
}

#[test]
fn rejects_bad_server_settings() {
    assert_problem(
        "[[pools]]\nbackends = [{ address = \"h:1\" }]",
        "server: the [server] section",
    );
    assert_problem(
        "[server]\n[[pools]]\nbackends = [{ address = \"h:1\" }]",
        "server.listen: is required",
    );
    assert_problem(
        &MINIMAL.replace("127.0.0.1:6380", "localhost:6380"),
        "server.listen: \"localhost:6380\" is not an IP:PORT",
    );
    for (key, value, message) in [
        ("max_clients", "0", "server.max_clients: must be at least 1"),
        (
            "max_pipeline",
            "0",
            "server.max_pipeline: must be at least 1",
        ),
        (
            "max_request_bytes",
            "-1",
            "server.max_request_bytes: must be at least 1",
        ),
        (
            "shutdown_grace_ms",
            "-5",
            "server.shutdown_grace_ms: must be at least 0",
        ),
        ("slowlog_ms", "-1", "server.slowlog_ms: must be at least 0"),
        (
            "threads",
            "5000",
            "server.threads: must be from 0 to 1024 (got 5000)",
        ),
        (
            "client_read_ahead_bytes",
            "100",
            "server.client_read_ahead_bytes: must be at least 1024",
        ),
        (
            "client_memory_limit_bytes",
            "100",
            "server.client_memory_limit_bytes: must be 0 (off) or at least 1024",
        ),
        (
            "max_client_memory",
            "-1",
            "server.max_client_memory: must be at least 0",
        ),
    ] {
        let text = MINIMAL.replace("[[pools]]", &format!("{key} = {value}\n[[pools]]"));
        assert_problem(&text, message);
    }
    let same = MINIMAL.replace(
        "[[pools]]",
        "[admin]\nlisten = \"127.0.0.1:6380\"\n[[pools]]",
    );
    assert_problem(&same, "admin.listen: must differ from server.listen");
}

#[test]
fn rejects_bad_pool_settings() {
    assert_problem(
        &with_pool("hash = \"sha1\""),
        "pools[0].hash: unknown hash \"sha1\"; valid: fnv1a_64, fnv1_64, fnv1a_32, murmur, md5, crc32, crc16, xxh3",
    );
    assert_problem(
        &with_pool("hash = \"hsieh\""),
        "(twemproxy has it, shardis does not)",
    );
    assert_problem(
        &with_pool("distribution = \"rendezvous\""),
        "pools[0].distribution: unknown distribution \"rendezvous\"; valid: ketama, maglev, modula",
    );
    assert_problem(
        &with_pool("distribution = \"random\""),
        "random distribution cannot shard data",
    );
    assert_problem(
        &with_pool("hash_tag = \"{\""),
        "pools[0].hash_tag: \"{\" must be exactly two bytes",
    );
    assert_problem(&with_pool("hash_tag = \"{}}\""), "pools[0].hash_tag");
    assert_problem(&with_pool("hash_tag = \"\""), "pools[0].hash_tag");
    assert_problem(
        &with_pool("timeout_ms = 0"),
        "pools[0].timeout_ms: must be at least 1",
    );
    assert_problem(
        &with_pool("connect_timeout_ms = 0"),
        "pools[0].connect_timeout_ms: must be at least 1",
    );
    assert_problem(
        &with_pool("connections_per_backend = 0"),
        "pools[0].connections_per_backend: must be from 1 to 64 (got 0)",
    );
    assert_problem(&with_pool("connections_per_backend = 65"), "(got 65)");
    assert_problem(
        &with_pool("name = \"\""),
        "pools[0].name: must be 1 to 64 characters",
    );
    assert_problem(&with_pool("name = \"my pool\""), "pools[0].name");
    // connect_timeout defaults to timeout
    let c = Config::parse(&with_pool("timeout_ms = 250")).unwrap();
    assert_eq!(c.pools[0].connect_timeout, Duration::from_millis(250));
}

#[test]
fn rejects_bad_pool_counts() {
    assert_problem(
        "[server]\nlisten = \"127.0.0.1:1\"\n",
        "pools: at least one [[pools]] section is required",
    );
    let two = format!(
        "{MINIMAL}\n[[pools]]\nname = \"b\"\nbackends = [{{ address = \"127.0.0.1:7009\" }}]\n"
    );
    assert_problem(
        &two,
        "routing.catch_all: with several pools, say which pool serves which keys",
    );
    assert_problem(
        &two.replace("name = \"b\"", "name = \"main\""),
        "pools[1].name: \"main\" is already the name of pools[0]",
    );
    assert_problem(
        &MINIMAL.replace("[{ address = \"127.0.0.1:7001\" }]", "[]"),
        "pools[0].backends: at least one backend is required",
    );
    assert_problem(
        "[server]\nlisten = \"127.0.0.1:1\"\n[[pools]]\nname = \"x\"\n",
        "pools[0].backends: at least one backend is required",
    );
}

#[test]
fn rejects_bad_backends() {
    let b = |entries: &str| {
        format!("[server]\nlisten = \"127.0.0.1:1\"\n[[pools]]\nbackends = [{entries}]\n")
    };
    assert_problem(
        &b("{ name = \"a\", address = \"h:1\", weight = 0 }"),
        "pools[0].backends[0].weight: must be from 1 to 1000000 (got 0)",
    );
    assert_problem(
        &b("{ name = \"a\", address = \"h:1\", weight = -2 }"),
        "(got -2)",
    );
    assert_problem(
        &b("{ name = \"a\", address = \"h:1\", weight = 1000001 }"),
        "(got 1000001)",
    );
    assert_problem(
        &b("{ name = \"a\", address = \"h:1\" }, { name = \"a\", address = \"h:2\" }"),
        "pools[0].backends[1].name: \"a\" is already used by pools[0].backends[0]",
    );
    assert_problem(
        &b("{ name = \"a\", address = \"H:1\" }, { name = \"b\", address = \"h:1\" }"),
        "pools[0].backends[1].address: h:1 is already used by pools[0].backends[0]",
    );
    assert_problem(
        &b("{ name = \"a\" }"),
        "pools[0].backends[0].address: is required",
    );
    assert_problem(
        &b("{ name = \"a\", address = \"h\" }"),
        "pools[0].backends[0].address: \"h\": expected HOST:PORT",
    );
    assert_problem(
        &b("{ name = \"a\", address = \"h:0\" }"),
        "pools[0].backends[0].address: \"h:0\": port \"0\" is not a number from 1 to 65535",
    );
    assert_problem(
        &b("{ name = \"a\", address = \"::1:80\" }"),
        "is not an IP address or a DNS name",
    );
    assert_problem(
        &b("{ name = \"\", address = \"h:1\" }"),
        "pools[0].backends[0].name: must not be empty",
    );
    assert_problem(
        &b("{ name = \"a b\", address = \"h:1\" }"),
        "must not contain whitespace",
    );
    let long = "n".repeat(81);
    assert_problem(
        &b(&format!("{{ name = \"{long}\", address = \"h:1\" }}")),
        "pools[0].backends[0].name: is 81 bytes; at most 80 are allowed",
    );
    // 80 bytes is fine.
    Config::parse(&b(&format!(
        "{{ name = \"{}\", address = \"h:1\" }}",
        "n".repeat(80)
    )))
    .unwrap();
}

#[test]
fn rejects_names_too_long_for_their_ketama_points() {
    // One heavy backend among 300 gets about 12,000 point groups: "name-11995" needs 5 digits.
    let mut entries = vec![format!(
        "{{ name = \"{}\", address = \"h:1\", weight = 1000000 }}",
        "n".repeat(80)
    )];
    entries.extend((2..=300).map(|i| format!("{{ name = \"b{i}\", address = \"h:{i}\" }}")));
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:1\"\n[[pools]]\nbackends = [{}]\n",
        entries.join(", ")
    );
    assert_problem(
        &text,
        "pools[0].backends[0].name: is too long for its share of ketama points",
    );
    // maglev does not format point names.
    Config::parse(&text.replace("[[pools]]", "[[pools]]\ndistribution = \"maglev\"")).unwrap();
}

#[test]
fn reports_every_problem_at_once() {
    let text = r#"
        [server]
        listen = "nowhere"
        max_pipeline = 0
        [[pools]]
        hashtag = "{}"
        hash = "sha1"
        hash_tag = "{"
        timeout_ms = 0
        backends = [
          { name = "s1", address = "127.0.0.1:7001", weight = 0 },
          { name = "s1", address = "127.0.0.1:7001" },
          { name = "s3", address = "bad address" },
        ]
    "#;
    let p = problems(text);
    let expected = [
        "pools[0].hashtag: unknown key",
        "server.listen: \"nowhere\"",
        "server.max_pipeline: must be at least 1",
        "pools[0].hash: unknown hash \"sha1\"",
        "pools[0].hash_tag:",
        "pools[0].timeout_ms: must be at least 1",
        "pools[0].backends[0].weight:",
        "pools[0].backends[1].name: \"s1\" is already used",
        "pools[0].backends[1].address: 127.0.0.1:7001 is already used",
        "pools[0].backends[2].address: \"bad address\"",
    ];
    for e in expected {
        assert!(
            p.iter().any(|line| line.starts_with(e)),
            "missing {e:?} in {p:#?}"
        );
    }
    assert_eq!(p.len(), expected.len(), "{p:#?}");
    let shown = ConfigError::Invalid(p).to_string();
    assert_eq!(shown.lines().count(), expected.len() + 1, "{shown}");
}

#[test]
fn from_backends_builds_one_default_pool() {
    let c = Config::from_backends(&["127.0.0.1:7001".into(), "cache-2:6379".into()]).unwrap();
    assert_eq!(c.server.listen, DEFAULT_LISTEN.parse().unwrap());
    let p = &c.pools[0];
    assert_eq!(p.name, "main");
    assert_eq!(p.backends.len(), 2);
    assert_eq!(p.backends[1].name, "cache-2:6379");
    assert_eq!(p.backends[1].address.host, "cache-2");
    assert_eq!(p.distribution, DistributionKind::Ketama);
    let e = Config::from_backends(&["h:1".into(), "h:1".into(), "nope".into()]).unwrap_err();
    assert_eq!(e.kind(), "invalid");
    assert_eq!(Config::from_backends(&[]).unwrap_err().kind(), "invalid");
}

#[test]
fn describe_and_digest() {
    let c = Config::parse(&with_pool("hash_tag = \"{}\"")).unwrap();
    let d = c.describe();
    for needle in [
        "listen                   127.0.0.1:6380",
        "hash_tag                 \"{}\"",
        "slowlog                  off",
        "s2",
        "weight 1",
        &c.digest,
    ] {
        assert!(d.contains(needle), "{needle:?} not in\n{d}");
    }
    // Comments, layout and spelled-out defaults do not change the digest; settings do.
    let commented = with_pool("hash_tag = \"{}\"  # tag\nhash = \"fnv1a_64\"\ntimeout_ms = 1000");
    assert_eq!(Config::parse(&commented).unwrap().digest, c.digest);
    assert_ne!(
        Config::parse(&with_pool("hash_tag = \"$$\""))
            .unwrap()
            .digest,
        c.digest
    );
}

#[test]
fn load_reports_missing_files() {
    let e = Config::load(Path::new("/nonexistent/shardis.toml")).unwrap_err();
    assert_eq!(e.kind(), "io");
    assert!(e.to_string().contains("/nonexistent/shardis.toml"), "{e}");
}

#[test]
fn allow_mutations_must_be_a_boolean() {
    let text = with_pool("").replace(
        "[server]\n",
        "[admin]\nallow_mutations = \"yes\"\n[server]\n",
    );
    let e = Config::parse(&text).unwrap_err();
    assert_eq!(e.kind(), "syntax");
    assert!(e.to_string().contains("allow_mutations"), "{e}");
}

#[test]
fn json_has_the_file_keys_and_reads_back_as_the_same_settings() {
    let text = with_pool("hash_tag = \"{}\"\ndistribution = \"maglev\"\ntimeout_ms = 250").replace(
        "[server]\n",
        "[admin]\nallow_mutations = true\n[server]\nslowlog_ms = 7\n",
    );
    let c = Config::parse(&text).unwrap();
    let v = c.to_json();
    assert_eq!(v["server"]["listen"], "127.0.0.1:6380");
    assert_eq!(v["server"]["slowlog_ms"], 7);
    assert_eq!(v["server"]["threads"], 0);
    assert_eq!(v["admin"]["listen"], DEFAULT_ADMIN_LISTEN);
    assert_eq!(v["admin"]["allow_mutations"], true);
    let p = &v["pools"][0];
    assert_eq!(p["distribution"], "maglev");
    assert_eq!(p["hash"], "fnv1a_64");
    assert_eq!(p["hash_tag"], "{}");
    assert_eq!(p["timeout_ms"], 250);
    assert_eq!(p["connect_timeout_ms"], 250);
    assert_eq!(p["backends"][1]["name"], "s2");
    assert_eq!(p["backends"][1]["address"], "127.0.0.1:7002");
    assert_eq!(p["backends"][1]["weight"], 1);
    assert_eq!(v["digest"], c.digest);

    // Written back as TOML (without the digest), the JSON is the same configuration.
    let mut file = v.clone();
    file.as_object_mut().unwrap().remove("digest");
    let again = Config::parse(&toml::to_string(&file).unwrap()).unwrap();
    assert_eq!(again, c);

    // No hash tag is null, not an empty string.
    let plain = Config::parse(&with_pool("")).unwrap().to_json();
    assert!(plain["pools"][0]["hash_tag"].is_null());
}

#[test]
fn client_memory_settings_are_read_and_shown_in_bytes() {
    let c = Config::parse(&MINIMAL.replace(
        "[[pools]]",
        "client_read_ahead_bytes = 65536\nclient_memory_limit_bytes = 0\nmax_client_memory = 268435456\n[[pools]]",
    ))
    .unwrap();
    assert_eq!(c.server.client_read_ahead_bytes, 65536);
    assert_eq!(c.server.client_memory_limit_bytes, None);
    assert_eq!(c.server.max_client_memory, Some(256 << 20));
    let text = c.describe();
    assert!(
        text.contains("\n  client_read_ahead_bytes  65536\n"),
        "{text}"
    );
    assert!(
        text.contains("\n  client_memory_limit      off\n"),
        "{text}"
    );
    assert!(
        text.contains("\n  max_client_memory        268435456\n"),
        "{text}"
    );
    let off = Config::parse(&MINIMAL.replace("[[pools]]", "max_client_memory = 0\n[[pools]]"));
    assert_eq!(off.unwrap().server.max_client_memory, None);
    // The default, resolved, is listed too.
    let text = Config::parse(MINIMAL).unwrap().describe();
    let line = format!(
        "\n  max_client_memory        {}\n",
        super::default_max_client_memory()
    );
    assert!(text.contains(&line), "{text}");
}
