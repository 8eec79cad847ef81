//! A GPU's worst day, played by the emulated device (QEMU edu) and the simulator: a device that
//! answers all ones, a frozen PCI channel, a flush stuck on a dying device with callers queued
//! behind it, a driver unbound and bound again. And the production module, which has none of
//! the test code that makes these tests possible.

use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use libflush::device::HdpFlushDevice;
use libflush::uapi::*;
use libflush::{Bar, Flush, MappedRegion, PciAddress, Uring, UringConfig};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::runner::TestResult;
use crate::{dev, devices_with, edu_devices, ensure, insmod, rmmod, sh, stats, MODULE_PARAMS};

/// The edu device's liveness register: reads back the inverse of what was last written.
const EDU_LIVENESS: usize = 0x04;
/// How long the module leaves a device that answered all ones alone (kmod/backend.rs).
const DEAD_RETRY: Duration = Duration::from_secs(1);
/// The module's run-time test knobs.
const STALL: &str = "/sys/module/hdp_flush/parameters/test_stall_ms";
const ERROR_STATE: &str = "/sys/module/hdp_flush/parameters/test_pci_error_state";
const ALL_ONES: &str = "/sys/module/hdp_flush/parameters/test_edu_all_ones";
/// The production module beside the test one in the initramfs.
pub const PRODUCTION_MODULE: &str = "/hdp_flush-production.ko";
/// Argument that makes the test binary a child that flushes a device and reports.
pub const BLOCKED_FLUSHER: &str = "--blocked-flusher";

fn write(path: &str, value: &str) -> TestResult {
    std::fs::write(path, value).map_err(|e| format!("{path} <- {value:?}: {e}"))
}

/// The first edu device: its index, its address, and its register page mapped from sysfs (the
/// test's own window on the device, to see whether the module touched it).
fn edu_with_registers(d: &HdpFlushDevice) -> Result<(u32, PciAddress, MappedRegion), String> {
    let (index, pci) = *edu_devices(d)?.first().ok_or("no edu device")?;
    let resource = format!("/sys/bus/pci/devices/{pci}/resource0");
    let regs = MappedRegion::map_file(Path::new(&resource), 0, 4096).map_err(|e| e.to_string())?;
    Ok((index, pci, regs))
}

fn flags(d: &HdpFlushDevice, index: u32) -> Result<u32, String> {
    Ok(d.device_info(index).map_err(|e| e.to_string())?.flags)
}

fn expect_errno(r: libflush::Result<()>, want: Errno, what: &str) -> TestResult {
    match r {
        Err(libflush::Error::Os { errno, .. }) if errno == want => Ok(()),
        other => Err(format!("{what}: expected {want}, got {other:?}")),
    }
}

/// Leave a marker in the liveness register; the module's next store there replaces it.
fn mark(regs: &MappedRegion, marker: u32) -> TestResult {
    regs.write_u32(EDU_LIVENESS, marker);
    let back = regs.read_u32(EDU_LIVENESS);
    ensure(back == !marker, || {
        format!("edu liveness: wrote {marker:#x}, read {back:#x}")
    })
}

fn untouched(regs: &MappedRegion, marker: u32, when: &str) -> TestResult {
    let now = regs.read_u32(EDU_LIVENESS);
    ensure(now == !marker, || {
        format!(
            "{when}: the module touched the device (liveness {now:#x}, marker left {:#x})",
            !marker
        )
    })
}

/// A device that answers a register read with all ones (gone, in reset, its link down) is
/// latched dead at that read: later requests fail with EIO without touching it (the test's
/// marker in its register stays) until, a second later, a config read finds it answering and
/// it is served again. The test variant's `test_edu_all_ones` makes the emulated device answer
/// all ones: the module stores 0 to its liveness register, which reads back inverted.
pub fn a_device_that_reads_all_ones_is_latched_dead_then_found_again() -> TestResult {
    let d = dev()?;
    let (index, pci, regs) = edu_with_registers(&d)?;
    d.flush(index, HDP_FLUSH_F_SYNC)
        .map_err(|e| e.to_string())?;
    stats(&d, index, true)?;
    write(ALL_ONES, "1")?;
    let first = d.flush(index, HDP_FLUSH_F_SYNC);
    let latched = Instant::now();
    write(ALL_ONES, "0")?;
    expect_errno(first, Errno::EIO, "a flush whose readback is all ones")?;
    ensure(flags(&d, index)? & HDP_FLUSH_DEVICE_F_OFFLINE != 0, || {
        "DEVICE_INFO does not say offline".into()
    })?;
    // The device answers again, but the module does not know before it asks.
    let marker = 0x5a5a_0001;
    mark(&regs, marker)?;
    expect_errno(
        d.flush(index, HDP_FLUSH_F_SYNC),
        Errno::EIO,
        "a flush of a latched device",
    )?;
    expect_errno(
        d.flush(index, 0),
        Errno::EIO,
        "a posted flush of a latched device",
    )?;
    expect_errno(
        d.invalidate(index),
        Errno::EIO,
        "an invalidate of a latched device",
    )?;
    ensure(latched.elapsed() < DEAD_RETRY, || {
        format!("too slow to check the latch: {:?}", latched.elapsed())
    })?;
    untouched(&regs, marker, "latched dead")?;
    std::thread::sleep(DEAD_RETRY + Duration::from_millis(100));
    d.flush(index, HDP_FLUSH_F_SYNC)
        .map_err(|e| format!("a second later, the device answers: {e}"))?;
    ensure(regs.read_u32(EDU_LIVENESS) != !marker, || {
        "served again, but the register was not written".into()
    })?;
    ensure(flags(&d, index)? & HDP_FLUSH_DEVICE_F_OFFLINE == 0, || {
        "still offline".into()
    })?;
    let s = stats(&d, index, false)?;
    ensure(
        (
            s.flush_requests,
            s.flush_errors,
            s.hw_flushes,
            s.invalidate_errors,
        ) == (4, 3, 1, 1),
        || format!("{s:?}"),
    )?;
    let log = String::from_utf8_lossy(&sh("dmesg", &[])?.stdout).into_owned();
    ensure(
        log.contains(&format!("{pci}: a register read returned all ones"))
            && log.contains(&format!("{pci}: answers config reads again")),
        || "the kernel log does not tell the story".into(),
    )
}

/// A PCI channel the PCI core has marked frozen (AER/DPC recovery) or failed is refused with
/// EIO through the ioctl and io_uring, the device untouched; back to normal, it is served. A
/// guest cannot freeze an emulated device, so the test variant's `test_pci_error_state` sets
/// the state the PCI core would.
pub fn a_frozen_pci_channel_is_refused_untouched() -> TestResult {
    let d = dev()?;
    let (index, pci, regs) = edu_with_registers(&d)?;
    let result = (|| -> TestResult {
        for state in ["frozen", "failed"] {
            write(ERROR_STATE, &format!("{pci}={state}"))?;
            let marker = 0x0ff1_1000 | u32::from(state == "failed");
            mark(&regs, marker)?;
            expect_errno(d.flush(index, HDP_FLUSH_F_SYNC), Errno::EIO, state)?;
            expect_errno(d.flush(index, 0), Errno::EIO, "posted")?;
            expect_errno(d.invalidate(index), Errno::EIO, "invalidate")?;
            let ring = Uring::open(UringConfig {
                device: index,
                ..UringConfig::default()
            })
            .map_err(|e| e.to_string())?;
            expect_errno(ring.flush(), Errno::EIO, "io_uring")?;
            ensure(flags(&d, index)? & HDP_FLUSH_DEVICE_F_OFFLINE != 0, || {
                format!("{state}: DEVICE_INFO does not say offline")
            })?;
            untouched(&regs, marker, state)?;
            write(ERROR_STATE, &format!("{pci}=normal"))?;
            d.flush(index, HDP_FLUSH_F_SYNC)
                .map_err(|e| format!("back to normal after {state}: {e}"))?;
            ensure(flags(&d, index)? & HDP_FLUSH_DEVICE_F_OFFLINE == 0, || {
                "still offline".into()
            })?;
        }
        // The knob is the test device's only.
        ensure(
            std::fs::write(ERROR_STATE, "0000:00:00.0=frozen").is_err(),
            || "test_pci_error_state accepted a device that is not an edu".into(),
        )
    })();
    let _ = write(ERROR_STATE, &format!("{pci}=normal"));
    result
}

/// In the child: flush device `index` once, through the ioctl or io_uring, and exit 0 if it
/// returned at all (the parent kills it before then).
pub fn blocked_flusher(path: &str, index: u32) -> ! {
    let r = match path {
        "uring" => Uring::open(UringConfig {
            device: index,
            ..UringConfig::default()
        })
        .and_then(|u| u.flush()),
        _ => HdpFlushDevice::open_default().and_then(|d| d.flush(index, HDP_FLUSH_F_SYNC)),
    };
    println!("blocked flusher returned {r:?}");
    std::process::exit(0)
}

fn spawn_flusher(path: &str, index: u32) -> Result<Child, String> {
    Command::new("/proc/self/exe")
        .args([BLOCKED_FLUSHER, path, &index.to_string()])
        .spawn()
        .map_err(|e| format!("spawn: {e}"))
}

/// A flush stuck on a dying device (the simulator's `test_stall_ms` holds its device lock for
/// seconds) must not make every caller queued behind it unkillable: a process blocked behind
/// it, through the ioctl or io_uring's task work, dies at SIGKILL while the stuck flush is
/// still running. With an uninterruptible wait it would die only after the stuck flush ends.
pub fn a_caller_blocked_behind_a_stuck_flush_can_be_killed() -> TestResult {
    let d = dev()?;
    let sim = *devices_with(&d, HDP_FLUSH_BACKEND_SIM)?
        .first()
        .ok_or("no sim device")?;
    write(STALL, "4000")?;
    let stuck_done = AtomicBool::new(false);
    let result = std::thread::scope(|s| -> TestResult {
        let stuck = s.spawn(|| {
            let r = dev().and_then(|d| d.flush(sim, HDP_FLUSH_F_SYNC).map_err(|e| e.to_string()));
            stuck_done.store(true, Ordering::SeqCst);
            r
        });
        // Let the stuck flush take the lock, then stop further stalls: only it is stuck.
        std::thread::sleep(Duration::from_millis(300));
        let outcome = (|| -> TestResult {
            write(STALL, "0")?;
            for path in ["ioctl", "uring"] {
                let child = spawn_flusher(path, sim)?;
                let pid = Pid::from_raw(child.id() as i32);
                std::thread::sleep(Duration::from_millis(400));
                ensure(!stuck_done.load(Ordering::SeqCst), || {
                    "the stuck flush ended too soon for the test".into()
                })?;
                kill(pid, Signal::SIGKILL).map_err(|e| e.to_string())?;
                let status = waitpid(pid, None).map_err(|e| e.to_string())?;
                ensure(
                    status == WaitStatus::Signaled(pid, Signal::SIGKILL, false),
                    || format!("{path}: the blocked flusher was not killed: {status:?}"),
                )?;
                ensure(!stuck_done.load(Ordering::SeqCst), || {
                    format!("{path}: the blocked flusher died only after the stuck flush ended")
                })?;
            }
            Ok(())
        })();
        let stuck = stuck
            .join()
            .map_err(|_| "the stuck flush panicked".to_string())?;
        outcome?;
        stuck.map_err(|e| format!("the stuck flush itself: {e}"))
    });
    let _ = write(STALL, "0");
    result?;
    d.flush(sim, HDP_FLUSH_F_SYNC)
        .map_err(|e| format!("after the kills: {e}"))
}

/// `echo ... > unbind` then `bind` (amdgpu's own cycle when a GPU is rebound, played by
/// pci-stub): the device is revoked at the unbind and served again at the bind, without
/// reloading the module.
pub fn unbind_and_bind_again_reattaches_without_a_reload() -> TestResult {
    let d = dev()?;
    let (index, pci) = *edu_devices(&d)?.first().ok_or("no edu device")?;
    let device = format!("/sys/bus/pci/devices/{pci}");
    let bind = || write("/sys/bus/pci/drivers/pci-stub/bind", &pci.to_string());
    let unbind = || write("/sys/bus/pci/drivers/pci-stub/unbind", &pci.to_string());
    write(&format!("{device}/driver_override"), "pci-stub")?;
    let result = (|| -> TestResult {
        bind()?;
        d.flush(index, HDP_FLUSH_F_SYNC)
            .map_err(|e| format!("with pci-stub bound: {e}"))?;
        for round in 1..=2 {
            unbind()?;
            expect_errno(
                d.flush(index, HDP_FLUSH_F_SYNC),
                Errno::ENODEV,
                "after the unbind",
            )?;
            ensure(flags(&d, index)? & HDP_FLUSH_DEVICE_F_REVOKED != 0, || {
                "not revoked".into()
            })?;
            bind()?;
            d.flush(index, HDP_FLUSH_F_SYNC)
                .map_err(|e| format!("round {round}, bound again: {e}"))?;
            d.invalidate(index).map_err(|e| e.to_string())?;
            ensure(flags(&d, index)? & HDP_FLUSH_DEVICE_F_REVOKED == 0, || {
                "still revoked".into()
            })?;
        }
        let log = String::from_utf8_lossy(&sh("dmesg", &[])?.stdout).into_owned();
        ensure(
            log.contains(&format!("{pci} is back; serving it again")),
            || "no re-attach in the kernel log".into(),
        )
    })();
    // Leave it as the other tests expect: no driver, served.
    let _ = unbind();
    let _ = write(&format!("{device}/driver_override"), "\n");
    drop(d);
    rmmod()?;
    insmod(MODULE_PARAMS)?;
    result
}

/// The production module (built without Kbuild's HDP_TEST) has no simulator, no emulated-device
/// backend and no test parameter: the kernel lists `amdgpu_devices` alone in its parameters,
/// the file's modinfo names no other, and loaded with the test variant's parameters it serves
/// nothing, although edu devices are present.
pub fn the_production_module_has_no_test_code() -> TestResult {
    let bytes =
        std::fs::read(PRODUCTION_MODULE).map_err(|e| format!("{PRODUCTION_MODULE}: {e}"))?;
    // modinfo's `parm=NAME:description` entries, NUL-separated in .modinfo.
    let parms: Vec<String> = bytes
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(b"parm="))
        .map(|p| String::from_utf8_lossy(p.split(|&b| b == b':').next().unwrap_or(p)).into_owned())
        .collect();
    ensure(parms == ["amdgpu_devices"], || {
        format!("{PRODUCTION_MODULE}'s modinfo parameters: {parms:?}")
    })?;
    rmmod()?;
    let result = (|| -> TestResult {
        let out = sh("insmod", &[PRODUCTION_MODULE, "sim_devices=2", "pcitest=1"])?;
        ensure(out.status.success(), || {
            format!(
                "insmod production: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        let listed: Vec<String> = std::fs::read_dir("/sys/module/hdp_flush/parameters")
            .map_err(|e| e.to_string())?
            .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
            .collect();
        ensure(listed == ["amdgpu_devices"], || {
            format!("the loaded production module's parameters: {listed:?}")
        })?;
        let d = dev()?;
        ensure(d.version().num_devices == 0, || {
            format!(
                "the production module serves {} device(s)",
                d.version().num_devices
            )
        })?;
        let log = String::from_utf8_lossy(&sh("dmesg", &[])?.stdout).into_owned();
        ensure(
            log.contains("unknown parameter 'sim_devices' ignored"),
            || "the kernel did not report the unknown parameter".into(),
        )?;
        drop(d);
        rmmod()
    })();
    if result.is_err() {
        let _ = rmmod();
    }
    insmod(MODULE_PARAMS)?;
    result
}
