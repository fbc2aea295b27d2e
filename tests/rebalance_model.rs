//! The rebalancing protocol of docs/rebalancing.md, checked mechanically at its smallest
//! bound: `scripts/rebalance_model.py` explores every interleaving of two instances, three
//! backends and one moving key, and must find no violation; with the fence removed it must
//! find one (so this test can fail). And every Lua script of the document runs, as written
//! there, on a real redis-server with the results the document specifies.
//! `make model` runs the larger bounds and every mutation.

mod common;

use std::process::Command;

use common::Redis;

fn python3(args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn model_finds_no_violation_at_the_smallest_bound() {
    let (ok, out) = python3(&[
        "scripts/rebalance_model.py",
        "--bound",
        "tiny",
        "--expect",
        "ok",
    ]);
    println!("{out}");
    assert!(ok, "the model checker found a violation or failed:\n{out}");
    assert!(out.contains(" OK "), "no verdict in:\n{out}");
}

#[test]
fn model_finds_the_bug_when_the_fence_is_removed() {
    let (ok, out) = python3(&[
        "scripts/rebalance_model.py",
        "--bound",
        "tiny",
        "--mutate",
        "no-fence",
        "--expect",
        "violation",
    ]);
    println!("{out}");
    assert!(ok, "removing the fence went unnoticed:\n{out}");
    assert!(
        out.contains("routed by the OLD ring after the new ring touched"),
        "unexpected counterexample:\n{out}"
    );
}

#[test]
fn layout_scripts_of_the_document_behave_as_specified_on_redis() {
    let redis = Redis::start();
    let port = redis.port.to_string();
    let (ok, out) = python3(&["scripts/rebalance_scripts_check.py", "--port", &port]);
    println!("{out}");
    assert!(ok, "a script of docs/rebalancing.md misbehaved:\n{out}");
    assert!(out.contains("all 12 scripts"), "incomplete run:\n{out}");
}
