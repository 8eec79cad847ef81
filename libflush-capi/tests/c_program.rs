//! A C program includes include/libflush.h, links the static library, and flushes; run once
//! with the default selection and once with a bad HDPFLUSH_STRATEGY.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The static library cargo built alongside this test: next to the test executable in
/// target/<profile>/deps (test builds do not uplift it).
fn staticlib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let lib = exe.parent().unwrap().join("libflush.a");
    assert!(lib.exists(), "{} not built", lib.display());
    lib
}

fn build_c_program() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("capi");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("main.c");
    std::fs::write(
        &src,
        r#"#include <stdio.h>
#include <errno.h>
#include "libflush.h"
int main(void) {
    int r = hdpflush_flush();
    const char *s = hdpflush_strategy();
    const char *e = hdpflush_error();
    printf("flush=%d invalidate=%d strategy=%s error=%s\n", r, hdpflush_invalidate(),
           s ? s : "(null)", e ? e : "(null)");
    return r == 0 ? 0 : 1;
}
"#,
    )
    .unwrap();
    let exe = dir.join("main");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("include"))
        .arg(&src)
        .arg(staticlib())
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&exe)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "compiling and linking the C program failed"
    );
    exe
}

#[test]
fn a_c_program_links_the_static_library_and_flushes() {
    let exe = build_c_program();
    let out = Command::new(&exe)
        .env("HDPFLUSH_STRATEGY", "sim")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(
        stdout.trim(),
        "flush=0 invalidate=0 strategy=sim error=(null)"
    );

    let out = Command::new(&exe)
        .env("HDPFLUSH_STRATEGY", "warp")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.starts_with(&format!(
            "flush=-{} invalidate=-{} strategy=(null) error=unknown strategy `warp`",
            libc_einval(),
            libc_einval()
        )),
        "{stdout}"
    );
}

fn libc_einval() -> i32 {
    nix::errno::Errno::EINVAL as i32
}
