//! Fuzz target `request`: see `checks::request` in fuzz/checks.rs, which
//! tests/fuzz_regressions.rs also runs over fuzz/regressions/request/.
#![no_main]

include!("../checks.rs");

#[global_allocator]
static ALLOC: checks::LimitedAlloc = checks::LimitedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::request(data, checks::strict()));
