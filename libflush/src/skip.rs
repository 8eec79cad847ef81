//! Tests that need io_uring, where the kernel refuses it: they say they skipped, where the
//! test output is seen, instead of passing having tested nothing. Where io_uring must work
//! (CI: `cargo xtask test` sets [`REQUIRE_IO_URING`]) a refusal fails the test instead.
//!
//! Compiled into libflush's unit tests, and into its integration tests with `#[path]`.

use std::fmt::Display;
use std::io::Write;

/// Set (to anything) where io_uring must be usable: a refused io_uring then fails the test.
pub const REQUIRE_IO_URING: &str = "HDPFLUSH_REQUIRE_IO_URING";

/// `setup`'s value; or, when it failed because io_uring is refused here (`refused`), `None`
/// once `skipped: <reason>` is written to the terminal (not to libtest's captured output,
/// which a passing test never shows). Any other failure fails the test.
pub fn io_uring_or_skip<T, E: Display>(setup: Result<T, E>, refused: fn(&E) -> bool) -> Option<T> {
    match setup {
        Ok(value) => Some(value),
        Err(e) if refused(&e) => {
            assert!(
                std::env::var_os(REQUIRE_IO_URING).is_none(),
                "{REQUIRE_IO_URING} is set, so io_uring must work here: {e}"
            );
            let test = std::thread::current().name().unwrap_or("a test").to_owned();
            let _ = writeln!(std::io::stderr(), "{test}: skipped: {e}");
            None
        }
        Err(e) => panic!("setting up io_uring failed: {e}"),
    }
}
