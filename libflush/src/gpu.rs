//! Which GPU: PCI addresses, the ways a caller names a GPU, and what sysfs says about the
//! host's GPUs (KFD's topology and the PCI bus).
//!
//! sysfs is read below a root directory ([`Sysfs::at`]), so the resolution is tested against
//! fixture trees; [`Sysfs::host`] is the real `/sys`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

use crate::{Error, Result};

/// AMD's PCI vendor id.
pub const AMD_VENDOR: u32 = 0x1002;
/// PCI base classes amdgpu drives: display controllers (0x03) and processing accelerators
/// (0x12, MI300-class Instinct parts).
pub const GPU_CLASSES: [u32; 2] = [0x03, 0x12];

/// Where KFD publishes its topology, relative to the sysfs root.
const KFD_NODES: &str = "class/kfd/kfd/topology/nodes";
/// Where PCI functions appear, relative to the sysfs root.
const PCI_DEVICES: &str = "bus/pci/devices";

/// A PCI function: `domain:bus:device.function`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PciAddress {
    /// Segment (domain).
    pub domain: u32,
    /// Bus.
    pub bus: u8,
    /// Device, 0-31.
    pub device: u8,
    /// Function, 0-7.
    pub function: u8,
}

impl PciAddress {
    /// From a domain and `bus << 8 | device << 3 | function` (KFD's `location_id`, the
    /// module's `pci_bdf`, ROCr's `HSA_AMD_AGENT_INFO_BDFID`).
    pub fn from_bdf(domain: u32, bdf: u32) -> Result<Self> {
        if bdf > 0xffff {
            return Err(Error::InvalidArgument {
                what: format!("PCI bus/device/function {bdf:#x} is wider than 16 bits"),
            });
        }
        Ok(Self {
            domain,
            bus: (bdf >> 8) as u8,
            device: ((bdf >> 3) & 0x1f) as u8,
            function: (bdf & 7) as u8,
        })
    }

    /// `bus << 8 | device << 3 | function`.
    pub fn bdf(&self) -> u32 {
        u32::from(self.bus) << 8 | u32::from(self.device) << 3 | u32::from(self.function)
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl FromStr for PciAddress {
    type Err = Error;

    /// `0000:03:00.0`, or `03:00.0` for domain 0, hexadecimal as lspci and sysfs print them.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidArgument {
            what: format!(
                "`{s}` is not a PCI address; expected DOMAIN:BUS:DEVICE.FUNCTION in hex, e.g. 0000:03:00.0"
            ),
        }
        };
        let (rest, function) = s.trim().rsplit_once('.').ok_or_else(bad)?;
        let mut parts: Vec<&str> = rest.split(':').collect();
        if parts.len() == 2 {
            parts.insert(0, "0");
        }
        let [domain, bus, device] = parts[..] else {
            return Err(bad());
        };
        let hex = |t: &str, max: u32| {
            u32::from_str_radix(t, 16)
                .ok()
                .filter(|&v| v <= max && !t.is_empty() && t.len() <= 8)
        };
        Ok(Self {
            domain: hex(domain, u32::MAX).ok_or_else(bad)?,
            bus: hex(bus, 0xff).ok_or_else(bad)? as u8,
            device: hex(device, 0x1f).ok_or_else(bad)? as u8,
            function: hex(function, 7).ok_or_else(bad)? as u8,
        })
    }
}

/// How a caller names the GPU a flusher is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "by", content = "value", rename_all = "kebab-case")]
pub enum GpuSelector {
    /// Its PCI address.
    Pci(PciAddress),
    /// KFD's `gpu_id` (what libhsakmt and ROCr call the node's GPU id).
    KfdGpuId(u32),
    /// A device index of the `hdp_flush` module (`DEVICE_INFO`).
    ModuleIndex(u32),
}

impl fmt::Display for GpuSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pci(a) => write!(f, "{a}"),
            Self::KfdGpuId(id) => write!(f, "gpu_id:{id}"),
            Self::ModuleIndex(i) => write!(f, "index:{i}"),
        }
    }
}

impl FromStr for GpuSelector {
    type Err = Error;

    /// `0000:03:00.0` (or `03:00.0`), `gpu_id:N` (KFD), `index:N` (module device).
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let number = |t: &str, what: &str| {
            t.parse::<u32>().map_err(|_| Error::InvalidArgument {
                what: format!("`{s}`: {what} must be a decimal number"),
            })
        };
        if let Some(id) = s.strip_prefix("gpu_id:") {
            return Ok(Self::KfdGpuId(number(id, "a KFD gpu_id")?));
        }
        if let Some(i) = s.strip_prefix("index:") {
            return Ok(Self::ModuleIndex(number(i, "a module device index")?));
        }
        s.parse().map(Self::Pci).map_err(|_| Error::InvalidArgument {
            what: format!(
                "`{s}` names no GPU; use a PCI address (0000:03:00.0), gpu_id:N (KFD) or index:N (hdp_flush module device)"
            ),
        })
    }
}

/// A GPU node of KFD's topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KfdGpu {
    /// The topology node number.
    pub node: u32,
    /// Its `gpu_id`.
    pub gpu_id: u32,
    /// Its PCI function, from `domain` and `location_id`.
    pub pci: PciAddress,
}

/// An AMD GPU on the PCI bus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PciGpu {
    /// Where.
    pub pci: PciAddress,
    /// PCI device id.
    pub device_id: u32,
    /// The bound driver, if any (`amdgpu` for a GPU KFD can use).
    pub driver: Option<String>,
}

/// sysfs below a root directory.
#[derive(Clone, Debug)]
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    /// The host's `/sys`.
    pub fn host() -> Self {
        Self::at("/sys")
    }

    /// A sysfs tree at `root` (a fixture, in tests).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// KFD's GPU nodes, by node number. CPU nodes (`gpu_id` 0) are left out; so are nodes this
    /// process may not see (the device cgroup makes `gpu_id` unreadable). No KFD: empty.
    pub fn kfd_gpus(&self) -> Vec<KfdGpu> {
        let mut gpus: Vec<KfdGpu> = entries(&self.root.join(KFD_NODES))
            .filter_map(|(name, dir)| {
                let node = name.parse().ok()?;
                let gpu_id = read_dec(&dir.join("gpu_id")).filter(|&id| id != 0)?;
                let props = std::fs::read_to_string(dir.join("properties")).ok()?;
                let prop = |key: &str| {
                    props.lines().find_map(|l| {
                        let (k, v) = l.split_once(' ')?;
                        (k == key).then(|| v.trim().parse::<u32>().ok()).flatten()
                    })
                };
                let pci = PciAddress::from_bdf(prop("domain")?, prop("location_id")?).ok()?;
                Some(KfdGpu { node, gpu_id, pci })
            })
            .collect();
        gpus.sort_by_key(|g| g.node);
        gpus
    }

    /// The PCI function of KFD GPU `gpu_id`.
    pub fn kfd_gpu(&self, gpu_id: u32) -> Result<PciAddress> {
        let gpus = self.kfd_gpus();
        if let Some(g) = gpus.iter().find(|g| g.gpu_id == gpu_id) {
            return Ok(g.pci);
        }
        let reason = if gpus.is_empty() {
            format!(
                "KFD publishes no GPU node under {} (amdgpu/KFD not loaded, or no GPU it drives)",
                self.root.join(KFD_NODES).display()
            )
        } else {
            let known: Vec<String> = gpus
                .iter()
                .map(|g| format!("{} ({})", g.gpu_id, g.pci))
                .collect();
            format!("KFD's GPUs are: {}", known.join(", "))
        };
        Err(Error::GpuNotFound {
            gpu: format!("gpu_id:{gpu_id}"),
            reason,
        })
    }

    /// AMD display or accelerator functions on the PCI bus, by address.
    pub fn amd_gpus(&self) -> Vec<PciGpu> {
        let mut gpus: Vec<PciGpu> = entries(&self.root.join(PCI_DEVICES))
            .filter_map(|(name, dir)| {
                let pci: PciAddress = name.parse().ok()?;
                let vendor = read_hex(&dir.join("vendor"))?;
                let class = read_hex(&dir.join("class"))?;
                if vendor != AMD_VENDOR || !GPU_CLASSES.contains(&(class >> 16)) {
                    return None;
                }
                let driver = std::fs::read_link(dir.join("driver"))
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
                Some(PciGpu {
                    pci,
                    device_id: read_hex(&dir.join("device")).unwrap_or(0),
                    driver,
                })
            })
            .collect();
        gpus.sort_by_key(|g| g.pci);
        gpus
    }

    /// Whether a PCI function exists at `pci`.
    pub fn pci_exists(&self, pci: PciAddress) -> bool {
        self.root.join(PCI_DEVICES).join(pci.to_string()).exists()
    }
}

/// `(file name, path)` of each entry of `dir`; nothing if it cannot be read.
fn entries(dir: &Path) -> impl Iterator<Item = (String, PathBuf)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
}

/// A sysfs number written in hex with a `0x` prefix (`vendor`, `device`, `class`).
pub(crate) fn read_hex(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    let t = text.trim();
    u32::from_str_radix(t.strip_prefix("0x").unwrap_or(t), 16).ok()
}

/// A sysfs number written in decimal (`gpu_id`).
fn read_dec(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Writing fixture sysfs trees, for the tests of resolution and selection.
#[cfg(test)]
pub(crate) mod fixture {
    use std::path::Path;

    use super::{PciAddress, KFD_NODES, PCI_DEVICES};

    fn write(path: &Path, text: &str) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("fixture directory");
        }
        std::fs::write(path, text).expect("fixture file");
    }

    /// A KFD topology node: `gpu_id` (0 for a CPU node) at `pci`.
    pub fn kfd_node(root: &Path, node: u32, gpu_id: u32, pci: PciAddress) {
        let dir = root.join(KFD_NODES).join(node.to_string());
        write(&dir.join("gpu_id"), &format!("{gpu_id}\n"));
        let props = format!(
            "cpu_cores_count 0\nsimd_count 440\nvendor_id 4098\ndevice_id 29711\nlocation_id {}\ndomain {}\ndrm_render_minor 128\n",
            pci.bdf(),
            pci.domain
        );
        write(&dir.join("properties"), &props);
    }

    /// A PCI function with ids, class and, optionally, a bound driver.
    pub fn pci_function(
        root: &Path,
        pci: PciAddress,
        vendor: u32,
        device: u32,
        class: u32,
        driver: Option<&str>,
    ) {
        let dir = root.join(PCI_DEVICES).join(pci.to_string());
        write(&dir.join("vendor"), &format!("0x{vendor:04x}\n"));
        write(&dir.join("device"), &format!("0x{device:04x}\n"));
        write(&dir.join("class"), &format!("0x{class:06x}\n"));
        if let Some(d) = driver {
            let target = root.join("bus/pci/drivers").join(d);
            std::fs::create_dir_all(&target).expect("fixture driver");
            let _ = std::os::unix::fs::symlink(target, dir.join("driver"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pci(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    #[test]
    fn pci_addresses_parse_print_and_round_trip_through_bdf() {
        let a = pci("0000:03:00.0");
        assert_eq!((a.domain, a.bus, a.device, a.function), (0, 3, 0, 0));
        assert_eq!(a.to_string(), "0000:03:00.0");
        assert_eq!(pci("c1:1f.7").to_string(), "0000:c1:1f.7");
        assert_eq!(pci("10000:e3:00.1").to_string(), "10000:e3:00.1");
        let b = pci("0001:83:02.3");
        assert_eq!(PciAddress::from_bdf(b.domain, b.bdf()).unwrap(), b);
        assert_eq!(b.bdf(), 0x83 << 8 | 2 << 3 | 3);
        for bad in [
            "",
            "03:00",
            "0000:03:20.0",
            "0000:03:00.8",
            "0000:100:00.0",
            "x:03:00.0",
            "0:0:0:0.0",
        ] {
            let err = bad.parse::<PciAddress>().unwrap_err();
            assert!(
                err.to_string().contains("not a PCI address"),
                "{bad}: {err}"
            );
        }
        assert!(PciAddress::from_bdf(0, 0x1_0000).is_err());
    }

    #[test]
    fn selectors_name_a_gpu_three_ways() {
        assert_eq!(
            "0000:03:00.0".parse::<GpuSelector>().unwrap(),
            GpuSelector::Pci(pci("0000:03:00.0"))
        );
        assert_eq!(
            "gpu_id:53422".parse::<GpuSelector>().unwrap(),
            GpuSelector::KfdGpuId(53422)
        );
        assert_eq!(
            "index:2".parse::<GpuSelector>().unwrap(),
            GpuSelector::ModuleIndex(2)
        );
        for s in ["gpu_id:53422", "index:2", "0000:c3:00.0"] {
            assert_eq!(s.parse::<GpuSelector>().unwrap().to_string(), s);
        }
        let err = "gpu_id:x".parse::<GpuSelector>().unwrap_err();
        assert!(err.to_string().contains("decimal"), "{err}");
        let err = "card0".parse::<GpuSelector>().unwrap_err();
        assert!(err.to_string().contains("gpu_id:N"), "{err}");
    }

    /// Three GPUs the way an MI210 host with a CPU node looks, plus a non-AMD function.
    fn host_fixture(root: &Path) {
        use fixture::*;
        kfd_node(root, 0, 0, pci("0000:00:00.0"));
        // The last one is MI300-class: a processing accelerator, class 0x12.
        for (node, gpu_id, at, device, class) in [
            (1, 53422, "0000:03:00.0", 0x740f, 0x038000),
            (2, 21042, "0000:83:00.0", 0x740f, 0x038000),
            (3, 7777, "0001:c1:00.0", 0x74a1, 0x120000),
        ] {
            kfd_node(root, node, gpu_id, pci(at));
            pci_function(root, pci(at), 0x1002, device, class, Some("amdgpu"));
        }
        // An AMD audio function and a NIC: not GPUs.
        pci_function(root, pci("0000:03:00.1"), 0x1002, 0xab28, 0x040300, None);
        pci_function(root, pci("0000:41:00.0"), 0x15b3, 0x101d, 0x020000, None);
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("libflush-gpu-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn kfd_gpu_ids_resolve_to_pci_functions_and_cpu_nodes_are_skipped() {
        let root = scratch("kfd");
        host_fixture(&root);
        let sysfs = Sysfs::at(&root);
        let gpus = sysfs.kfd_gpus();
        assert_eq!(
            gpus.iter().map(|g| (g.node, g.gpu_id)).collect::<Vec<_>>(),
            [(1, 53422), (2, 21042), (3, 7777)]
        );
        assert_eq!(sysfs.kfd_gpu(21042).unwrap(), pci("0000:83:00.0"));
        assert_eq!(sysfs.kfd_gpu(7777).unwrap(), pci("0001:c1:00.0"));
        let err = sysfs.kfd_gpu(1).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("gpu_id:1") && msg.contains("53422 (0000:03:00.0)"),
            "{msg}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn without_kfd_a_gpu_id_is_not_found_and_says_why() {
        let root = scratch("nokfd");
        std::fs::create_dir_all(&root).unwrap();
        let err = Sysfs::at(&root).kfd_gpu(5).unwrap_err();
        assert!(matches!(err, Error::GpuNotFound { .. }), "{err:?}");
        assert!(
            err.to_string().contains("KFD publishes no GPU node"),
            "{err}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_pci_scan_finds_display_and_accelerator_class_amd_functions_only() {
        let root = scratch("pci");
        host_fixture(&root);
        let sysfs = Sysfs::at(&root);
        let gpus = sysfs.amd_gpus();
        assert_eq!(
            gpus.iter().map(|g| g.pci.to_string()).collect::<Vec<_>>(),
            ["0000:03:00.0", "0000:83:00.0", "0001:c1:00.0"]
        );
        assert!(gpus.iter().all(|g| g.driver.as_deref() == Some("amdgpu")));
        assert!(sysfs.pci_exists(pci("0000:41:00.0")));
        assert!(!sysfs.pci_exists(pci("0000:42:00.0")));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
