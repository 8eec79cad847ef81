//! KFD tests: run inside the QEMU guest that `cargo xtask upstream --boot` boots, a kernel built
//! from Debian's linux-source-7.3 with docs/upstream/'s patch and amdgpu + KFD built in, and no
//! AMD GPU. /dev/kfd exists with a CPU-only topology, so what runs is the proposed
//! `AMDKFD_IOC_HDP_FLUSH`'s dispatch and argument checks and the errors it documents, and
//! libflush's named `kfd-ioctl` strategy reaching it. Prints one line per test and a closing
//! `guest: N passed, M failed` line that xtask checks.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, IntoRawFd};

use libflush::kfd_uapi::*;
use libflush::{Completion, Error, Flush, KfdIoctl};
use nix::errno::Errno;
use nix::libc;

mod runner;

use runner::{Test, TestResult};

/// A gpu_id no KFD topology has: KFD derives gpu_ids from a hash, never 0xffffffff.
const NO_SUCH_GPU: u32 = u32::MAX;

mod raw {
    pub use libflush::kfd_raw::{get_version, hdp_flush};
    use libflush::kfd_uapi::*;
    // The flush's number encoded with only `gpu_id` (4 bytes): KFD reads the missing fields
    // as zero.
    nix::ioctl_readwrite_bad!(
        hdp_flush_short,
        nix::request_code_readwrite!(AMDKFD_IOCTL_BASE, AMDKFD_IOC_HDP_FLUSH_NR, 4),
        u32
    );
    // The number after the flush: past the end of KFD's table.
    nix::ioctl_none!(past_the_end, AMDKFD_IOCTL_BASE, AMDKFD_IOC_HDP_FLUSH_NR + 1);
    // The number before it, AMDKFD_IOC_PROFILER (KFD 1.23), with only `op` and `version`
    // (KFD zero-fills the rest of its argument and copies back what the caller encoded).
    nix::ioctl_readwrite_bad!(
        profiler_version,
        nix::request_code_readwrite!(AMDKFD_IOCTL_BASE, AMDKFD_IOC_HDP_FLUSH_NR - 1, 8),
        [u32; 2]
    );
}

fn kfd() -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(KFD_DEVICE)
        .map_err(|e| format!("{KFD_DEVICE}: {e}"))
}

const KFD_DEVICE: &str = "/dev/kfd";

fn flush(fd: &File, args: &mut KfdHdpFlushArgs) -> nix::Result<libc::c_int> {
    // SAFETY: `args` is a valid kfd_ioctl_hdp_flush_args for the kernel to read and write.
    unsafe { raw::hdp_flush(fd.as_raw_fd(), args) }
}

fn expect_errno(r: nix::Result<libc::c_int>, want: Errno, what: &str) -> TestResult {
    match r {
        Err(e) if e == want => Ok(()),
        other => Err(format!("{what}: expected {want}, got {other:?}")),
    }
}

fn the_version_is_the_one_the_patch_sets() -> TestResult {
    let fd = kfd()?;
    let mut v = KfdGetVersionArgs::default();
    // SAFETY: `v` is a valid, writable kfd_ioctl_get_version_args.
    unsafe { raw::get_version(fd.as_raw_fd(), &mut v) }.map_err(|e| e.to_string())?;
    println!(
        "       KFD {}.{} (the patch sets {KFD_IOCTL_MAJOR_VERSION}.{KFD_HDP_FLUSH_PATCH_MINOR})",
        v.major_version, v.minor_version
    );
    if patch_version(v.major_version, v.minor_version) {
        Ok(())
    } else {
        Err(format!(
            "KFD reports {}.{}",
            v.major_version, v.minor_version
        ))
    }
}

/// The gpu_ids of KFD's topology: all 0 here (CPU nodes).
fn topology_gpu_ids() -> Result<Vec<u32>, String> {
    let nodes = "/sys/class/kfd/kfd/topology/nodes";
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(nodes).map_err(|e| format!("{nodes}: {e}"))? {
        let path = entry.map_err(|e| e.to_string())?.path().join("gpu_id");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        ids.push(
            text.trim()
                .parse()
                .map_err(|e| format!("{}: {e}", path.display()))?,
        );
    }
    Ok(ids)
}

fn the_topology_is_cpu_only() -> TestResult {
    let ids = topology_gpu_ids()?;
    println!("       {} KFD node(s), gpu_ids {ids:?}", ids.len());
    if !ids.is_empty() && ids.iter().all(|&id| id == 0) {
        Ok(())
    } else {
        Err(format!("expected CPU nodes only (gpu_id 0), got {ids:?}"))
    }
}

fn an_unknown_gpu_id_is_enodev() -> TestResult {
    let fd = kfd()?;
    let mut args = KfdHdpFlushArgs {
        gpu_id: NO_SUCH_GPU,
        ..Default::default()
    };
    expect_errno(flush(&fd, &mut args), Errno::ENODEV, "gpu_id 0xffffffff")
}

fn a_cpu_nodes_gpu_id_is_enodev() -> TestResult {
    let fd = kfd()?;
    let mut args = KfdHdpFlushArgs::default();
    expect_errno(
        flush(&fd, &mut args),
        Errno::ENODEV,
        "gpu_id 0 (a CPU node)",
    )
}

fn nonzero_flags_are_einval_before_the_gpu_is_looked_up() -> TestResult {
    let fd = kfd()?;
    for flags in [1, 2, 1 << 31, u32::MAX] {
        let mut args = KfdHdpFlushArgs {
            gpu_id: NO_SUCH_GPU,
            flags,
            status: 0,
        };
        expect_errno(
            flush(&fd, &mut args),
            Errno::EINVAL,
            &format!("flags {flags:#x}"),
        )?;
    }
    Ok(())
}

fn a_short_argument_reads_the_missing_fields_as_zero() -> TestResult {
    let fd = kfd()?;
    // Only gpu_id: flags and status are KFD's zeroes, so the call gets as far as the lookup.
    let mut gpu_id = NO_SUCH_GPU;
    // SAFETY: the request encodes 4 bytes and `gpu_id` is 4 writable bytes.
    let r = unsafe { raw::hdp_flush_short(fd.as_raw_fd(), &mut gpu_id) };
    expect_errno(r, Errno::ENODEV, "4-byte argument")
}

fn a_bad_pointer_is_efault() -> TestResult {
    let fd = kfd()?;
    for bad in [std::ptr::null_mut::<KfdHdpFlushArgs>(), 8 as *mut _] {
        // SAFETY: the kernel checks the address; nothing in this process is written.
        let r = unsafe { raw::hdp_flush(fd.as_raw_fd(), bad) };
        expect_errno(r, Errno::EFAULT, &format!("pointer {bad:p}"))?;
    }
    Ok(())
}

fn an_argument_that_runs_off_its_mapping_is_efault() -> TestResult {
    let fd = kfd()?;
    let page = 4096;
    // SAFETY: a fresh anonymous mapping of two pages, unmapped below.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(format!("mmap: {}", Errno::last()));
    }
    // SAFETY: the second page of our own mapping.
    let r = unsafe { libc::mprotect(map.cast::<u8>().add(page).cast(), page, libc::PROT_NONE) };
    let result = if r != 0 {
        Err(format!("mprotect: {}", Errno::last()))
    } else {
        // 8 of the argument's 12 bytes are readable; the status field is not.
        // SAFETY: the address is inside our mapping; the kernel checks the rest.
        let args = unsafe { map.cast::<u8>().add(page - 8) }.cast::<KfdHdpFlushArgs>();
        // SAFETY: as above; the kernel copies with checked user accessors.
        let r = unsafe { raw::hdp_flush(fd.as_raw_fd(), args) };
        expect_errno(r, Errno::EFAULT, "argument across a PROT_NONE page")
    };
    // SAFETY: the mapping made above, no longer used.
    unsafe { libc::munmap(map, 2 * page) };
    result
}

fn a_closed_fd_is_ebadf() -> TestResult {
    let fd = kfd()?.into_raw_fd();
    // SAFETY: `fd` is ours to close; nothing else uses the number until the call below fails.
    unsafe { libc::close(fd) };
    let mut args = KfdHdpFlushArgs::default();
    // SAFETY: `args` is valid; the fd is closed, which is the point.
    let r = unsafe { raw::hdp_flush(fd, &mut args) };
    expect_errno(r, Errno::EBADF, "closed fd")
}

fn a_child_process_cannot_use_its_parents_kfd_fd() -> TestResult {
    let fd = kfd()?;
    // SAFETY: the child only makes one ioctl and exits.
    match unsafe { nix::unistd::fork() }.map_err(|e| e.to_string())? {
        nix::unistd::ForkResult::Child => {
            let mut args = KfdHdpFlushArgs::default();
            let code = match flush(&fd, &mut args) {
                Err(Errno::EBADF) => 0,
                _ => 1,
            };
            // SAFETY: leave the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            match nix::sys::wait::waitpid(child, None).map_err(|e| e.to_string())? {
                nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(()),
                other => Err(format!(
                    "the child did not get EBADF from its parent's KFD fd: {other:?}"
                )),
            }
        }
    }
}

fn the_table_ends_after_the_flush() -> TestResult {
    let fd = kfd()?;
    // SAFETY: a number KFD does not define, without an argument.
    let r = unsafe { raw::past_the_end(fd.as_raw_fd()) };
    expect_errno(r, Errno::ENOTTY, "nr 0x2a")
}

/// `AMDKFD_IOC_PROFILER`'s `op` that asks for its version, and the version 7.3.4 answers.
const PROFILER_OP_VERSION: u32 = 2;
const PROFILER_VERSION: u32 = 1;

fn the_neighbour_before_the_flush_is_still_the_profiler() -> TestResult {
    let fd = kfd()?;
    let mut args = [PROFILER_OP_VERSION, 0];
    // SAFETY: the request encodes 8 bytes and `args` is 8 writable bytes.
    unsafe { raw::profiler_version(fd.as_raw_fd(), &mut args) }
        .map_err(|e| format!("AMDKFD_IOC_PROFILER version: {e}"))?;
    if args[1] == PROFILER_VERSION {
        Ok(())
    } else {
        Err(format!("the profiler answered version {}", args[1]))
    }
}

fn libflush_kfd_ioctl_reaches_the_ioctl_and_reports_enodev() -> TestResult {
    let strategy = KfdIoctl::open(NO_SUCH_GPU, Completion::Completed)
        .map_err(|e| format!("open kfd-ioctl: {e}"))?;
    match strategy.flush() {
        Err(Error::Os {
            errno, ref what, ..
        }) if errno == Errno::ENODEV => {
            println!("       kfd-ioctl: {what}: {errno}");
            Ok(())
        }
        other => Err(format!("expected ENODEV from kfd-ioctl, got {other:?}")),
    }
}

fn main() {
    println!(
        "guest: KFD tests, kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    let tests: &[Test] = &[
        (
            "the_version_is_the_one_the_patch_sets",
            the_version_is_the_one_the_patch_sets,
        ),
        ("the_topology_is_cpu_only", the_topology_is_cpu_only),
        ("an_unknown_gpu_id_is_enodev", an_unknown_gpu_id_is_enodev),
        ("a_cpu_nodes_gpu_id_is_enodev", a_cpu_nodes_gpu_id_is_enodev),
        (
            "nonzero_flags_are_einval_before_the_gpu_is_looked_up",
            nonzero_flags_are_einval_before_the_gpu_is_looked_up,
        ),
        (
            "a_short_argument_reads_the_missing_fields_as_zero",
            a_short_argument_reads_the_missing_fields_as_zero,
        ),
        ("a_bad_pointer_is_efault", a_bad_pointer_is_efault),
        (
            "an_argument_that_runs_off_its_mapping_is_efault",
            an_argument_that_runs_off_its_mapping_is_efault,
        ),
        ("a_closed_fd_is_ebadf", a_closed_fd_is_ebadf),
        (
            "a_child_process_cannot_use_its_parents_kfd_fd",
            a_child_process_cannot_use_its_parents_kfd_fd,
        ),
        (
            "the_table_ends_after_the_flush",
            the_table_ends_after_the_flush,
        ),
        (
            "the_neighbour_before_the_flush_is_still_the_profiler",
            the_neighbour_before_the_flush_is_still_the_profiler,
        ),
        (
            "libflush_kfd_ioctl_reaches_the_ioctl_and_reports_enodev",
            libflush_kfd_ioctl_reaches_the_ioctl_and_reports_enodev,
        ),
    ];
    runner::run_all(tests)
}
