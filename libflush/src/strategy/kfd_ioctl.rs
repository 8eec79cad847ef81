//! The upstream form of the flush ioctl (docs/upstream/): KFD's `AMDKFD_IOC_HDP_FLUSH`, which
//! calls amdgpu's own HDP flush for one GPU under amdgpu's reset and runtime-PM rules.
//!
//! Used only when the running kernel says it has it (KFD uAPI 1.18 or later, from
//! `AMDKFD_IOC_GET_VERSION`), never assumed: on an older KFD, or without `/dev/kfd`, opening
//! fails with [`crate::Error::Unavailable`] and the reason.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;

use super::{Backing, BackingKind, Completion, KernelFlush, StrategyKind, Transport};
use crate::barrier::Fences;
use crate::kfd_uapi::*;
use crate::{Error, Result};

/// Where KFD lives.
pub const KFD_DEVICE_PATH: &str = "/dev/kfd";

mod raw {
    use crate::kfd_uapi::*;
    nix::ioctl_read!(
        get_version,
        AMDKFD_IOCTL_BASE,
        AMDKFD_IOC_GET_VERSION_NR,
        KfdGetVersionArgs
    );
    nix::ioctl_write_ptr!(
        hdp_flush,
        AMDKFD_IOCTL_BASE,
        AMDKFD_IOC_HDP_FLUSH_NR,
        KfdHdpFlushArgs
    );
}

/// What the running kernel's KFD offers.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KfdStatus {
    /// It has `AMDKFD_IOC_HDP_FLUSH`.
    Offers {
        /// KFD's minor version.
        minor: u32,
    },
    /// It does not, and why (no `/dev/kfd`, or an older uAPI).
    Lacks(String),
}

impl KfdStatus {
    /// Ask `/dev/kfd`.
    pub fn probe() -> Self {
        Self::probe_path(Path::new(KFD_DEVICE_PATH))
    }

    /// Ask the KFD node at `path`.
    pub fn probe_path(path: &Path) -> Self {
        match open_kfd(path) {
            Ok((_, version)) => Self::of_version(version),
            Err(why) => Self::Lacks(why),
        }
    }

    /// What a KFD reporting `version` offers.
    pub fn of_version(version: KfdGetVersionArgs) -> Self {
        let KfdGetVersionArgs {
            major_version: major,
            minor_version: minor,
        } = version;
        if offers_hdp_flush(major, minor) {
            Self::Offers { minor }
        } else {
            Self::Lacks(format!(
                "this kernel's KFD is {major}.{minor}; AMDKFD_IOC_HDP_FLUSH needs {KFD_IOCTL_MAJOR_VERSION}.{KFD_HDP_FLUSH_MINOR_VERSION} (the patches in hdpflush's docs/upstream/)"
            ))
        }
    }

    /// Whether the flush ioctl is there.
    pub fn offers(&self) -> bool {
        matches!(self, Self::Offers { .. })
    }
}

/// Open KFD at `path` and read its version; the error says why it cannot be used.
fn open_kfd(path: &Path) -> std::result::Result<(File, KfdGetVersionArgs), String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            format!(
                "{}: {e} (amdgpu with KFD is not loaded here)",
                path.display()
            )
        })?;
    let mut version = KfdGetVersionArgs::default();
    // SAFETY: `version` is a valid, writable kfd_ioctl_get_version_args for the call.
    unsafe { raw::get_version(file.as_raw_fd(), &mut version) }
        .map_err(|e| format!("{}: AMDKFD_IOC_GET_VERSION: {e}", path.display()))?;
    Ok((file, version))
}

/// `AMDKFD_IOC_HDP_FLUSH` on one GPU.
pub type KfdIoctl = KernelFlush<KfdTransport>;

/// KFD, and the GPU to flush.
pub struct KfdTransport {
    kfd: File,
    gpu_id: u32,
}

impl KfdIoctl {
    /// Flush the GPU KFD knows as `gpu_id`, if this kernel's KFD offers the ioctl.
    pub fn open(gpu_id: u32, completion: Completion) -> Result<Self> {
        Self::open_path(Path::new(KFD_DEVICE_PATH), gpu_id, completion)
    }

    /// As [`KfdIoctl::open`], with KFD at `path`.
    pub fn open_path(path: &Path, gpu_id: u32, completion: Completion) -> Result<Self> {
        let unavailable = |reason| Error::Unavailable {
            strategy: StrategyKind::KfdIoctl,
            reason,
        };
        let (kfd, version) = open_kfd(path).map_err(unavailable)?;
        if let KfdStatus::Lacks(why) = KfdStatus::of_version(version) {
            return Err(unavailable(why));
        }
        Ok(Self::with_transport(
            KfdTransport { kfd, gpu_id },
            completion,
        ))
    }
}

impl KfdTransport {
    fn request(&self, flags: u32, op: &'static str) -> Result<()> {
        let args = KfdHdpFlushArgs {
            gpu_id: self.gpu_id,
            flags,
        };
        loop {
            // SAFETY: `args` is a valid kfd_ioctl_hdp_flush_args, read by the kernel only.
            match unsafe { raw::hdp_flush(self.kfd.as_raw_fd(), &args) } {
                Ok(_) => return Ok(()),
                // A GPU reset is running: the HDP is reset with it; ask again after it.
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => std::thread::yield_now(),
                Err(e) => return Err(Error::os(KFD_DEVICE_PATH, op, e)),
            }
        }
    }
}

impl Fences for KfdTransport {}

impl Transport for KfdTransport {
    const KIND: StrategyKind = StrategyKind::KfdIoctl;

    fn backing(&self) -> Backing {
        Backing::new(
            BackingKind::Hardware,
            format!("amdgpu's HDP flush of KFD gpu_id {}", self.gpu_id),
        )
    }

    fn request_flush(&self, count: usize, completion: Completion) -> Result<()> {
        let flags = match completion {
            Completion::Posted => KFD_IOC_HDP_FLUSH_F_POSTED,
            Completion::Completed => 0,
        };
        // One call flushes everything stored before it: a batch needs one.
        if count > 0 {
            self.request(flags, "AMDKFD_IOC_HDP_FLUSH")?;
        }
        Ok(())
    }

    fn request_invalidate(&self) -> Result<()> {
        self.request(
            KFD_IOC_HDP_FLUSH_F_INVALIDATE,
            "AMDKFD_IOC_HDP_FLUSH (invalidate)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(major: u32, minor: u32) -> KfdGetVersionArgs {
        KfdGetVersionArgs {
            major_version: major,
            minor_version: minor,
        }
    }

    #[test]
    fn only_kfd_1_18_and_later_offers_the_flush() {
        assert_eq!(
            KfdStatus::of_version(version(1, 18)),
            KfdStatus::Offers { minor: 18 }
        );
        assert!(KfdStatus::of_version(version(1, 21)).offers());
        match KfdStatus::of_version(version(1, 17)) {
            KfdStatus::Lacks(why) => assert!(why.contains("1.17") && why.contains("1.18"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(
            !KfdStatus::of_version(version(2, 30)).offers(),
            "another major"
        );
    }

    #[test]
    fn without_kfd_the_strategy_is_unavailable_and_says_why() {
        let missing = Path::new("/nonexistent/kfd");
        match KfdStatus::probe_path(missing) {
            KfdStatus::Lacks(why) => assert!(why.contains("/nonexistent/kfd"), "{why}"),
            other => panic!("{other:?}"),
        }
        match KfdIoctl::open_path(missing, 1, Completion::Completed) {
            Err(Error::Unavailable { strategy, reason }) => {
                assert_eq!(strategy, StrategyKind::KfdIoctl);
                assert!(reason.contains("not loaded"), "{reason}");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("opened KFD that does not exist"),
        }
    }

    #[test]
    fn a_file_that_is_not_kfd_is_refused_by_the_version_query() {
        // /dev/null answers the version ioctl with ENOTTY: not a KFD, so no flush.
        match KfdStatus::probe_path(Path::new("/dev/null")) {
            KfdStatus::Lacks(why) => assert!(why.contains("AMDKFD_IOC_GET_VERSION"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
