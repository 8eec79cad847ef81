//! The upstream form of the flush ioctl (docs/upstream/): KFD's proposed `AMDKFD_IOC_HDP_FLUSH`,
//! which calls amdgpu's own HDP flush for one GPU under amdgpu's reset and runtime-PM rules.
//!
//! No upstream kernel has it, and its proposed number now belongs to another ioctl upstream
//! (see [`crate::kfd_uapi`]): it is used only when a caller names `kfd-ioctl`, and then only
//! on a KFD reporting the version the patch sets. It is never chosen from a version number.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::{Backing, BackingKind, Completion, KernelFlush, StrategyKind, Transport};
use crate::barrier::Fences;
use crate::kfd_uapi::*;
use crate::{Error, Result};

/// Where KFD lives.
pub const KFD_DEVICE_PATH: &str = "/dev/kfd";

/// How long a flush waits out a GPU reset (`EAGAIN`) before it fails: amdgpu's mode-1 reset
/// takes about half a second.
const RESET_WAIT: Duration = Duration::from_secs(2);
/// The first pause between tries during a reset; it doubles up to [`RESET_PAUSE_MAX`].
const RESET_PAUSE_MIN: Duration = Duration::from_micros(50);
const RESET_PAUSE_MAX: Duration = Duration::from_millis(20);

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

/// The running kernel's KFD, as `AMDKFD_IOC_GET_VERSION` (assigned upstream, safe to ask)
/// describes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KfdStatus {
    /// `/dev/kfd` answered.
    Present {
        /// KFD's major version.
        major: u32,
        /// KFD's minor version.
        minor: u32,
    },
    /// No usable `/dev/kfd`, and why.
    Absent(String),
}

impl KfdStatus {
    /// Ask `/dev/kfd`.
    pub fn probe() -> Self {
        Self::probe_path(Path::new(KFD_DEVICE_PATH))
    }

    /// Ask the KFD node at `path`.
    pub fn probe_path(path: &Path) -> Self {
        match open_kfd(path) {
            Ok((_, v)) => Self::Present {
                major: v.major_version,
                minor: v.minor_version,
            },
            Err(why) => Self::Absent(why),
        }
    }

    /// Whether a *named* `kfd-ioctl` may call the proposed number here, and if not, why.
    pub fn named_flush(&self) -> std::result::Result<(), String> {
        match *self {
            Self::Absent(ref why) => Err(why.clone()),
            Self::Present { major, minor } if patch_version(major, minor) => Ok(()),
            Self::Present { major, minor } => Err(format!(
                "this kernel's KFD is {major}.{minor}; the proposed AMDKFD_IOC_HDP_FLUSH (nr {AMDKFD_IOC_HDP_FLUSH_NR:#x}) is called only on a KFD reporting {KFD_IOCTL_MAJOR_VERSION}.{KFD_HDP_FLUSH_PATCH_MINOR}, the version hdpflush's KFD patch sets (upstream gave nr {AMDKFD_IOC_HDP_FLUSH_NR:#x} to AMDKFD_IOC_CREATE_PROCESS in KFD 1.19)"
            )),
        }
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
    /// Flush the GPU KFD knows as `gpu_id` with the proposed ioctl, if KFD reports the version
    /// the patch sets. Only for a caller who named `kfd-ioctl`.
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
        KfdStatus::Present {
            major: version.major_version,
            minor: version.minor_version,
        }
        .named_flush()
        .map_err(unavailable)?;
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
        let mut reset = None::<(Instant, Duration)>;
        loop {
            // SAFETY: `args` is a valid kfd_ioctl_hdp_flush_args, read by the kernel only.
            match unsafe { raw::hdp_flush(self.kfd.as_raw_fd(), &args) } {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => {}
                // A GPU reset is running: the HDP is reset with it; ask again after it, with
                // growing pauses, and give up after RESET_WAIT rather than spin through it.
                Err(Errno::EAGAIN) => {
                    let (since, pause) = reset.get_or_insert((Instant::now(), RESET_PAUSE_MIN));
                    if since.elapsed() >= RESET_WAIT {
                        return Err(Error::Os {
                            what: format!(
                                "{KFD_DEVICE_PATH} (gpu_id {}: still resetting after {} s)",
                                self.gpu_id,
                                RESET_WAIT.as_secs()
                            ),
                            op,
                            errno: Errno::EAGAIN,
                        });
                    }
                    std::thread::sleep(*pause);
                    *pause = (*pause * 2).min(RESET_PAUSE_MAX);
                }
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

    #[test]
    fn a_named_flush_runs_only_on_the_version_the_patch_sets_and_never_on_1_19_or_later() {
        let status = |major, minor| KfdStatus::Present { major, minor };
        assert_eq!(status(1, KFD_HDP_FLUSH_PATCH_MINOR).named_flush(), Ok(()));
        for minor in [17, 19, 20, 21] {
            let why = status(1, minor).named_flush().unwrap_err();
            assert!(
                why.contains(&format!("1.{minor}")) && why.contains("AMDKFD_IOC_CREATE_PROCESS"),
                "{why}"
            );
        }
        assert!(
            status(2, KFD_HDP_FLUSH_PATCH_MINOR).named_flush().is_err(),
            "another major"
        );
        let why = KfdStatus::Absent("no /dev/kfd".into())
            .named_flush()
            .unwrap_err();
        assert_eq!(why, "no /dev/kfd");
    }

    #[test]
    fn without_kfd_the_strategy_is_unavailable_and_says_why() {
        let missing = Path::new("/nonexistent/kfd");
        match KfdStatus::probe_path(missing) {
            KfdStatus::Absent(why) => assert!(why.contains("/nonexistent/kfd"), "{why}"),
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
            KfdStatus::Absent(why) => assert!(why.contains("AMDKFD_IOC_GET_VERSION"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
