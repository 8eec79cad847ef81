// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The `/dev/hdp_flush` user-space ABI, declared once.
//!
//! This file is compiled into the kernel module and into `libflush` (both include it with
//! `#[path]`), so it must stay `no_std`-clean and free of dependencies: only `core` is used.
//! `kmod/include/hdp_flush.h` states the same ABI for C; a test in libflush compiles that header
//! and checks every size, offset and ioctl number against the values below.
//!
//! Rules every command follows:
//! - unknown command -> `ENOTTY`; unknown flag bits or a nonzero `reserved` field -> `EINVAL`;
//!   bad user pointer -> `EFAULT`; device index out of range -> `ENODEV`.
//! - A request is at most 16 bytes when it may travel in an io_uring SQE's command area
//!   (`IORING_OP_URING_CMD`, `cmd_op` = the ioctl number, the struct in `sqe->cmd`).
//! - Fields are fixed-width and naturally aligned; reserved space is explicit and must be zero.

#![allow(dead_code)]

use core::mem::size_of;

/// Major version: bumped on any incompatible change. User space refuses a different major.
pub const HDP_FLUSH_API_MAJOR: u32 = 2;
/// Minor version: bumped when commands or flags are added compatibly.
pub const HDP_FLUSH_API_MINOR: u32 = 0;

/// The directory of the module's device nodes (uAPI 2.0): one per served device, named as
/// DEVICE_INFO names it (`0000:03:00.0`, `sim0`), on which that device is index 0 and the only
/// one; and [`HDP_FLUSH_DEVICE_PATH`].
pub const HDP_FLUSH_NODE_DIR: &str = "/dev/hdp_flush";
/// The node that reaches every device by its module index, for administrators (mode 0600).
pub const HDP_FLUSH_DEVICE_PATH: &str = "/dev/hdp_flush/all";

/// ioctl type byte ('H' for HDP); our numbers use the range 0xA0-0xAF of it.
pub const HDP_FLUSH_IOC_MAGIC: u32 = b'H' as u32;

// ---------------------------------------------------------------------------------------------
// ioctl number encoding (include/uapi/asm-generic/ioctl.h and the arch overrides).
// Written out here because this file may not depend on anything. libflush's tests cross-check
// the host's numbers against the C header, nix and ioctl-sys; `cargo xtask uapi-cross` checks
// the powerpc64 layout against the kernel's own headers (clang, `_Static_assert`).
// ---------------------------------------------------------------------------------------------

/// How an architecture packs `_IOC(dir, type, nr, size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IocLayout {
    /// Width of the size field (the direction field takes the bits above it).
    pub size_bits: u32,
    /// `_IOC_NONE`.
    pub none: u32,
    /// `_IOC_READ`.
    pub read: u32,
    /// `_IOC_WRITE`.
    pub write: u32,
}

/// asm-generic: x86, arm64, riscv, s390, loongarch, ...
pub const IOC_LAYOUT_GENERIC: IocLayout = IocLayout {
    size_bits: 14,
    none: 0,
    read: 2,
    write: 1,
};

/// powerpc (Power10 included), mips and sparc.
pub const IOC_LAYOUT_ALT: IocLayout = IocLayout {
    size_bits: 13,
    none: 1,
    read: 2,
    write: 4,
};

/// The layout of the architecture this file is compiled for.
pub const IOC_LAYOUT: IocLayout = if cfg!(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
)) {
    IOC_LAYOUT_ALT
} else {
    IOC_LAYOUT_GENERIC
};

/// Which way data moves, as `_IO` / `_IOR` / `_IOW` / `_IOWR` say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IocDir {
    /// `_IO`.
    None,
    /// `_IOR`: the kernel writes the struct.
    Read,
    /// `_IOW`: the kernel reads the struct.
    Write,
    /// `_IOWR`.
    ReadWrite,
}

/// One command: everything its number is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IocSpec {
    /// Direction.
    pub dir: IocDir,
    /// Number within our type byte.
    pub nr: u32,
    /// Size of the argument struct (0 for `_IO`).
    pub size: usize,
}

impl IocSpec {
    /// The command number under `layout`.
    pub const fn encode(&self, layout: IocLayout) -> u32 {
        // A struct too large for the size field would silently alias another command.
        assert!(self.size < (1 << layout.size_bits));
        let dir = match self.dir {
            IocDir::None => layout.none,
            IocDir::Read => layout.read,
            IocDir::Write => layout.write,
            IocDir::ReadWrite => layout.read | layout.write,
        };
        (dir << (16 + layout.size_bits))
            | ((self.size as u32) << 16)
            | (HDP_FLUSH_IOC_MAGIC << 8)
            | self.nr
    }
}

const fn spec<T>(dir: IocDir, nr: u32) -> IocSpec {
    IocSpec {
        dir,
        nr,
        size: if matches!(dir, IocDir::None) {
            0
        } else {
            size_of::<T>()
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Commands: declared once here; the numbers below are this architecture's encoding of them.
// ---------------------------------------------------------------------------------------------

/// Every command, by its C name.
pub const HDP_FLUSH_COMMANDS: [(&str, IocSpec); 6] = [
    // Read the API version, device count and features. Call first; refuse a different major.
    (
        "HDP_FLUSH_IOC_VERSION",
        spec::<HdpFlushVersion>(IocDir::Read, 0xA0),
    ),
    // Do nothing and return 0: the kernel-entry floor benchmarks compare against.
    ("HDP_FLUSH_IOC_NOP", spec::<()>(IocDir::None, 0xA1)),
    // Describe device `index` (backend, PCI location, name).
    (
        "HDP_FLUSH_IOC_DEVICE_INFO",
        spec::<HdpFlushDeviceInfo>(IocDir::ReadWrite, 0xA2),
    ),
    // Flush the HDP write FIFO of one device. Also accepted as a `URING_CMD` op.
    (
        "HDP_FLUSH_IOC_FLUSH",
        spec::<HdpFlushRequest>(IocDir::Write, 0xA3),
    ),
    // Invalidate the HDP read cache of one device (always synchronous). Also a `URING_CMD` op.
    (
        "HDP_FLUSH_IOC_INVALIDATE",
        spec::<HdpFlushRequest>(IocDir::Write, 0xA4),
    ),
    // Read one device's counters.
    (
        "HDP_FLUSH_IOC_STATS",
        spec::<HdpFlushStats>(IocDir::ReadWrite, 0xA5),
    ),
];

/// See [`HDP_FLUSH_COMMANDS`].
pub const HDP_FLUSH_IOC_VERSION: u32 = HDP_FLUSH_COMMANDS[0].1.encode(IOC_LAYOUT);
/// See [`HDP_FLUSH_COMMANDS`].
pub const HDP_FLUSH_IOC_NOP: u32 = HDP_FLUSH_COMMANDS[1].1.encode(IOC_LAYOUT);
/// See [`HDP_FLUSH_COMMANDS`].
pub const HDP_FLUSH_IOC_DEVICE_INFO: u32 = HDP_FLUSH_COMMANDS[2].1.encode(IOC_LAYOUT);
/// See [`HDP_FLUSH_COMMANDS`].
pub const HDP_FLUSH_IOC_FLUSH: u32 = HDP_FLUSH_COMMANDS[3].1.encode(IOC_LAYOUT);
/// See [`HDP_FLUSH_COMMANDS`].
pub const HDP_FLUSH_IOC_INVALIDATE: u32 = HDP_FLUSH_COMMANDS[4].1.encode(IOC_LAYOUT);
/// See [`HDP_FLUSH_COMMANDS`].
pub const HDP_FLUSH_IOC_STATS: u32 = HDP_FLUSH_COMMANDS[5].1.encode(IOC_LAYOUT);

// ---------------------------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------------------------

/// FLUSH: return only after the flush has landed (register store + posting read), instead of
/// after the posted store, which is what a store to the 4K remap page gives.
pub const HDP_FLUSH_F_SYNC: u32 = 1 << 0;
/// FLUSH: issue a dedicated hardware flush instead of joining one in flight. For measurements;
/// needs `CAP_SYS_ADMIN` (`EPERM` otherwise): a flood of them costs every other caller.
pub const HDP_FLUSH_F_NO_COALESCE: u32 = 1 << 1;
/// Every flag FLUSH accepts.
pub const HDP_FLUSH_FLUSH_FLAGS: u32 = HDP_FLUSH_F_SYNC | HDP_FLUSH_F_NO_COALESCE;
/// Every flag INVALIDATE accepts (none: it always reads back).
pub const HDP_FLUSH_INVALIDATE_FLAGS: u32 = 0;
/// STATS: zero the counters after reading them (needs `CAP_SYS_ADMIN`).
pub const HDP_FLUSH_STATS_F_RESET: u32 = 1 << 0;
/// Every flag STATS accepts.
pub const HDP_FLUSH_STATS_FLAGS: u32 = HDP_FLUSH_STATS_F_RESET;

/// VERSION.features: the device serves `IORING_OP_URING_CMD`.
pub const HDP_FLUSH_FEAT_URING_CMD: u64 = 1 << 0;
/// VERSION.features: concurrent flushes are coalesced (group commit).
pub const HDP_FLUSH_FEAT_COALESCE: u64 = 1 << 1;

/// DEVICE_INFO.backend: in-kernel model with a modelled readback delay; no hardware.
pub const HDP_FLUSH_BACKEND_SIM: u32 = 0;
/// DEVICE_INFO.backend: a QEMU emulated PCI device; real MMIO store + readback in its BAR.
pub const HDP_FLUSH_BACKEND_PCITEST: u32 = 1;
/// DEVICE_INFO.backend: an AMD GPU's HDP flush register.
pub const HDP_FLUSH_BACKEND_AMDGPU: u32 = 2;

/// DEVICE_INFO.flags out: the device was removed or unbound; its requests fail with `ENODEV`.
pub const HDP_FLUSH_DEVICE_F_REVOKED: u32 = 1 << 0;
/// DEVICE_INFO.flags out: the GPU is runtime-suspended now; flushes skip it (nothing to flush).
pub const HDP_FLUSH_DEVICE_F_SUSPENDED: u32 = 1 << 1;
/// DEVICE_INFO.flags out (uAPI 2.0): the device is refused untouched, its requests failing with
/// `EIO`: the PCI core marked its channel offline (error recovery, surprise removal), or it
/// answered a read with all ones and is latched dead until a config read finds it again.
pub const HDP_FLUSH_DEVICE_F_OFFLINE: u32 = 1 << 2;

/// Length of `HdpFlushDeviceInfo::name`, NUL-padded.
pub const HDP_FLUSH_NAME_LEN: usize = 32;

// ---------------------------------------------------------------------------------------------
// Structures
// ---------------------------------------------------------------------------------------------

/// VERSION reply.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HdpFlushVersion {
    /// `HDP_FLUSH_API_MAJOR` of the module.
    pub api_major: u32,
    /// `HDP_FLUSH_API_MINOR` of the module.
    pub api_minor: u32,
    /// Devices served; valid indices are `0..num_devices`.
    pub num_devices: u32,
    /// The kernel's PAGE_SIZE (4096 or 65536 on the hosts we care about).
    pub page_size: u32,
    /// `HDP_FLUSH_FEAT_*` bits.
    pub features: u64,
    /// Zero.
    pub reserved: [u64; 2],
}

/// DEVICE_INFO request (`index`) and reply (the rest).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HdpFlushDeviceInfo {
    /// In: which device.
    pub index: u32,
    /// Out: `HDP_FLUSH_BACKEND_*`.
    pub backend: u32,
    /// Out: PCI segment (domain); 0 for the simulator.
    pub pci_domain: u32,
    /// Out: PCI bus << 8 | devfn; 0 for the simulator.
    pub pci_bdf: u32,
    /// Out: PCI vendor id; 0 for the simulator.
    pub vendor: u16,
    /// Out: PCI device id; 0 for the simulator.
    pub device: u16,
    /// In: must be zero. Out: `HDP_FLUSH_DEVICE_F_*` (uAPI 1.1; zero before).
    pub flags: u32,
    /// In: zero. Out: FLUSH and INVALIDATE requests that came through io_uring, since the last
    /// STATS reset (uAPI 1.1).
    pub uring_requests: u64,
    /// Zero, in and out.
    pub reserved: [u64; 1],
    /// Out: NUL-padded human-readable name, e.g. "sim0" or "0000:00:04.0".
    pub name: [u8; HDP_FLUSH_NAME_LEN],
}

/// FLUSH / INVALIDATE request. 16 bytes, so it fits an io_uring SQE's command area.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HdpFlushRequest {
    /// Device index.
    pub device: u32,
    /// `HDP_FLUSH_F_*` bits valid for the command.
    pub flags: u32,
    /// Zero.
    pub reserved: u64,
}

/// STATS request (`device`, `flags`) and reply (the counters).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HdpFlushStats {
    /// In: device index.
    pub device: u32,
    /// In: `HDP_FLUSH_STATS_F_*` bits.
    pub flags: u32,
    /// FLUSH requests that passed validation (ioctl and io_uring). Always
    /// `hw_flushes + coalesced + flush_errors + flush_skipped`: all are counted, read and reset
    /// at one instant.
    pub flush_requests: u64,
    /// Hardware flushes issued and succeeded; `<= flush_requests` thanks to coalescing.
    pub hw_flushes: u64,
    /// Requests satisfied by a flush another caller issued.
    pub coalesced: u64,
    /// INVALIDATE requests that passed validation (each one is a hardware invalidate).
    pub invalidates: u64,
    /// FLUSH requests whose hardware flush failed (uAPI 1.0 called it `errors`).
    pub flush_errors: u64,
    /// INVALIDATE requests whose hardware invalidate failed (uAPI 1.1).
    pub invalidate_errors: u64,
    /// FLUSH requests with nothing to flush: the GPU was runtime-suspended and was not
    /// touched (uAPI 1.1).
    pub flush_skipped: u64,
}

/// Size of an io_uring SQE's command area with 64-byte SQEs.
pub const URING_CMD16_AREA: usize = 16;

const _: () = assert!(size_of::<HdpFlushRequest>() == URING_CMD16_AREA);
const _: () = assert!(size_of::<HdpFlushVersion>() == 40);
const _: () = assert!(size_of::<HdpFlushDeviceInfo>() == 72);
const _: () = assert!(size_of::<HdpFlushStats>() == 64);

impl HdpFlushRequest {
    /// A request for `device` with `flags`, reserved zeroed.
    pub const fn new(device: u32, flags: u32) -> Self {
        Self {
            device,
            flags,
            reserved: 0,
        }
    }

    /// The bytes that go into an SQE's command area (native endianness, as the kernel reads it).
    pub const fn to_cmd_bytes(self) -> [u8; URING_CMD16_AREA] {
        let d = self.device.to_ne_bytes();
        let f = self.flags.to_ne_bytes();
        let r = self.reserved.to_ne_bytes();
        [
            d[0], d[1], d[2], d[3], f[0], f[1], f[2], f[3], r[0], r[1], r[2], r[3], r[4], r[5],
            r[6], r[7],
        ]
    }

    /// The request read back from an SQE's command area.
    pub const fn from_cmd_bytes(b: &[u8; URING_CMD16_AREA]) -> Self {
        Self {
            device: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            flags: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            reserved: u64::from_ne_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        }
    }
}
