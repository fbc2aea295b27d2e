//! Every example in config/ must validate, so the examples cannot drift from the code.
//! The directory is listed at run time: a new file is covered without touching this test.

mod common;

use std::path::Path;

use shardis::config::Config;

/// Where the example configs keep their TLS certificates.
const TLS_DIR: &str = "/etc/shardis/tls/";

#[test]
fn every_example_config_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("read config/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .toml files in {}", dir.display());
    // Examples read the backends' password from this variable, as a Kubernetes secret would
    // set it. SAFETY: set before this test starts any thread; nextest runs each test in its
    // own process.
    unsafe { std::env::set_var("REDIS_PASSWORD", "example") };
    // Examples name their certificates under TLS_DIR; these are made here instead.
    let pki = common::Pki::new();
    let certs = pki.dir().join("etc");
    std::fs::create_dir_all(&certs).expect("create the certificates' directory");
    for (name, from) in [
        ("ca.crt", &pki.ca),
        ("server.crt", &pki.server.cert),
        ("server.key", &pki.server.key),
        ("client.crt", &pki.client.cert),
        ("client.key", &pki.client.key),
    ] {
        std::fs::copy(from, certs.join(name)).expect("copy a certificate");
    }
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).expect("read the example");
            let text = text.replace(TLS_DIR, &format!("{}/", certs.display()));
            Config::parse(&text)
                .err()
                .map(|e| format!("{}:\n{e}", f.display()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_tls_example_has_tls_on_both_sides() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tls.toml");
    let text = std::fs::read_to_string(&path).expect("config/tls.toml");
    assert!(text.contains(TLS_DIR));
    // Without the files it names, it fails, naming each key.
    let problems = Config::parse(&text)
        .expect_err("no certificates")
        .to_string();
    for key in [
        "server.tls.cert",
        "server.tls.key",
        "server.tls.client_ca",
        "pools[0].tls_ca",
        "pools[0].tls_cert",
        "pools[0].tls_key",
    ] {
        assert!(
            problems.contains(&format!("{key}: cannot read")),
            "{problems}"
        );
    }
}

#[test]
fn demo_matches_make_demo() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let demo = Config::load(&dir.join("demo.toml")).expect("config/demo.toml");
    assert_eq!(demo.server.listen.to_string(), "127.0.0.1:6380");
    assert_eq!(demo.admin.listen.to_string(), "127.0.0.1:9121");
    let backends: Vec<(String, String)> = demo.pools[0]
        .backends
        .iter()
        .map(|b| (b.name.clone(), b.address.to_string()))
        .collect();
    let expected: Vec<(String, String)> = (1..=3)
        .map(|i| (format!("s{i}"), format!("127.0.0.1:700{i}")))
        .collect();
    assert_eq!(backends, expected);
}

#[test]
fn annotated_example_spells_out_the_defaults() {
    // config/shardis.toml documents every key with its default value, so loading it must
    // give the same settings as a file that only names the listener and backends.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let full = Config::load(&dir.join("shardis.toml")).expect("config/shardis.toml");
    let minimal = Config::parse(
        r#"
        [server]
        listen = "127.0.0.1:6380"
        [[pools]]
        hash_tag = "{}"
        backends = [
          { name = "s1", address = "127.0.0.1:7001" },
          { name = "s2", address = "127.0.0.1:7002" },
          { name = "s3", address = "127.0.0.1:7003" },
        ]
        "#,
    )
    .expect("minimal config");
    assert_eq!(
        full.digest,
        minimal.digest,
        "{}\n{}",
        full.describe(),
        minimal.describe()
    );
}

#[test]
fn harness_configs_validate() {
    // tests/common::shardis_config must produce what Config accepts, with free ports.
    let backends = [
        ("s1", "127.0.0.1:7001".to_string()),
        ("s\"2", "[::1]:7002".to_string()),
    ];
    let text = common::shardis_config(&backends, "hash = \"md5\"\n  distribution = \"maglev\"");
    let c = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(c.server.listen.port(), 0);
    assert_eq!(c.admin.listen.port(), 0);
    let p = &c.pools[0];
    assert_eq!(p.backends[1].name, "s\"2");
    assert_eq!(p.hash.name(), "md5");
    assert_eq!(p.distribution.name(), "maglev");
}
