//! The Kubernetes manifests (docker/k8s: a Kustomize base and one overlay per deployment shape)
//! render with `kubectl kustomize`, pass the Kubernetes JSON schemas offline (kubernetes-validate,
//! pinned in docker/k8s/requirements.txt and installed into a venv under the target dir), and
//! agree with shardis: the configs they embed are config/ files, byte for byte, that `shardis
//! check` accepts; probes and Service ports are the ones those configs listen on; the
//! PrometheusRule carries docker/prometheus-rules.yml; every metric named is one shardis exports.
//!
//! kubectl is required, not optional: without it these tests fail and say so (CI has it).

mod common;
#[path = "k8s/render.rs"]
mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::manifests::{assert_known_metrics, path, read};
use render::{
    Render, container_port, int, list, renders, run, s, same, selects, shardis_container, validator,
};
use yaml_rust2::{Yaml, YamlLoader};

/// The oldest Kubernetes with native sidecars on by default, and the newest the validator knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.29.0", "1.37.0"];
/// Kinds of prometheus-operator's CRDs, which have no built-in schema: checked field by field.
const CUSTOM_KINDS: [&str; 2] = ["PrometheusRule", "ServiceMonitor"];
/// What shardis needs on top of `preStop` and `shutdown_grace_ms` to exit before the kubelet
/// kills it: the last stragglers' abandon (200 ms) and the process's exit.
const EXIT_MARGIN_MS: u64 = 1000;

#[test]
fn every_overlay_renders_and_passes_the_kubernetes_schemas() {
    let renders = renders();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("k8s-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("a directory for the renders");
    let mut cmd = validator();
    cmd.args(["--strict"]);
    for version in KUBERNETES_VERSIONS {
        cmd.args(["-k", version]);
    }
    for r in &renders {
        let file = dir.join(format!("{}.yaml", r.overlay));
        fs::write(&file, &r.text).expect("write a render");
        cmd.arg(file);
    }
    let out = run(&mut cmd, "kubernetes-validate");
    let _ = fs::remove_dir_all(&dir);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubernetes-validate failed:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It only warns about a kind it has no schema for: make sure that is only the CRDs, and that
    // every other object passed once per version.
    for r in &renders {
        let file = dir.join(format!("{}.yaml", r.overlay));
        for o in &r.objects {
            let kind = s(&o["kind"], "kind");
            let name = s(&o["metadata"]["name"], "name");
            for version in KUBERNETES_VERSIONS {
                let major_minor = version.rsplit_once('.').map_or(version, |(mm, _)| mm);
                let line = if CUSTOM_KINDS.contains(&kind) {
                    format!(
                        "WARN {} Couldn't find schema for kind {kind} ",
                        file.display()
                    )
                } else {
                    format!(
                        "INFO {} passed for resource {}/{name} against version {major_minor}\n",
                        file.display(),
                        kind.to_lowercase()
                    )
                };
                assert!(report.contains(&line), "no {line:?} in:\n{report}");
            }
        }
        let warnings = report.matches(&format!("WARN {} ", file.display())).count();
        assert_eq!(
            warnings,
            CUSTOM_KINDS.len() * KUBERNETES_VERSIONS.len(),
            "{report}"
        );
    }
}

#[test]
fn every_overlay_has_its_shape() {
    let common = ["ConfigMap", "Service", "StatefulSet", "Deployment"];
    for r in renders() {
        let mut want: BTreeSet<&str> = common.into_iter().chain(CUSTOM_KINDS).collect();
        if r.overlay == "autoscaling" {
            want.extend(["HorizontalPodAutoscaler", "PodDisruptionBudget"]);
        }
        assert_eq!(r.kinds(), want, "{}", r.overlay);
        let pod = r.shardis();
        let (workload, template) = (pod.workload, pod.template);
        let native_sidecar = template["spec"]["initContainers"]
            .as_vec()
            .into_iter()
            .flatten()
            .any(|c| {
                c["name"].as_str() == Some("shardis")
                    && c["restartPolicy"].as_str() == Some("Always")
            });
        let standalone = s(&workload["kind"], "kind") == "Deployment"
            && s(&workload["metadata"]["name"], "name") == "shardis"
            && template["spec"]["containers"].as_vec().map(Vec::len) == Some(1);
        match r.overlay {
            "sidecar" => assert!(native_sidecar, "sidecar: shardis is a native sidecar"),
            _ => assert!(
                standalone,
                "{}: shardis runs alone in its own Deployment",
                r.overlay
            ),
        }
    }
}

/// Every *.toml under `dir`, recursively.
fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = entry.expect("a directory entry").path();
        if p.is_dir() {
            found.extend(toml_files(&p));
        } else if p.extension().is_some_and(|e| e == "toml") {
            found.push(p);
        }
    }
    found
}

#[test]
fn embedded_configs_are_config_files_verbatim_and_pass_shardis_check() {
    let expected = [
        ("autoscaling", "k8s-standalone.toml"),
        ("sidecar", "k8s-sidecar.toml"),
        ("standalone", "k8s-standalone.toml"),
    ];
    let mut checked = BTreeSet::new();
    for (r, (overlay, file)) in renders().iter().zip(expected) {
        assert_eq!(r.overlay, overlay);
        let text = r.shardis().config_text;
        assert!(
            text == read(&format!("config/{file}")),
            "{overlay}: the embedded shardis.toml is not config/{file}"
        );
        // Every .toml kustomize reads is a config/ file of the same name, verbatim.
        for map in r.all("ConfigMap") {
            for (key, value) in map["data"].as_hash().into_iter().flatten() {
                let key = s(key, "data key");
                if key.ends_with(".toml") {
                    assert_eq!(s(value, key), text, "{overlay}: a second TOML, {key}");
                }
            }
        }
        checked.insert(file);
    }
    // The copies kustomize reads (it reads nothing outside the overlay's directory).
    for copy in toml_files(&path("docker/k8s")) {
        let name = copy
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        assert!(
            fs::read_to_string(&copy).ok() == Some(read(&format!("config/{name}"))),
            "{} is not config/{name} byte for byte: copy config/{name} over it",
            copy.display()
        );
    }
    for file in checked {
        let out = run(
            Command::new(env!("CARGO_BIN_EXE_shardis"))
                .args(["check", "--config"])
                .arg(path(&format!("config/{file}"))),
            "shardis check",
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.ends_with(": OK\n"),
            "shardis check config/{file}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!stdout.contains("warning"), "config/{file}: {stdout}");
    }
}

#[test]
fn probes_point_at_healthz_and_readyz_on_the_admin_port() {
    for r in renders() {
        let o = r.overlay;
        let pod = r.shardis();
        let (template, c) = (pod.template, pod.container);
        let admin = pod.config.admin.listen;
        // The kubelet probes, and Prometheus scrapes, the pod's IP.
        assert!(
            admin.ip().is_unspecified(),
            "{o}: admin listens on {admin}, unreachable from outside the pod"
        );
        for (probe, want) in [
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", ""),
        ] {
            let get = &c[probe]["httpGet"];
            if probe == "startupProbe" && c[probe].is_badvalue() {
                continue;
            }
            let path = s(&get["path"], probe);
            assert!(
                path == want || (want.is_empty() && ["/healthz", "/readyz"].contains(&path)),
                "{o}: {probe} on {path}"
            );
            assert_eq!(
                container_port(c, &get["port"]),
                Some(admin.port().into()),
                "{o}: {probe} port"
            );
            assert!(
                get["scheme"].is_badvalue() || get["scheme"].as_str() == Some("HTTP"),
                "{o}: {probe}"
            );
        }
        let annotations = &template["metadata"]["annotations"];
        assert_eq!(
            s(&annotations["prometheus.io/port"], "port"),
            admin.port().to_string(),
            "{o}"
        );
        assert_eq!(
            s(&annotations["prometheus.io/path"], "path"),
            "/metrics",
            "{o}"
        );
    }
}

#[test]
fn service_ports_are_the_ones_the_config_listens_on() {
    for r in renders() {
        let o = r.overlay;
        let pod = r.shardis();
        let (template, c, config) = (pod.template, pod.container, &pod.config);
        let (listen, admin) = (config.server.listen, config.admin.listen);
        for p in list(&c["ports"], "ports") {
            let n = int(&p["containerPort"], "containerPort");
            assert!(
                [listen.port(), admin.port()].contains(&(n as u16)),
                "{o}: container port {n} is neither {listen} nor {admin}"
            );
        }
        let mut exposed = BTreeSet::new();
        for svc in r.services_of(template) {
            let name = s(&svc["metadata"]["name"], "Service name");
            for p in list(&svc["spec"]["ports"], "Service ports") {
                let target = if p["targetPort"].is_badvalue() {
                    &p["port"]
                } else {
                    &p["targetPort"]
                };
                let n = container_port(c, target).unwrap_or_else(|| {
                    panic!("{o}: Service {name} targets {target:?}, which shardis does not declare")
                });
                assert_eq!(
                    int(&p["port"], "port"),
                    n,
                    "{o}: Service {name} port differs from shardis's"
                );
                let ip = if n == i64::from(listen.port()) {
                    listen.ip()
                } else {
                    admin.ip()
                };
                assert!(
                    ip.is_unspecified(),
                    "{o}: Service {name} exposes port {n}, which shardis listens on at {ip} only"
                );
                exposed.insert(n);
            }
        }
        assert!(
            exposed.contains(&admin.port().into()),
            "{o}: no Service exposes the admin port"
        );
        if listen.ip().is_unspecified() {
            assert!(
                exposed.contains(&listen.port().into()),
                "{o}: no Service exposes the client port {listen}"
            );
        }
    }
}

/// The pod securityContext's `key`, unless the container's overrides it.
fn security<'a>(template: &'a Yaml, c: &'a Yaml, key: &str) -> &'a Yaml {
    let own = &c["securityContext"][key];
    if own.is_badvalue() {
        &template["spec"]["securityContext"][key]
    } else {
        own
    }
}

/// How long a preStop hook holds the container, in ms: an exec of `sleep N` or a sleep action.
fn pre_stop_ms(c: &Yaml) -> u64 {
    let hook = &c["lifecycle"]["preStop"];
    if hook.is_badvalue() {
        return 0;
    }
    let secs = match (&hook["exec"]["command"], &hook["sleep"]["seconds"]) {
        (Yaml::Array(cmd), _) => match cmd.as_slice() {
            [Yaml::String(sleep), Yaml::String(n)] if sleep == "sleep" => n.parse().ok(),
            _ => None,
        },
        (_, Yaml::Integer(n)) => u64::try_from(*n).ok(),
        _ => None,
    };
    secs.unwrap_or_else(|| panic!("preStop {hook:?} is neither `sleep N` nor a sleep action"))
        * 1000
}

#[test]
fn containers_run_unprivileged_with_requests_and_a_memory_limit() {
    for r in renders() {
        let o = r.overlay;
        for (workload, template) in r.pods() {
            let containers = ["containers", "initContainers"]
                .iter()
                .flat_map(|k| template["spec"][*k].as_vec().into_iter().flatten());
            // The sidecar shape's app is a placeholder for the user's own.
            for c in containers.filter(|c| c["name"].as_str() != Some("app")) {
                let what = format!(
                    "{o}: {} container {}",
                    s(&workload["metadata"]["name"], "name"),
                    s(&c["name"], "name")
                );
                assert_eq!(
                    security(template, c, "runAsNonRoot").as_bool(),
                    Some(true),
                    "{what}"
                );
                assert!(
                    security(template, c, "runAsUser")
                        .as_i64()
                        .is_some_and(|u| u > 0),
                    "{what}: runAsUser"
                );
                assert_eq!(
                    c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
                    Some(true),
                    "{what}"
                );
                assert_eq!(
                    c["securityContext"]["allowPrivilegeEscalation"].as_bool(),
                    Some(false),
                    "{what}"
                );
                let drop = list(&c["securityContext"]["capabilities"]["drop"], &what);
                assert!(
                    drop.iter().any(|d| d.as_str() == Some("ALL")),
                    "{what}: capabilities not dropped"
                );
                assert_eq!(
                    security(template, c, "seccompProfile")["type"].as_str(),
                    Some("RuntimeDefault"),
                    "{what}"
                );
                let res = &c["resources"];
                for (kind, key) in [
                    ("requests", "cpu"),
                    ("requests", "memory"),
                    ("limits", "memory"),
                ] {
                    assert!(
                        res[kind][key].as_str().is_some(),
                        "{what}: no resources.{kind}.{key}"
                    );
                }
            }
        }
    }
}

#[test]
fn shardis_drains_before_the_kubelet_kills_it() {
    for r in renders() {
        let o = r.overlay;
        let pod = r.shardis();
        let (c, config) = (pod.container, &pod.config);
        assert_eq!(
            s(&c["image"], "image"),
            format!("shardis:{}", env!("CARGO_PKG_VERSION")),
            "{o}"
        );
        let grace_ms = config.server.shutdown_grace.as_millis() as u64;
        let pre_stop = pre_stop_ms(c);
        let period = pod.template["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30) as u64;
        assert!(
            period * 1000 >= pre_stop + grace_ms + EXIT_MARGIN_MS,
            "{o}: terminationGracePeriodSeconds {period} leaves shardis no time to drain \
             (preStop {pre_stop} ms + shutdown_grace_ms {grace_ms} + {EXIT_MARGIN_MS} ms)"
        );
        // Clients reach it through a Service: its endpoints must drop the pod before
        // shardis stops accepting.
        if config.server.listen.ip().is_unspecified() {
            assert!(
                pre_stop >= 2000,
                "{o}: a preStop sleep of {pre_stop} ms is too short for endpoints to update"
            );
        }
    }
}

#[test]
fn backends_are_the_statefulset_pods_by_their_stable_names() {
    for r in renders() {
        let o = r.overlay;
        let config = r.shardis().config;
        let mut ordinals: BTreeMap<&str, BTreeSet<i64>> = Default::default();
        for b in config.pools.iter().flat_map(|p| &p.backends) {
            let addr = format!("{}:{}", b.address.host, b.address.port);
            // <statefulset>-<ordinal>.<headless service>[.<namespace>.svc...]
            let mut labels = b.address.host.split('.');
            let (pod, service) = (labels.next().unwrap_or(""), labels.next().unwrap_or(""));
            let (set, ordinal) = pod
                .rsplit_once('-')
                .unwrap_or_else(|| panic!("{o}: {addr} is no StatefulSet pod"));
            let sts = r.one("StatefulSet", set);
            assert_eq!(
                s(&sts["spec"]["serviceName"], "serviceName"),
                service,
                "{o}: {addr}"
            );
            let ordinal: i64 = ordinal
                .parse()
                .unwrap_or_else(|_| panic!("{o}: {addr}: no ordinal"));
            assert!(
                (0..int(&sts["spec"]["replicas"], "replicas")).contains(&ordinal),
                "{o}: {addr}: no such pod"
            );
            assert!(
                ordinals.entry(set).or_default().insert(ordinal),
                "{o}: {addr} listed twice"
            );
            // The headless Service that gives the pods their DNS names, on the backend's port.
            let svc = r.one("Service", service);
            assert_eq!(
                s(&svc["spec"]["clusterIP"], "clusterIP"),
                "None",
                "{o}: {service} is not headless"
            );
            let pods = &sts["spec"]["template"];
            assert!(
                selects(&svc["spec"]["selector"], &pods["metadata"]["labels"]),
                "{o}: {service} misses {set}'s pods"
            );
            let redis = &list(&pods["spec"]["containers"], "containers")[0];
            let served = list(&svc["spec"]["ports"], "ports").iter().any(|p| {
                int(&p["port"], "port") == i64::from(b.address.port)
                    && container_port(redis, &p["targetPort"]) == Some(i64::from(b.address.port))
            });
            assert!(
                served,
                "{o}: {addr}: neither {service} nor {set} serves port {}",
                b.address.port
            );
        }
        assert!(!ordinals.is_empty(), "{o}: no backends");
        for (set, seen) in ordinals {
            let replicas = int(&r.one("StatefulSet", set)["spec"]["replicas"], "replicas");
            assert_eq!(
                seen,
                (0..replicas).collect(),
                "{o}: shardis does not list every pod of {set}"
            );
        }
    }
}

/// A duration as Prometheus writes one: `5m`, `1h30m`, `250ms`.
fn is_duration(text: &str) -> bool {
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(&rest[digits..], |e| &rest[digits..digits + e]);
        if digits == 0 || !["ms", "s", "m", "h", "d", "w", "y"].contains(&unit) {
            return false;
        }
        rest = &rest[digits + unit.len()..];
    }
    !text.is_empty()
}

#[test]
fn prometheus_rule_is_the_alerts_file_with_every_required_field() {
    let alerts = &YamlLoader::load_from_str(&read("docker/prometheus-rules.yml"))
        .expect("the alerts file")[0];
    for r in renders() {
        let o = r.overlay;
        let rule = r.one("PrometheusRule", "shardis");
        assert_eq!(
            s(&rule["apiVersion"], "apiVersion"),
            "monitoring.coreos.com/v1"
        );
        assert!(
            same(&rule["spec"]["groups"], &alerts["groups"]),
            "{o}: the PrometheusRule's groups are not docker/prometheus-rules.yml's: run scripts/k8s.sh rules"
        );
        let mut names = BTreeSet::new();
        for group in list(&rule["spec"]["groups"], "groups") {
            let name = s(&group["name"], "group name");
            assert!(names.insert(name), "{o}: group {name} twice");
            let rules = list(&group["rules"], "rules");
            assert!(!rules.is_empty(), "{o}: group {name} has no rules");
            for rule in rules {
                assert!(!s(&rule["expr"], "expr").trim().is_empty(), "{o}: {rule:?}");
                assert!(
                    rule["alert"].as_str().is_some() != rule["record"].as_str().is_some(),
                    "{o}: alert or record: {rule:?}"
                );
                if !rule["for"].is_badvalue() {
                    assert!(
                        is_duration(s(&rule["for"], "for")),
                        "{o}: for {:?}",
                        rule["for"]
                    );
                }
                for key in ["labels", "annotations"] {
                    for (k, v) in rule[key].as_hash().into_iter().flatten() {
                        assert!(
                            k.as_str().is_some() && v.as_str().is_some(),
                            "{o}: {key} must map strings to strings"
                        );
                    }
                }
            }
        }
        assert!(!names.is_empty(), "{o}: no rule groups");
    }
    assert!(
        is_duration("1h30m")
            && is_duration("250ms")
            && !is_duration("5")
            && !is_duration("m")
            && !is_duration("")
    );
}

#[test]
fn service_monitor_scrapes_the_admin_port_of_every_shardis() {
    for r in renders() {
        let o = r.overlay;
        let monitor = r.one("ServiceMonitor", "shardis");
        assert_eq!(
            s(&monitor["apiVersion"], "apiVersion"),
            "monitoring.coreos.com/v1"
        );
        assert!(
            monitor["spec"]["namespaceSelector"].is_badvalue(),
            "{o}: it watches its own namespace"
        );
        let selector = &monitor["spec"]["selector"]["matchLabels"];
        let endpoints = list(&monitor["spec"]["endpoints"], "endpoints");
        assert!(!endpoints.is_empty(), "{o}: no endpoints");
        let services: Vec<_> = r
            .all("Service")
            .filter(|svc| selects(selector, &svc["metadata"]["labels"]))
            .collect();
        let pod = r.shardis();
        let (template, c, config) = (pod.template, pod.container, &pod.config);
        // Every shardis pod is behind one of the monitored Services, and nothing else is.
        assert!(
            services
                .iter()
                .any(|svc| selects(&svc["spec"]["selector"], &template["metadata"]["labels"])),
            "{o}"
        );
        for endpoint in endpoints {
            let port = s(&endpoint["port"], "endpoint port");
            assert_eq!(
                endpoint["path"].as_str().unwrap_or("/metrics"),
                "/metrics",
                "{o}"
            );
            if let Some(interval) = endpoint["interval"].as_str() {
                assert!(is_duration(interval), "{o}: interval {interval}");
            }
            for svc in &services {
                let name = s(&svc["metadata"]["name"], "name");
                assert!(
                    selects(&svc["spec"]["selector"], &template["metadata"]["labels"]),
                    "{o}: {name} is monitored but no shardis"
                );
                let p = list(&svc["spec"]["ports"], "ports")
                    .iter()
                    .find(|p| p["name"].as_str() == Some(port))
                    .unwrap_or_else(|| panic!("{o}: Service {name} has no port {port}"));
                assert_eq!(
                    container_port(c, &p["targetPort"]),
                    Some(config.admin.listen.port().into()),
                    "{o}: {name}"
                );
            }
        }
    }
}

/// The prometheus-adapter rules the autoscaling overlay ships.
fn adapter_rules(r: &Render) -> Vec<Yaml> {
    let map = r.one("ConfigMap", "prometheus-adapter-shardis");
    let config = YamlLoader::load_from_str(s(&map["data"]["config.yaml"], "config.yaml"))
        .expect("adapter config");
    list(&config[0]["rules"], "rules").to_vec()
}

#[test]
fn metrics_named_by_alerts_adapter_rules_and_dashboard_are_exported() {
    let dashboard = assert_known_metrics(
        "docker/grafana/shardis.json",
        &read("docker/grafana/shardis.json"),
    );
    assert!(!dashboard.is_empty());
    for r in renders() {
        let o = r.overlay;
        let mut custom = BTreeSet::new();
        for rule in r
            .all("PrometheusRule")
            .flat_map(|p| list(&p["spec"]["groups"], "groups"))
            .flat_map(|g| list(&g["rules"], "rules"))
        {
            let used =
                assert_known_metrics(&format!("{o}: PrometheusRule"), s(&rule["expr"], "expr"));
            assert!(!used.is_empty(), "{o}: {rule:?} uses no shardis metric");
        }
        if r.overlay == "autoscaling" {
            for rule in adapter_rules(&r) {
                let what = format!("{o}: prometheus-adapter rule");
                let series = assert_known_metrics(&what, s(&rule["seriesQuery"], "seriesQuery"));
                let matches = s(&rule["name"]["matches"], "name.matches");
                let exact = matches
                    .strip_prefix('^')
                    .and_then(|m| m.strip_suffix('$'))
                    .unwrap_or_else(|| panic!("{what}: {matches} is not anchored"));
                assert_eq!(
                    assert_known_metrics(&what, exact)
                        .into_iter()
                        .collect::<Vec<_>>(),
                    [exact],
                    "{what}"
                );
                assert_eq!(
                    series.into_iter().collect::<Vec<_>>(),
                    [exact],
                    "{what}: seriesQuery"
                );
                let query = s(&rule["metricsQuery"], "metricsQuery");
                for part in ["<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"] {
                    assert!(query.contains(part), "{what}: metricsQuery lacks {part}");
                }
                custom.insert(s(&rule["name"]["as"], "name.as").to_owned());
            }
        }
        // Anything else in the render that looks like a shardis metric is one, apart from the
        // custom metrics the adapter serves under new names.
        let mut text = r.text.clone();
        for name in &custom {
            text = text.replace(name.as_str(), "");
        }
        assert_known_metrics(o, &text);
    }
}

#[test]
fn autoscaling_scales_shardis_on_its_request_rate_and_keeps_one_pod_up() {
    let renders = renders();
    let r = renders
        .iter()
        .find(|r| r.overlay == "autoscaling")
        .expect("autoscaling");
    let hpa = r.one("HorizontalPodAutoscaler", "shardis");
    assert_eq!(s(&hpa["apiVersion"], "apiVersion"), "autoscaling/v2");
    let target = &hpa["spec"]["scaleTargetRef"];
    assert_eq!(
        (
            s(&target["apiVersion"], "apiVersion"),
            s(&target["kind"], "kind")
        ),
        ("apps/v1", "Deployment")
    );
    let deployment = r.one("Deployment", s(&target["name"], "name"));
    let template = &deployment["spec"]["template"];
    assert!(
        shardis_container(template).is_some(),
        "the HPA scales shardis"
    );
    assert!(
        deployment["spec"]["replicas"].is_badvalue(),
        "the HPA owns replicas; apply would reset them"
    );
    let min = hpa["spec"]["minReplicas"].as_i64().unwrap_or(1);
    let max = int(&hpa["spec"]["maxReplicas"], "maxReplicas");
    assert!(min >= 2 && max > min, "replicas {min} to {max}");

    // On shardis's request rate, per pod, through the adapter's rule on shardis_commands_total.
    let rules = adapter_rules(r);
    let metrics = list(&hpa["spec"]["metrics"], "metrics");
    assert_eq!(metrics.len(), 1, "one metric: the request rate");
    let m = &metrics[0];
    assert_eq!(s(&m["type"], "type"), "Pods");
    let name = s(&m["pods"]["metric"]["name"], "metric name");
    let rule = rules
        .iter()
        .find(|r| r["name"]["as"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no adapter rule serves {name}"));
    assert_eq!(
        s(&rule["name"]["matches"], "matches"),
        "^shardis_commands_total$"
    );
    for label in ["namespace", "pod"] {
        assert_eq!(
            s(&rule["resources"]["overrides"][label]["resource"], label),
            label,
            "per-pod custom metric"
        );
    }
    assert_eq!(
        s(&m["pods"]["target"]["type"], "target type"),
        "AverageValue"
    );
    assert!(m["pods"]["target"]["averageValue"].as_str().is_some());

    // Node drains take one pod at a time, and the HPA's floor leaves one serving.
    let pdb = r.one("PodDisruptionBudget", "shardis");
    assert_eq!(s(&pdb["apiVersion"], "apiVersion"), "policy/v1");
    assert!(
        selects(
            &pdb["spec"]["selector"]["matchLabels"],
            &template["metadata"]["labels"]
        ),
        "the PDB covers shardis"
    );
    let allowed = match (
        pdb["spec"]["maxUnavailable"].as_i64(),
        pdb["spec"]["minAvailable"].as_i64(),
    ) {
        (Some(n), None) => n,
        (None, Some(n)) => min - n,
        other => panic!("the PDB sets one of maxUnavailable, minAvailable as a number: {other:?}"),
    };
    assert!(
        allowed >= 1 && allowed < min,
        "{allowed} of {min} pods may be disrupted at once"
    );

    let standalone = renders
        .iter()
        .find(|r| r.overlay == "standalone")
        .expect("standalone");
    assert!(
        int(
            &standalone.one("Deployment", "shardis")["spec"]["replicas"],
            "replicas"
        ) >= 2
    );
}
