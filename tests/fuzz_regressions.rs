//! Re-runs the fuzz targets' checks (fuzz/checks.rs, the same code the fuzzer runs) over
//! every file in fuzz/regressions/<target>/: the seed corpora and every input that ever
//! found a bug (named fixed-*, see fuzz/README.md). The fuzzers themselves run with `make fuzz`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

include!("../fuzz/checks.rs");

#[global_allocator]
static ALLOC: checks::LimitedAlloc = checks::LimitedAlloc;

/// The regular files of `fuzz/regressions/<dir>`, sorted.
fn inputs(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every input of `dir`; fails naming each input that fails.
fn run(dir: &str, strict: checks::Strict, check: fn(&[u8], checks::Strict)) {
    let files = inputs(dir);
    assert!(!files.is_empty(), "no inputs in fuzz/regressions/{dir}");
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap();
            catch_unwind(AssertUnwindSafe(|| check(&data, strict))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} inputs fail (the panic messages are above):\n  {}",
        failed.len(),
        files.len(),
        failed.join("\n  ")
    );
}

#[test]
fn request() {
    run("request", checks::ALL, checks::request);
}

#[test]
fn reply() {
    run("reply", checks::ALL, checks::reply);
}

#[test]
fn reply_helpers() {
    run("reply_helpers", checks::ALL, checks::reply_helpers);
}

#[test]
fn config() {
    run("config", checks::ALL, checks::config);
}

/// Bug 3 (fuzz/README.md, fixed): a reply nested 20,000 deep, taken apart on a thread with a
/// tokio worker's 2 MiB stack, must not overflow it (it used to abort the process).
#[test]
fn deep_nesting_on_a_worker_sized_stack() {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| run("reply_helpers", checks::ALL, checks::reply_helpers))
        .unwrap()
        .join()
        .unwrap();
}
