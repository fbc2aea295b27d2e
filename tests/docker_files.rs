//! The deployment files under docker/ cannot rot silently: every YAML and JSON file parses, every
//! metric a dashboard or alert uses exists in `shardis::metrics`, and the ports and paths agree
//! with each other. The Kubernetes manifests (docker/k8s) have their own tests in tests/k8s.rs.

mod common;

use std::collections::BTreeSet;

use common::manifests::{assert_known_metrics, metric_names, path, read};
use shardis::metrics::ALL_METRICS;
use yaml_rust2::{Yaml, YamlLoader};

fn yaml(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn toml(rel: &str) -> toml::Table {
    read(rel).parse().unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {y:?}"))
}

fn port_of(listen: &str) -> &str {
    listen.rsplit_once(':').map(|(_, p)| p).unwrap_or_default()
}

#[test]
fn metric_names_are_well_formed_and_unique() {
    let unique: BTreeSet<_> = ALL_METRICS.iter().collect();
    assert_eq!(unique.len(), ALL_METRICS.len());
    for name in ALL_METRICS {
        assert_eq!(metric_names(name).into_iter().collect::<Vec<_>>(), [*name]);
    }
    let found = metric_names("x shardis_a_bucket{} shardis_b_total[1m] shardis_ shardis_c_count");
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["shardis_a", "shardis_b_total", "shardis_c"]
    );
}

#[test]
fn dashboard_parses_and_queries_known_metrics() {
    let rel = "docker/grafana/shardis.json";
    let text = read(rel);
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(!panels.is_empty());
    let mut exprs = String::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "prometheus", "panel {title}");
            exprs.push_str(t["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    for wanted in [
        "sum by (command) (rate(shardis_commands_total[1m]))",
        "histogram_quantile(0.99, sum by (le, command) (rate(shardis_command_duration_seconds_bucket[1m])))",
        "histogram_quantile(0.5, sum by (le, command) (rate(shardis_command_duration_seconds_bucket[1m])))",
        "result=\"error\"",
        "shardis_backend_up",
        "shardis_client_connections",
        "max by (pool, backend) (shardis_hot_key_share)",
        "shardis_near_cache_hits_total",
        "shardis_failovers_total",
        "shardis_held_requests",
        "shardis_hold_seconds_bucket",
    ] {
        assert!(exprs.contains(wanted), "dashboard lacks {wanted}");
    }
    // The whole file, not only the queries: descriptions and legends must not drift either.
    assert_known_metrics(rel, &text);
}

#[test]
fn grafana_provisioning_points_at_the_dashboard_and_prometheus() {
    let ds = &yaml("docker/grafana/provisioning/datasources/prometheus.yaml")[0];
    let source = &ds["datasources"][0];
    assert_eq!(str_of(&source["type"], "type"), "prometheus");
    assert_eq!(str_of(&source["uid"], "uid"), "prometheus");
    assert_eq!(str_of(&source["url"], "url"), "http://prometheus:9090");

    let dashboards = &yaml("docker/grafana/provisioning/dashboards/shardis.yaml")[0];
    let dir = str_of(&dashboards["providers"][0]["options"]["path"], "path");
    let compose = &yaml("docker/compose.yaml")[0];
    let mounts: Vec<_> = compose["services"]["grafana"]["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|v| str_of(v, "volume"))
        .collect();
    assert!(
        mounts
            .iter()
            .any(|m| m.starts_with(&format!("./grafana/shardis.json:{dir}/"))),
        "compose does not mount the dashboard into {dir}: {mounts:?}"
    );
}

#[test]
fn prometheus_scrapes_shardis_and_alerts_on_known_metrics() {
    let prom = &yaml("docker/prometheus.yml")[0];
    let job = &prom["scrape_configs"][0];
    assert_eq!(str_of(&job["metrics_path"], "metrics_path"), "/metrics");
    let target = str_of(&job["static_configs"][0]["targets"][0], "target");
    let admin = toml("docker/shardis.compose.toml");
    let admin_listen = admin["admin"]["listen"].as_str().unwrap();
    assert_eq!(target, format!("shardis:{}", port_of(admin_listen)));
    assert_known_metrics("docker/prometheus.yml", &read("docker/prometheus.yml"));

    let rules = &yaml("docker/prometheus-rules.yml")[0];
    let rules = rules["groups"][0]["rules"].as_vec().unwrap();
    assert!(!rules.is_empty());
    for rule in rules {
        str_of(&rule["alert"], "alert");
        let used =
            assert_known_metrics("docker/prometheus-rules.yml", str_of(&rule["expr"], "expr"));
        assert!(!used.is_empty(), "rule {rule:?} uses no shardis metric");
    }
}

#[test]
fn compose_services_mounts_and_config_agree() {
    let compose = &yaml("docker/compose.yaml")[0];
    let services = compose["services"].as_hash().unwrap();
    let names: BTreeSet<_> = services.keys().map(|k| str_of(k, "service")).collect();
    for s in [
        "redis1",
        "redis2",
        "redis3",
        "shardis",
        "prometheus",
        "grafana",
    ] {
        assert!(names.contains(s), "compose lacks service {s}");
    }
    // Every bind mount's source exists next to compose.yaml.
    for (name, service) in services {
        for volume in service["volumes"].as_vec().into_iter().flatten() {
            let volume = str_of(volume, "volume");
            if let Some(src) = volume.split(':').next().filter(|s| s.starts_with("./")) {
                assert!(
                    path("docker").join(src).exists(),
                    "{name:?} mounts missing {src}"
                );
            }
        }
    }
    let shardis = &compose["services"]["shardis"];
    assert_eq!(
        str_of(&shardis["build"]["dockerfile"], "dockerfile"),
        "docker/Dockerfile"
    );
    assert!(
        shardis["volumes"]
            .as_vec()
            .unwrap()
            .iter()
            .any(|v| str_of(v, "volume") == "./shardis.compose.toml:/etc/shardis/shardis.toml:ro")
    );

    let config = toml("docker/shardis.compose.toml");
    assert_eq!(config["server"]["listen"].as_str(), Some("0.0.0.0:6380"));
    assert_eq!(config["admin"]["listen"].as_str(), Some("0.0.0.0:9121"));
    let backends = config["pools"][0]["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 3);
    for b in backends {
        let address = b["address"].as_str().unwrap();
        let host = address.rsplit_once(':').unwrap().0;
        assert!(
            names.contains(host),
            "backend {address} is no compose service"
        );
    }
}

#[test]
fn dockerfile_builds_every_declared_target_and_runs_unprivileged() {
    let dockerfile = read("docker/Dockerfile");
    for line in [
        "FROM rust:1-bookworm AS builder",
        "FROM debian:bookworm-slim",
        "EXPOSE 6380 9121",
        "ENTRYPOINT [\"shardis\"]",
        "CMD [\"--config\", \"/etc/shardis/shardis.toml\"]",
    ] {
        assert!(
            dockerfile.lines().any(|l| l == line),
            "Dockerfile lacks {line}"
        );
    }
    let user = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "runs as {user}"
    );
    // The dependency layer builds against stubs; a [[bench]] without a stub breaks the build.
    let manifest = toml("Cargo.toml");
    for bench in manifest
        .get("bench")
        .and_then(|b| b.as_array())
        .into_iter()
        .flatten()
    {
        let name = bench["name"].as_str().unwrap();
        assert!(
            dockerfile.contains(&format!("> benches/{name}.rs")),
            "Dockerfile has no stub for bench {name}"
        );
    }
}
