//! Fuzz target `reply`: see `checks::reply` in fuzz/checks.rs, which
//! tests/fuzz_regressions.rs also runs over fuzz/regressions/reply/.
#![no_main]

include!("../checks.rs");

#[global_allocator]
static ALLOC: checks::LimitedAlloc = checks::LimitedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::reply(data, checks::strict()));
