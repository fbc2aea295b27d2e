//! `make bench-load`'s script, `benches/load.py`, run end to end at a tiny size against the
//! shardis binary under test, twemproxy, predixy (when its binary is there) and Redis: it must
//! finish, report every target, keep each backend at a fixed number of connections (shardis:
//! one per worker thread; predixy: at most one per worker thread), and account CPU per request to the processes it started. A smoke test of
//! the script, not a measurement.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TempDir;

/// The predixy binary load.py uses: $PREDIXY_BIN, else shared/peers/predixy beside the
/// repository. (A $PREDIXY_BIN naming nothing makes load.py, and so this test, fail.)
fn predixy_bin() -> PathBuf {
    std::env::var_os("PREDIXY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("shared")
                .join("peers")
                .join("predixy")
        })
}

#[test]
fn load_script_reports_every_target_and_the_cpu_each_request_cost() {
    let dir = TempDir::new("bench-load");
    let json = dir.path().join("load.json");
    let predixy = predixy_bin();
    let have_predixy = predixy.is_file();
    let out = Command::new("python3")
        .args([
            "benches/load.py",
            "--shardis-bin",
            env!("CARGO_BIN_EXE_shardis"),
            "--requests",
            "5000",
            "--rounds",
            "1",
            "--workloads",
            "getset,get-c1",
            "--predixy-threads",
            "2",
            "--shardis-args",
            "--threads 2",
            "--json",
        ])
        .arg(&json)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run python3 benches/load.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "load.py failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("CPU per request in microseconds"),
        "{stdout}"
    );
    let targets: &[&str] = if have_predixy {
        // The ratio column exists only for a peer that ran.
        assert!(stdout.contains("x predixy"), "{stdout}");
        &["shardis", "twemproxy", "predixy", "direct"]
    } else {
        assert!(
            stdout.contains("predixy not found at") && stdout.contains("leaving it out"),
            "no predixy at {}, and load.py did not say so:\n{stdout}",
            predixy.display()
        );
        &["shardis", "twemproxy", "direct"]
    };

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("read the JSON report"))
            .expect("the JSON report parses");
    let ran: Vec<&str> = report["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert_eq!(ran, targets, "predixy at {}", predixy.display());
    let runs = report["runs"].as_array().expect("runs");
    for &target in targets {
        for test in ["GET", "SET"] {
            assert!(
                runs.iter().any(|r| r["target"] == target
                    && r["test"] == test
                    && r["rps"].as_f64() > Some(0.0)),
                "no {test} result for {target} in {runs:?}"
            );
        }
    }
    // A fixed number of connections per backend before, during and after: twemproxy's one,
    // and shardis's one link per worker thread (2 here).
    for (proxy, each) in [("shardis", 2), ("twemproxy", 1)] {
        let conns = &report["connections"][proxy];
        for field in ["before", "peak", "after"] {
            let counts = conns[field].as_array().expect("connection counts");
            assert_eq!(counts.len(), 4, "{proxy} {field}");
            assert!(
                counts.iter().all(|n| n == each),
                "{proxy} {field}: {counts:?}"
            );
        }
    }
    // predixy connects lazily, at most once per worker thread (2 here) to each backend.
    if have_predixy {
        let conns = &report["connections"]["predixy"];
        for field in ["before", "peak", "after"] {
            let counts = conns[field].as_array().expect("predixy connection counts");
            assert_eq!(counts.len(), 4, "predixy {field}");
            let lowest = if field == "before" { 0 } else { 1 };
            assert!(
                counts
                    .iter()
                    .all(|n| n.as_u64().is_some_and(|n| (lowest..=2).contains(&n))),
                "predixy {field}: {counts:?}"
            );
        }
    }
    // Ratios to every peer that ran, in the JSON summary too.
    let summary = report["summary"].as_array().expect("summary");
    let shardis_get = summary
        .iter()
        .find(|r| r["workload"] == "getset" && r["test"] == "GET" && r["target"] == "shardis")
        .unwrap_or_else(|| panic!("no shardis GET row in {summary:?}"));
    for peer in ["twemproxy", "predixy", "direct"] {
        let ratio = &shardis_get[format!("x_{peer}").as_str()];
        if targets.contains(&peer) {
            assert!(ratio.as_f64() > Some(0.0), "x {peer}: {shardis_get}");
        } else {
            assert!(ratio.is_null(), "x {peer}: {shardis_get}");
        }
    }
    // CPU per request: every target's Redis servers did work; each proxy did too.
    let cpu = report["cpu_us_per_request"].as_array().expect("cpu");
    for &target in targets {
        let row = cpu
            .iter()
            .find(|r| r["target"] == target && r["workload"] == "getset")
            .unwrap_or_else(|| panic!("no CPU row for {target}: {cpu:?}"));
        let total = |field: &str| -> f64 {
            let values = row[field]
                .as_array()
                .unwrap_or_else(|| panic!("no {field}: {row}"));
            values.iter().filter_map(|v| v.as_f64()).sum()
        };
        assert!(total("servers") > 0.0, "{target}: {row}");
        if target != "direct" {
            let proxy = total("proxy");
            assert!(proxy > 0.0, "{target}: {row}");
        }
    }
}
