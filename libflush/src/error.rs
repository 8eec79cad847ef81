//! One error type for the crate; `Clone` so the process-wide selection can hand it out again.

use nix::errno::Errno;

use crate::strategy::StrategyKind;

/// The errno inside an `io::Error` from std or the io-uring crate; `EIO` if it carries none
/// (an error that did not come from the kernel must still read as a failure).
pub(crate) fn errno_of(e: &std::io::Error) -> Errno {
    match e.raw_os_error() {
        Some(n) if n > 0 => Errno::from_raw(n),
        _ => Errno::EIO,
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, each message naming the cause and, where there is one, the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A strategy name that is not one of [`StrategyKind::ALL`].
    #[error(
        "unknown strategy `{name}` (from {origin}); valid strategies: {}",
        StrategyKind::names()
    )]
    UnknownStrategy {
        /// What was given.
        name: String,
        /// Where it came from (environment variable, command line).
        origin: String,
    },

    /// `/dev/hdp_flush` does not exist.
    #[error("{path} not found: the hdp_flush kernel module is not loaded; load it with `insmod hdp_flush.ko` (see docs/kernel-module.md), or pick another strategy")]
    DeviceMissing {
        /// The device path tried.
        path: String,
    },

    /// The device exists but this user may not open it.
    #[error("{path}: permission denied; a GPU's node (/dev/hdp_flush/<pci address>) is mode 0660, group render with the udev rule, and /dev/hdp_flush/all is root's: add this user to the node's group, or give a container its GPU's node")]
    PermissionDenied {
        /// The device path tried.
        path: String,
    },

    /// The module speaks an incompatible uAPI.
    #[error("{path}: the loaded module speaks uAPI {major}.{minor}, this library needs {}.x; load a matching hdp_flush.ko", crate::uapi::HDP_FLUSH_API_MAJOR)]
    VersionMismatch {
        /// The device path.
        path: String,
        /// Module's major version.
        major: u32,
        /// Module's minor version.
        minor: u32,
    },

    /// A device index the module does not serve.
    /// A device's own node serves another device than the listing said (a node name reused
    /// after a reload, or a file that is not the module's).
    #[error("{path} is not the node of {expected}: it serves {found}")]
    WrongNode {
        /// The node.
        path: String,
        /// The device it should serve.
        expected: String,
        /// What it serves.
        found: String,
    },
    #[error("{path}: no device {index} (the module serves {count})")]
    NoSuchDevice {
        /// The device path.
        path: String,
        /// The index asked for.
        index: u32,
        /// How many the module serves.
        count: u32,
    },

    /// A system call failed.
    #[error("{what}: {op} failed: {errno} ({})", errno.desc())]
    Os {
        /// The object acted on (a path, "io_uring", ...).
        what: String,
        /// The operation.
        op: &'static str,
        /// The kernel's answer.
        errno: Errno,
    },

    /// The strategy has no such operation (e.g. the 4K remap page has no invalidate register).
    #[error("strategy `{strategy}` does not support {op}")]
    Unsupported {
        /// The strategy.
        strategy: StrategyKind,
        /// The operation.
        op: &'static str,
    },

    /// The strategy cannot run on this host.
    #[error("strategy `{strategy}` is not usable here: {reason}")]
    Unavailable {
        /// The strategy.
        strategy: StrategyKind,
        /// Why, and what to do.
        reason: String,
    },

    /// A value the caller passed that cannot be right (a malformed PCI address, a null or
    /// misaligned pointer, flags that contradict each other).
    #[error("invalid argument: {what}")]
    InvalidArgument {
        /// What, and what was expected.
        what: String,
    },

    /// The GPU named is not on this host.
    #[error("GPU {gpu} not found: {reason}")]
    GpuNotFound {
        /// How it was named.
        gpu: String,
        /// What was looked at.
        reason: String,
    },

    /// The process-wide flusher cannot tell which GPU to flush: none, or several.
    #[error("the process-wide flusher has no GPU: {reason}")]
    NoProcessGpu {
        /// What was found, and what to do.
        reason: String,
    },

    /// No way to flush this GPU's HDP here: no remap page given, the module does not serve it,
    /// no dummy page given or opted into. Never answered with the simulator.
    #[error("no HDP flush for GPU {gpu}: {reason}")]
    NoFlushPath {
        /// The GPU.
        gpu: String,
        /// Each missing path and what would provide it.
        reason: String,
    },

    /// An io_uring lost a completion (the kernel dropped a CQE): nothing it reports can be
    /// trusted any more, and it is not used again.
    #[error("io_uring: the kernel dropped a completion; the ring is no longer used (the next flush sets up a new one)")]
    RingPoisoned,

    /// The kernel refuses to set up an io_uring here: `io_uring_setup` failed. A caller that
    /// can flush another way (one ioctl per flush) falls back on this error, and on no other.
    #[error("io_uring is refused here: io_uring_setup failed: {errno} (the kernel without CONFIG_IO_URING, kernel.io_uring_disabled, a seccomp filter, or the locked-memory limit)")]
    UringRefused {
        /// The kernel's answer (`ENOSYS`, `EPERM`, `ENOMEM`, ...).
        errno: Errno,
    },

    /// A ring inherited across `fork()` was about to be used in the child. It is the parent's
    /// (its queues are shared memory): never used here. Not expected: each process's rings
    /// are set up by that process.
    #[error("io_uring: this ring was set up by the parent process before fork(); the child does not use it")]
    RingInherited,

    /// A mapping too small for what a strategy stores into it.
    #[error("{what}: mapping of {len} bytes is too small; need at least {need}")]
    RegionTooSmall {
        /// What the mapping is.
        what: String,
        /// Its length.
        len: usize,
        /// The minimum.
        need: usize,
    },
}

impl Error {
    /// The errno a C caller sees for this error; never 0.
    pub fn errno(&self) -> Errno {
        match self {
            Self::UnknownStrategy { .. }
            | Self::RegionTooSmall { .. }
            | Self::InvalidArgument { .. } => Errno::EINVAL,
            Self::DeviceMissing { .. } => Errno::ENOENT,
            Self::PermissionDenied { .. } => Errno::EACCES,
            Self::VersionMismatch { .. } => Errno::EPROTO,
            Self::NoSuchDevice { .. }
            | Self::WrongNode { .. }
            | Self::Unavailable { .. }
            | Self::GpuNotFound { .. }
            | Self::NoProcessGpu { .. }
            | Self::NoFlushPath { .. } => Errno::ENODEV,
            Self::Unsupported { .. } => Errno::EOPNOTSUPP,
            Self::RingPoisoned | Self::RingInherited => Errno::EIO,
            Self::UringRefused { errno } if *errno as i32 > 0 => *errno,
            Self::UringRefused { .. } => Errno::ENOSYS,
            Self::Os { errno, .. } if *errno as i32 > 0 => *errno,
            Self::Os { .. } => Errno::EIO,
        }
    }

    /// True for [`Error::UringRefused`]: io_uring cannot be used in this process, and a caller
    /// that can flush another way (one ioctl per flush) should.
    pub fn is_uring_refused(&self) -> bool {
        matches!(self, Self::UringRefused { .. })
    }

    /// A missing or forbidden device node says `strategy` cannot run here; other errors are
    /// failures of their own and stay as they are.
    pub fn unavailable_for(self, strategy: StrategyKind) -> Self {
        match self {
            Self::DeviceMissing { .. } | Self::PermissionDenied { .. } => Self::Unavailable {
                strategy,
                reason: self.to_string(),
            },
            other => other,
        }
    }

    /// An [`Error::Os`] from an errno.
    pub fn os(what: impl Into<String>, op: &'static str, errno: Errno) -> Self {
        Self::Os {
            what: what.into(),
            op,
            errno,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_without_an_os_code_is_eio_not_zero() {
        let e = std::io::Error::other("no code");
        assert_eq!(errno_of(&e), Errno::EIO);
        assert_eq!(errno_of(&std::io::Error::from_raw_os_error(0)), Errno::EIO);
        assert_eq!(
            errno_of(&std::io::Error::from_raw_os_error(libc_enodev())),
            Errno::ENODEV
        );
    }

    fn libc_enodev() -> i32 {
        Errno::ENODEV as i32
    }

    #[test]
    fn no_error_maps_to_errno_zero() {
        let samples = [
            Error::os("x", "y", Errno::UnknownErrno),
            Error::os("x", "y", Errno::EINTR),
            Error::RingPoisoned,
            Error::RingInherited,
            Error::UringRefused {
                errno: Errno::UnknownErrno,
            },
            Error::InvalidArgument { what: "x".into() },
            Error::NoFlushPath {
                gpu: "g".into(),
                reason: "r".into(),
            },
        ];
        for e in samples {
            assert_ne!(e.errno() as i32, 0, "{e}");
        }
        assert_eq!(Error::os("x", "y", Errno::UnknownErrno).errno(), Errno::EIO);
    }
}
