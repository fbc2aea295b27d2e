//! Fuzz target `reply_helpers`: see `checks::reply_helpers` in fuzz/checks.rs, which
//! tests/fuzz_regressions.rs also runs over fuzz/regressions/reply_helpers/.
#![no_main]

include!("../checks.rs");

#[global_allocator]
static ALLOC: checks::LimitedAlloc = checks::LimitedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::reply_helpers(data, checks::strict()));
