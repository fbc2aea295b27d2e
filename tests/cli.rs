//! The command line: --help, running from --backend flags without a file, --listen/--admin
//! overriding the file, `check` (resolved settings, or every problem with exit 1) and `route`
//! (which must agree with where keys really land).

mod common;

use std::process::{Command, Output};

use common::ops::{NAMES, backends, http_get, start_redises, status};
use common::{Frame, Shardis, TempDir, free_port, shardis_config};
use shardis::config::Config;

fn shardis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args(args)
        .output()
        .expect("run the shardis binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &TempDir, name: &str, contents: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).expect("write config");
    path.display().to_string()
}

#[test]
fn help_lists_every_option_and_subcommand() {
    let out = shardis(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in [
        "--config",
        "--backend",
        "--listen",
        "--admin",
        "--threads",
        "--log-format",
        "--log-level",
        "check",
        "route",
    ] {
        assert!(
            help.contains(word),
            "--help does not mention {word}:\n{help}"
        );
    }
    for sub in ["check", "route"] {
        let out = shardis(&[sub, "--help"]);
        assert!(out.status.success(), "{sub} --help");
        assert!(text(&out.stdout).contains("--config"), "{sub} --help");
    }
}

#[test]
fn nothing_to_proxy_is_a_usage_error() {
    let out = shardis(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("--config") && err.contains("--backend"),
        "{err}"
    );
    let out = shardis(&["--config", "x.toml", "--backend", "127.0.0.1:1"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--config and --backend conflict"
    );
}

#[test]
fn check_prints_resolved_settings_with_defaults_and_the_live_digest() {
    let redises = start_redises(2);
    let config = shardis_config(&backends(&redises), "hash_tag = \"{}\"\ntimeout_ms = 250");
    let proxy = Shardis::start(&config);
    let path = proxy.config_path();
    let out = shardis(&["check", "--config", &path.display().to_string()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for line in [
        "  max_clients              10000",
        "  shutdown_grace           5000 ms",
        "  slowlog                  off",
        "  distribution             ketama",
        "  hash                     fnv1a_64",
        "  hash_tag                 \"{}\"",
        "  timeout                  250 ms",
        "  connect_timeout          250 ms",
        "  connections_per_backend  1",
        "  backends                 2",
        "  client_read_ahead_bytes  1048576",
        "  client_memory_limit      33554432",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no line {line:?} in:\n{stdout}"
        );
    }
    // The proxy-wide budget in force, in bytes: half the cgroup memory limit, or 512 MiB.
    let max = shardis::config::default_max_client_memory();
    let line = format!("  max_client_memory        {max}");
    assert!(
        stdout.lines().any(|l| l == line),
        "no line {line:?} in:\n{stdout}"
    );
    assert_eq!(status(&proxy)["max_client_memory"], max);
    for (name, address) in backends(&redises) {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()[..]
                    == [name, address.as_str(), "weight", "1"]),
            "no line for {name} {address}:\n{stdout}"
        );
    }
    assert!(stdout.trim_end().ends_with(": OK"), "{stdout}");
    let digest = stdout
        .lines()
        .find_map(|l| l.strip_prefix("digest: "))
        .expect("a digest line");
    assert_eq!(digest.len(), 32, "{digest}");
    // The running proxy reports the same digest for the same file.
    assert_eq!(status(&proxy)["config_digest"], digest);
}

#[test]
fn check_lists_every_problem_and_exits_1() {
    let dir = TempDir::new("cli");
    let path = write(
        &dir,
        "bad.toml",
        r#"
[server]
listen = "127.0.0.1:6380"

[[pools]]
hashtag = "{}"
hash = "sha1"
hash_tag = "{"
backends = [
  { name = "s1", address = "127.0.0.1:7001", weight = 0 },
  { name = "s1", address = "127.0.0.1:7002" },
]
"#,
    );
    let out = shardis(&["check", "--config", &path]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for problem in [
        "pools[0].hashtag: unknown key",
        "pools[0].hash: unknown hash \"sha1\"",
        "pools[0].hash_tag: \"{\" must be exactly two bytes",
        "pools[0].backends[0].weight: must be from 1 to 1000000 (got 0)",
        "pools[0].backends[1].name: \"s1\" is already used by pools[0].backends[0]",
    ] {
        assert!(
            err.lines().any(|l| l.starts_with(problem)),
            "{problem:?} is not reported in:\n{err}"
        );
    }
    assert!(
        !text(&out.stdout).contains("OK"),
        "a bad file is not reported OK"
    );
    // Running the proxy on it fails the same way, before listening.
    let out = shardis(&["--config", &path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("pools[0].hashtag: unknown key"));
}

#[test]
fn route_prints_where_keys_really_land() {
    let redises = start_redises(3);
    let config = shardis_config(&backends(&redises), "hash_tag = \"{}\"");
    let proxy = Shardis::start(&config);
    let mut keys: Vec<String> = (0..40).map(|i| format!("user:{i}")).collect();
    // A key that starts with '-' is a key, not an option.
    keys.insert(0, "-5:temperature".to_string());
    keys.extend(["{user:7}:cart".to_string(), "clé-ü".to_string()]);
    let mut args = vec![
        "route".to_string(),
        "--config".to_string(),
        proxy.config_path().display().to_string(),
    ];
    args.extend(keys.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = shardis(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), keys.len(), "{stdout}");

    let by_name = backends(&redises);
    let mut c = proxy.client();
    for (key, line) in keys.iter().zip(&lines) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [shown, pool, name, address] = fields[..] else {
            panic!("not key<TAB>pool<TAB>name<TAB>address: {line:?}");
        };
        assert_eq!(shown, key);
        assert_eq!(pool, "main");
        let index = by_name
            .iter()
            .position(|(n, a)| *n == name && a == address)
            .unwrap_or_else(|| panic!("{name} {address} is not a configured backend"));
        let value = format!("value of {key}");
        assert_eq!(c.cmd_str(&["SET", key, &value]), Frame::Simple("OK".into()));
        for (i, redis) in redises.iter().enumerate() {
            let direct = redis.client().cmd_str(&["GET", key]);
            if i == index {
                assert_eq!(direct, Frame::Bulk(value.clone().into_bytes()), "{key}");
            } else {
                assert_eq!(direct, Frame::Null, "{key} also on {}", NAMES[i]);
            }
        }
    }
    // The hash tag co-locates: "{user:7}:cart" is where "user:7" is.
    let tagged = lines[keys.len() - 2].split('\t').nth(2);
    let plain = lines[8].split('\t').nth(2);
    assert_eq!(tagged, plain);
}

#[test]
fn backend_flags_run_a_proxy_without_a_file() {
    let redises = start_redises(2);
    let (a, b) = (redises[0].addr(), redises[1].addr());
    let proxy = Shardis::start_cli(&[
        "--backend",
        &a,
        "--backend",
        &b,
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    ]);
    // Each backend is named by its address, in one default ketama pool.
    let expected = Config::from_backends(&[a.clone(), b.clone()]).expect("config");
    let ring = expected.pools[0].ring();
    let mut c = proxy.client();
    for i in 0..20 {
        let key = format!("k{i}");
        assert_eq!(c.cmd_str(&["SET", &key, "v"]), Frame::Simple("OK".into()));
        let owner = &redises[ring.backend_for(key.as_bytes())];
        assert_eq!(
            owner.client().cmd_str(&["GET", &key]),
            Frame::Bulk(b"v".to_vec())
        );
    }
    let status = status(&proxy);
    assert_eq!(status["backends"][0]["name"], a);
    assert_eq!(status["backends"][1]["name"], b);
    assert_eq!(status["config_digest"], expected.digest);
}

#[test]
fn listen_and_admin_flags_override_the_file() {
    let redises = start_redises(1);
    let (file_listen, file_admin) = (free_port(), free_port());
    let config = shardis_config(&backends(&redises), "")
        .replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{file_listen}\""),
            1,
        )
        .replacen(
            "[admin]\nlisten = \"127.0.0.1:0\"",
            &format!("[admin]\nlisten = \"127.0.0.1:{file_admin}\""),
            1,
        );
    assert!(config.contains(&file_listen.to_string()) && config.contains(&file_admin.to_string()));
    let (listen, admin) = (free_port(), free_port());
    let proxy = Shardis::start_with_args(
        &config,
        &[
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--admin",
            &format!("127.0.0.1:{admin}"),
        ],
    );
    assert_eq!(proxy.addr.port(), listen);
    assert_eq!(proxy.admin.port(), admin);
    assert_eq!(
        proxy.client().cmd_str(&["PING"]),
        Frame::Simple("PONG".into())
    );
    assert_eq!(http_get(proxy.admin, "/healthz").status, 200);
}

#[test]
fn check_warns_about_crc32_with_ketama_but_accepts_it() {
    let dir = TempDir::new("cli");
    let backends = [
        ("s1", "127.0.0.1:7001".to_string()),
        ("s2", "127.0.0.1:7002".to_string()),
    ];
    let skewed = write(
        &dir,
        "crc32.toml",
        &shardis_config(&backends, "hash = \"crc32\""),
    );
    let out = shardis(&["check", "--config", &skewed]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("warning: pools \"main\": crc32 is a 15-bit hash"),
        "{stdout}"
    );
    // The same hash with modula, or another hash with ketama: no warning.
    for extra in [
        "hash = \"crc32\"\ndistribution = \"modula\"",
        "hash = \"murmur\"",
    ] {
        let path = write(&dir, "ok.toml", &shardis_config(&backends, extra));
        let out = shardis(&["check", "--config", &path]);
        assert!(out.status.success());
        assert!(!text(&out.stdout).contains("warning"), "{extra}");
    }
}
