//! `make bench-load`'s script, `benches/load.py`, run end to end at a tiny size against the
//! shardis binary under test, twemproxy and Redis: it must finish, report every target, keep
//! each backend at one connection, and account CPU per request to the processes it started.
//! A smoke test of the script, not a measurement.

mod common;

use std::process::Command;

use common::TempDir;

#[test]
fn load_script_reports_every_target_and_the_cpu_each_request_cost() {
    let dir = TempDir::new("bench-load");
    let json = dir.path().join("load.json");
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

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("read the JSON report"))
            .expect("the JSON report parses");
    let runs = report["runs"].as_array().expect("runs");
    for target in ["shardis", "twemproxy", "direct"] {
        for test in ["GET", "SET"] {
            assert!(
                runs.iter().any(|r| r["target"] == target
                    && r["test"] == test
                    && r["rps"].as_f64() > Some(0.0)),
                "no {test} result for {target} in {runs:?}"
            );
        }
    }
    // One connection per backend before, during and after, for both proxies.
    for proxy in ["shardis", "twemproxy"] {
        let conns = &report["connections"][proxy];
        for field in ["before", "peak", "after"] {
            let counts = conns[field].as_array().expect("connection counts");
            assert_eq!(counts.len(), 4, "{proxy} {field}");
            assert!(counts.iter().all(|n| n == 1), "{proxy} {field}: {counts:?}");
        }
    }
    // CPU per request: every target's Redis servers did work; each proxy did too.
    let cpu = report["cpu_us_per_request"].as_array().expect("cpu");
    for target in ["shardis", "twemproxy", "direct"] {
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
