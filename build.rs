//! Builds the GPU kernels of `hdpflush validate` (gpu/*.cl) into AMDGPU code objects with
//! Debian's clang-19 and ld.lld-19, one per target, and embeds them in the CLI. Without those
//! tools the CLI still builds (`bench` must work on a fresh machine) and `validate` says the code
//! objects were not built and why; `cargo xtask test` requires them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The GPU targets built: MI100, MI210/MI250 (the RFC's GPU), MI300, RDNA2, RDNA3.
const TARGETS: &[&str] = &["gfx908", "gfx90a", "gfx942", "gfx1030", "gfx1100"];
const KERNEL: &str = "gpu/check_pattern.cl";

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn build(out: &Path, target: &str) -> Result<PathBuf, String> {
    let obj = out.join(format!("check_pattern-{target}.o"));
    let co = out.join(format!("check_pattern-{target}.co"));
    run(Command::new("clang-19")
        .args([
            "-x",
            "cl",
            "-cl-std=CL2.0",
            "-target",
            "amdgcn-amd-amdhsa",
            &format!("-mcpu={target}"),
            "-nogpulib",
            "-O2",
            "-Werror",
            "-c",
            KERNEL,
            "-o",
        ])
        .arg(&obj))?;
    run(Command::new("ld.lld-19")
        .arg("-shared")
        .arg(&obj)
        .arg("-o")
        .arg(&co))?;
    Ok(co)
}

fn main() {
    println!("cargo:rerun-if-changed={KERNEL}");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let built: Result<Vec<(&str, PathBuf)>, String> = TARGETS
        .iter()
        .map(|t| build(&out, t).map(|co| (*t, co)))
        .collect();
    let mut code = String::from("/// The embedded code objects: (gfx target, ELF bytes).\n");
    match built {
        Ok(list) => {
            code.push_str("pub const CODE_OBJECTS: &[(&str, &[u8])] = &[\n");
            for (target, co) in list {
                let _ = writeln!(
                    code,
                    "    ({target:?}, include_bytes!({:?})),",
                    co.display()
                );
            }
            code.push_str(
                "];\n/// Why there are none.\npub const NOT_BUILT: Option<&str> = None;\n",
            );
        }
        Err(why) => {
            println!("cargo:warning=hdpflush validate: GPU code objects not built: {why}");
            // Build again once the tools are installed (a missing file always counts as changed).
            println!("cargo:rerun-if-changed=/usr/bin/clang-19");
            println!("cargo:rerun-if-changed=/usr/bin/ld.lld-19");
            code.push_str("pub const CODE_OBJECTS: &[(&str, &[u8])] = &[];\n");
            let _ = writeln!(
                code,
                "/// Why there are none.\npub const NOT_BUILT: Option<&str> = Some({:?});",
                format!("clang-19 and ld.lld-19 are needed at build time: {why}")
            );
        }
    }
    if let Err(e) = std::fs::write(out.join("code_objects.rs"), code) {
        panic!("cannot write code_objects.rs: {e}");
    }
}
