//! The guest binaries' test loop: one line per test, then the closing
//! `guest: N passed, M failed` line that xtask reads, and the exit status.

use std::time::Instant;

/// A test's verdict: why it failed, if it did.
pub type TestResult = Result<(), String>;

/// A named test.
pub type Test = (&'static str, fn() -> TestResult);

/// Run `tests` in order, print each verdict and the closing line, and exit.
pub fn run_all(tests: &[Test]) -> ! {
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        let t = Instant::now();
        match test() {
            Ok(()) => {
                passed += 1;
                println!("ok     {name} ({:.0?})", t.elapsed());
            }
            Err(why) => {
                failed += 1;
                println!("FAILED {name}: {why}");
            }
        }
    }
    println!("guest: {passed} passed, {failed} failed");
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
