// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The KFD HDP flush ioctl proposed in docs/upstream/ (KFD uAPI 1.18), as libflush calls it.
//!
//! Only what libflush needs of `include/uapi/linux/kfd_ioctl.h`: the version query and the
//! flush. No dependency but `core`: `cargo xtask test` also compiles it into xtask, which
//! checks every value here against the patched header with the C compiler.

/// `AMDKFD_IOCTL_BASE`.
pub const AMDKFD_IOCTL_BASE: u8 = b'K';
/// `AMDKFD_IOC_GET_VERSION`'s number: `AMDKFD_IOR(0x01, struct kfd_ioctl_get_version_args)`.
pub const AMDKFD_IOC_GET_VERSION_NR: u8 = 0x01;
/// `AMDKFD_IOC_HDP_FLUSH`'s number: `AMDKFD_IOW(0x27, struct kfd_ioctl_hdp_flush_args)`.
pub const AMDKFD_IOC_HDP_FLUSH_NR: u8 = 0x27;

/// The KFD uAPI major version libflush speaks.
pub const KFD_IOCTL_MAJOR_VERSION: u32 = 1;
/// The first minor version with `AMDKFD_IOC_HDP_FLUSH`.
pub const KFD_HDP_FLUSH_MINOR_VERSION: u32 = 18;

/// `KFD_IOC_HDP_FLUSH_F_POSTED`: the flush need only be ordered, not completed.
pub const KFD_IOC_HDP_FLUSH_F_POSTED: u32 = 1 << 0;
/// `KFD_IOC_HDP_FLUSH_F_INVALIDATE`: invalidate the HDP read cache instead.
pub const KFD_IOC_HDP_FLUSH_F_INVALIDATE: u32 = 1 << 1;

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
    /// The GPU, as KFD's topology names it.
    pub gpu_id: u32,
    /// `KFD_IOC_HDP_FLUSH_F_*`.
    pub flags: u32,
}

/// Whether a KFD of `major.minor` offers `AMDKFD_IOC_HDP_FLUSH`.
pub const fn offers_hdp_flush(major: u32, minor: u32) -> bool {
    major == KFD_IOCTL_MAJOR_VERSION && minor >= KFD_HDP_FLUSH_MINOR_VERSION
}
