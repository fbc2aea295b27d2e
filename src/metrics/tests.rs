//! Tests of the metric names, descriptions and pre-built handles.

use super::*;

fn recorded() -> String {
    let recorder = builder().unwrap().build_recorder();
    let handle = recorder.handle();
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
        tls_handshake_failed(false);
        tls_handshake_failed(true);
        tls_handshake_failed(true);
        config_reload(true);
        config_reload(false);
        config_info("abc", None);
        config_info("def", Some("abc"));
        metrics::counter!(AUTH_FAILURES_TOTAL, "user" => "app").increment(1);
        metrics::counter!(ACL_DENIED_TOTAL, "user" => "app", "reason" => "key").increment(1);
        let cluster = crate::cluster::Stats::new();
        cluster.redirected(crate::cluster::redirect::Kind::Moved);
        cluster.refreshed("127.0.0.1:7000");
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
    });
    handle.render()
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
fn handles_without_a_recorder_are_no_ops() {
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
