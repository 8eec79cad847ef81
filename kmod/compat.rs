// SPDX-License-Identifier: GPL-2.0
//! Where the kernel crate's API moved between the kernels the module builds for: 6.12 LTS and
//! 7.x. Kbuild sets `hdp_linux7` on 7.x; everything else uses these names.

/// Byte-view traits for the uAPI structs: in `kernel::types` on 6.x, `kernel::transmute` on
/// 7.x (where the prelude's `FromBytes` is zerocopy's, which only a derive may implement).
#[cfg(hdp_linux7)]
pub use kernel::transmute::{AsBytes, FromBytes};
#[cfg(not(hdp_linux7))]
pub use kernel::types::{AsBytes, FromBytes};

use kernel::ffi::c_char;
use kernel::str::CStr;
use kernel::uaccess::UserPtr;

/// A user-space address as the kernel crate's `UserPtr` (an integer on 6.x, a pointer type with
/// a constructor on 7.x).
pub fn user_ptr(addr: usize) -> UserPtr {
    #[cfg(hdp_linux7)]
    return UserPtr::from_addr(addr);
    #[cfg(not(hdp_linux7))]
    return addr as UserPtr;
}

/// A C string's bytes without the NUL (`CStr` is the kernel's own type on 6.x, core's on 7.x).
pub fn c_str_bytes(s: &CStr) -> &[u8] {
    #[cfg(hdp_linux7)]
    return s.to_bytes();
    #[cfg(not(hdp_linux7))]
    return s.as_bytes();
}

/// A C string's pointer, in a constant (module parameters' names).
pub const fn c_str_ptr(s: &CStr) -> *const c_char {
    #[cfg(hdp_linux7)]
    return kernel::str::as_char_ptr_in_const_context(s);
    #[cfg(not(hdp_linux7))]
    return s.as_char_ptr();
}

/// 7.x's print macros take `kernel::fmt::Display`, which the module's error types implement by
/// forwarding to their `core::fmt::Display` (params.rs has no kernel dependency: the host tests
/// build it too).
#[cfg(hdp_linux7)]
mod display {
    use core::fmt::{Display, Formatter, Result};

    impl kernel::fmt::Display for crate::params::BarError {
        fn fmt(&self, f: &mut Formatter<'_>) -> Result {
            Display::fmt(self, f)
        }
    }

    impl kernel::fmt::Display for crate::params::ParamError<'_> {
        fn fmt(&self, f: &mut Formatter<'_>) -> Result {
            Display::fmt(self, f)
        }
    }
}
