//! One error type for the crate; `Clone` so the process-wide selection can hand it out again.

use nix::errno::Errno;

use crate::strategy::StrategyKind;

/// The errno inside an `io::Error` from std or the io-uring crate (0 if it carries none).
pub(crate) fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(0))
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
    #[error("{path}: permission denied; the device is mode 0660: run as root or add this user to the device's group")]
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
