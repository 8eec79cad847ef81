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
/// DRM's device nodes (`renderD128`, ...), relative to the sysfs root.
const DRM_CLASS: &str = "class/drm";

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
        // from_str_radix alone would take a sign ("+3"): digits only.
        let hex = |t: &str, max: u32| {
            let digits = !t.is_empty() && t.len() <= 8 && t.bytes().all(|b| b.is_ascii_hexdigit());
            u32::from_str_radix(t, 16)
                .ok()
                .filter(|&v| digits && v <= max)
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

/// A GPU node of KFD's topology: a whole GPU, or one partition of a partitioned one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KfdGpu {
    /// The topology node number.
    pub node: u32,
    /// Its `gpu_id`.
    pub gpu_id: u32,
    /// Its DRM render minor (`renderD<minor>`), if KFD gives one.
    pub render_minor: Option<u32>,
    /// The PCI function of the physical GPU the node is (part of): its HDP is that device's.
    pub pci: PciAddress,
    /// How `pci` was found.
    pub found_by: NodeLink,
}

/// How a KFD node was tied to its physical GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeLink {
    /// Its render node's `device` link names the PCI function (a whole GPU, or partition 0).
    RenderNode,
    /// A partition: its render node belongs to an `amdgpu_xcp` platform device, which has no
    /// link to the PCI function; it is the physical GPU of the node with the same identity
    /// (`domain`, bus and device of `location_id`, `unique_id`, `device_id`) that has one.
    SameDeviceAs {
        /// That node.
        node: u32,
    },
    /// No render link (an older kernel, or a sysfs without `class/drm`): `domain` and
    /// `location_id` name an AMD GPU function that exists.
    LocationId,
}

/// What KFD's `properties` say of a node, before it is tied to a PCI function.
#[derive(Clone, Copy, Debug)]
struct RawNode {
    node: u32,
    gpu_id: u32,
    render_minor: Option<u32>,
    domain: Option<u32>,
    location_id: Option<u32>,
    unique_id: Option<u64>,
    device_id: Option<u32>,
}

impl RawNode {
    /// What partitions of one GPU share: the PCI domain, bus and device (a partition index sits
    /// in `location_id`'s function bits, `| node_id` in 6.12, or above bit 27, `node_id << 28`,
    /// in later trees), the serial and the device id.
    fn identity(&self) -> Option<(u32, u32, Option<u64>, Option<u32>)> {
        Some((
            self.domain?,
            self.location_id? & 0xfff8,
            self.unique_id,
            self.device_id,
        ))
    }
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

    /// KFD's GPU nodes as `properties` describe them. CPU nodes (`gpu_id` 0) are left out; so
    /// are nodes this process may not see (the device cgroup makes `gpu_id` unreadable).
    fn raw_nodes(&self) -> Vec<RawNode> {
        let mut nodes: Vec<RawNode> = entries(&self.root.join(KFD_NODES))
            .filter_map(|(name, dir)| {
                let node = name.parse().ok()?;
                let gpu_id = read_dec(&dir.join("gpu_id")).filter(|&id| id != 0)?;
                let props = std::fs::read_to_string(dir.join("properties")).ok()?;
                let prop = |key: &str| {
                    props.lines().find_map(|l| {
                        let (k, v) = l.split_once(' ')?;
                        (k == key).then(|| v.trim().parse::<u64>().ok()).flatten()
                    })
                };
                let small = |key: &str| prop(key).and_then(|v| u32::try_from(v).ok());
                Some(RawNode {
                    node,
                    gpu_id,
                    render_minor: small("drm_render_minor"),
                    domain: small("domain"),
                    location_id: small("location_id"),
                    unique_id: prop("unique_id").filter(|&u| u != 0),
                    device_id: small("device_id"),
                })
            })
            .collect();
        nodes.sort_by_key(|n| n.node);
        nodes
    }

    /// The PCI function a DRM render node belongs to: the last component of its `device` link,
    /// if that is a PCI address (a partition's render node belongs to a platform device).
    fn render_node_pci(&self, minor: u32) -> Option<PciAddress> {
        let link = std::fs::read_link(
            self.root
                .join(DRM_CLASS)
                .join(format!("renderD{minor}"))
                .join("device"),
        )
        .ok()?;
        link.file_name()?.to_str()?.parse().ok()
    }

    /// KFD's GPU nodes, by node number, each tied to the PCI function of its physical GPU (all
    /// partitions of one GPU to the same function). Nodes that cannot be tied are left out
    /// ([`Sysfs::kfd_gpu`] says why). No KFD: empty.
    pub fn kfd_gpus(&self) -> Vec<KfdGpu> {
        let raw = self.raw_nodes();
        let mut tied: Vec<Option<(PciAddress, NodeLink)>> = raw
            .iter()
            .map(|n| {
                let pci = self.render_node_pci(n.render_minor?)?;
                Some((pci, NodeLink::RenderNode))
            })
            .collect();
        // A partition takes its GPU from a sibling; only a node with neither a render link nor
        // a sibling that has one falls back to decoding location_id (then its siblings follow).
        let by_sibling = |tied: &mut Vec<Option<(PciAddress, NodeLink)>>| {
            let known = tied.clone();
            for (n, t) in raw.iter().zip(tied.iter_mut()).filter(|(_, t)| t.is_none()) {
                *t = n.identity().and_then(|id| {
                    raw.iter().zip(&known).find_map(|(m, k)| {
                        let (pci, _) = (*k)?;
                        (m.identity() == Some(id))
                            .then_some((pci, NodeLink::SameDeviceAs { node: m.node }))
                    })
                });
            }
        };
        by_sibling(&mut tied);
        // The PCI bus is scanned only if some node is still untied.
        let mut amd: Option<Vec<PciGpu>> = None;
        for (n, t) in raw.iter().zip(tied.iter_mut()).filter(|(_, t)| t.is_none()) {
            let amd = amd.get_or_insert_with(|| self.amd_gpus());
            *t = n.domain.zip(n.location_id).and_then(|(domain, loc)| {
                let pci = PciAddress::from_bdf(domain, loc & 0xffff).ok()?;
                amd.iter()
                    .any(|g| g.pci == pci)
                    .then_some((pci, NodeLink::LocationId))
            });
        }
        by_sibling(&mut tied);
        raw.iter()
            .zip(tied)
            .filter_map(|(n, t)| {
                let (pci, found_by) = t?;
                Some(KfdGpu {
                    node: n.node,
                    gpu_id: n.gpu_id,
                    render_minor: n.render_minor,
                    pci,
                    found_by,
                })
            })
            .collect()
    }

    /// The node KFD knows as `gpu_id`, tied to its physical GPU.
    pub fn kfd_gpu(&self, gpu_id: u32) -> Result<KfdGpu> {
        let gpus = self.kfd_gpus();
        if let Some(g) = gpus.iter().find(|g| g.gpu_id == gpu_id) {
            return Ok(*g);
        }
        let reason = if let Some(n) = self.raw_nodes().iter().find(|n| n.gpu_id == gpu_id) {
            format!(
                "KFD node {} has gpu_id {gpu_id}, but neither its render node (renderD{}) nor its location_id leads to a PCI function, and no node of the same GPU does",
                n.node,
                n.render_minor.map_or_else(|| "?".into(), |m| m.to_string())
            )
        } else if gpus.is_empty() {
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

    use super::{PciAddress, DRM_CLASS, KFD_NODES, PCI_DEVICES};

    fn write(path: &Path, text: &str) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("fixture directory");
        }
        std::fs::write(path, text).expect("fixture file");
    }

    /// A KFD topology node, as `properties` and `gpu_id` show it.
    #[derive(Clone, Copy, Debug)]
    pub struct Node {
        pub node: u32,
        pub gpu_id: u32,
        pub domain: u32,
        pub location_id: u32,
        pub render_minor: Option<u32>,
        pub unique_id: u64,
        pub device_id: u32,
    }

    impl Node {
        /// A whole GPU at `pci` with render minor `128 + node`.
        pub fn gpu(node: u32, gpu_id: u32, pci: PciAddress) -> Self {
            Self {
                node,
                gpu_id,
                domain: pci.domain,
                location_id: pci.bdf(),
                render_minor: Some(127 + node),
                unique_id: 0x1000 + u64::from(node),
                device_id: 0x740f,
            }
        }

        pub fn write(&self, root: &Path) {
            let dir = root.join(KFD_NODES).join(self.node.to_string());
            write(&dir.join("gpu_id"), &format!("{}\n", self.gpu_id));
            let mut props = format!(
                "cpu_cores_count 0\nsimd_count 440\nvendor_id 4098\ndevice_id {}\nlocation_id {}\ndomain {}\nunique_id {}\n",
                self.device_id, self.location_id, self.domain, self.unique_id
            );
            if let Some(m) = self.render_minor {
                props.push_str(&format!("drm_render_minor {m}\n"));
            }
            write(&dir.join("properties"), &props);
        }
    }

    /// A KFD topology node for a whole GPU (`gpu_id` 0: a CPU node) at `pci`, its render node
    /// linked to `pci`.
    pub fn kfd_node(root: &Path, node: u32, gpu_id: u32, pci: PciAddress) {
        let n = Node::gpu(node, gpu_id, pci);
        n.write(root);
        if gpu_id != 0 {
            render_node(
                root,
                n.render_minor.expect("set by Node::gpu"),
                &pci.to_string(),
            );
        }
    }

    /// `class/drm/renderD<minor>/device` -> a device directory named `device` (a PCI address,
    /// or a platform device such as `amdgpu_xcp_1`).
    pub fn render_node(root: &Path, minor: u32, device: &str) {
        let target = root.join("devices/fixture").join(device);
        std::fs::create_dir_all(&target).expect("fixture device");
        let dir = root.join(DRM_CLASS).join(format!("renderD{minor}"));
        std::fs::create_dir_all(&dir).expect("fixture render node");
        let _ = std::os::unix::fs::symlink(target, dir.join("device"));
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

    /// How a kernel encodes a partition's index in `location_id`.
    #[derive(Clone, Copy, Debug)]
    pub enum PartitionEncoding {
        /// 6.12: `pci_dev_id(pdev) | node_id`.
        OrNodeId,
        /// Later trees: `pci_dev_id(pdev) | node_id << 28`.
        Shift28,
    }

    impl PartitionEncoding {
        /// Both, with a short name for scratch directories and messages.
        pub const ALL: [(&str, Self); 2] = [("or", Self::OrNodeId), ("shift", Self::Shift28)];
    }

    /// An MI300X at `pci` in CPX mode: 8 KFD nodes from `first_node`, partition 0's render node
    /// on the PCI function, the others on `amdgpu_xcp_<n>` platform devices.
    pub fn mi300x_cpx(
        root: &Path,
        first_node: u32,
        first_gpu_id: u32,
        pci: PciAddress,
        encoding: PartitionEncoding,
    ) {
        pci_function(root, pci, 0x1002, 0x74a1, 0x120000, Some("amdgpu"));
        for part in 0..8u32 {
            let location_id = match encoding {
                PartitionEncoding::OrNodeId => pci.bdf() | part,
                PartitionEncoding::Shift28 => pci.bdf() | part << 28,
            };
            let minor = 128 + first_node * 8 + part;
            let n = Node {
                node: first_node + part,
                gpu_id: first_gpu_id + part,
                domain: pci.domain,
                location_id,
                render_minor: Some(minor),
                unique_id: 0xabcd_0000 + u64::from(pci.bus),
                device_id: 0x74a1,
            };
            n.write(root);
            let device = if part == 0 {
                pci.to_string()
            } else {
                format!("amdgpu_xcp_{}", first_node * 8 + part)
            };
            render_node(root, minor, &device);
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
            "+3:00.0",
            "0000:+3:00.0",
            "0000:03:+0.0",
            "0000:03:00.+1",
            "-0:03:00.0",
            " 0000:03:00.0x",
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
        assert_eq!(sysfs.kfd_gpu(21042).unwrap().pci, pci("0000:83:00.0"));
        assert_eq!(sysfs.kfd_gpu(7777).unwrap().pci, pci("0001:c1:00.0"));
        assert!(gpus.iter().all(|g| g.found_by == NodeLink::RenderNode));
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

    /// Two MI300X in CPX mode (8 KFD nodes each) and one MI210, as a kernel encoding partition
    /// indexes with `encoding` shows them.
    fn partitioned_host(root: &Path, encoding: fixture::PartitionEncoding) {
        use fixture::*;
        kfd_node(root, 0, 0, pci("0000:00:00.0"));
        mi300x_cpx(root, 1, 100, pci("0000:c1:00.0"), encoding);
        mi300x_cpx(root, 9, 200, pci("0000:e1:00.0"), encoding);
        kfd_node(root, 17, 53422, pci("0000:03:00.0"));
        pci_function(
            root,
            pci("0000:03:00.0"),
            0x1002,
            0x740f,
            0x038000,
            Some("amdgpu"),
        );
    }

    #[test]
    fn every_partition_of_a_gpu_resolves_to_that_gpus_pci_function() {
        for (name, encoding) in fixture::PartitionEncoding::ALL {
            let root = scratch(&format!("cpx-{name}"));
            partitioned_host(&root, encoding);
            let sysfs = Sysfs::at(&root);
            let gpus = sysfs.kfd_gpus();
            assert_eq!(gpus.len(), 17, "{name}: every GPU node is tied");
            for (first_node, first_id, at) in [(1, 100, "0000:c1:00.0"), (9, 200, "0000:e1:00.0")] {
                for part in 0..8 {
                    let g = sysfs.kfd_gpu(first_id + part).unwrap();
                    assert_eq!(g.pci, pci(at), "{name}: gpu_id {}", first_id + part);
                    let via = if part == 0 {
                        NodeLink::RenderNode
                    } else {
                        NodeLink::SameDeviceAs { node: first_node }
                    };
                    assert_eq!(g.found_by, via, "{name}: gpu_id {}", first_id + part);
                }
            }
            assert_eq!(sysfs.kfd_gpu(53422).unwrap().pci, pci("0000:03:00.0"));
            let mut physical: Vec<PciAddress> = gpus.iter().map(|g| g.pci).collect();
            physical.dedup();
            assert_eq!(physical.len(), 3, "{name}: three physical GPUs");
            std::fs::remove_dir_all(&root).unwrap();
        }
    }

    #[test]
    fn without_render_links_location_id_names_the_function_only_if_it_is_an_amd_gpu() {
        use fixture::*;
        let root = scratch("norender");
        // A kernel (or a container's sysfs) without class/drm: partition 0's location_id names
        // the GPU function; 6.12 gives the others c1:00.1 .. c1:00.7, which are not GPUs.
        pci_function(
            &root,
            pci("0000:c1:00.0"),
            0x1002,
            0x74a1,
            0x120000,
            Some("amdgpu"),
        );
        for part in 0..8u32 {
            Node {
                render_minor: None,
                location_id: pci("0000:c1:00.0").bdf() | part,
                device_id: 0x74a1,
                ..Node::gpu(1 + part, 100 + part, pci("0000:c1:00.0"))
            }
            .write(&root);
        }
        // Make every partition share partition 0's serial, as one GPU's nodes do.
        for part in 0..8u32 {
            let props = root
                .join(KFD_NODES)
                .join((1 + part).to_string())
                .join("properties");
            let text = std::fs::read_to_string(&props).unwrap();
            let fixed: String = text
                .lines()
                .map(|l| {
                    if l.starts_with("unique_id") {
                        "unique_id 4097".to_owned()
                    } else {
                        l.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            std::fs::write(&props, fixed).unwrap();
        }
        let sysfs = Sysfs::at(&root);
        let gpus = sysfs.kfd_gpus();
        assert_eq!(gpus.len(), 8);
        assert!(
            gpus.iter().all(|g| g.pci == pci("0000:c1:00.0")),
            "{gpus:?}"
        );
        assert_eq!(gpus[0].found_by, NodeLink::LocationId);
        assert_eq!(gpus[3].found_by, NodeLink::SameDeviceAs { node: 1 });
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_node_that_leads_to_no_pci_function_is_left_out_and_named() {
        use fixture::*;
        let root = scratch("orphan");
        // A partition whose siblings are all hidden (a container given one partition): its
        // render node is a platform device and its location_id names no GPU function here.
        Node {
            location_id: pci("0000:c1:00.0").bdf() | 3 << 28,
            ..Node::gpu(4, 103, pci("0000:c1:00.0"))
        }
        .write(&root);
        render_node(&root, 131, "amdgpu_xcp_3");
        let sysfs = Sysfs::at(&root);
        assert!(sysfs.kfd_gpus().is_empty());
        let err = sysfs.kfd_gpu(103).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("KFD node 4 has gpu_id 103") && msg.contains("renderD131"),
            "{msg}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
