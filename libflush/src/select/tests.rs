use std::path::Path;

use super::decide::{decide, Named, Offer, Selection};
use super::host::KmodStatus;
use super::open::named_for;
use super::options::FlusherOptions;
use super::process::{process_gpu, process_wide};
use super::resolve::{resolve, ResolvedGpu};
use crate::device::ModuleDevice;
use crate::gpu::{fixture, GpuSelector, PciAddress, Sysfs};
use crate::probe::probe_with;
use crate::strategy::{BackingKind, KfdStatus};
use crate::{Error, MappedRegion, Result, StrategyKind};

fn pci(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn device(index: u32, backend: u32, at: Option<&str>) -> ModuleDevice {
    ModuleDevice {
        index,
        backend,
        pci: at.map(pci),
        name: at.map_or_else(|| format!("sim{index}"), str::to_owned),
        revoked: false,
        offline: false,
        node: crate::device::node_path(&at.map_or_else(|| format!("sim{index}"), str::to_owned)),
    }
}

/// Two sims, two emulated devices, one amdgpu GPU: what the guests plus one real GPU show.
fn loaded() -> KmodStatus {
    use crate::uapi::*;
    KmodStatus::Loaded {
        api_major: 2,
        api_minor: 0,
        page_size: 65536,
        uring_cmd: true,
        whole: true,
        devices: vec![
            device(0, HDP_FLUSH_BACKEND_AMDGPU, Some("0000:03:00.0")),
            device(1, HDP_FLUSH_BACKEND_PCITEST, Some("0000:00:04.0")),
            device(2, HDP_FLUSH_BACKEND_PCITEST, Some("0000:00:05.0")),
            device(3, HDP_FLUSH_BACKEND_SIM, None),
            device(4, HDP_FLUSH_BACKEND_SIM, None),
        ],
    }
}

fn absent() -> KmodStatus {
    KmodStatus::Absent {
        reason: "/dev/hdp_flush not found: the hdp_flush kernel module is not loaded".into(),
    }
}

fn kfd(minor: u32) -> KfdStatus {
    KfdStatus::Present { major: 1, minor }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("libflush-select-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Three AMD GPUs with KFD nodes; the module serves the first.
fn three_gpus(root: &Path) {
    fixture::kfd_node(root, 0, 0, pci("0000:00:00.0"));
    for (node, id, at) in [
        (1, 53422, "0000:03:00.0"),
        (2, 21042, "0000:83:00.0"),
        (3, 7777, "0000:c3:00.0"),
    ] {
        fixture::kfd_node(root, node, id, pci(at));
        fixture::pci_function(root, pci(at), 0x1002, 0x740f, 0x038000, Some("amdgpu"));
    }
}

/// One MI210 at 03:00.0 with its KFD node.
fn one_mi210(root: &Path) {
    fixture::kfd_node(root, 1, 53422, pci("0000:03:00.0"));
    fixture::pci_function(
        root,
        pci("0000:03:00.0"),
        0x1002,
        0x740f,
        0x038000,
        Some("amdgpu"),
    );
}

fn resolve_and_decide(
    sel: &str,
    root: &Path,
    kmod: &KmodStatus,
    offer: Offer,
) -> Result<(ResolvedGpu, Selection)> {
    let gpu = resolve(sel.parse()?, &Sysfs::at(root), kmod)?;
    let s = decide(&gpu, kmod, 65536, offer, None)?;
    Ok((gpu, s))
}

#[test]
fn a_flush_goes_to_the_module_device_of_that_gpu_and_no_other() {
    let root = scratch("route");
    three_gpus(&root);
    let kmod = loaded();
    for sel in ["0000:03:00.0", "03:00.0", "gpu_id:53422", "index:0"] {
        let (gpu, s) = resolve_and_decide(sel, &root, &kmod, Offer::default()).unwrap();
        assert_eq!(gpu.module.as_ref().map(|d| d.index), Some(0), "{sel}");
        assert_eq!(gpu.pci, Some(pci("0000:03:00.0")), "{sel}");
        assert_eq!(s.kind, StrategyKind::Ioctl, "{sel}");
        assert_eq!(s.backing, BackingKind::Hardware, "{sel}");
        assert!(
            s.reason.contains("device 0 (amdgpu backend"),
            "{sel}: {}",
            s.reason
        );
    }
    // An emulated device is served when named, and says what it is.
    let (gpu, s) = resolve_and_decide("0000:00:05.0", &root, &kmod, Offer::default()).unwrap();
    assert_eq!(gpu.module.unwrap().index, 2);
    assert_eq!(s.backing, BackingKind::EmulatedDevice);
    assert!(
        s.reason.contains("emulated test device, not a GPU"),
        "{}",
        s.reason
    );
    // A simulated device only by index, and labelled.
    let (gpu, s) = resolve_and_decide("index:4", &root, &kmod, Offer::default()).unwrap();
    assert_eq!((gpu.pci, gpu.module.unwrap().index), (None, 4));
    assert_eq!(s.backing, BackingKind::KernelModel);
    assert!(s.reason.contains("model, no hardware"), "{}", s.reason);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn no_kfd_version_makes_kfd_ioctl_the_default_and_the_module_serves_its_gpu() {
    let root = scratch("kfd-versions");
    three_gpus(&root);
    let sysfs = Sysfs::at(&root);
    // v1's 1.18, 1.23 (Debian's 7.3.4, read 2026-12-02), v2's 1.24 and past it.
    for minor in 17..=25 {
        // The module serves 03:00.0: it is used, whatever KFD reports.
        let p = probe_with(&sysfs, loaded(), 65536, true, kfd(minor));
        let served = p
            .gpus
            .iter()
            .find(|g| g.pci == pci("0000:03:00.0"))
            .unwrap();
        assert_eq!(
            served.decision.as_ref().unwrap().kind,
            StrategyKind::Ioctl,
            "KFD 1.{minor}"
        );
        // 83:00.0 has no module device: ENODEV, never kfd-ioctl.
        let unserved = p
            .gpus
            .iter()
            .find(|g| g.pci == pci("0000:83:00.0"))
            .unwrap();
        let why = unserved.decision.as_ref().unwrap_err();
        assert!(
            why.contains("no HDP flush for GPU 0000:83:00.0")
                && why.contains("kfd-ioctl is a proposed KFD ioctl"),
            "KFD 1.{minor}: {why}"
        );
        assert!(p.gpus.iter().all(|g| g
            .decision
            .as_ref()
            .map_or(true, |s| s.kind != StrategyKind::KfdIoctl)));
    }
    // Named, it is chosen for the GPU's own gpu_id, however the GPU is named (opening checks
    // the version: strategy::kfd_ioctl).
    for (sel, id) in [
        ("0000:83:00.0", 21042),
        ("gpu_id:7777", 7777),
        ("index:0", 53422),
    ] {
        let gpu = resolve(sel.parse().unwrap(), &sysfs, &loaded()).unwrap();
        let named = Named::by_caller(StrategyKind::KfdIoctl);
        let s = decide(&gpu, &loaded(), 65536, Offer::default(), Some(&named)).unwrap();
        assert_eq!(s.kind, StrategyKind::KfdIoctl, "{sel}");
        assert!(s.reason.contains(&format!("gpu_id {id}")), "{}", s.reason);
    }
    // A device KFD does not list has no gpu_id to flush.
    let gpu = resolve("0000:00:05.0".parse().unwrap(), &sysfs, &loaded()).unwrap();
    let named = Named::by_caller(StrategyKind::KfdIoctl);
    let err = decide(&gpu, &loaded(), 65536, Offer::default(), Some(&named)).unwrap_err();
    assert!(err.to_string().contains("KFD lists no node"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_gpu_the_module_does_not_serve_gets_enodev_naming_what_is_missing() {
    let root = scratch("unserved");
    three_gpus(&root);
    let err = resolve_and_decide("gpu_id:21042", &root, &loaded(), Offer::default()).unwrap_err();
    assert_eq!(err.errno(), nix::errno::Errno::ENODEV);
    let msg = err.to_string();
    for needle in [
        "0000:83:00.0",
        "PAGE_SIZE is 65536",
        "does not serve",
        "index 0: amdgpu 0000:03:00.0",
        "no VRAM page",
    ] {
        assert!(msg.contains(needle), "`{needle}` missing: {msg}");
    }
    assert!(
        !msg.contains("HDPFLUSH_STRATEGY"),
        "no production message advises the simulator: {msg}"
    );
    // With no module at all, it says so.
    let err = resolve_and_decide("0000:83:00.0", &root, &absent(), Offer::default()).unwrap_err();
    assert!(err.to_string().contains("module is not loaded"), "{err}");
    // Unknown gpu_id and index: not found, listing what there is.
    let err = resolve_and_decide("gpu_id:9", &root, &loaded(), Offer::default()).unwrap_err();
    assert!(
        matches!(err, Error::GpuNotFound { .. }) && err.to_string().contains("21042"),
        "{err}"
    );
    let err = resolve_and_decide("index:5", &root, &loaded(), Offer::default()).unwrap_err();
    assert!(err.to_string().contains("serves 5 device(s)"), "{err}");
    let err = resolve_and_decide("index:0", &root, &absent(), Offer::default()).unwrap_err();
    assert!(err.to_string().contains("not loaded"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_revoked_module_device_is_not_chosen_and_the_reason_says_revoked() {
    let root = scratch("revoked");
    three_gpus(&root);
    let mut kmod = loaded();
    if let KmodStatus::Loaded { devices, .. } = &mut kmod {
        devices[0].revoked = true;
    }
    for sel in ["0000:03:00.0", "index:0"] {
        let err = resolve_and_decide(sel, &root, &kmod, Offer::default()).unwrap_err();
        assert_eq!(err.errno(), nix::errno::Errno::ENODEV, "{sel}");
        assert!(err.to_string().contains("device 0 for"), "{err}");
        assert!(err.to_string().contains("is revoked"), "{err}");
    }
    // A revoked GPU is not counted as one the module serves.
    let none = scratch("revoked-none");
    let err = process_gpu(&Sysfs::at(&none), &kmod).unwrap_err();
    assert!(err.to_string().contains("no AMD GPU"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&none).unwrap();
}

#[test]
fn the_order_is_remap_page_then_module_then_opted_in_dummy_page() {
    let root = scratch("order");
    three_gpus(&root);
    let kmod = loaded();
    let all = Offer {
        remap: true,
        dummy_page: true,
        allow_dummy_page: true,
        batched: false,
        require_hardware: false,
    };
    let kind = |sel: &str, offer| resolve_and_decide(sel, &root, &kmod, offer).map(|(_, s)| s.kind);
    assert_eq!(kind("0000:03:00.0", all).unwrap(), StrategyKind::MmioRemap);
    let no_remap = Offer {
        remap: false,
        ..all
    };
    assert_eq!(kind("0000:03:00.0", no_remap).unwrap(), StrategyKind::Ioctl);
    let batched = Offer {
        batched: true,
        ..no_remap
    };
    assert_eq!(kind("0000:03:00.0", batched).unwrap(), StrategyKind::Uring);
    // Not served: the dummy page, only when opted into.
    assert_eq!(
        kind("0000:83:00.0", no_remap).unwrap(),
        StrategyKind::DummyPage
    );
    let not_opted = Offer {
        allow_dummy_page: false,
        ..no_remap
    };
    let err = kind("0000:83:00.0", not_opted).unwrap_err();
    assert!(err.to_string().contains("not opted into"), "{err}");
    // A module without URING_CMD serves a batching caller one ioctl per flush, and says so.
    let mut no_uring = loaded();
    if let KmodStatus::Loaded { uring_cmd, .. } = &mut no_uring {
        *uring_cmd = false;
    }
    let (_, s) = resolve_and_decide("0000:03:00.0", &root, &no_uring, batched).unwrap();
    assert_eq!(s.kind, StrategyKind::Ioctl);
    assert!(s.reason.contains("one ioctl per flush"), "{}", s.reason);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn requiring_hardware_refuses_models_emulated_devices_and_the_simulator() {
    let root = scratch("hardware");
    three_gpus(&root);
    let kmod = loaded();
    let hw = Offer {
        require_hardware: true,
        ..Offer::default()
    };
    // The GPU the module drives with its amdgpu backend is hardware.
    let (_, s) = resolve_and_decide("0000:03:00.0", &root, &kmod, hw).unwrap();
    assert_eq!(
        (s.kind, s.backing),
        (StrategyKind::Ioctl, BackingKind::Hardware)
    );
    // An emulated device and the module's model are not.
    for (sel, what) in [("0000:00:05.0", "emulated"), ("index:3", "kernel model")] {
        let err = resolve_and_decide(sel, &root, &kmod, hw).unwrap_err();
        assert_eq!(err.errno(), nix::errno::Errno::ENODEV, "{sel}");
        let msg = err.to_string();
        assert!(
            msg.contains(what) && msg.contains("requires hardware"),
            "{msg}"
        );
    }
    // Nor is the simulator, named by the caller or by the environment.
    let gpu = resolve("0000:03:00.0".parse().unwrap(), &Sysfs::at(&root), &kmod).unwrap();
    for named in [
        Named::by_caller(StrategyKind::Sim),
        Named {
            kind: StrategyKind::Sim,
            origin: "HDPFLUSH_STRATEGY=sim".into(),
        },
    ] {
        let err = decide(&gpu, &kmod, 65536, hw, Some(&named)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Unavailable {
                    strategy: StrategyKind::Sim,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.errno(), nix::errno::Errno::ENODEV);
        assert!(err.to_string().contains("requires hardware"), "{err}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_named_strategy_is_used_exactly_or_refused_and_sim_only_when_named() {
    let gpu = ResolvedGpu {
        pci: Some(pci("0000:83:00.0")),
        ..ResolvedGpu::unresolved(GpuSelector::Pci(pci("0000:83:00.0")))
    };
    let named = |kind| Named {
        kind,
        origin: "HDPFLUSH_STRATEGY=x".into(),
    };
    let d = |kind, offer| decide(&gpu, &loaded(), 65536, offer, Some(&named(kind)));
    let s = d(StrategyKind::Sim, Offer::default()).unwrap();
    assert_eq!(s.kind, StrategyKind::Sim);
    assert!(s.reason.contains("no GPU is flushed"), "{}", s.reason);
    for kind in [
        StrategyKind::Ioctl,
        StrategyKind::Uring,
        StrategyKind::MmioRemap,
        StrategyKind::DummyPage,
        StrategyKind::Legacy,
        StrategyKind::KfdIoctl,
    ] {
        let err = d(kind, Offer::default()).unwrap_err();
        assert!(
            matches!(err, Error::Unavailable { strategy, .. } if strategy == kind),
            "{kind}: {err}"
        );
        assert!(err.to_string().contains("HDPFLUSH_STRATEGY=x"), "{err}");
    }
    let with_page = Offer {
        dummy_page: true,
        ..Offer::default()
    };
    assert_eq!(
        d(StrategyKind::Legacy, with_page).unwrap().kind,
        StrategyKind::Legacy
    );
    // Without anything named, nothing ever picks the simulator.
    let err = decide(&gpu, &absent(), 4096, Offer::default(), None).unwrap_err();
    assert!(matches!(err, Error::NoFlushPath { .. }), "{err}");
    assert!(
        err.to_string().contains("HSA_AMD_AGENT_INFO_HDP_FLUSH"),
        "{err}"
    );
}

#[test]
fn the_environment_names_a_strategy_only_when_the_caller_named_none_and_passed_no_mapping() {
    let env = || {
        Ok(Some(Named {
            kind: StrategyKind::Sim,
            origin: "HDPFLUSH_STRATEGY=sim".into(),
        }))
    };
    let bad_env = || {
        Err(Error::UnknownStrategy {
            name: "turbo".into(),
            origin: "HDPFLUSH_STRATEGY".into(),
        })
    };
    // Nothing named, nothing passed: the environment applies (and a bad value is an error).
    let n = named_for(&FlusherOptions::new(), env).unwrap().unwrap();
    assert_eq!(n.kind, StrategyKind::Sim);
    assert!(named_for(&FlusherOptions::new(), bad_env).is_err());
    // The caller named a strategy: the caller's wins.
    let opts = FlusherOptions::new().strategy(StrategyKind::Ioctl);
    assert_eq!(
        named_for(&opts, env).unwrap(),
        Some(Named::by_caller(StrategyKind::Ioctl))
    );
    // The caller passed a mapping: the environment is not read at all.
    let page = MappedRegion::anonymous(4096).unwrap();
    let opts = FlusherOptions::new().dummy_page_region(page);
    assert_eq!(named_for(&opts, bad_env).unwrap(), None);
}

#[test]
fn a_64k_host_with_kfd_and_no_module_gets_enodev_from_the_process_wide_choice() {
    // The case that motivated the project: a GPU, KFD (here reporting 1.23, Debian's 7.3.4 as
    // read 2026-12-02), 64K pages, no module.
    let root = scratch("64k");
    one_mi210(&root);
    let p = probe_with(&Sysfs::at(&root), absent(), 65536, true, kfd(23));
    let err = p.process_wide.clone().unwrap_err();
    assert!(err.contains("no HDP flush for GPU 0000:03:00.0"), "{err}");
    assert!(
        err.contains("PAGE_SIZE is 65536") && err.contains("not loaded"),
        "{err}"
    );
    assert_eq!(p.gpus.len(), 1);
    assert_eq!(p.gpus[0].kfd_nodes.len(), 1);
    assert_eq!(p.gpus[0].kfd_nodes[0].gpu_id, 53422);
    assert!(p.gpus[0].amd_gpu && p.gpus[0].decision.is_err());
    assert_eq!(p.config_error, None, "nothing misconfigured: just no path");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn several_gpus_need_a_name_for_the_process_wide_flusher() {
    let root = scratch("several");
    three_gpus(&root);
    let err = process_gpu(&Sysfs::at(&root), &loaded()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("3 AMD GPUs here") && msg.contains(super::GPU_ENV),
        "{msg}"
    );
    let none = scratch("none");
    let err = process_gpu(&Sysfs::at(&none), &absent()).unwrap_err();
    assert!(err.to_string().contains("no AMD GPU on this host"), "{err}");
    assert!(!err.to_string().contains("HDPFLUSH_STRATEGY"), "{err}");
    // Emulated devices are not GPUs: a guest with two edu devices has none to pick...
    let mut edu_only = loaded();
    if let KmodStatus::Loaded { devices, .. } = &mut edu_only {
        devices.remove(0);
    }
    let err = process_gpu(&Sysfs::at(&none), &edu_only).unwrap_err();
    assert!(err.to_string().contains("no AMD GPU on this host"), "{err}");
    // ...while a GPU the module serves with its amdgpu backend is one.
    assert_eq!(
        process_gpu(&Sysfs::at(&none), &loaded()).unwrap(),
        GpuSelector::Pci(pci("0000:03:00.0"))
    );
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&none).unwrap();
}

#[test]
fn an_amd_display_function_kfd_does_not_list_is_not_a_compute_gpu() {
    // An APU's display (or a GPU without compute) next to one MI210.
    let root = scratch("display");
    one_mi210(&root);
    fixture::pci_function(
        &root,
        pci("0000:c5:00.0"),
        0x1002,
        0x1681,
        0x030000,
        Some("amdgpu"),
    );
    assert_eq!(
        process_gpu(&Sysfs::at(&root), &absent()).unwrap(),
        GpuSelector::Pci(pci("0000:03:00.0"))
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_partitioned_gpu_is_one_gpu_to_every_stage() {
    for (name, encoding) in fixture::PartitionEncoding::ALL {
        let root = scratch(&format!("cpx-{name}"));
        fixture::kfd_node(&root, 0, 0, pci("0000:00:00.0"));
        fixture::mi300x_cpx(&root, 1, 100, pci("0000:c1:00.0"), encoding);
        let sysfs = Sysfs::at(&root);
        let mut kmod = loaded();
        if let KmodStatus::Loaded { devices, .. } = &mut kmod {
            devices[0].pci = Some(pci("0000:c1:00.0"));
            devices[0].name = "0000:c1:00.0".into();
        }
        // The process-wide flusher sees one GPU, not eight.
        assert_eq!(
            process_gpu(&sysfs, &kmod).unwrap(),
            GpuSelector::Pci(pci("0000:c1:00.0")),
            "{name}"
        );
        // Every partition's gpu_id opens the GPU's module device.
        for id in 100..108 {
            let (gpu, s) =
                resolve_and_decide(&format!("gpu_id:{id}"), &root, &kmod, Offer::default())
                    .unwrap();
            assert_eq!(gpu.pci, Some(pci("0000:c1:00.0")), "{name} gpu_id {id}");
            assert_eq!(gpu.kfd_gpu_id, Some(id));
            assert_eq!(gpu.kfd_gpu_ids, (100..108).collect::<Vec<_>>());
            assert_eq!(s.kind, StrategyKind::Ioctl, "{name} gpu_id {id}");
        }
        // probe lists the GPU once, with its partitions.
        let p = probe_with(&sysfs, kmod.clone(), 65536, true, kfd(19));
        let gpus: Vec<_> = p.gpus.iter().filter(|g| g.amd_gpu).collect();
        assert_eq!(gpus.len(), 1, "{name}: {:?}", p.gpus);
        assert_eq!(gpus[0].kfd_nodes.len(), 8);
        let (_, sel) = process_wide(&sysfs, &kmod, 65536, None).unwrap();
        assert_eq!(sel.kind, StrategyKind::Ioctl);
        std::fs::remove_dir_all(&root).unwrap();
    }
}

#[test]
fn probe_lists_every_gpu_and_test_device_with_its_decision() {
    let root = scratch("probe");
    three_gpus(&root);
    let p = probe_with(&Sysfs::at(&root), loaded(), 65536, true, kfd(17));
    let rows: Vec<(String, bool, Option<StrategyKind>)> = p
        .gpus
        .iter()
        .map(|g| {
            (
                g.pci.to_string(),
                g.amd_gpu,
                g.decision.as_ref().ok().map(|s| s.kind),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("0000:00:04.0".into(), false, Some(StrategyKind::Ioctl)),
            ("0000:00:05.0".into(), false, Some(StrategyKind::Ioctl)),
            ("0000:03:00.0".into(), true, Some(StrategyKind::Ioctl)),
            ("0000:83:00.0".into(), true, None),
            ("0000:c3:00.0".into(), true, None),
        ]
    );
    assert!(p.process_wide.unwrap_err().contains("3 AMD GPUs here"));
    std::fs::remove_dir_all(&root).unwrap();
}
