//! The uAPI as other architectures see it: the C header, compiled by clang for powerpc64
//! (Power10's `_IOC` layout differs from x86 and arm64) against the kernel's own sanitized
//! powerpc uapi headers, must give every command the number `kmod/uapi.rs` encodes for that
//! layout. x86_64 and arm64 are covered by running natively and in the arm64 guest.

#[path = "../../kmod/uapi.rs"]
mod uapi;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::kernel::source_tree;
use crate::pins;
use crate::run::{fail, output, step, workspace_root, StepResult};

/// Targets checked: (clang triple, kernel ARCH, layout).
const TARGETS: [(&str, &str, uapi::IocLayout); 2] = [
    ("powerpc64le-linux-gnu", "powerpc", uapi::IOC_LAYOUT_ALT),
    ("powerpc64-linux-gnu", "powerpc", uapi::IOC_LAYOUT_ALT),
];

/// Sanitized uapi headers for `arch` (`make headers`), built once per source tree.
fn uapi_headers(src: &Path, arch: &str) -> StepResult<PathBuf> {
    let out = src.with_file_name(format!("uapi-headers-{arch}"));
    let include = out.join("usr/include");
    if out.join(".complete").exists() {
        return Ok(include);
    }
    let mut cmd = Command::new("make");
    cmd.current_dir(src)
        .arg("-s")
        .arg(format!("ARCH={arch}"))
        .arg(format!("LLVM=-{}", pins::LLVM))
        .arg(format!("O={}", out.display()))
        .arg("headers");
    step(&format!("uapi headers {arch}"), cmd)?;
    std::fs::write(out.join(".complete"), "").map_err(|e| fail("uapi headers", e.to_string()))?;
    Ok(include)
}

/// A C file asserting every command's number under `layout`.
fn assertions(layout: uapi::IocLayout) -> String {
    let mut c = String::from("#include \"hdp_flush.h\"\n");
    for (name, spec) in uapi::HDP_FLUSH_COMMANDS {
        let n = spec.encode(layout);
        c.push_str(&format!(
            "_Static_assert({name} == {n:#010x}u, \"{name} is {n:#010x} in kmod/uapi.rs\");\n"
        ));
    }
    c
}

/// Compile the header for each target; any mismatch is a compile error naming the command.
pub fn check() -> StepResult {
    let src = source_tree()?;
    let dir = workspace_root().join("target/uapi-cross");
    std::fs::create_dir_all(&dir).map_err(|e| fail("uapi cross-check", e.to_string()))?;
    for (triple, arch, layout) in TARGETS {
        let include = uapi_headers(&src, arch)?;
        let file = dir.join(format!("{triple}.c"));
        std::fs::write(&file, assertions(layout))
            .map_err(|e| fail("uapi cross-check", e.to_string()))?;
        let mut cmd = Command::new(format!("clang-{}", pins::LLVM));
        cmd.arg(format!("--target={triple}"))
            .args(["-fsyntax-only", "-std=c11", "-nostdinc", "-Werror", "-I"])
            .arg(workspace_root().join("kmod/include"))
            .arg("-I")
            .arg(&include)
            .arg(&file);
        output(&format!("uapi cross-check {triple}"), cmd)?;
        eprintln!(
            "==> uapi cross-check {triple}: ok, {} command numbers match the kernel's _IOC layout",
            uapi::HDP_FLUSH_COMMANDS.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layouts_differ_so_the_check_is_meaningful() {
        let (_, version) = uapi::HDP_FLUSH_COMMANDS[0];
        assert_eq!(version.encode(uapi::IOC_LAYOUT_ALT), 0x4028_48a0);
        assert_eq!(version.encode(uapi::IOC_LAYOUT_GENERIC), 0x8028_48a0);
        let c = assertions(uapi::IOC_LAYOUT_ALT);
        assert!(
            c.contains("_Static_assert(HDP_FLUSH_IOC_NOP == 0x200048a1u"),
            "{c}"
        );
    }
}
