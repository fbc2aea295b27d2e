//! Re-runs the fuzz targets' checks (fuzz/checks.rs, the same code the fuzzer runs) over
//! every file in fuzz/regressions/<target>/: the seed corpora and every input that ever
//! found a bug. Inputs for bugs that are still open live in fuzz/regressions/<target>/open/
//! and run in the `#[ignore]`d tests below, with the strict checks that catch them; see
//! fuzz/README.md. The fuzzers themselves run with `make fuzz`.

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

/// Every open-bug input must still pass the checks that the fuzzer ran while the bug was open,
/// so that it keeps guarding everything else.
#[test]
fn request_open_bugs_lenient() {
    run("request/open/1-inline-max", 0, checks::request);
    run("request/open/2-lengths", 0, checks::request);
}

/// Open bug 1: inline requests ignore `max_request_bytes` (fuzz/README.md). Passes once the
/// parser refuses them; then move the inputs up to fuzz/regressions/request/.
#[test]
#[ignore = "open bug 1: inline requests are not bounded by max_request_bytes"]
fn request_open_bug_1_inline_over_max_request_bytes() {
    run(
        "request/open/1-inline-max",
        checks::BUG_INLINE_MAX,
        checks::request,
    );
}

/// Open bug 2: multibulk headers with numbers Redis refuses (`$04`, `*01`, `$-0`) are accepted
/// and forwarded as they are (fuzz/README.md).
#[test]
#[ignore = "open bug 2: multibulk lengths Redis refuses are accepted and forwarded"]
fn request_open_bug_2_lengths_redis_refuses() {
    run(
        "request/open/2-lengths",
        checks::BUG_LENGTHS,
        checks::request,
    );
}

/// Open issue 3 (fuzz/README.md): `array_elements` decodes with redis_protocol, which recurses
/// once per nesting level, so a deeply nested reply overflows a tokio worker's 2 MiB stack and
/// aborts the process. Only a hostile backend can send one (Redis answers MGET with a flat
/// array), and the fuzzer's 8 KiB inputs nest too little to reach it. Until it is fixed this
/// test aborts its process rather than failing.
#[test]
#[ignore = "open issue 3: array_elements overflows the stack on deeply nested replies"]
fn reply_helpers_open_issue_3_deep_nesting() {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            run(
                "reply_helpers/open/3-deep-nesting",
                checks::ALL,
                checks::reply_helpers,
            )
        })
        .unwrap()
        .join()
        .unwrap();
}
