//! C ABI of libflush (`include/libflush.h`): the process-wide strategy behind four functions.
//!
//! Errors become negative errnos, because that is what C runtimes already handle; the reason
//! of a failed selection stays readable through `hdpflush_error()`.

use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::OnceLock;

use libflush::Error;
use nix::errno::Errno;

/// The errno a C caller sees for `e`.
pub fn errno_of(e: &Error) -> Errno {
    match e {
        Error::UnknownStrategy { .. } | Error::RegionTooSmall { .. } => Errno::EINVAL,
        Error::DeviceMissing { .. } => Errno::ENOENT,
        Error::PermissionDenied { .. } => Errno::EACCES,
        Error::VersionMismatch { .. } => Errno::EPROTO,
        Error::NoSuchDevice { .. } | Error::Unavailable { .. } => Errno::ENODEV,
        Error::Unsupported { .. } => Errno::EOPNOTSUPP,
        Error::Os { errno, .. } => *errno,
    }
}

fn code(r: libflush::Result<()>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => -(errno_of(&e) as c_int),
    }
}

/// The selection's name or error, as C strings that live as long as the process.
fn names() -> &'static (Option<CString>, Option<CString>) {
    static NAMES: OnceLock<(Option<CString>, Option<CString>)> = OnceLock::new();
    NAMES.get_or_init(|| match libflush::global() {
        Ok(f) => (CString::new(f.kind().name()).ok(), None),
        Err(e) => (None, CString::new(e.to_string()).ok()),
    })
}

fn ptr(s: &Option<CString>) -> *const c_char {
    s.as_deref().map_or(std::ptr::null(), CStr::as_ptr)
}

/// `int hdpflush_flush(void)`.
#[no_mangle]
pub extern "C" fn hdpflush_flush() -> c_int {
    code(libflush::global().and_then(|f| f.flush()))
}

/// `int hdpflush_invalidate(void)`.
#[no_mangle]
pub extern "C" fn hdpflush_invalidate() -> c_int {
    code(libflush::global().and_then(|f| f.invalidate()))
}

/// `const char *hdpflush_strategy(void)`.
#[no_mangle]
pub extern "C" fn hdpflush_strategy() -> *const c_char {
    ptr(&names().0)
}

/// `const char *hdpflush_error(void)`.
#[no_mangle]
pub extern "C" fn hdpflush_error() -> *const c_char {
    ptr(&names().1)
}
