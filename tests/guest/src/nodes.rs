//! Per-device nodes (uAPI 1.2): `/dev/hdp_flush/<device>` reaches that device alone, as index
//! 0; `/dev/hdp_flush/all` reaches every device by module index and is root's. A process given
//! one GPU's node (a container, played here by a child that drops to `nobody`) reaches that GPU
//! and no other, and libflush finds and uses that node by itself.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use libflush::device::{node_path, HdpFlushDevice};
use libflush::uapi::*;
use libflush::{Flush, FlusherOptions, GpuSelector, PciAddress, StrategyKind};
use nix::errno::Errno;

use crate::runner::TestResult;
use crate::{dev, edu_devices, ensure, only_device_counts};

/// Argument that makes the test binary a child that drops to `nobody` and uses one node.
pub const AS_NOBODY: &str = "--as-nobody-given";

fn errno_of(r: libflush::Result<impl std::fmt::Debug>, want: Errno, what: &str) -> TestResult {
    match r {
        Err(e) if e.errno() == want => Ok(()),
        other => Err(format!("{what}: expected {want}, got {other:?}")),
    }
}

/// Every device the module serves has a node of its own, named as DEVICE_INFO names it, where
/// it is device 0 of 1: DEVICE_INFO matches the administrators' node's, index 1 is ENODEV, and
/// a flush through it (ioctl or io_uring) counts on that device alone. The nodes are 0660, the
/// administrators' node 0600.
pub fn every_device_has_its_own_node_where_it_is_index_0_and_alone() -> TestResult {
    let all = dev()?;
    let mode = |p: &Path| -> Result<u32, String> {
        let m = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        ensure(m.file_type().is_char_device(), || {
            format!("{} is not a character device", p.display())
        })?;
        Ok(m.permissions().mode() & 0o777)
    };
    let all_mode = mode(Path::new(HDP_FLUSH_DEVICE_PATH))?;
    ensure(all_mode == 0o600, || {
        format!("{HDP_FLUSH_DEVICE_PATH} is {all_mode:o}, not 600")
    })?;
    let devices = all.devices().map_err(|e| e.to_string())?;
    let mut nodes = Vec::new();
    for d in &devices {
        ensure(d.node == node_path(&d.name), || format!("{d:?}"))?;
        let m = mode(&d.node)?;
        ensure(m == 0o660, || {
            format!("{} is {m:o}, not 660", d.node.display())
        })?;
        let own = HdpFlushDevice::open_own(d).map_err(|e| e.to_string())?;
        ensure(own.version().num_devices == 1, || {
            format!(
                "{}: {} devices",
                d.node.display(),
                own.version().num_devices
            )
        })?;
        errno_of(
            own.device_info(1),
            Errno::ENODEV,
            "DEVICE_INFO 1 on a device's node",
        )?;
        errno_of(own.flush(1, 0), Errno::ENODEV, "FLUSH 1 on a device's node")?;
        errno_of(own.stats(1, 0), Errno::ENODEV, "STATS 1 on a device's node")?;
        nodes.push((d.index, own));
    }
    ensure(nodes.len() == devices.len() && !nodes.is_empty(), || {
        format!("{} nodes for {} devices", nodes.len(), devices.len())
    })?;
    for (index, own) in &nodes {
        only_device_counts(&all, *index, (2, 1), || {
            own.flush(0, HDP_FLUSH_F_SYNC).map_err(|e| e.to_string())?;
            own.invalidate(0).map_err(|e| e.to_string())?;
            let ring = libflush::Uring::on_device(
                own.try_clone().map_err(|e| e.to_string())?,
                libflush::UringConfig::default(),
            )
            .map_err(|e| e.to_string())?;
            ring.flush().map_err(|e| e.to_string())
        })?;
    }
    Ok(())
}

/// A process that may open one emulated device's node and nothing else (a container given one
/// GPU; here a child running as `nobody`, the node made world-accessible as the udev rule makes
/// it group-accessible): libflush flushes that device through its node, by ioctl and io_uring,
/// and only its counters move; the other device, the administrators' node and module indices
/// are out of its reach, each with an error that says why.
pub fn a_process_given_one_devices_node_reaches_that_device_alone() -> TestResult {
    let all = dev()?;
    let edus = edu_devices(&all)?;
    let (mine, pci) = *edus.first().ok_or("no edu device")?;
    let (theirs, other) = *edus.get(1).ok_or("one edu device only")?;
    let node = node_path(&pci.to_string());
    std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("{}: {e}", node.display()))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let result = only_device_counts(&all, mine, (4, 0), || {
        let out = Command::new(&exe)
            .args([AS_NOBODY, &pci.to_string(), &other.to_string()])
            .output()
            .map_err(|e| e.to_string())?;
        crate::echoed("child", &out)
    });
    std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("{}: {e}", node.display()))?;
    result?;
    let untouched = crate::stats(&all, theirs, false)?;
    ensure(untouched.flush_requests == 0, || {
        format!("the other device counted: {untouched:?}")
    })
}

/// The child of [`a_process_given_one_devices_node_reaches_that_device_alone`].
pub fn as_nobody_given(mine: &str, other: &str) -> TestResult {
    let mine: PciAddress = mine.parse().map_err(|e| format!("{mine}: {e}"))?;
    let other: PciAddress = other.parse().map_err(|e| format!("{other}: {e}"))?;
    let nobody = nix::unistd::Uid::from_raw(65534);
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setgid(nix::unistd::Gid::from_raw(65534)).map_err(|e| format!("setgid: {e}"))?;
    nix::unistd::setuid(nobody).map_err(|e| format!("setuid: {e}"))?;
    errno_of(
        HdpFlushDevice::open_default(),
        Errno::EACCES,
        "the administrators' node",
    )?;
    for kind in [StrategyKind::Ioctl, StrategyKind::Uring] {
        let f = libflush::open_gpu(GpuSelector::Pci(mine), FlusherOptions::new().strategy(kind))
            .map_err(|e| format!("{kind:?} for {mine}: {e}"))?;
        let target = f.module_target().ok_or("no module target")?;
        ensure(
            target.index == 0 && target.path == node_path(&mine.to_string()),
            || format!("{kind:?}: {} index {}", target.path.display(), target.index),
        )?;
        f.flush().map_err(|e| format!("{kind:?}: {e}"))?;
        f.flush().map_err(|e| format!("{kind:?}: {e}"))?;
        println!(
            "{kind:?}: 2 flushes of {mine} through {}",
            target.path.display()
        );
    }
    match libflush::open_gpu(
        GpuSelector::Pci(other),
        FlusherOptions::new().strategy(StrategyKind::Ioctl),
    ) {
        Ok(f) => return Err(format!("reached the other device: {f:?}")),
        Err(e) => println!("the other device: {e}"),
    }
    match libflush::open_gpu(
        GpuSelector::ModuleIndex(0),
        FlusherOptions::new().strategy(StrategyKind::Ioctl),
    ) {
        Ok(f) => {
            return Err(format!(
                "a module index resolved without the all node: {f:?}"
            ))
        }
        Err(e) => ensure(e.to_string().contains("module indices"), || {
            format!("module index 0: {e}")
        })?,
    }
    Ok(())
}
