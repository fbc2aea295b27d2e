//! The rendered overlays of docker/k8s as the tests read them, and the tools that render and
//! validate them: `kubectl kustomize`, and kubernetes-validate in a venv under the target dir.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use shardis::config::Config;
use yaml_rust2::{Yaml, YamlLoader};

use crate::common::manifests::{path, read};

/// The deployment shapes, one directory each under docker/k8s/overlays.
pub const OVERLAYS: [&str; 3] = ["autoscaling", "sidecar", "standalone"];

/// One overlay, rendered.
pub struct Render {
    pub overlay: &'static str,
    pub text: String,
    pub objects: Vec<Yaml>,
}

impl Render {
    pub fn all<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Yaml> + 'a {
        self.objects
            .iter()
            .filter(move |o| o["kind"].as_str() == Some(kind))
    }

    pub fn one(&self, kind: &str, name: &str) -> &Yaml {
        self.objects
            .iter()
            .find(|o| {
                o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name)
            })
            .unwrap_or_else(|| panic!("{}: no {kind} {name}", self.overlay))
    }

    pub fn kinds(&self) -> BTreeSet<&str> {
        self.objects.iter().map(|o| s(&o["kind"], "kind")).collect()
    }

    /// (workload, pod template) of every Deployment and StatefulSet.
    pub fn pods(&self) -> impl Iterator<Item = (&Yaml, &Yaml)> {
        self.objects
            .iter()
            .filter(|o| matches!(o["kind"].as_str(), Some("Deployment" | "StatefulSet")))
            .map(|o| (o, &o["spec"]["template"]))
    }

    /// The Services whose selector picks the pods of `template`.
    pub fn services_of<'a>(&'a self, template: &'a Yaml) -> impl Iterator<Item = &'a Yaml> + 'a {
        self.all("Service")
            .filter(move |svc| selects(&svc["spec"]["selector"], &template["metadata"]["labels"]))
    }
}

pub fn s<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {y:?}"))
}

pub fn int(y: &Yaml, what: &str) -> i64 {
    y.as_i64()
        .unwrap_or_else(|| panic!("{what}: expected an integer, got {y:?}"))
}

pub fn list<'a>(y: &'a Yaml, what: &str) -> &'a [Yaml] {
    y.as_vec()
        .unwrap_or_else(|| panic!("{what}: expected a list, got {y:?}"))
}

/// Whether every label of `selector` (a non-empty map) is among `labels`.
pub fn selects(selector: &Yaml, labels: &Yaml) -> bool {
    let selector = selector.as_hash().filter(|h| !h.is_empty());
    selector.is_some_and(|sel| {
        sel.iter()
            .all(|(k, v)| &labels[k.as_str().unwrap_or("")] == v)
    })
}

/// `a` and `b` are the same YAML, whatever the order of map keys (kustomize sorts them).
pub fn same(a: &Yaml, b: &Yaml) -> bool {
    match (a, b) {
        (Yaml::Hash(x), Yaml::Hash(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Yaml::Array(x), Yaml::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        _ => a == b,
    }
}

pub fn run(cmd: &mut Command, what: &str) -> Output {
    cmd.output().unwrap_or_else(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            panic!(
                "{what}: {:?} is not installed or not on PATH. The Kubernetes manifest tests \
                 need kubectl (its built-in kustomize renders docker/k8s/overlays) and python3 \
                 (for kubernetes-validate); install them, these tests do not skip.",
                cmd.get_program()
            )
        }
        panic!("{what}: cannot run {:?}: {e}", cmd.get_program())
    })
}

fn render(overlay: &'static str) -> Render {
    let dir = path("docker/k8s/overlays").join(overlay);
    let out = run(Command::new("kubectl").arg("kustomize").arg(&dir), overlay);
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("kustomize renders UTF-8");
    let objects = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{overlay}: {e}"));
    assert!(!objects.is_empty(), "{overlay} renders nothing");
    Render {
        overlay,
        text,
        objects,
    }
}

/// Every overlay rendered; the overlays on disk are exactly [`OVERLAYS`].
pub fn renders() -> Vec<Render> {
    let mut found: Vec<String> = fs::read_dir(path("docker/k8s/overlays"))
        .expect("docker/k8s/overlays")
        .map(|e| {
            e.expect("an overlay")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    found.sort();
    assert_eq!(
        found, OVERLAYS,
        "docker/k8s/overlays has other overlays than the tests know"
    );
    OVERLAYS.into_iter().map(render).collect()
}

/// kubernetes-validate from docker/k8s/requirements.txt in a venv under the target dir, installed
/// when missing or when the requirements changed. Built beside and renamed into place, so an
/// interrupted install is never taken for a finished one.
pub fn validator() -> Command {
    let requirements = read("docker/k8s/requirements.txt");
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("k8s-validate-venv");
    let stamp = venv.join("requirements.txt");
    if fs::read_to_string(&stamp).ok().as_deref() != Some(requirements.as_str()) {
        let fresh = venv.with_extension(format!("new-{}", std::process::id()));
        let _ = fs::remove_dir_all(&fresh);
        let out = run(
            Command::new("python3").arg("-m").arg("venv").arg(&fresh),
            "venv",
        );
        assert!(
            out.status.success(),
            "python3 -m venv: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(
            Command::new(fresh.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(path("docker/k8s/requirements.txt")),
            "pip install",
        );
        assert!(
            out.status.success(),
            "pip install -r docker/k8s/requirements.txt (needs PyPI): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::write(fresh.join("requirements.txt"), &requirements).expect("write the stamp");
        let _ = fs::remove_dir_all(&venv);
        fs::rename(&fresh, &venv).expect("move the venv into place");
    }
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.args(["-m", "kubernetes_validate"]);
    cmd
}

/// The container named shardis in a pod template, among its containers or init containers.
pub fn shardis_container(template: &Yaml) -> Option<&Yaml> {
    ["containers", "initContainers"]
        .iter()
        .flat_map(|k| template["spec"][*k].as_vec().into_iter().flatten())
        .find(|c| c["name"].as_str() == Some("shardis"))
}

/// The TOML the shardis container of `template` is started with: `--config DIR/KEY`, DIR a
/// ConfigMap volume's mount, KEY one of its data keys.
fn config_of<'a>(r: &'a Render, template: &Yaml) -> (&'a str, Config) {
    let c = shardis_container(template).expect("a shardis container");
    let args: Vec<&str> = list(&c["args"], "args")
        .iter()
        .map(|a| s(a, "arg"))
        .collect();
    let file = match args.as_slice() {
        ["--config", file] => *file,
        other => panic!("{}: shardis args {other:?}, not [--config FILE]", r.overlay),
    };
    let (dir, key) = file.rsplit_once('/').expect("an absolute --config path");
    let mount = list(&c["volumeMounts"], "volumeMounts")
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(dir))
        .unwrap_or_else(|| panic!("{}: nothing mounted at {dir}", r.overlay));
    let volume = list(&template["spec"]["volumes"], "volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    let map = r.one(
        "ConfigMap",
        s(&volume["configMap"]["name"], "configMap name"),
    );
    let text = s(&map["data"][key], "the config's data key");
    let config = Config::parse(text).unwrap_or_else(|e| panic!("{}: {e}", r.overlay));
    (text, config)
}

/// The port a probe, or a Service's targetPort, names on container `c`: a number it declares,
/// or the name of one of its ports.
pub fn container_port(c: &Yaml, port: &Yaml) -> Option<i64> {
    let ports = c["ports"].as_vec()?;
    match port {
        Yaml::Integer(n) => ports
            .iter()
            .any(|p| p["containerPort"].as_i64() == Some(*n))
            .then_some(*n),
        Yaml::String(name) => ports
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_i64()),
        _ => None,
    }
}

/// The one workload of a render that runs shardis, and what it runs.
pub struct ShardisPod<'a> {
    pub workload: &'a Yaml,
    pub template: &'a Yaml,
    pub container: &'a Yaml,
    /// The TOML it is started with, as embedded in its ConfigMap.
    pub config_text: &'a str,
    pub config: Config,
}

impl Render {
    /// The workload that runs shardis; there is exactly one in every overlay.
    pub fn shardis(&self) -> ShardisPod<'_> {
        let mut found = self
            .pods()
            .filter_map(|(w, t)| shardis_container(t).map(|c| (w, t, c)));
        let (workload, template, container) = found
            .next()
            .unwrap_or_else(|| panic!("{}: no workload runs shardis", self.overlay));
        assert!(
            found.next().is_none(),
            "{}: two workloads run shardis",
            self.overlay
        );
        let (config_text, config) = config_of(self, template);
        ShardisPod {
            workload,
            template,
            container,
            config_text,
            config,
        }
    }
}
