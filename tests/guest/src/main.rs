//! Guest tests: run inside the QEMU guest that `cargo xtask vm-test` boots, as root, with two
//! QEMU `edu` devices present. Loads `hdp_flush.ko` with two simulated devices (so the module
//! serves four: the two emulated PCI devices first, then the two sims), runs the tests, prints
//! one line per test and a closing `guest: N passed, M failed` line that xtask checks.
//!
//! Built static (`+crt-static`) so it runs in a busybox initramfs.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use io_uring::{opcode, types, IoUring};
use libflush::device::{backend_name, device_name, HdpFlushDevice};
use libflush::strategy::{Backing, BackingKind};
use libflush::uapi::*;
use libflush::{
    Completion, Error, Flush, FlusherOptions, GpuSelector, Ioctl, MappedRegion, ModuleTarget,
    PciAddress, Sim, StrategyKind, Uring, UringConfig,
};
use nix::errno::Errno;

mod evidence;
mod fuzz;
mod nodes;
mod reports;
mod runner;
mod uring_paths;
mod worst_day;
use nodes::{
    a_process_given_one_devices_node_reaches_that_device_alone,
    every_device_has_its_own_node_where_it_is_index_0_and_alone,
};
use uring_paths::{
    a_failed_link_cancels_the_rest_before_they_reach_the_module,
    flushes_issued_async_linked_or_drained_complete_and_are_counted,
};
use worst_day::{
    a_caller_blocked_behind_a_stuck_flush_can_be_killed,
    a_device_that_reads_all_ones_is_latched_dead_then_found_again,
    a_frozen_pci_channel_is_refused_untouched, the_production_module_has_no_test_code,
    unbind_and_bind_again_reattaches_without_a_reload,
};

use runner::{Test, TestResult};

/// Raw ioctls for inputs the typed handle refuses to build (bad flags, pointers, numbers).
mod raw {
    use libflush::uapi::*;
    nix::ioctl_read_bad!(version, HDP_FLUSH_IOC_VERSION, HdpFlushVersion);
    nix::ioctl_write_ptr_bad!(flush, HDP_FLUSH_IOC_FLUSH, HdpFlushRequest);
    nix::ioctl_write_ptr_bad!(invalidate, HDP_FLUSH_IOC_INVALIDATE, HdpFlushRequest);
    nix::ioctl_readwrite_bad!(device_info, HDP_FLUSH_IOC_DEVICE_INFO, HdpFlushDeviceInfo);
    nix::ioctl_readwrite_bad!(stats, HDP_FLUSH_IOC_STATS, HdpFlushStats);
    // Our magic, a number we do not define.
    nix::ioctl_none_bad!(unknown_nr, nix::request_code_none!(b'H', 0xAF));
    // FLUSH's number with the wrong size encoded: a different command.
    nix::ioctl_write_ptr_bad!(
        flush_wrong_size,
        nix::request_code_write!(b'H', 0xA3, 8),
        u64
    );
}

const MODULE_PATH: &str = "/hdp_flush.ko";
/// What the guest loads the module with: two simulated devices beside the emulated PCI ones.
const MODULE_PARAMS: &[&str] = &["sim_devices=2"];
/// The C program (libflush-capi/tests/c/flush_gpus.c), statically linked with libhdpflush.a.
const C_PROGRAM: &str = "/flush_gpus";
/// How many QEMU `edu` devices xtask gives the guest.
const EDU_DEVICES: usize = 2;

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

fn errno_of<T: std::fmt::Debug>(r: nix::Result<T>, want: Errno, what: &str) -> TestResult {
    match r {
        Err(e) if e == want => Ok(()),
        other => Err(format!("{what}: expected {want}, got {other:?}")),
    }
}

fn dev() -> Result<HdpFlushDevice, String> {
    HdpFlushDevice::open_default().map_err(|e| e.to_string())
}

fn stats(d: &HdpFlushDevice, index: u32, reset: bool) -> Result<HdpFlushStats, String> {
    let flags = if reset { HDP_FLUSH_STATS_F_RESET } else { 0 };
    d.stats(index, flags).map_err(|e| e.to_string())
}

/// Indices of devices with `backend`.
fn devices_with(d: &HdpFlushDevice, backend: u32) -> Result<Vec<u32>, String> {
    let mut v = Vec::new();
    for i in 0..d.version().num_devices {
        if d.device_info(i).map_err(|e| e.to_string())?.backend == backend {
            v.push(i);
        }
    }
    Ok(v)
}

fn sh(cmd: &str, args: &[&str]) -> Result<std::process::Output, String> {
    Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {cmd}: {e}"))
}

fn page_size() -> u32 {
    libflush::page_size() as u32
}

fn insmod(params: &[&str]) -> TestResult {
    let out = sh("insmod", &[&[MODULE_PATH], params].concat())?;
    ensure(out.status.success(), || {
        format!(
            "insmod {params:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn rmmod() -> TestResult {
    let out = sh("rmmod", &["hdp_flush"])?;
    ensure(out.status.success(), || {
        format!("rmmod: {}", String::from_utf8_lossy(&out.stderr))
    })
}

/// The PCI addresses of the emulated devices the module serves, by module index.
fn edu_devices(d: &HdpFlushDevice) -> Result<Vec<(u32, PciAddress)>, String> {
    let devices = d.devices().map_err(|e| e.to_string())?;
    Ok(devices
        .iter()
        .filter(|dev| dev.backend == HDP_FLUSH_BACKEND_PCITEST)
        .filter_map(|dev| Some((dev.index, dev.pci?)))
        .collect())
}

/// Every device's (flush requests, invalidates), after zeroing them if `reset`.
fn all_counts(d: &HdpFlushDevice, reset: bool) -> Result<Vec<(u64, u64)>, String> {
    (0..d.version().num_devices)
        .map(|i| stats(d, i, reset).map(|s| (s.flush_requests, s.invalidates)))
        .collect()
}

/// Zero every device's counters, run `f`, and check only device `index` counted, exactly
/// `want` (flush requests, invalidates).
fn only_device_counts(
    d: &HdpFlushDevice,
    index: u32,
    want: (u64, u64),
    f: impl FnOnce() -> TestResult,
) -> TestResult {
    all_counts(d, true)?;
    f()?;
    let counts = all_counts(d, false)?;
    for (i, &c) in counts.iter().enumerate() {
        let expect = if i as u32 == index { want } else { (0, 0) };
        ensure(c == expect, || {
            format!(
                "device {i}: (flushes, invalidates) {c:?}, expected {expect:?}; all: {counts:?}"
            )
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn version_reports_api_devices_page_size_and_features() -> TestResult {
    let v = dev()?.version();
    ensure(v.api_major == HDP_FLUSH_API_MAJOR, || format!("{v:?}"))?;
    ensure(v.num_devices as usize == 2 + EDU_DEVICES, || {
        format!("2 sims + {EDU_DEVICES} edu devices expected: {v:?}")
    })?;
    ensure(v.page_size == page_size(), || format!("page size {v:?}"))?;
    let want = HDP_FLUSH_FEAT_URING_CMD | HDP_FLUSH_FEAT_COALESCE;
    ensure(v.features & want == want, || format!("features {v:?}"))?;
    ensure(v.reserved == [0; 2], || format!("reserved {v:?}"))
}

fn device_info_describes_sim_and_pcitest_devices() -> TestResult {
    let d = dev()?;
    let mut seen = (false, false);
    for i in 0..d.version().num_devices {
        let info = d.device_info(i).map_err(|e| e.to_string())?;
        let name = device_name(&info);
        println!("  device {i}: {} {name}", backend_name(info.backend));
        ensure(
            info.index == i && info.flags == 0 && info.reserved == [0; 1],
            || format!("{info:?}"),
        )?;
        match info.backend {
            HDP_FLUSH_BACKEND_SIM => {
                seen.0 = true;
                ensure(name.starts_with("sim") && info.vendor == 0, || {
                    format!("{info:?}")
                })?;
            }
            HDP_FLUSH_BACKEND_PCITEST => {
                seen.1 = true;
                ensure(info.vendor == 0x1234 && info.device == 0x11e8, || {
                    format!("{info:?}")
                })?;
                let sysfs = Path::new("/sys/bus/pci/devices").join(&name);
                ensure(sysfs.exists(), || format!("{} missing", sysfs.display()))?;
                let bdf = (
                    info.pci_bdf >> 8,
                    (info.pci_bdf >> 3) & 0x1f,
                    info.pci_bdf & 7,
                );
                let expect = format!(
                    "{:04x}:{:02x}:{:02x}.{}",
                    info.pci_domain, bdf.0, bdf.1, bdf.2
                );
                ensure(name == expect, || {
                    format!("name {name} vs location {expect}")
                })?;
            }
            other => return Err(format!("unexpected backend {other}")),
        }
    }
    ensure(seen == (true, true), || {
        format!("sim/pcitest seen: {seen:?}")
    })?;
    // Hardware first: every emulated device is numbered before every simulated one.
    let sims = devices_with(&d, HDP_FLUSH_BACKEND_SIM)?;
    let edus = devices_with(&d, HDP_FLUSH_BACKEND_PCITEST)?;
    ensure(edus.iter().all(|e| sims.iter().all(|s| e < s)), || {
        format!("emulated devices {edus:?} must come before sims {sims:?}")
    })
}

fn flush_and_invalidate_work_on_every_backend() -> TestResult {
    let d = dev()?;
    for i in 0..d.version().num_devices {
        stats(&d, i, true)?;
        for flags in [
            0,
            HDP_FLUSH_F_SYNC,
            HDP_FLUSH_F_SYNC | HDP_FLUSH_F_NO_COALESCE,
        ] {
            d.flush(i, flags)
                .map_err(|e| format!("device {i} flags {flags}: {e}"))?;
        }
        d.invalidate(i).map_err(|e| format!("device {i}: {e}"))?;
        let s = stats(&d, i, false)?;
        let counts = (
            s.flush_requests,
            s.hw_flushes,
            s.coalesced,
            s.invalidates,
            s.flush_errors,
        );
        ensure(counts == (3, 3, 0, 1, 0), || format!("device {i}: {s:?}"))?;
    }
    Ok(())
}

fn stats_reset_zeroes_the_counters() -> TestResult {
    let d = dev()?;
    d.flush(0, 0).map_err(|e| e.to_string())?;
    let before = stats(&d, 0, true)?;
    ensure(before.flush_requests > 0, || format!("{before:?}"))?;
    let after = stats(&d, 0, false)?;
    ensure(after.flush_requests == 0 && after.hw_flushes == 0, || {
        format!("{after:?}")
    })
}

fn ioctl_strategy_flushes_every_device_posted_and_completed() -> TestResult {
    let n = dev()?.version().num_devices;
    for i in 0..n {
        for completion in [Completion::Posted, Completion::Completed] {
            let s = Ioctl::open(i, completion).map_err(|e| e.to_string())?;
            s.flush().map_err(|e| e.to_string())?;
            s.invalidate().map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Each GPU's flusher flushes that GPU and no other: by PCI address, through ioctl and
/// io_uring, and by module index for the simulated ones; the counters of every other device
/// stay at zero.
fn flushing_one_gpu_changes_only_its_stats() -> TestResult {
    let d = dev()?;
    let edus = edu_devices(&d)?;
    ensure(edus.len() == EDU_DEVICES, || {
        format!("edu devices: {edus:?}")
    })?;
    let mut targets: Vec<(GpuSelector, u32)> = edus
        .iter()
        .map(|&(index, pci)| (GpuSelector::Pci(pci), index))
        .collect();
    for (index, dev) in d.devices().map_err(|e| e.to_string())?.iter().enumerate() {
        if dev.backend == HDP_FLUSH_BACKEND_SIM {
            targets.push((GpuSelector::ModuleIndex(index as u32), index as u32));
        }
    }
    for (named, index) in targets {
        for batched in [false, true] {
            let options = if batched {
                FlusherOptions::new().batched(None)
            } else {
                FlusherOptions::new()
            };
            let f = libflush::open_gpu(named, options).map_err(|e| format!("{named}: {e}"))?;
            let want_kind = if batched {
                StrategyKind::Uring
            } else {
                StrategyKind::Ioctl
            };
            ensure(
                f.kind() == want_kind && f.gpu().module.as_ref().map(|m| m.index) == Some(index),
                || format!("{named}: {f:?}"),
            )?;
            only_device_counts(&d, index, (7, 1), || {
                (0..5)
                    .try_for_each(|_| f.flush())
                    .map_err(|e| e.to_string())?;
                f.flush_batch(2).map_err(|e| e.to_string())?;
                f.invalidate().map_err(|e| e.to_string())
            })
            .map_err(|e| format!("{named} ({want_kind}): {e}"))?;
        }
        println!("  {named}: only module device {index} counted");
    }
    Ok(())
}

/// With no AMD GPU in the guest, the process-wide flusher has none to pick (an emulated device
/// is flushed only when named), and `HDPFLUSH_GPU` names one.
fn the_process_wide_flusher_needs_a_named_gpu_here() -> TestResult {
    let d = dev()?;
    let (_, pci) = *edu_devices(&d)?.first().ok_or("no edu device")?;
    let out = Command::new("/hdpflush")
        .arg("probe")
        .env_remove("HDPFLUSH_STRATEGY")
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure(
        out.status.success()
            && text.contains(
                "process-wide: none (the process-wide flusher has no GPU: no AMD GPU on this host",
            ),
        || text.to_string(),
    )?;
    ensure(text.contains(&format!("{pci}  not a GPU")), || {
        text.to_string()
    })?;
    let out = Command::new("/hdpflush")
        .arg("probe")
        .env("HDPFLUSH_GPU", pci.to_string())
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure(
        text.contains(&format!(
            "process-wide: ioctl (GPU {pci}: the hdp_flush module serves it"
        )),
        || text.to_string(),
    )
}

/// The C program, against the header alone: one flusher per GPU on two devices, through ioctl
/// and io_uring, and the process-wide flusher; each device counts exactly its own requests.
fn the_c_program_flushes_two_devices_and_each_counts_its_own() -> TestResult {
    let d = dev()?;
    let edus = edu_devices(&d)?;
    let names: Vec<String> = edus.iter().map(|(_, p)| p.to_string()).collect();
    for batched in [false, true] {
        all_counts(&d, true)?;
        let mut args: Vec<&str> = if batched { vec!["--batched"] } else { vec![] };
        args.extend(names.iter().map(String::as_str));
        let out = Command::new(C_PROGRAM)
            .args(&args)
            .env_remove("HDPFLUSH_STRATEGY")
            .output()
            .map_err(|e| format!("{C_PROGRAM}: {e}"))?;
        echoed(C_PROGRAM, &out)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let kind = if batched { "uring" } else { "ioctl" };
        for name in &names {
            ensure(text.contains(&format!("open {name}: 0 ok {kind}")), || {
                format!("{name} not {kind}")
            })?;
            ensure(
                text.lines().any(|l| {
                    l.starts_with(&format!("reason {name}: "))
                        && l.ends_with("[backing: emulated-device]")
                }),
                || format!("{name}: backing not emulated-device"),
            )?;
        }
        // Each: flush as opened, posted, completed, and once in flush-all; one invalidate.
        let counts = all_counts(&d, false)?;
        for (i, &c) in counts.iter().enumerate() {
            let want = if edus.iter().any(|&(e, _)| e as usize == i) {
                (4, 1)
            } else {
                (0, 0)
            };
            ensure(c == want, || {
                format!("device {i}: {c:?}, expected {want:?}; all {counts:?}")
            })?;
        }
    }
    // An emulated device is not a GPU: a caller that requires hardware gets ENODEV, and nothing
    // reaches the device.
    all_counts(&d, true)?;
    let out = Command::new(C_PROGRAM)
        .arg("--require-hardware")
        .args(&names)
        .env_remove("HDPFLUSH_STRATEGY")
        .output()
        .map_err(|e| format!("{C_PROGRAM}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    for name in &names {
        ensure(
            text.contains(&format!("open {name}: -19 ENODEV"))
                && text.contains("the caller requires hardware"),
            || format!("{name} opened though hardware was required: {text}"),
        )?;
    }
    let counts = all_counts(&d, false)?;
    ensure(counts.iter().all(|&c| c == (0, 0)), || {
        format!("a refused open reached a device: {counts:?}")
    })?;
    let out = Command::new(C_PROGRAM)
        .arg("--process")
        .env_remove("HDPFLUSH_STRATEGY")
        .env("HDPFLUSH_GPU", &names[1])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure(
        out.status.success() && text.contains("strategy=ioctl error=(null)"),
        || text.to_string(),
    )?;
    let out = Command::new(C_PROGRAM)
        .arg("--process")
        .env_remove("HDPFLUSH_STRATEGY")
        .env_remove("HDPFLUSH_GPU")
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure(
        !out.status.success() && text.contains("ENODEV the process-wide flusher has no GPU"),
        || text.to_string(),
    )?;
    let out = Command::new(C_PROGRAM)
        .arg("--bad-input")
        .env("HDPFLUSH_STRATEGY", "sim")
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure(out.status.success() && !text.contains("FAIL"), || {
        text.to_string()
    })
}

fn uring_strategy_runs_batches_of_1_to_128_on_every_device() -> TestResult {
    let d = dev()?;
    for i in 0..d.version().num_devices {
        for batch in [1u32, 2, 8, 32, 64, 128] {
            let ring = Uring::open(UringConfig {
                device: i,
                entries: batch,
                ..UringConfig::default()
            })
            .map_err(|e| e.to_string())?;
            stats(&d, i, true)?;
            // Three rings' worth: also crosses the per-enter limit.
            let count = batch as usize * 3;
            ring.flush_batch(count)
                .map_err(|e| format!("device {i} batch {batch}: {e}"))?;
            ring.invalidate().map_err(|e| e.to_string())?;
            let s = stats(&d, i, false)?;
            ensure(
                s.flush_requests == count as u64 && s.invalidates == 1,
                || format!("device {i} batch {batch}: {s:?}"),
            )?;
        }
    }
    Ok(())
}

/// With SQPOLL the kernel thread completes our inline commands before it publishes how far it
/// read the SQ ring, so a full ring must be waited out, not reported as EBUSY. Many batches,
/// some larger than the ring, make that window likely.
fn uring_strategy_works_with_sqpoll() -> TestResult {
    let d = dev()?;
    let ring = Uring::open(UringConfig {
        entries: 32,
        sqpoll_idle_ms: Some(20),
        completion: Completion::Completed,
        ..UringConfig::default()
    })
    .map_err(|e| e.to_string())?;
    stats(&d, 0, true)?;
    let mut total = 0u64;
    for round in 0..300usize {
        let n = if round % 3 == 0 { 100 } else { 32 };
        ring.flush_batch(n)
            .map_err(|e| format!("round {round}, batch {n}: {e}"))?;
        total += n as u64;
    }
    ring.invalidate().map_err(|e| e.to_string())?;
    let s = stats(&d, 0, false)?;
    ensure(
        s.flush_requests == total && s.invalidates == 1 && s.flush_errors == 0,
        || format!("{s:?}"),
    )
}

/// In steady state under SQPOLL, flushing makes no io_uring_enter at all: the poller takes
/// the SQEs and we reap by polling the CQ.
fn sqpoll_flushes_make_no_io_uring_enter_in_steady_state() -> TestResult {
    let ring = Uring::open(UringConfig {
        entries: 32,
        sqpoll_idle_ms: Some(2000),
        ..UringConfig::default()
    })
    .map_err(|e| e.to_string())?;
    for _ in 0..100 {
        ring.flush().map_err(|e| e.to_string())?;
    }
    let before = ring.io_uring_enters();
    for _ in 0..2000 {
        ring.flush().map_err(|e| e.to_string())?;
    }
    ring.flush_batch(500).map_err(|e| e.to_string())?;
    let enters = ring.io_uring_enters() - before;
    println!("  {enters} io_uring_enter calls for 2500 flushes (2000 single, one batch of 500)");
    ensure(enters == 0, || {
        format!("{enters} io_uring_enter calls in steady state")
    })
}

/// Threads sharing one io_uring handle each get a ring of the pool: every request arrives,
/// and nobody waited on a lock held across another thread's wait.
fn threads_sharing_one_uring_handle_each_complete_their_own() -> TestResult {
    const THREADS: u64 = 4;
    const EACH: u64 = 500;
    let d = dev()?;
    let ring = Uring::open(UringConfig {
        entries: 8,
        ..UringConfig::default()
    })
    .map_err(|e| e.to_string())?;
    all_counts(&d, true)?;
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let ring = &ring;
                s.spawn(move || {
                    (0..EACH)
                        .try_for_each(|i| {
                            if i % 5 == 0 {
                                ring.flush_batch(3)
                            } else {
                                ring.flush()
                            }
                        })
                        .map_err(|e| format!("thread {t}: {e}"))
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| {
                h.join()
                    .map_err(|_| "panicked".to_string())
                    .and_then(|r| r)
                    .err()
            })
            .collect()
    });
    ensure(failures.is_empty(), || failures.join("; "))?;
    let s = stats(&d, 0, false)?;
    let want = THREADS * (EACH / 5 * 3 + EACH * 4 / 5);
    println!("  {} rings for {THREADS} threads", ring.rings());
    ensure(s.flush_requests == want && s.flush_errors == 0, || {
        format!("want {want}: {s:?}")
    })?;
    ensure((1..=THREADS as usize).contains(&ring.rings()), || {
        format!("{} rings", ring.rings())
    })
}

/// How a forked child ended, or an error once it ran for `limit` (it is then killed).
fn wait_child(child: nix::unistd::Pid, limit: std::time::Duration) -> Result<i32, String> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let start = Instant::now();
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)).map_err(|e| e.to_string())? {
            WaitStatus::Exited(_, code) => return Ok(code),
            WaitStatus::StillAlive if start.elapsed() < limit => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            WaitStatus::StillAlive => {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                let _ = waitpid(child, None);
                return Err(format!("the child hung: still running after {limit:?}"));
            }
            other => return Err(format!("the child ended as {other:?}")),
        }
    }
}

/// One `Uring` handle, plain and SQPOLL, flushing in parent and child after a `fork()`: both
/// finish, and the device counts every flush of both. The child sets up rings (and an SQPOLL
/// poller) of its own; before rings were per process, both sides reaped each other's
/// completions and hung.
fn a_uring_handle_flushes_in_parent_and_child_after_fork() -> TestResult {
    const EACH: u64 = 500;
    let d = dev()?;
    for sqpoll in [None, Some(50)] {
        let ring = Uring::open(UringConfig {
            sqpoll_idle_ms: sqpoll,
            ..UringConfig::default()
        })
        .map_err(|e| e.to_string())?;
        ring.flush().map_err(|e| e.to_string())?;
        stats(&d, 0, true)?;
        // SAFETY: this process is single-threaded here (every earlier test joined its threads);
        // the child flushes through libflush and leaves with `_exit`.
        let child = match unsafe { nix::unistd::fork() }.map_err(|e| e.to_string())? {
            nix::unistd::ForkResult::Child => {
                let ok = (0..EACH).all(|_| ring.flush().is_ok());
                // SAFETY: `_exit` ends the child without running the parent's destructors.
                unsafe { nix::libc::_exit(i32::from(!ok)) }
            }
            nix::unistd::ForkResult::Parent { child } => child,
        };
        let parent = (0..EACH).try_for_each(|_| ring.flush());
        let code = wait_child(child, std::time::Duration::from_secs(120))?;
        parent.map_err(|e| format!("sqpoll {sqpoll:?}: parent: {e}"))?;
        ensure(code == 0, || {
            format!("sqpoll {sqpoll:?}: the child's flushes failed")
        })?;
        let s = stats(&d, 0, false)?;
        println!(
            "  sqpoll {sqpoll:?}: parent and child {EACH} flushes each, {} requests counted",
            s.flush_requests
        );
        ensure(s.flush_requests == 2 * EACH && s.flush_errors == 0, || {
            format!("sqpoll {sqpoll:?}: {s:?}")
        })?;
        ring.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `kernel.io_uring_disabled`: 0 allows io_uring, 2 refuses every `io_uring_setup`.
fn set_io_uring_disabled(value: &str) -> TestResult {
    std::fs::write("/proc/sys/kernel/io_uring_disabled", value)
        .map_err(|e| format!("kernel.io_uring_disabled={value}: {e}"))
}

/// Where io_uring is refused (a container's seccomp profile, `kernel.io_uring_disabled`), a
/// caller that asked for batching still gets its flushes: through the ioctl, and the reason
/// says why.
fn with_io_uring_refused_a_batched_open_uses_the_ioctl_and_says_why() -> TestResult {
    let d = dev()?;
    let (index, pci) = *edu_devices(&d)?.first().ok_or("no edu device")?;
    set_io_uring_disabled("2")?;
    let result = only_device_counts(&d, index, (1, 0), || {
        let f = libflush::open_gpu(GpuSelector::Pci(pci), FlusherOptions::new().batched(None))
            .map_err(|e| e.to_string())?;
        let reason = &f.selection().reason;
        println!("  {pci}: {} ({reason})", f.kind());
        ensure(
            f.kind() == StrategyKind::Ioctl && reason.contains("io_uring is refused here"),
            || reason.clone(),
        )?;
        f.flush().map_err(|e| e.to_string())
    });
    set_io_uring_disabled("0")?;
    result
}

/// A flusher that names a module device the module does not serve.
struct StrayDevice<'a>(&'a HdpFlushDevice);

impl Flush for StrayDevice<'_> {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Ioctl
    }
    fn backing(&self) -> Backing {
        Backing::new(BackingKind::EmulatedDevice, "a device index nobody serves")
    }
    fn flush_with(&self, _: Completion) -> libflush::Result<()> {
        Err(Error::Unsupported {
            strategy: StrategyKind::Ioctl,
            op: "flush outside flush_gpus",
        })
    }
    fn module_target(&self) -> Option<ModuleTarget<'_>> {
        Some(ModuleTarget {
            index: 99,
            ..ModuleTarget::of(self.0, 0)
        })
    }
}

/// `flush_gpus` over one flusher per module device (ioctl), a `uring` flusher and the
/// in-process simulator: one `io_uring_enter` for all the module's devices, each device
/// counts exactly its own requests and all came through io_uring; the simulator is flushed by
/// itself. A device index nobody serves fails alone, with its own errno.
fn flush_gpus_flushes_every_module_device_in_one_kernel_entry() -> TestResult {
    let d = dev()?;
    let n = d.version().num_devices;
    let ioctls = (0..n)
        .map(|i| Ioctl::open(i, Completion::Completed))
        .collect::<libflush::Result<Vec<_>>>()
        .map_err(|e| e.to_string())?;
    let ring = Uring::open(UringConfig::default()).map_err(|e| e.to_string())?;
    let sim = Sim::new();
    let mut gpus: Vec<&dyn Flush> = ioctls.iter().map(|f| f as &dyn Flush).collect();
    gpus.push(&ring);
    gpus.push(&sim);
    for completion in [None, Some(Completion::Posted), Some(Completion::Completed)] {
        all_counts(&d, true)?;
        let enters = libflush::multi_gpu::io_uring_enters();
        let sim_flushes = sim.model().stats().flush_register_writes;
        let results = libflush::flush_gpus(&gpus, completion);
        let failed: Vec<String> = results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().err().map(|e| format!("GPU {i}: {e}")))
            .collect();
        ensure(failed.is_empty(), || failed.join("; "))?;
        let enters = libflush::multi_gpu::io_uring_enters() - enters;
        ensure(enters == 1, || {
            format!(
                "{completion:?}: {enters} io_uring_enter calls for {} devices",
                n + 1
            )
        })?;
        for i in 0..n {
            let s = stats(&d, i, false)?;
            let uring = d.device_info(i).map_err(|e| e.to_string())?.uring_requests;
            // Device 0 has two flushers in the set.
            let want = if i == 0 { 2 } else { 1 };
            ensure(s.flush_requests == want && uring == want, || {
                format!("{completion:?}: device {i}: {s:?}, {uring} through io_uring, want {want}")
            })?;
        }
        ensure(
            sim.model().stats().flush_register_writes == sim_flushes + 1,
            || format!("{completion:?}: the simulator was not flushed once"),
        )?;
    }
    println!(
        "  {} module flushes in one io_uring_enter, the simulator by itself",
        n + 1
    );
    let stray = StrayDevice(&d);
    let results = libflush::flush_gpus(&[&ioctls[0], &stray, &ring], None);
    ensure(results[0].is_ok() && results[2].is_ok(), || {
        format!("{results:?}")
    })?;
    match &results[1] {
        Err(Error::Os {
            errno: Errno::ENODEV,
            op: "URING_CMD FLUSH",
            ..
        }) => Ok(()),
        other => Err(format!("device 99: expected ENODEV, got {other:?}")),
    }
}

/// Eight threads flushing one device at once: every request completes, the counters add up,
/// and coalescing saves hardware flushes.
fn stats_stay_consistent_after_an_8_thread_storm() -> TestResult {
    const THREADS: u64 = 8;
    const EACH: u64 = 3000;
    let d = dev()?;
    let sim = *devices_with(&d, HDP_FLUSH_BACKEND_SIM)?
        .first()
        .ok_or("no sim device")?;
    stats(&d, sim, true)?;
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || -> Result<(), String> {
                    // Half the threads use io_uring: both paths share the coalescer.
                    if t % 2 == 0 {
                        let f =
                            Ioctl::open(sim, Completion::Completed).map_err(|e| e.to_string())?;
                        (0..EACH)
                            .try_for_each(|_| f.flush())
                            .map_err(|e| e.to_string())
                    } else {
                        let f = Uring::open(UringConfig {
                            device: sim,
                            completion: Completion::Completed,
                            entries: 1,
                            ..UringConfig::default()
                        })
                        .map_err(|e| e.to_string())?;
                        (0..EACH)
                            .try_for_each(|_| f.flush())
                            .map_err(|e| e.to_string())
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| {
                h.join()
                    .map_err(|_| "thread panicked".to_string())
                    .and_then(|r| r)
                    .err()
            })
            .collect()
    });
    ensure(failures.is_empty(), || failures.join("; "))?;
    let s = stats(&d, sim, false)?;
    println!(
        "  {} requests, {} hardware flushes, {} coalesced, {} of them through io_uring",
        s.flush_requests,
        s.hw_flushes,
        s.coalesced,
        d.device_info(sim)
            .map_err(|e| e.to_string())?
            .uring_requests
    );
    ensure(s.flush_requests == THREADS * EACH, || {
        format!("requests: {s:?}")
    })?;
    ensure(
        s.hw_flushes + s.coalesced + s.flush_errors + s.flush_skipped == s.flush_requests,
        || format!("sum: {s:?}"),
    )?;
    ensure(
        s.hw_flushes <= s.flush_requests && s.flush_errors == 0,
        || format!("{s:?}"),
    )
}

fn bad_ioctls_get_enotty_einval_efault_enodev() -> TestResult {
    let d = dev()?;
    let fd = d.as_fd_raw();
    let n = d.version().num_devices;
    // SAFETY (all below): each call passes either a valid pointer to a local of the right
    // type, or a deliberately bad address the kernel must reject with EFAULT without touching.
    unsafe {
        errno_of(raw::unknown_nr(fd), Errno::ENOTTY, "unknown command number")?;
        let r8: u64 = 0;
        errno_of(
            raw::flush_wrong_size(fd, &r8),
            Errno::ENOTTY,
            "FLUSH with wrong size",
        )?;
        let req = |device, flags, reserved| HdpFlushRequest {
            device,
            flags,
            reserved,
        };
        errno_of(
            raw::flush(fd, &req(0, 0x80, 0)),
            Errno::EINVAL,
            "unknown FLUSH flag",
        )?;
        errno_of(
            raw::flush(fd, &req(0, 1 << 31, 0)),
            Errno::EINVAL,
            "high FLUSH flag",
        )?;
        errno_of(
            raw::flush(fd, &req(0, 0, 1)),
            Errno::EINVAL,
            "FLUSH reserved",
        )?;
        errno_of(
            raw::flush(fd, &req(n, 0, 0)),
            Errno::ENODEV,
            "FLUSH device == count",
        )?;
        errno_of(
            raw::flush(fd, &req(u32::MAX, 0, 0)),
            Errno::ENODEV,
            "FLUSH device max",
        )?;
        errno_of(
            raw::invalidate(fd, &req(0, HDP_FLUSH_F_SYNC, 0)),
            Errno::EINVAL,
            "INVALIDATE flag",
        )?;
        errno_of(
            raw::invalidate(fd, &req(0, 0, 7)),
            Errno::EINVAL,
            "INVALIDATE reserved",
        )?;
        errno_of(
            raw::invalidate(fd, &req(n, 0, 0)),
            Errno::ENODEV,
            "INVALIDATE device",
        )?;
        errno_of(
            raw::flush(fd, 0x10 as *const _),
            Errno::EFAULT,
            "FLUSH bad pointer",
        )?;
        errno_of(
            raw::flush(fd, std::ptr::null()),
            Errno::EFAULT,
            "FLUSH null",
        )?;
        errno_of(
            raw::version(fd, 0x10 as *mut _),
            Errno::EFAULT,
            "VERSION bad pointer",
        )?;
        errno_of(
            raw::stats(fd, 0x10 as *mut _),
            Errno::EFAULT,
            "STATS bad pointer",
        )?;
        // Kernel addresses are not user memory either.
        let kaddr = usize::MAX & !0xfff;
        errno_of(
            raw::device_info(fd, kaddr as *mut _),
            Errno::EFAULT,
            "DEVICE_INFO kernel address",
        )?;
        let mut info = HdpFlushDeviceInfo {
            index: n,
            ..Default::default()
        };
        errno_of(
            raw::device_info(fd, &mut info),
            Errno::ENODEV,
            "DEVICE_INFO index",
        )?;
        let mut info = HdpFlushDeviceInfo {
            flags: 1,
            ..Default::default()
        };
        errno_of(
            raw::device_info(fd, &mut info),
            Errno::EINVAL,
            "DEVICE_INFO flags",
        )?;
        let mut info = HdpFlushDeviceInfo {
            reserved: [1],
            ..Default::default()
        };
        errno_of(
            raw::device_info(fd, &mut info),
            Errno::EINVAL,
            "DEVICE_INFO reserved",
        )?;
        let mut info = HdpFlushDeviceInfo {
            uring_requests: 1,
            ..Default::default()
        };
        errno_of(
            raw::device_info(fd, &mut info),
            Errno::EINVAL,
            "DEVICE_INFO uring_requests on input",
        )?;
        let mut st = HdpFlushStats {
            flags: 0x4,
            ..Default::default()
        };
        errno_of(raw::stats(fd, &mut st), Errno::EINVAL, "STATS flags")?;
        let mut st = HdpFlushStats {
            device: n,
            ..Default::default()
        };
        errno_of(raw::stats(fd, &mut st), Errno::ENODEV, "STATS device")?;
    }
    // A refused request never reached the backend: it is not a backend error.
    let s = stats(&d, 0, false)?;
    ensure(s.flush_errors == 0, || {
        format!("validation failures counted as errors: {s:?}")
    })
}

fn bad_uring_cmds_complete_with_the_same_errors() -> TestResult {
    let d = dev()?;
    let fd = d.as_fd_raw();
    let n = d.version().num_devices;
    let mut ring = IoUring::new(8).map_err(|e| e.to_string())?;
    let cases: [(u32, HdpFlushRequest, Errno, &str); 8] = [
        (
            HDP_FLUSH_IOC_NOP,
            HdpFlushRequest::new(0, HDP_FLUSH_F_SYNC),
            Errno::EINVAL,
            "NOP takes no flags",
        ),
        (
            HDP_FLUSH_IOC_NOP,
            HdpFlushRequest::new(n, 0),
            Errno::ENODEV,
            "NOP device",
        ),
        (
            HDP_FLUSH_IOC_STATS,
            HdpFlushRequest::new(0, 0),
            Errno::ENOTTY,
            "STATS is ioctl-only",
        ),
        (
            0xdead_beef,
            HdpFlushRequest::new(0, 0),
            Errno::ENOTTY,
            "unknown cmd_op",
        ),
        (
            HDP_FLUSH_IOC_FLUSH,
            HdpFlushRequest::new(0, 0x40),
            Errno::EINVAL,
            "unknown flag",
        ),
        (
            HDP_FLUSH_IOC_FLUSH,
            HdpFlushRequest {
                reserved: 9,
                ..HdpFlushRequest::new(0, 0)
            },
            Errno::EINVAL,
            "reserved",
        ),
        (
            HDP_FLUSH_IOC_FLUSH,
            HdpFlushRequest::new(n, 0),
            Errno::ENODEV,
            "device",
        ),
        (
            HDP_FLUSH_IOC_INVALIDATE,
            HdpFlushRequest::new(0, HDP_FLUSH_F_SYNC),
            Errno::EINVAL,
            "INVALIDATE flag",
        ),
    ];
    for (op, req, want, what) in cases {
        let sqe = opcode::UringCmd16::new(types::Fd(fd), op)
            .cmd(req.to_cmd_bytes())
            .build();
        // SAFETY: the SQE references no memory; its request is inline.
        unsafe { ring.submission().push(&sqe) }.map_err(|e| e.to_string())?;
        ring.submit_and_wait(1).map_err(|e| e.to_string())?;
        let cqe = ring.completion().next().ok_or("no completion")?;
        ensure(cqe.result() == -(want as i32), || {
            format!("{what}: expected -{want}, got {}", cqe.result())
        })?;
    }
    // A valid NOP (uAPI 1.1) completes with 0 and counts as nothing.
    let before = stats(&d, 0, false)?;
    let nop = opcode::UringCmd16::new(types::Fd(fd), HDP_FLUSH_IOC_NOP)
        .cmd(HdpFlushRequest::new(0, 0).to_cmd_bytes())
        .build();
    let res = one_cqe(&mut ring, nop)?;
    ensure(res == 0, || format!("NOP: expected 0, got {res}"))?;
    let after = stats(&d, 0, false)?;
    ensure(after == before, || {
        format!("a NOP changed STATS: {before:?} -> {after:?}")
    })
}

/// One SQE on `ring`, its completion's result.
fn one_cqe<S: io_uring::squeue::EntryMarker>(ring: &mut IoUring<S>, sqe: S) -> Result<i32, String> {
    // SAFETY: the SQEs of these tests reference no memory (the request is inline; a fixed
    // buffer's memory is registered with, and owned by, the caller for the ring's lifetime).
    unsafe { ring.submission().push(&sqe) }.map_err(|e| e.to_string())?;
    ring.submit_and_wait(1).map_err(|e| e.to_string())?;
    let cqe = ring.completion().next().ok_or("no completion")?;
    Ok(cqe.result())
}

/// Nothing but the 16-byte request may be set in a URING_CMD SQE: a fixed buffer, `addr`,
/// `len`, `ioprio`, or bytes past the request in a 128-byte SQE are refused with EINVAL, and
/// never counted as requests.
fn uring_cmds_with_anything_else_set_are_refused() -> TestResult {
    let d = dev()?;
    let fd = d.as_fd_raw();
    let req = HdpFlushRequest::new(0, 0).to_cmd_bytes();
    let flush = || opcode::UringCmd16::new(types::Fd(fd), HDP_FLUSH_IOC_FLUSH).cmd(req);
    let mut ring = IoUring::new(8).map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; 4096];
    let iov = nix::libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: `buffer` outlives the ring (dropped after it, at the end of this function).
    unsafe { ring.submitter().register_buffers(&[iov]) }.map_err(|e| e.to_string())?;
    /// An SQE with one byte at `offset` set to `value` (ioprio at 2, len at 24).
    fn poke(e: io_uring::squeue::Entry, offset: usize, value: u8) -> io_uring::squeue::Entry {
        // SAFETY: Entry is a repr(C) wrapper of the 64-byte io_uring_sqe, plain bytes.
        let mut bytes: [u8; 64] = unsafe { std::mem::transmute(e) };
        bytes[offset] = value;
        // SAFETY: as above; any bytes are a valid SQE to build.
        unsafe { std::mem::transmute(bytes) }
    }
    stats(&d, 0, true)?;
    let einval = -(Errno::EINVAL as i32);
    for (what, sqe, want) in [
        ("plain", flush().build(), 0),
        ("fixed buffer", flush().buf_index(Some(0)).build(), einval),
        ("addr", flush().addr(Some(0x1000)).build(), einval),
        ("len", poke(flush().build(), 24, 1), einval),
        ("ioprio", poke(flush().build(), 2, 1), einval),
    ] {
        let got = one_cqe(&mut ring, sqe)?;
        ensure(got == want, || {
            format!("{what}: expected {want}, got {got}")
        })?;
    }
    let mut ring128: IoUring<io_uring::squeue::Entry128, io_uring::cqueue::Entry> =
        IoUring::builder().build(8).map_err(|e| e.to_string())?;
    let mut area = [0u8; 80];
    area[..16].copy_from_slice(&req);
    let sqe128 = |a: [u8; 80]| {
        opcode::UringCmd80::new(types::Fd(fd), HDP_FLUSH_IOC_FLUSH)
            .cmd(a)
            .build()
    };
    let got = one_cqe(&mut ring128, sqe128(area))?;
    ensure(got == 0, || format!("128-byte SQE, rest zero: {got}"))?;
    area[40] = 1;
    let got = one_cqe(&mut ring128, sqe128(area))?;
    ensure(got == einval, || {
        format!("128-byte SQE with byte 40 set: {got}")
    })?;
    drop((ring, ring128));
    drop(buffer);
    let s = stats(&d, 0, false)?;
    ensure(s.flush_requests == 2 && s.flush_errors == 0, || {
        format!("only the two valid ones counted: {s:?}")
    })
}

/// `NO_COALESCE` needs CAP_SYS_ADMIN: a child without it gets EPERM through ioctl and
/// io_uring, while its ordinary flushes work.
fn no_coalesce_and_counter_reset_need_cap_sys_admin() -> TestResult {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .arg(WITHOUT_SYS_ADMIN)
        .output()
        .map_err(|e| e.to_string())?;
    echoed("child", &out)
}

const WITHOUT_SYS_ADMIN: &str = "--without-cap-sys-admin";

/// The child of [`no_coalesce_and_counter_reset_need_cap_sys_admin`]: drop CAP_SYS_ADMIN, then
/// try.
fn without_cap_sys_admin() -> TestResult {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const CAP_SYS_ADMIN: u32 = 21;
    let header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a version-3 header and two data words, as capabilities(7).
    let r = unsafe { nix::libc::syscall(nix::libc::SYS_capget, &header, data.as_mut_ptr()) };
    ensure(r == 0, || "capget failed".into())?;
    data[0].effective &= !(1 << CAP_SYS_ADMIN);
    data[0].permitted &= !(1 << CAP_SYS_ADMIN);
    // SAFETY: as above.
    let r = unsafe { nix::libc::syscall(nix::libc::SYS_capset, &header, data.as_ptr()) };
    ensure(r == 0, || "capset failed".into())?;
    let d = dev()?;
    let fd = d.as_fd_raw();
    let req = |flags| HdpFlushRequest::new(0, flags);
    // SAFETY: a valid request the kernel only reads.
    let got = unsafe { raw::flush(fd, &req(HDP_FLUSH_F_NO_COALESCE)) };
    errno_of(
        got,
        Errno::EPERM,
        "ioctl FLUSH NO_COALESCE without CAP_SYS_ADMIN",
    )?;
    d.flush(0, HDP_FLUSH_F_SYNC)
        .map_err(|e| format!("an ordinary flush: {e}"))?;
    let mut ring = IoUring::new(4).map_err(|e| e.to_string())?;
    let sqe = opcode::UringCmd16::new(types::Fd(fd), HDP_FLUSH_IOC_FLUSH)
        .cmd(req(HDP_FLUSH_F_NO_COALESCE).to_cmd_bytes())
        .build();
    let got = one_cqe(&mut ring, sqe)?;
    ensure(got == -(Errno::EPERM as i32), || {
        format!("URING_CMD NO_COALESCE: {got}")
    })?;
    let mut st = HdpFlushStats {
        flags: HDP_FLUSH_STATS_F_RESET,
        ..Default::default()
    };
    // SAFETY: a valid request the kernel reads and writes back.
    let got = unsafe { raw::stats(fd, &mut st) };
    errno_of(got, Errno::EPERM, "STATS RESET without CAP_SYS_ADMIN")?;
    let mut st = HdpFlushStats::default();
    // SAFETY: as above.
    unsafe { raw::stats(fd, &mut st) }.map_err(|e| format!("STATS without RESET: {e}"))?;
    println!(
        "without CAP_SYS_ADMIN: NO_COALESCE and STATS RESET refused with EPERM (ioctl, io_uring); \
         plain flush and STATS ok"
    );
    Ok(())
}

/// The module's reference count, as /sys/module shows it.
fn module_refcnt() -> Result<u64, String> {
    std::fs::read_to_string("/sys/module/hdp_flush/refcnt")
        .map_err(|e| e.to_string())?
        .trim()
        .parse()
        .map_err(|e| format!("refcnt: {e}"))
}

/// A `DEFER_TASKRUN` ring runs its task work only when its owner waits for completions. So a
/// FLUSH submitted without waiting, on a ring then closed, has its task work run by io_uring's
/// exit worker, cancelled: the module completes it with ECANCELED without reaching the device.
/// The same command on a ring that waits is counted, so the count not moving means something.
fn a_flush_whose_ring_closes_before_its_task_work_is_cancelled_untouched() -> TestResult {
    let d = dev()?;
    // The commands go through a file of their own: a queued command holds its file, and the
    // file the module, so the module's count falling back tells that the command completed.
    let own = dev()?;
    let fd = own.as_fd_raw();
    let sqe = || {
        opcode::UringCmd16::new(types::Fd(fd), HDP_FLUSH_IOC_FLUSH)
            .cmd(HdpFlushRequest::new(0, HDP_FLUSH_F_SYNC).to_cmd_bytes())
            .build()
    };
    let counted = |s: &HdpFlushStats| s.flush_requests;
    let refs = module_refcnt()?;
    // The control: waited for, the command reaches the device and is counted.
    let before = stats(&d, 0, false)?;
    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(8)
        .map_err(|e| format!("a DEFER_TASKRUN ring: {e}"))?;
    let got = one_cqe(&mut ring, sqe())?;
    ensure(got == 0, || format!("a waited-for FLUSH: {got}"))?;
    let waited = stats(&d, 0, false)?;
    ensure(counted(&waited) == counted(&before) + 1, || {
        format!("a waited-for FLUSH was not counted: {before:?} -> {waited:?}")
    })?;
    // Submitted, not waited for, then the ring is closed.
    // SAFETY: the SQE refers to `fd`, which outlives the ring.
    unsafe { ring.submission().push(&sqe()) }.map_err(|e| e.to_string())?;
    let n = ring.submit().map_err(|e| e.to_string())?;
    ensure(n == 1, || format!("submitted {n}"))?;
    drop(ring);
    drop(own);
    // io_uring tears the ring down from a worker; the file, and its module reference, go when
    // the command has completed.
    let t = Instant::now();
    while module_refcnt()? != refs - 1 {
        ensure(t.elapsed().as_secs() < 10, || {
            format!(
                "the module's references stay at {} (were {refs} with the command's file open)",
                module_refcnt().unwrap_or(0)
            )
        })?;
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let after = stats(&d, 0, false)?;
    ensure(counted(&after) == counted(&waited), || {
        format!("a cancelled command reached the device: {waited:?} -> {after:?}")
    })?;
    println!("  a FLUSH on a closed DEFER_TASKRUN ring: completed cancelled, the device untouched");
    Ok(())
}

fn dummy_page_flushes_through_the_edu_bar_via_sysfs() -> TestResult {
    let d = dev()?;
    let (_, pci) = *edu_devices(&d)?.first().ok_or("no edu device")?;
    let resource = PathBuf::from(format!("/sys/bus/pci/devices/{pci}/resource0"));
    // 64K into the 1 MiB BAR: clear of edu's registers. On a 64K-page kernel the page at 64K
    // is mapped; on 4K, the page at 64K.
    let page = MappedRegion::map_file(&resource, 0x10000, 4096).map_err(|e| e.to_string())?;
    // The module serves this device, so naming the strategy is what makes it the dummy page.
    let options = FlusherOptions::new()
        .dummy_page_region(page)
        .strategy(StrategyKind::DummyPage);
    let f = libflush::open_gpu(GpuSelector::Pci(pci), options).map_err(|e| e.to_string())?;
    ensure(f.kind() == StrategyKind::DummyPage, || format!("{f:?}"))?;
    let backing = f.backing();
    ensure(
        backing.kind == libflush::BackingKind::EmulatedDevice,
        || format!("an edu BAR is an emulated device, not hardware nor a stand-in: {backing:?}"),
    )?;
    let t = Instant::now();
    for _ in 0..1000 {
        f.flush().map_err(|e| e.to_string())?;
    }
    println!(
        "  1000 dummy-page flushes on {} in {:?}",
        resource.display(),
        t.elapsed()
    );
    // An offset that is not page-aligned on this kernel maps the enclosing page.
    let r = MappedRegion::map_file(&resource, 0x10000 + 0x1000, 4096).map_err(|e| e.to_string())?;
    libflush::DummyPage::new(r)
        .and_then(|p| p.flush())
        .map_err(|e| format!("--map at 0x11000 on PAGE_SIZE {}: {e}", page_size()))
}

fn hdpflush_bench_runs_ioctl_and_uring_in_the_guest() -> TestResult {
    let out = sh(
        "/hdpflush",
        &[
            "bench",
            "-s",
            "ioctl,uring",
            "--batch",
            "1,32",
            "--threads",
            "1,4",
            "-n",
            "4000",
            "--warmup",
            "400",
            "--quiet",
            "--out-dir",
            "/tmp/bench",
        ],
    )?;
    echoed("hdpflush bench", &out)?;
    let json = std::fs::read_to_string("/tmp/bench/bench.json").map_err(|e| e.to_string())?;
    let report: serde_json::Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    let results = report["results"].as_array().ok_or("no results")?;
    let find = |variant: &str| results.iter().find(|r| r["variant"] == variant);
    for (strategy, variant, threads) in [
        ("reference", "ioctl NOP, kernel-entry floor", 1),
        ("ioctl", "posted", 1),
        ("ioctl", "completed", 1),
        ("ioctl", "completed, 4 threads", 4),
        ("uring", "completed, batch 1", 1),
        ("uring", "completed, batch 32, 4 threads", 4),
    ] {
        let r = find(variant).ok_or_else(|| format!("case `{strategy} ({variant})` missing"))?;
        ensure(r["strategy"] == strategy && r["threads"] == threads, || {
            format!("{r}")
        })?;
        if strategy != "reference" {
            // Every request reached the module, which never issued more flushes than requests.
            let ratio = r["hw_flushes_per_request"]
                .as_f64()
                .ok_or_else(|| format!("{r}"))?;
            ensure(ratio > 0.0 && ratio <= 1.0, || {
                format!("hw/req {ratio}: {r}")
            })?;
        }
    }
    Ok(())
}

fn rmmod_is_refused_while_a_file_is_open_then_reload_works() -> TestResult {
    let held = File::open(HDP_FLUSH_DEVICE_PATH).map_err(|e| e.to_string())?;
    let out = sh("rmmod", &["hdp_flush"])?;
    ensure(!out.status.success(), || {
        format!("rmmod succeeded with {HDP_FLUSH_DEVICE_PATH} open")
    })?;
    ensure(Path::new(HDP_FLUSH_DEVICE_PATH).exists(), || {
        "device vanished".into()
    })?;
    // The open file still works.
    let d = dev()?;
    d.flush(0, HDP_FLUSH_F_SYNC).map_err(|e| e.to_string())?;
    drop(d);
    drop(held);

    rmmod()?;
    ensure(!Path::new(HDP_FLUSH_NODE_DIR).exists(), || {
        "device nodes left behind".into()
    })?;
    match Ioctl::open(0, Completion::Completed) {
        Err(Error::DeviceMissing { .. }) => {}
        Err(other) => return Err(format!("expected DeviceMissing, got {other}")),
        Ok(_) => return Err("opened a device that is not loaded".into()),
    }

    insmod(&["sim_devices=3", "sim_delay_ns=0"])?;
    let d = dev()?;
    let sims = devices_with(&d, HDP_FLUSH_BACKEND_SIM)?;
    ensure(sims.len() == 3, || format!("sim_devices=3 gave {sims:?}"))?;
    for &i in &sims {
        d.flush(i, HDP_FLUSH_F_SYNC).map_err(|e| e.to_string())?;
    }
    let param = std::fs::read_to_string("/sys/module/hdp_flush/parameters/sim_devices")
        .map_err(|e| e.to_string())?;
    ensure(param.trim() == "3", || format!("sysfs parameter: {param}"))?;
    drop(d);
    rmmod()?;

    for bad in [
        "sim_devices=99",
        "sim_delay_ns=5000000",
        "test_load_pause_ms=10001",
        "amdgpu_devices=0000:0f:00.0",
        "amdgpu_devices=0000:0f:00.0@0x7f002",
        "amdgpu_devices=0000:0f:00.0@0x7f000/post=0x7f000",
        "amdgpu_devices=0f:00.0@8,0000:0f:00.0@12",
    ] {
        let out = sh("insmod", &[MODULE_PATH, bad])?;
        ensure(!out.status.success(), || format!("insmod accepted {bad}"))?;
        ensure(!Path::new(HDP_FLUSH_NODE_DIR).exists(), || {
            format!("{bad}: device nodes created")
        })?;
    }
    amdgpu_devices_are_checked_up_to_the_hardware(MODULE_PATH)?;
    amdgpu_devices_are_checked_up_to_the_hardware(worst_day::PRODUCTION_MODULE)?;
    // Loaded with no parameters, the module serves what hardware there is and no simulator.
    insmod(&[])?;
    let d = dev()?;
    let sims = devices_with(&d, HDP_FLUSH_BACKEND_SIM)?;
    let edus = devices_with(&d, HDP_FLUSH_BACKEND_PCITEST)?;
    ensure(sims.is_empty() && edus == [0, 1], || {
        format!("defaults: sims {sims:?}, emulated {edus:?}")
    })?;
    drop(d);
    rmmod()?;
    insmod(MODULE_PARAMS)?;
    dev().map(drop)
}

/// `amdgpu_devices` with no AMD GPU here: a device that is not an AMD GPU is refused and fails
/// the load; an address with no device is skipped with a warning and the rest is served. By the
/// module at `module`: the test variant, and the production module users install.
fn amdgpu_devices_are_checked_up_to_the_hardware(module: &str) -> TestResult {
    let edu = sh("sh", &["-c", "cd /sys/bus/pci/devices && for d in *; do [ \"$(cat $d/vendor)\" = 0x1234 ] && echo $d && break; done"])?;
    let edu = String::from_utf8_lossy(&edu.stdout).trim().to_owned();
    ensure(!edu.is_empty(), || "no edu device in sysfs".into())?;
    // Messages this load adds to the kernel log (an earlier load logged the same ones).
    let count = |needle: &str| -> Result<usize, String> {
        Ok(String::from_utf8_lossy(&sh("dmesg", &[])?.stdout)
            .matches(needle)
            .count())
    };
    let refusal = format!("amdgpu_devices: {edu} is not an AMD GPU (vendor 1234");
    let skipped = "amdgpu_devices: no PCI device at 0000:7f:1f.7; not served";
    let (refusals, skips) = (count(&refusal)?, count(skipped)?);
    let named = format!("amdgpu_devices={edu}@0x7f000");
    let out = sh("insmod", &[module, &named])?;
    ensure(!out.status.success(), || format!("insmod accepted {named}"))?;
    ensure(count(&refusal)? > refusals, || {
        format!("no refusal in dmesg for {named}")
    })?;
    let absent = "amdgpu_devices=0000:7f:1f.7@0x7f000";
    let out = sh("insmod", &[module, absent])?;
    ensure(out.status.success(), || {
        format!(
            "insmod {module} {absent}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let param = std::fs::read_to_string("/sys/module/hdp_flush/parameters/amdgpu_devices")
        .map_err(|e| e.to_string())?;
    ensure(param.trim() == "0000:7f:1f.7@0x7f000", || {
        format!("sysfs: {param}")
    })?;
    let d = dev()?;
    ensure(
        devices_with(&d, HDP_FLUSH_BACKEND_AMDGPU)?.is_empty(),
        || "an absent GPU served".into(),
    )?;
    drop(d);
    ensure(count(skipped)? > skips, || {
        "no warning for an absent GPU".into()
    })?;
    rmmod()
}

/// A backend failure reaches the caller as EIO through both paths and is counted; the module
/// stays usable. The sim backend's `sim_fail_every` injects the failures.
fn backend_errors_reach_ioctl_and_uring_callers_and_are_counted() -> TestResult {
    let reload = |args: &[&str]| rmmod().and_then(|()| insmod(args));
    reload(&[
        "sim_devices=1",
        "sim_fail_every=3",
        "sim_delay_ns=0",
        "pcitest=0",
    ])?;
    let result = (|| -> TestResult {
        let flusher = Ioctl::open(0, Completion::Completed).map_err(|e| e.to_string())?;
        flusher.flush().map_err(|e| e.to_string())?;
        flusher.flush().map_err(|e| e.to_string())?;
        match flusher.flush() {
            Err(Error::Os {
                errno: Errno::EIO,
                op: "FLUSH ioctl",
                ..
            }) => {}
            other => return Err(format!("third flush: expected EIO, got {other:?}")),
        }
        // One submission each (a batch would share one hardware flush): the third fails.
        let ring = Uring::open(UringConfig::default()).map_err(|e| e.to_string())?;
        ring.flush().map_err(|e| e.to_string())?;
        ring.flush().map_err(|e| e.to_string())?;
        match ring.flush() {
            Err(Error::Os {
                errno: Errno::EIO, ..
            }) => {}
            other => return Err(format!("third io_uring flush: expected EIO, got {other:?}")),
        }
        let s = stats(&dev()?, 0, false)?;
        ensure(
            (s.flush_requests, s.hw_flushes, s.flush_errors) == (6, 4, 2),
            || format!("{s:?}"),
        )?;
        // Still serving: operations 7 and 8 succeed; 9, an invalidate, fails apart.
        flusher.flush().map_err(|e| e.to_string())?;
        flusher.invalidate().map_err(|e| e.to_string())?;
        match flusher.invalidate() {
            Err(Error::Os {
                errno: Errno::EIO, ..
            }) => {}
            other => return Err(format!("ninth operation: expected EIO, got {other:?}")),
        }
        let s = stats(&dev()?, 0, false)?;
        ensure(
            (s.flush_errors, s.invalidates, s.invalidate_errors) == (2, 2, 1),
            || format!("invalidate errors counted apart: {s:?}"),
        )?;
        ensure(
            s.hw_flushes + s.coalesced + s.flush_errors + s.flush_skipped == s.flush_requests,
            || format!("{s:?}"),
        )
    })();
    reload(MODULE_PARAMS)?;
    result
}

/// The most SQEs of one ring a shared SQ polling thread submits per pass (the kernel's
/// `IORING_SQPOLL_CAP_ENTRIES_VALUE`).
const SQPOLL_CAP_ENTRIES: u64 = 8;

/// The flushes of one io_uring submission are all issued before the module serves any of them
/// (from task work), so the first one's hardware flush covers the rest: a batch of 32 costs one
/// hardware flush, posted or completed; under SQPOLL one per 8 (the shared poller submits 8 of
/// a ring's SQEs at a time). Before io_uring commands were served from task work each one
/// flushed on its own: 32 per batch.
fn an_io_uring_batch_shares_one_hardware_flush() -> TestResult {
    const BATCHES: u64 = 50;
    const BATCH: u64 = 32;
    rmmod()?;
    insmod(&["sim_devices=1", "sim_delay_ns=1000", "pcitest=0"])?;
    let result = (|| -> TestResult {
        let d = dev()?;
        for (completion, sqpoll) in [
            (Completion::Completed, None),
            (Completion::Posted, None),
            (Completion::Completed, Some(50)),
        ] {
            let ring = Uring::open(UringConfig {
                entries: BATCH as u32,
                completion,
                sqpoll_idle_ms: sqpoll,
                ..UringConfig::default()
            })
            .map_err(|e| e.to_string())?;
            stats(&d, 0, true)?;
            for _ in 0..BATCHES {
                ring.flush_batch(BATCH as usize)
                    .map_err(|e| e.to_string())?;
            }
            let s = stats(&d, 0, false)?;
            let uring = d.device_info(0).map_err(|e| e.to_string())?.uring_requests;
            println!(
                "  {} {}: {BATCHES} batches of {BATCH}: {} hardware flushes, {} coalesced",
                completion.name(),
                if sqpoll.is_some() { "sqpoll" } else { "plain" },
                s.hw_flushes,
                s.coalesced
            );
            ensure(
                s.flush_requests == BATCHES * BATCH && uring == BATCHES * BATCH,
                || format!("each request once: {s:?}, {uring} through io_uring"),
            )?;
            ensure(
                s.hw_flushes + s.coalesced == s.flush_requests && s.flush_errors == 0,
                || format!("{s:?}"),
            )?;
            // A poller shared by several rings (the process's one SQ polling thread, attached
            // to by every SQPOLL ring) takes at most 8 SQEs of a ring per pass, for fairness
            // (IORING_SQPOLL_CAP_ENTRIES_VALUE): under SQPOLL a batch of 32 arrives in 4 parts.
            let per_batch = match sqpoll {
                Some(_) => BATCH.div_ceil(SQPOLL_CAP_ENTRIES) + 1,
                None => 2,
            };
            ensure(s.hw_flushes <= per_batch * BATCHES, || {
                format!("more than {per_batch} hardware flushes per batch of {BATCH}: {s:?}")
            })?;
        }
        Ok(())
    })();
    rmmod()?;
    insmod(MODULE_PARAMS)?;
    result
}

/// Flush `victim` from four threads (ioctl and io_uring), run `revoke` (which makes the PCI
/// core tell the module the device is going), and check: no flush succeeds after it, every
/// later one fails with ENODEV, DEVICE_INFO says revoked, the counters add up, and `other`
/// still works. Returns how many flushes succeeded before.
fn revoke_under_load(
    d: &HdpFlushDevice,
    victim: u32,
    other: u32,
    revoke: impl FnOnce() -> TestResult,
) -> Result<u64, String> {
    all_counts(d, true)?;
    let revoked = AtomicBool::new(false);
    let outcomes: Vec<Result<(u64, u64, Errno), String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let revoked = &revoked;
                s.spawn(move || -> Result<(u64, u64, Errno), String> {
                    let flusher: Box<dyn Flush> = if t % 2 == 0 {
                        Box::new(
                            Ioctl::open(victim, Completion::Completed)
                                .map_err(|e| e.to_string())?,
                        )
                    } else {
                        Box::new(
                            Uring::open(UringConfig {
                                device: victim,
                                entries: 4,
                                ..UringConfig::default()
                            })
                            .map_err(|e| e.to_string())?,
                        )
                    };
                    // Flush until the device is gone; then a few more, which must all fail.
                    let (mut before, mut after) = (0u64, 0u64);
                    loop {
                        let was_revoked = revoked.load(Ordering::SeqCst);
                        match flusher.flush() {
                            Ok(()) if was_revoked => {
                                return Err(format!(
                                    "thread {t}: a flush succeeded after revocation"
                                ))
                            }
                            Ok(()) => before += 1,
                            Err(Error::Os { errno, .. }) => {
                                for _ in 0..20 {
                                    match flusher.flush() {
                                        Err(Error::Os { errno: e, .. }) if e == errno => after += 1,
                                        other => {
                                            return Err(format!(
                                                "thread {t}: after {errno}: {other:?}"
                                            ))
                                        }
                                    }
                                }
                                return Ok((before, after, errno));
                            }
                            Err(other) => return Err(format!("thread {t}: {other}")),
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let done = revoke();
        revoked.store(true, Ordering::SeqCst);
        let mut all: Vec<_> = workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("worker panicked".into())))
            .collect();
        if let Err(e) = done {
            all.push(Err(e));
        }
        all
    });
    let mut flushed = 0;
    for o in &outcomes {
        let (before, after, errno) = o.clone()?;
        ensure(errno == Errno::ENODEV && after == 20, || {
            format!("{outcomes:?}")
        })?;
        flushed += before;
    }
    let info = d.device_info(victim).map_err(|e| e.to_string())?;
    ensure(info.flags & HDP_FLUSH_DEVICE_F_REVOKED != 0, || {
        format!("{info:?}")
    })?;
    let s = stats(d, victim, false)?;
    ensure(
        s.hw_flushes + s.coalesced + s.flush_errors + s.flush_skipped == s.flush_requests
            && s.flush_errors >= 4 * 21,
        || format!("{s:?}"),
    )?;
    // The other device was not touched, and still works.
    d.flush(other, HDP_FLUSH_F_SYNC)
        .map_err(|e| format!("the other device: {e}"))?;
    Ok(flushed)
}

/// Reload the module and check the emulated device at `pci` is served and flushes again.
fn reload_and_flush(pci: PciAddress) -> TestResult {
    rmmod()?;
    insmod(MODULE_PARAMS)?;
    let d = dev()?;
    let back = edu_devices(&d)?;
    ensure(
        back.len() == EDU_DEVICES && back.iter().any(|&(_, p)| p == pci),
        || format!("after reload: {back:?}"),
    )?;
    let (index, _) = *back.iter().find(|&&(_, p)| p == pci).ok_or("gone")?;
    d.flush(index, HDP_FLUSH_F_SYNC)
        .map_err(|e| format!("{pci} after reload: {e}"))
}

/// An emulated device hot-removed through sysfs (as a hot-unplug does it) while four threads
/// flush it: revoked cleanly (see `revoke_under_load`), gone from sysfs, and after a rescan and
/// a reload served again.
fn hot_removing_a_device_under_load_revokes_it_cleanly() -> TestResult {
    let d = dev()?;
    let edus = edu_devices(&d)?;
    let (victim, pci) = *edus.last().ok_or("no edu device")?;
    let (other, _) = *edus.first().ok_or("no edu device")?;
    let remove = format!("/sys/bus/pci/devices/{pci}/remove");
    let flushed = revoke_under_load(&d, victim, other, || {
        std::fs::write(&remove, "1").map_err(|e| format!("{remove}: {e}"))
    })?;
    ensure(
        !Path::new(&format!("/sys/bus/pci/devices/{pci}")).exists(),
        || "still in sysfs".into(),
    )?;
    println!("  {flushed} flushes before {pci} went; every one after it: ENODEV");
    drop(d);
    std::fs::write("/sys/bus/pci/rescan", "1").map_err(|e| format!("rescan: {e}"))?;
    ensure(
        Path::new(&format!("/sys/bus/pci/devices/{pci}")).exists(),
        || format!("{pci} not back after a rescan"),
    )?;
    reload_and_flush(pci)
}

/// A device's driver unbound under load, as `echo ... > /sys/bus/pci/drivers/amdgpu/unbind`
/// does to a GPU: the PCI core's `BUS_NOTIFY_UNBIND_DRIVER` comes before the driver's
/// `remove`. `pci-stub` plays the owning driver for the emulated device.
fn unbinding_a_devices_driver_under_load_revokes_it() -> TestResult {
    let d = dev()?;
    let edus = edu_devices(&d)?;
    let (victim, pci) = *edus.first().ok_or("no edu device")?;
    let (other, _) = *edus.last().ok_or("no edu device")?;
    let sysfs = |path: &str, value: &str| {
        std::fs::write(path, value).map_err(|e| format!("{path} <- {value:?}: {e}"))
    };
    let device = format!("/sys/bus/pci/devices/{pci}");
    sysfs(&format!("{device}/driver_override"), "pci-stub")?;
    sysfs("/sys/bus/pci/drivers/pci-stub/bind", &pci.to_string())?;
    let driver = std::fs::read_link(format!("{device}/driver")).map_err(|e| e.to_string())?;
    ensure(driver.ends_with("pci-stub"), || {
        format!("bound to {driver:?}")
    })?;
    // Binding a driver is no reason to stop.
    d.flush(victim, HDP_FLUSH_F_SYNC)
        .map_err(|e| format!("with pci-stub bound: {e}"))?;
    let flushed = revoke_under_load(&d, victim, other, || {
        sysfs("/sys/bus/pci/drivers/pci-stub/unbind", &pci.to_string())
    })?;
    ensure(
        Path::new(&device).exists() && !Path::new(&format!("{device}/driver")).exists(),
        || "still bound, or gone".into(),
    )?;
    println!("  {flushed} flushes before {pci}'s driver was unbound; every one after it: ENODEV");
    sysfs(&format!("{device}/driver_override"), "\n")?;
    drop(d);
    reload_and_flush(pci)
}

/// A device removed while the module loads, after discovery found it but before the module
/// listened for bus events (`test_load_pause_ms` holds that window open): the module notices
/// before publishing /dev/hdp_flush, and never serves it.
fn a_device_removed_while_the_module_loads_is_never_served() -> TestResult {
    let d = dev()?;
    let edus = edu_devices(&d)?;
    let (victim, pci) = *edus.last().ok_or("no edu device")?;
    let (other, _) = *edus.first().ok_or("no edu device")?;
    drop(d);
    rmmod()?;
    let mut loading = Command::new("insmod")
        .args([MODULE_PATH, "sim_devices=2", "test_load_pause_ms=3000"])
        .spawn()
        .map_err(|e| format!("insmod: {e}"))?;
    let paused = (|| {
        let started = Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(300) {
            let log = sh("dmesg", &[])?;
            if String::from_utf8_lossy(&log.stdout).contains("pausing 3000 ms") {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Err("the module never paused".to_string())
    })();
    let removed = paused.and_then(|()| {
        ensure(!Path::new(HDP_FLUSH_NODE_DIR).exists(), || {
            format!("{HDP_FLUSH_NODE_DIR} published before the module listened")
        })?;
        let remove = format!("/sys/bus/pci/devices/{pci}/remove");
        std::fs::write(&remove, "1").map_err(|e| format!("{remove}: {e}"))
    });
    let status = loading.wait().map_err(|e| e.to_string())?;
    removed?;
    ensure(status.success(), || format!("insmod: {status}"))?;
    let d = dev()?;
    let info = d.device_info(victim).map_err(|e| e.to_string())?;
    let at = PciAddress::from_bdf(info.pci_domain, info.pci_bdf).map_err(|e| e.to_string())?;
    ensure(
        info.flags & HDP_FLUSH_DEVICE_F_REVOKED != 0 && at == pci,
        || format!("{info:?}"),
    )?;
    errno_of(
        d.flush(victim, HDP_FLUSH_F_SYNC).map_err(|e| e.errno()),
        Errno::ENODEV,
        "flush of the removed device",
    )?;
    d.flush(other, HDP_FLUSH_F_SYNC)
        .map_err(|e| format!("the other device: {e}"))?;
    drop(d);
    std::fs::write("/sys/bus/pci/rescan", "1").map_err(|e| format!("rescan: {e}"))?;
    reload_and_flush(pci)
}

/// The fuzzer (see fuzz.rs): a million calls by default from four threads with open/close
/// churn beside them and an emulated device removed halfway; every answer documented, no oops,
/// every device's counters adding up, the removed one revoked. Then everything is put back.
fn fuzz_the_uapi_with_threads_churn_and_a_hot_remove() -> TestResult {
    let calls = fuzz::cmdline("fuzz_calls").unwrap_or(1_000_000);
    let seed = fuzz::cmdline("fuzz_seed").unwrap_or(0x6864_7066);
    let d = dev()?;
    let (victim, pci) = *edu_devices(&d)?.last().ok_or("no edu device")?;
    drop(d);
    let t = Instant::now();
    let report = fuzz::run(calls, seed, &pci.to_string())?;
    let answers: Vec<String> = report
        .answers
        .iter()
        .map(|(e, n)| match e {
            0 => format!("ok {n}"),
            e => format!("{} {n}", Errno::from_raw(*e)),
        })
        .collect();
    println!(
        "  fuzz: {} calls in {:.1?} (seed {seed}); {pci} removed after {}; {}",
        report.calls,
        t.elapsed(),
        report.removed_at,
        answers.join(", ")
    );
    ensure(report.calls >= calls, || format!("{} calls", report.calls))?;
    let d = dev()?;
    for i in 0..d.version().num_devices {
        let s = stats(&d, i, false)?;
        ensure(
            s.hw_flushes + s.coalesced + s.flush_errors + s.flush_skipped == s.flush_requests,
            || format!("device {i}: {s:?}"),
        )?;
    }
    let info = d.device_info(victim).map_err(|e| e.to_string())?;
    ensure(info.flags & HDP_FLUSH_DEVICE_F_REVOKED != 0, || {
        format!("{info:?}")
    })?;
    drop(d);
    rmmod()?;
    std::fs::write("/sys/bus/pci/rescan", "1").map_err(|e| format!("rescan: {e}"))?;
    insmod(MODULE_PARAMS)
}

/// After everything above: the kernel log holds no bug report (a quiet console would not show
/// a warning, lockdep or KASAN report; the log does).
fn the_kernel_log_has_no_bug_report() -> TestResult {
    let out = sh("dmesg", &[])?;
    let log = String::from_utf8_lossy(&out.stdout);
    let found: Vec<&str> = log
        .lines()
        .filter(|l| reports::KERNEL_REPORTS.iter().any(|r| l.contains(r)))
        .collect();
    ensure(found.is_empty(), || {
        format!("the kernel reported: {}", found.join(" | "))
    })
}

/// An io_uring holding the file also pins the module.
fn rmmod_is_refused_while_an_io_uring_holds_the_device() -> TestResult {
    let ring = Uring::open(UringConfig::default()).map_err(|e| e.to_string())?;
    ring.flush().map_err(|e| e.to_string())?;
    let out = sh("rmmod", &["hdp_flush"])?;
    ensure(!out.status.success(), || {
        "rmmod succeeded under a live ring".into()
    })?;
    ring.flush().map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------

trait RawFd {
    fn as_fd_raw(&self) -> i32;
}

impl RawFd for HdpFlushDevice {
    fn as_fd_raw(&self) -> i32 {
        use std::os::fd::AsFd;
        self.as_fd().as_raw_fd()
    }
}

/// `[(name, fn)]` from function names, so each name is written once.
macro_rules! tests {
    ($($f:ident),* $(,)?) => { [$((stringify!($f), $f as fn() -> TestResult)),*] };
}

/// End a child run of this binary (a test's helper process) with its verdict.
fn exit_with(result: TestResult) -> ! {
    match result {
        Ok(()) => std::process::exit(0),
        Err(why) => {
            println!("FAILED {why}");
            std::process::exit(1);
        }
    }
}

/// Print a program's output under the test's line, and fail with its exit status and error
/// output unless it succeeded.
fn echoed(what: &str, out: &std::process::Output) -> TestResult {
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("  | {line}");
    }
    ensure(out.status.success(), || {
        format!(
            "{what}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(worst_day::BLOCKED_FLUSHER) {
        let index = args.get(3).and_then(|i| i.parse().ok()).unwrap_or(0);
        worst_day::blocked_flusher(args.get(2).map_or("ioctl", String::as_str), index);
    }
    if args.get(1).map(String::as_str) == Some(nodes::AS_NOBODY) {
        let (mine, other) = (args.get(2), args.get(3));
        exit_with(nodes::as_nobody_given(
            mine.map_or("", String::as_str),
            other.map_or("", String::as_str),
        ));
    }
    if std::env::args().nth(1).as_deref() == Some(WITHOUT_SYS_ADMIN) {
        exit_with(without_cap_sys_admin());
    }
    if std::env::args().nth(1).as_deref() == Some("evidence") {
        let (mut passed, mut failed) = evidence::run();
        match the_kernel_log_has_no_bug_report() {
            Ok(()) => passed += 1,
            Err(why) => {
                println!("FAILED the_kernel_log_has_no_bug_report: {why}");
                failed += 1;
            }
        }
        println!("guest: {passed} passed, {failed} failed");
        std::process::exit(i32::from(failed > 0));
    }
    let tests: Vec<Test> = tests![
        version_reports_api_devices_page_size_and_features,
        device_info_describes_sim_and_pcitest_devices,
        flush_and_invalidate_work_on_every_backend,
        stats_reset_zeroes_the_counters,
        a_flush_whose_ring_closes_before_its_task_work_is_cancelled_untouched,
        ioctl_strategy_flushes_every_device_posted_and_completed,
        flushing_one_gpu_changes_only_its_stats,
        the_process_wide_flusher_needs_a_named_gpu_here,
        the_c_program_flushes_two_devices_and_each_counts_its_own,
        uring_strategy_runs_batches_of_1_to_128_on_every_device,
        uring_strategy_works_with_sqpoll,
        sqpoll_flushes_make_no_io_uring_enter_in_steady_state,
        threads_sharing_one_uring_handle_each_complete_their_own,
        a_uring_handle_flushes_in_parent_and_child_after_fork,
        with_io_uring_refused_a_batched_open_uses_the_ioctl_and_says_why,
        flush_gpus_flushes_every_module_device_in_one_kernel_entry,
        stats_stay_consistent_after_an_8_thread_storm,
        bad_ioctls_get_enotty_einval_efault_enodev,
        bad_uring_cmds_complete_with_the_same_errors,
        uring_cmds_with_anything_else_set_are_refused,
        flushes_issued_async_linked_or_drained_complete_and_are_counted,
        a_failed_link_cancels_the_rest_before_they_reach_the_module,
        no_coalesce_and_counter_reset_need_cap_sys_admin,
        every_device_has_its_own_node_where_it_is_index_0_and_alone,
        a_process_given_one_devices_node_reaches_that_device_alone,
        dummy_page_flushes_through_the_edu_bar_via_sysfs,
        hdpflush_bench_runs_ioctl_and_uring_in_the_guest,
        backend_errors_reach_ioctl_and_uring_callers_and_are_counted,
        an_io_uring_batch_shares_one_hardware_flush,
        a_device_that_reads_all_ones_is_latched_dead_then_found_again,
        a_frozen_pci_channel_is_refused_untouched,
        a_caller_blocked_behind_a_stuck_flush_can_be_killed,
        unbind_and_bind_again_reattaches_without_a_reload,
        the_production_module_has_no_test_code,
        hot_removing_a_device_under_load_revokes_it_cleanly,
        unbinding_a_devices_driver_under_load_revokes_it,
        a_device_removed_while_the_module_loads_is_never_served,
        rmmod_is_refused_while_an_io_uring_holds_the_device,
        rmmod_is_refused_while_a_file_is_open_then_reload_works,
        fuzz_the_uapi_with_threads_churn_and_a_hot_remove,
        the_kernel_log_has_no_bug_report,
    ]
    .to_vec();
    #[cfg(target_arch = "x86_64")]
    let tests = with_compat32(tests);
    println!(
        "guest: {} on {} with PAGE_SIZE {}",
        std::env::consts::ARCH,
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        page_size()
    );
    if let Err(why) = insmod(MODULE_PARAMS) {
        println!("guest: {why}");
        if let Ok(out) = sh("dmesg", &[]) {
            println!("{}", String::from_utf8_lossy(&out.stdout));
        }
        println!("guest: 0 passed, 1 failed");
        std::process::exit(1);
    }
    if let Ok(out) = sh("dmesg", &[]) {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.contains("hdp_flush") {
                println!("{line}");
            }
        }
    }
    runner::run_all(&tests)
}

/// `tests` with the compat ioctl test after the ioctl one: the x86_64 guests have a 32-bit x86
/// program beside the tests (xtask builds it).
#[cfg(target_arch = "x86_64")]
fn with_compat32(mut tests: Vec<Test>) -> Vec<Test> {
    let at = tests
        .iter()
        .position(|(name, _)| *name == "bad_ioctls_get_enotty_einval_efault_enodev")
        .map_or(0, |i| i + 1);
    tests.insert(
        at,
        (
            "a_32_bit_program_gets_the_same_answers_through_compat_ioctl",
            a_32_bit_program_gets_the_same_answers_through_compat_ioctl,
        ),
    );
    tests
}

/// A 32-bit x86 program (tests/guest/c/compat32.c, built from hdp_flush.h alone) drives the
/// module through the kernel's compat ioctl path: every command, and the same answers to bad
/// input as a 64-bit caller gets.
#[cfg(target_arch = "x86_64")]
fn a_32_bit_program_gets_the_same_answers_through_compat_ioctl() -> TestResult {
    echoed("compat32", &sh("/compat32", &[])?)
}
