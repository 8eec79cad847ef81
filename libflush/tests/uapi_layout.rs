//! kmod/uapi.rs and kmod/include/hdp_flush.h describe one ABI: a C program compiled from the
//! header prints every size, offset and ioctl number, and each must equal the Rust value.
//! The ioctl encoding is also checked against nix's and ioctl-sys's encoders.

use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

use libflush::uapi::*;

/// (C expression, Rust value) pairs.
fn expectations() -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = Vec::new();
    macro_rules! layout {
        ($rust:ty, $c:literal, [$($field:ident),* $(,)?]) => {
            v.push((format!("sizeof(struct {})", $c), size_of::<$rust>() as u64));
            v.push((format!("_Alignof(struct {})", $c), std::mem::align_of::<$rust>() as u64));
            $(v.push((
                format!("offsetof(struct {}, {})", $c, stringify!($field)),
                offset_of!($rust, $field) as u64,
            ));)*
        };
    }
    macro_rules! constants {
        ($($name:ident),* $(,)?) => { $(v.push((stringify!($name).to_owned(), $name as u64));)* };
    }
    layout!(
        HdpFlushVersion,
        "hdp_flush_version",
        [
            api_major,
            api_minor,
            num_devices,
            page_size,
            features,
            reserved
        ]
    );
    layout!(
        HdpFlushDeviceInfo,
        "hdp_flush_device_info",
        [
            index,
            backend,
            pci_domain,
            pci_bdf,
            vendor,
            device,
            flags,
            uring_requests,
            reserved,
            name
        ]
    );
    layout!(
        HdpFlushRequest,
        "hdp_flush_request",
        [device, flags, reserved]
    );
    layout!(
        HdpFlushStats,
        "hdp_flush_stats",
        [
            device,
            flags,
            flush_requests,
            hw_flushes,
            coalesced,
            invalidates,
            flush_errors,
            invalidate_errors,
            flush_skipped
        ]
    );
    constants!(
        HDP_FLUSH_API_MAJOR,
        HDP_FLUSH_API_MINOR,
        HDP_FLUSH_IOC_MAGIC,
        HDP_FLUSH_IOC_VERSION,
        HDP_FLUSH_IOC_NOP,
        HDP_FLUSH_IOC_DEVICE_INFO,
        HDP_FLUSH_IOC_FLUSH,
        HDP_FLUSH_IOC_INVALIDATE,
        HDP_FLUSH_IOC_STATS,
        HDP_FLUSH_F_SYNC,
        HDP_FLUSH_F_NO_COALESCE,
        HDP_FLUSH_FLUSH_FLAGS,
        HDP_FLUSH_INVALIDATE_FLAGS,
        HDP_FLUSH_STATS_F_RESET,
        HDP_FLUSH_STATS_FLAGS,
        HDP_FLUSH_FEAT_URING_CMD,
        HDP_FLUSH_FEAT_COALESCE,
        HDP_FLUSH_BACKEND_SIM,
        HDP_FLUSH_BACKEND_PCITEST,
        HDP_FLUSH_BACKEND_AMDGPU,
        HDP_FLUSH_DEVICE_F_REVOKED,
        HDP_FLUSH_DEVICE_F_SUSPENDED,
        HDP_FLUSH_NAME_LEN,
    );
    // The command table, by the names it gives: each must be the C macro of that value.
    for (name, spec) in HDP_FLUSH_COMMANDS {
        v.push((name.to_owned(), u64::from(spec.encode(IOC_LAYOUT))));
    }
    v
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_c_header_states_the_same_abi_as_uapi_rs() {
    let checks = expectations();
    let mut src = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"hdp_flush.h\"\nint main(void) {\n",
    );
    for (expr, _) in &checks {
        src.push_str(&format!(
            "  printf(\"%llu\\n\", (unsigned long long)({expr}));\n"
        ));
    }
    src.push_str("  printf(\"%s\\n\", HDP_FLUSH_DEVICE_PATH);\n  return 0;\n}\n");

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("uapi_layout");
    std::fs::create_dir_all(&dir).unwrap();
    let c_file = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&c_file, src).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(repo_root().join("kmod/include"))
        .arg(&c_file)
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(status.success(), "compiling {} failed", c_file.display());

    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        checks.len() + 1,
        "one line per check:\n{stdout}"
    );
    let mismatches: Vec<String> = checks
        .iter()
        .zip(&lines)
        .filter(|((_, rust), c)| c.parse::<u64>().ok() != Some(*rust))
        .map(|((expr, rust), c)| format!("{expr}: C says {c}, Rust says {rust}"))
        .collect();
    assert!(
        mismatches.is_empty(),
        "ABI drift:\n{}",
        mismatches.join("\n")
    );
    assert_eq!(lines[checks.len()], HDP_FLUSH_DEVICE_PATH);
}

/// nix's encoding of a command.
#[allow(clippy::unnecessary_cast)]
fn nix_code(m: u8, spec: &IocSpec) -> u64 {
    let (nr, size) = (spec.nr as u8, spec.size);
    match spec.dir {
        IocDir::None => nix::request_code_none!(m, nr) as u64,
        IocDir::Read => nix::request_code_read!(m, nr, size) as u64,
        IocDir::Write => nix::request_code_write!(m, nr, size) as u64,
        IocDir::ReadWrite => nix::request_code_readwrite!(m, nr, size) as u64,
    }
}

#[test]
// The encoders' integer types vary with libc and architecture (c_ulong on glibc, c_int on
// musl); widening every value to u64 keeps one comparison for all of them.
fn ioctl_numbers_match_nix_encoders() {
    for (name, spec) in HDP_FLUSH_COMMANDS {
        let ours = u64::from(spec.encode(IOC_LAYOUT));
        assert_eq!(ours, nix_code(b'H', &spec), "{name} {ours:#x} vs nix");
    }
}

#[test]
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[allow(clippy::unnecessary_cast)]
fn ioctl_numbers_match_ioctl_sys_encoders() {
    let m = b'H' as u32;
    for (name, spec) in HDP_FLUSH_COMMANDS {
        let (nr, size) = (spec.nr as u32, spec.size as u32);
        let code = match spec.dir {
            IocDir::None => ioctl_sys::io!(m, nr) as u64,
            IocDir::Read => ioctl_sys::ior!(m, nr, size) as u64,
            IocDir::Write => ioctl_sys::iow!(m, nr, size) as u64,
            IocDir::ReadWrite => ioctl_sys::iorw!(m, nr, size) as u64,
        };
        let ours = u64::from(spec.encode(IOC_LAYOUT));
        assert_eq!(ours, code, "{name} {ours:#x} vs ioctl-sys");
    }
}

#[test]
fn a_request_round_trips_through_the_sqe_command_area() {
    let req = HdpFlushRequest {
        device: 3,
        flags: HDP_FLUSH_F_SYNC,
        reserved: 0x0102_0304_0506_0708,
    };
    let bytes = req.to_cmd_bytes();
    assert_eq!(HdpFlushRequest::from_cmd_bytes(&bytes), req);
    // Same bytes as the struct in memory: the kernel reads the area as the struct.
    // SAFETY: HdpFlushRequest is repr(C), 16 bytes, no padding.
    let raw: [u8; 16] = unsafe { std::mem::transmute(req) };
    assert_eq!(bytes, raw);
}
