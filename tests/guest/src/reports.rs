//! What a kernel prints when it finds a bug. Any of these on a guest's console (xtask reads it)
//! or in its log (the last guest test reads dmesg) fails the run. One list for both: xtask
//! includes this file.

/// Markers of kernel bug reports: oops and panic, BUG and WARN splats, lockdep, KASAN, UBSAN.
pub const KERNEL_REPORTS: [&str; 8] = [
    "Kernel panic",
    "Oops",
    "BUG:",
    "WARNING:",
    "INFO: possible",
    "possible circular locking",
    "KASAN:",
    "UBSAN:",
];
