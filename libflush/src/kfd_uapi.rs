// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The KFD HDP flush ioctl proposed in docs/upstream/, as libflush calls it, and the version
//! query.
//!
//! The flush's number and version are a *proposal*: no upstream kernel assigns them to it.
//! The patch (v2, docs/upstream/) takes the next free ones in Debian's 7.3.4 tree, KFD 1.23
//! (read 2026-12-02): nr 0x29 after `AMDKFD_IOC_PROFILER` (0x28), version 1.24. v1's
//! number and version were given away upstream before it was sent (KFD 1.18 is "Rename pad in
//! set_memory_policy_args to misc_process_flag"; nr 0x27 is `AMDKFD_IOC_CREATE_PROCESS`, KFD
//! 1.19), and the same can happen to these. KFD's dispatcher runs the handler of a number
//! whatever size and direction the caller encoded, so on a kernel that gives 0x29 to something
//! else this number would run that. libflush therefore calls it only when a caller names
//! `kfd-ioctl`, and then only on a KFD reporting exactly [`KFD_HDP_FLUSH_PATCH_MINOR`]; nothing
//! is ever chosen from a version number. When upstream merges a flush ioctl, detection follows
//! upstream's own number and version.
//!
//! No dependency but `core`: `cargo xtask test` also compiles it into xtask, which checks every
//! value here against the patched header with the C compiler.

/// `AMDKFD_IOCTL_BASE`.
pub const AMDKFD_IOCTL_BASE: u8 = b'K';
/// `AMDKFD_IOC_GET_VERSION`'s number: `AMDKFD_IOR(0x01, struct kfd_ioctl_get_version_args)`.
pub const AMDKFD_IOC_GET_VERSION_NR: u8 = 0x01;
/// The proposed `AMDKFD_IOC_HDP_FLUSH`'s number in docs/upstream/ (not assigned upstream:
/// see the module doc).
pub const AMDKFD_IOC_HDP_FLUSH_NR: u8 = 0x29;

/// The KFD uAPI major version libflush speaks.
pub const KFD_IOCTL_MAJOR_VERSION: u32 = 1;
/// The minor version a kernel carrying docs/upstream/'s patch reports: a guard for a named
/// `kfd-ioctl`, never a detection (upstream kernels report it too, without the flush).
pub const KFD_HDP_FLUSH_PATCH_MINOR: u32 = 24;

/// `KFD_IOC_HDP_FLUSH_STATUS_NOT_NEEDED`, from KFD: this GPU needs no HDP flush (an x86 APU
/// outside passthrough, memory coherent with the CPU); nothing was done.
pub const KFD_IOC_HDP_FLUSH_STATUS_NOT_NEEDED: u32 = 1 << 0;

/// `struct kfd_ioctl_get_version_args`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KfdGetVersionArgs {
    /// From KFD.
    pub major_version: u32,
    /// From KFD.
    pub minor_version: u32,
}

/// `struct kfd_ioctl_hdp_flush_args`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KfdHdpFlushArgs {
    /// To KFD: the GPU, as KFD's topology names it.
    pub gpu_id: u32,
    /// To KFD: must be 0.
    pub flags: u32,
    /// From KFD: `KFD_IOC_HDP_FLUSH_STATUS_*`.
    pub status: u32,
}

/// Whether a named `kfd-ioctl` may call the proposed number on a KFD of `major.minor`: only
/// the exact version the patch sets.
pub const fn patch_version(major: u32, minor: u32) -> bool {
    major == KFD_IOCTL_MAJOR_VERSION && minor == KFD_HDP_FLUSH_PATCH_MINOR
}
