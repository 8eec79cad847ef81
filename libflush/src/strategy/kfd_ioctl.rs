//! The upstream form of the flush ioctl (docs/upstream/): KFD's proposed `AMDKFD_IOC_HDP_FLUSH`,
//! which calls amdgpu's own HDP flush for one GPU the process has acquired, orders the caller's
//! stores before it (`mb()`) and returns once a register read-back has posted it.
//!
//! No upstream kernel has it, and its proposed number and version are only the next free ones
//! in the tree the patch is based on: upstream may give them to other ioctls, as it gave v1's
//! (see [`crate::kfd_uapi`]). It is used only when a caller names `kfd-ioctl`, and then only on
//! a KFD reporting the version the patch sets. It is never chosen from a version number.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;

use super::{Backing, BackingKind, Completion, KernelFlush, StrategyKind, Transport};
use crate::barrier::Fences;
use crate::kfd_uapi::*;
use crate::{Error, Result};

/// Where KFD lives.
pub const KFD_DEVICE_PATH: &str = "/dev/kfd";

use crate::kfd_raw as raw;

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
                "this kernel's KFD is {major}.{minor}; the proposed AMDKFD_IOC_HDP_FLUSH (nr {AMDKFD_IOC_HDP_FLUSH_NR:#x}) is called only on a KFD reporting {KFD_IOCTL_MAJOR_VERSION}.{KFD_HDP_FLUSH_PATCH_MINOR}, the version hdpflush's KFD patch sets: on any other KFD that number may belong to another ioctl (v1's 0x27 became AMDKFD_IOC_CREATE_PROCESS)"
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
    /// KFD said this GPU needs no HDP flush: later flushes skip the system call.
    not_needed: AtomicBool,
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
            KfdTransport {
                kfd,
                gpu_id,
                not_needed: AtomicBool::new(false),
            },
            completion,
        ))
    }
}

impl KfdTransport {
    /// One `AMDKFD_IOC_HDP_FLUSH`. An error is returned, never retried: the kernel itself waits
    /// out a GPU reset, so nothing it answers gets better by asking again.
    fn request(&self) -> Result<()> {
        let op = "AMDKFD_IOC_HDP_FLUSH";
        let mut args = KfdHdpFlushArgs {
            gpu_id: self.gpu_id,
            ..KfdHdpFlushArgs::default()
        };
        loop {
            // SAFETY: `args` is a valid kfd_ioctl_hdp_flush_args the kernel reads and writes.
            match unsafe { raw::hdp_flush(self.kfd.as_raw_fd(), &mut args) } {
                Ok(_) => break,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(flush_error(self.gpu_id, op, e)),
            }
        }
        if args.status & KFD_IOC_HDP_FLUSH_STATUS_NOT_NEEDED != 0 {
            self.not_needed.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether KFD has said this GPU needs no HDP flush.
    pub fn flush_not_needed(&self) -> bool {
        self.not_needed.load(Ordering::Relaxed)
    }
}

/// What an errno from `AMDKFD_IOC_HDP_FLUSH` means, as the patch's uAPI header documents it.
fn flush_errno_meaning(errno: Errno) -> Option<&'static str> {
    Some(match errno {
        Errno::ENXIO => "this process does not use the GPU (no memory or queue on it), and KFD does not touch a GPU for a process that does not use it",
        Errno::ENODEV => "no GPU of this process has this gpu_id, or the GPU was removed or can no longer be accessed",
        Errno::EOPNOTSUPP => "no HDP flush is offered for this GPU (an SR-IOV virtual function, or amdgpu has no HDP flush for it); nothing was done",
        Errno::EINVAL => "KFD refused the arguments (flags must be 0)",
        _ => return None,
    })
}

/// The error of a failed `AMDKFD_IOC_HDP_FLUSH` on `gpu_id`, saying what the errno means.
fn flush_error(gpu_id: u32, op: &'static str, errno: Errno) -> Error {
    let what = match flush_errno_meaning(errno) {
        Some(meaning) => format!("{KFD_DEVICE_PATH} (gpu_id {gpu_id}: {meaning})"),
        None => format!("{KFD_DEVICE_PATH} (gpu_id {gpu_id})"),
    };
    Error::os(what, op, errno)
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

    /// KFD always completes the flush (a posting read-back), so both completions are served
    /// by the same call.
    fn request_flush(&self, count: usize, _completion: Completion) -> Result<()> {
        // One call flushes everything stored before it: a batch needs one.
        if count > 0 && !self.flush_not_needed() {
            self.request()?;
        }
        Ok(())
    }

    /// The proposed ioctl flushes only: HDP invalidation is a no-op on MI200/MI300's HDP and
    /// absent from HDP 5.2 onwards.
    fn request_invalidate(&self) -> Result<()> {
        Err(Error::Unsupported {
            strategy: StrategyKind::KfdIoctl,
            op: "invalidate",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::Flush;

    #[test]
    fn a_named_flush_runs_only_on_the_version_the_patch_sets() {
        let status = |major, minor| KfdStatus::Present { major, minor };
        assert_eq!(status(1, KFD_HDP_FLUSH_PATCH_MINOR).named_flush(), Ok(()));
        for minor in [17, 18, 23, 25] {
            let why = status(1, minor).named_flush().unwrap_err();
            assert!(
                why.contains(&format!("1.{minor}")) && why.contains("another ioctl"),
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

    /// A flusher over `/dev/null`, which answers any ioctl with ENOTTY: a call that reaches
    /// the kernel shows as that error.
    fn over_dev_null(not_needed: bool, completion: Completion) -> KfdIoctl {
        let kfd = File::open("/dev/null").expect("open /dev/null");
        KfdIoctl::with_transport(
            KfdTransport {
                kfd,
                gpu_id: 7,
                not_needed: AtomicBool::new(not_needed),
            },
            completion,
        )
    }

    #[test]
    fn the_request_is_iowr_of_the_12_byte_struct_at_nr_0x29() {
        assert_eq!(std::mem::size_of::<KfdHdpFlushArgs>(), 12);
        assert_eq!(AMDKFD_IOC_HDP_FLUSH_NR, 0x29);
        assert_eq!(KFD_HDP_FLUSH_PATCH_MINOR, 24);
        let code = nix::request_code_readwrite!(
            AMDKFD_IOCTL_BASE,
            AMDKFD_IOC_HDP_FLUSH_NR,
            std::mem::size_of::<KfdHdpFlushArgs>()
        );
        // _IOC(_IOC_READ | _IOC_WRITE, 'K', 0x29, 12) with the generic encoding.
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        assert_eq!(code, 0xC00C_4B29);
        assert_eq!(code & 0xffff, 0x4B29);
    }

    #[test]
    fn a_flush_reaches_the_kernel_and_its_error_is_returned_naming_the_gpu() {
        for completion in [Completion::Completed, Completion::Posted] {
            let f = over_dev_null(false, completion);
            for result in [f.flush(), f.flush_with(completion), f.flush_batch(3)] {
                match result {
                    Err(Error::Os { what, op, errno }) => {
                        assert_eq!(errno, Errno::ENOTTY);
                        assert_eq!(op, "AMDKFD_IOC_HDP_FLUSH");
                        assert_eq!(what, "/dev/kfd (gpu_id 7)");
                    }
                    other => panic!("{completion:?}: {other:?}"),
                }
            }
            assert!(!f.transport().flush_not_needed());
        }
    }

    #[test]
    fn once_kfd_said_not_needed_no_flush_makes_a_call_and_a_batch_of_none_never_does() {
        // /dev/null would answer a call with ENOTTY: Ok means no call was made.
        let f = over_dev_null(true, Completion::Completed);
        assert!(f.transport().flush_not_needed());
        assert_eq!(f.flush(), Ok(()));
        assert_eq!(f.flush_with(Completion::Posted), Ok(()));
        assert_eq!(f.flush_batch(5), Ok(()));
        let f = over_dev_null(false, Completion::Completed);
        assert_eq!(f.flush_batch(0), Ok(()));
    }

    #[test]
    fn invalidate_is_unsupported_eopnotsupp_and_reaches_no_kernel() {
        let f = over_dev_null(false, Completion::Completed);
        let e = f.invalidate().unwrap_err();
        assert_eq!(
            e,
            Error::Unsupported {
                strategy: StrategyKind::KfdIoctl,
                op: "invalidate"
            },
            "a call would have been ENOTTY"
        );
        assert_eq!(e.errno(), Errno::EOPNOTSUPP);
        assert_eq!(
            e.to_string(),
            "strategy `kfd-ioctl` does not support invalidate"
        );
    }

    #[test]
    fn the_errors_the_patch_documents_say_what_they_mean() {
        let e = flush_error(7, "AMDKFD_IOC_HDP_FLUSH", Errno::ENXIO);
        assert_eq!(e.errno(), Errno::ENXIO);
        let msg = e.to_string();
        assert!(
            msg.starts_with("/dev/kfd (gpu_id 7: this process does not use the GPU")
                && msg.contains("): AMDKFD_IOC_HDP_FLUSH failed: ENXIO"),
            "{msg}"
        );
        for (errno, says) in [
            (Errno::ENXIO, "does not use the GPU"),
            (Errno::ENODEV, "no GPU of this process has this gpu_id"),
            (Errno::EOPNOTSUPP, "an SR-IOV virtual function"),
            (Errno::EINVAL, "flags must be 0"),
        ] {
            let e = flush_error(7, "AMDKFD_IOC_HDP_FLUSH", errno);
            assert_eq!(e.errno(), errno);
            assert!(e.to_string().contains(says), "{e}");
        }
        let other = flush_error(7, "AMDKFD_IOC_HDP_FLUSH", Errno::ENOTTY).to_string();
        assert!(
            other.starts_with("/dev/kfd (gpu_id 7): AMDKFD_IOC_HDP_FLUSH failed: ENOTTY"),
            "{other}"
        );
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
