//! Tests of the metric names, descriptions and pre-built handles.

use super::*;

fn recorded() -> String {
    let recorder = builder().unwrap().build_recorder();
    let handle = recorder.handle();
    let registry = std::sync::Arc::new(local::Registry::default());
    // The handles below live in this closure; their series are rendered before they go.
    let local_text = local::with_registry(&registry, || {
        metrics::with_local_recorder(&recorder, || {
            describe();
            let m = Metrics::new(&["get", "set"]);
            let backends = [
                BackendMetrics::new("main", "s1"),
                BackendMetrics::new("main", "s2"),
            ];
            for _ in 0..3 {
                m.command(0).record(Duration::from_micros(200), true);
            }
            m.command(1).record(Duration::from_millis(2), false);
            m.command(2).record(Duration::from_micros(5), true);
            m.command(usize::MAX).record(Duration::from_micros(5), true);
            let s1 = &backends[0];
            s1.record(Duration::from_micros(300));
            s1.set_up(true);
            s1.set_connections(2);
            s1.error(BackendErrorKind::Timeout);
            s1.error(BackendErrorKind::Timeout);
            s1.set_exclusive(1, 2);
            s1.exclusive_refused();
            let c = m.clients();
            c.connected();
            c.connected();
            c.disconnected();
            c.protocol_error();
            c.received(100);
            c.sent(40);
            slow_subscriber();
            client_disconnect("idle_timeout");
            client_disconnect("max_client_memory");
            client_buffered(4096);
            tls_handshake_failed(false);
            tls_handshake_failed(true);
            tls_handshake_failed(true);
            config_reload(true);
            config_reload(false);
            config_info("abc", None);
            config_info("def", Some("abc"));
            cross_shard("script", "ok");
            lock_wait(std::time::Duration::from_micros(300));
            metrics::counter!(AUTH_FAILURES_TOTAL, "user" => "app").increment(1);
            metrics::counter!(ACL_DENIED_TOTAL, "user" => "app", "reason" => "key").increment(1);
            let cluster = crate::cluster::Stats::new();
            cluster.redirected(crate::cluster::redirect::Kind::Moved);
            cluster.refreshed("127.0.0.1:7000");
            failover("main", "s1");
            held_requests(1.0);
            hold_seconds(std::time::Duration::from_millis(20));
            big_key(true, "main", "s1");
            big_key(false, "main", "s1");
            let mirror = crate::routing::Mirror::new("shadow", 10);
            mirror.sent();
            assert!(mirror.reserve(11).is_none());
            mirror.failed();
            let faults = crate::config::Config::parse(
                "[server]\nlisten = \"127.0.0.1:1\"\n[[pools]]\nbackends = [{ address = \"127.0.0.1:2\" }]\n\
                 [[faults]]\nkind = \"error\"\n",
            )
            .unwrap()
            .faults;
            let faults = crate::routing::Faults::new(&faults).unwrap();
            faults.pick(0, |_| true, || 0).unwrap().count();
            registry.render()
        })
    });
    // The hot-key share and the near cache's families are rendered at scrape.
    let settings = crate::config::KeysConfig {
        near_cache: true,
        ..crate::config::KeysConfig::default()
    };
    let watch = crate::hotkeys::Watch::new(settings, crate::hotkeys::Shared::new("main"));
    let keys = crate::hotkeys::report::render_metrics(&[(&watch, vec!["s1"])]);
    handle.render() + &local_text + &keys
}

#[test]
fn renders_every_metric_with_help_and_counts() {
    let text = recorded();
    for name in ALL_METRICS {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{text}"
        );
    }
    for line in [
        r#"shardis_commands_total{command="get",result="ok"} 3"#,
        r#"shardis_cross_shard_total{kind="script",result="ok"} 1"#,
        r#"shardis_lock_wait_seconds_bucket{le="0.0005"} 1"#,
        r#"shardis_client_tls_handshake_errors_total{reason="error"} 1"#,
        r#"shardis_client_tls_handshake_errors_total{reason="timeout"} 2"#,
        r#"shardis_commands_total{command="get",result="error"} 0"#,
        r#"shardis_commands_total{command="set",result="error"} 1"#,
        r#"shardis_commands_total{command="unknown",result="ok"} 2"#,
        r#"shardis_command_duration_seconds_bucket{command="get",le="0.00025"} 3"#,
        r#"shardis_command_duration_seconds_bucket{command="get",le="0.0001"} 0"#,
        r#"shardis_command_duration_seconds_count{command="get"} 3"#,
        r#"shardis_command_duration_seconds_bucket{command="set",le="0.0025"} 1"#,
        r#"shardis_backend_request_duration_seconds_count{pool="main",backend="s1"} 1"#,
        r#"shardis_backend_up{pool="main",backend="s1"} 1"#,
        r#"shardis_backend_up{pool="main",backend="s2"} 0"#,
        r#"shardis_backend_connections{pool="main",backend="s1"} 2"#,
        r#"shardis_backend_errors_total{pool="main",backend="s1",kind="timeout"} 2"#,
        r#"shardis_backend_errors_total{pool="main",backend="s2",kind="connect"} 0"#,
        r#"shardis_backend_exclusive_connections{pool="main",backend="s1",state="idle"} 1"#,
        r#"shardis_backend_exclusive_connections{pool="main",backend="s1",state="leased"} 2"#,
        r#"shardis_backend_exclusive_refused_total{pool="main",backend="s1"} 1"#,
        "shardis_client_connections 1",
        "shardis_client_connections_total 2",
        "shardis_client_protocol_errors_total 1",
        "shardis_received_bytes_total 100",
        "shardis_sent_bytes_total 40",
        "shardis_pubsub_evicted_total 1",
        r#"shardis_client_disconnects_total{reason="idle_timeout"} 1"#,
        r#"shardis_client_disconnects_total{reason="max_client_memory"} 1"#,
        "shardis_client_buffered_bytes 4096",
        r#"shardis_config_reloads_total{result="ok"} 1"#,
        r#"shardis_config_reloads_total{result="error"} 1"#,
        r#"shardis_config_info{digest="abc"} 0"#,
        r#"shardis_config_info{digest="def"} 1"#,
        r#"shardis_mirror_requests_total{pool="shadow",result="sent"} 1"#,
        r#"shardis_mirror_requests_total{pool="shadow",result="dropped"} 1"#,
        r#"shardis_mirror_requests_total{pool="shadow",result="failed"} 1"#,
        r#"shardis_faults_injected_total{kind="error"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
    // Commands never sent are not exported.
    assert!(!text.contains(r#"command="del""#));
}

#[test]
fn handles_work_without_a_recorder() {
    let m = Metrics::new(&["get"]);
    m.command(0).record(Duration::from_micros(1), true);
    m.unknown_command().record(Duration::from_micros(1), false);
    BackendMetrics::new("main", "s1").error(BackendErrorKind::Closed);
    m.clients().connected();
    assert_eq!(m.command(7).name(), "unknown");
    assert_eq!(m.command(0).name(), "get");
}

#[test]
fn error_kind_labels() {
    let labels: Vec<_> = BackendErrorKind::ALL.iter().map(|k| k.label()).collect();
    assert_eq!(
        labels,
        [
            "connect",
            "timeout",
            "closed",
            "protocol",
            "handshake",
            "auth",
            "health",
            "tls"
        ]
    );
    for (i, k) in BackendErrorKind::ALL.iter().enumerate() {
        assert_eq!(k.index(), i);
    }
}

#[test]
fn fixed_buckets_count_every_sample_in_constant_memory() {
    let registry = std::sync::Arc::new(local::Registry::default());
    local::with_registry(&registry, || {
        let m = Metrics::new(&["get"]);
        // A million samples spread over every bucket, +Inf included: the series's size does not
        // change, only its counters.
        for i in 0..1_000_000u64 {
            let elapsed = Duration::from_nanos(1 + (i * 7_919) % 2_000_000_000);
            m.command(0).record(elapsed, i % 10 != 0);
        }
        let text = registry.render();
        let count = |le: &str| -> u64 {
            let prefix =
                format!(r#"shardis_command_duration_seconds_bucket{{command="get",le="{le}"}} "#);
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no bucket {le}:\n{text}"))
        };
        assert_eq!(count("+Inf"), 1_000_000);
        assert!(
            count("1") < count("+Inf"),
            "samples above 1 s land in +Inf only"
        );
        assert!(
            count("0.00001") <= count("0.000025"),
            "buckets are cumulative"
        );
        assert!(text.contains(r#"shardis_commands_total{command="get",result="error"} 100000"#));
        assert!(text.contains(r#"shardis_commands_total{command="get",result="ok"} 900000"#));
        assert!(text.contains(r#"shardis_command_duration_seconds_count{command="get"} 1000000"#));
    });
}

#[test]
fn a_backend_rebuilt_under_the_same_name_keeps_its_series() {
    let registry = std::sync::Arc::new(local::Registry::default());
    local::with_registry(&registry, || {
        let old = BackendMetrics::new("main", "s1");
        old.record(Duration::from_micros(50));
        // A reload that changes s1's settings makes a new backend while the old one finishes.
        let new = BackendMetrics::new("main", "s1");
        new.record(Duration::from_micros(50));
        let text = registry.render();
        let series = text
            .lines()
            .filter(|l| {
                l.starts_with(
                    r#"shardis_backend_request_duration_seconds_count{pool="main",backend="s1"}"#,
                )
            })
            .collect::<Vec<_>>();
        assert_eq!(
            series,
            [r#"shardis_backend_request_duration_seconds_count{pool="main",backend="s1"} 2"#]
        );
        drop((old, new));
        assert!(
            !registry.render().contains(r#"backend="s1""#),
            "a backend gone is not rendered"
        );
    });
}
