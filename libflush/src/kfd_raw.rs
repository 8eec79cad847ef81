// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The KFD ioctls libflush makes, as nix wrappers over [`crate::kfd_uapi`]'s numbers: the
//! `kfd-ioctl` strategy calls them, and the guest tests call them with arguments the strategy
//! never builds (bad pointers, short sizes).

use crate::kfd_uapi::*;

nix::ioctl_read!(
    get_version,
    AMDKFD_IOCTL_BASE,
    AMDKFD_IOC_GET_VERSION_NR,
    KfdGetVersionArgs
);
nix::ioctl_readwrite!(
    hdp_flush,
    AMDKFD_IOCTL_BASE,
    AMDKFD_IOC_HDP_FLUSH_NR,
    KfdHdpFlushArgs
);
