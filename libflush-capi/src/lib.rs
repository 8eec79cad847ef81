//! C ABI of libflush (`include/libhdpflush.h`, `libhdpflush.so` / `.a`): one opaque handle per
//! GPU, and the process-wide flusher for single-GPU programs.
//!
//! Every entry point returns 0 or a negative errno (what C runtimes already handle), records
//! the failure's message in a thread-local for `hdpflush_last_error()`, and catches panics so
//! none crosses into C.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use libflush::select::GpuFlusher;
use libflush::{Completion, Error, Flush, FlusherOptions, GpuSelector, StrategyKind};
use nix::errno::Errno;

/// `HDPFLUSH_OPEN_ALLOW_DUMMY_PAGE`.
pub const OPEN_ALLOW_DUMMY_PAGE: u32 = 1 << 0;
/// `HDPFLUSH_OPEN_BATCHED`.
pub const OPEN_BATCHED: u32 = 1 << 1;
/// `HDPFLUSH_OPEN_SQPOLL`.
pub const OPEN_SQPOLL: u32 = 1 << 2;
/// `HDPFLUSH_OPEN_POSTED`.
pub const OPEN_POSTED: u32 = 1 << 3;
const OPEN_FLAGS: u32 = OPEN_ALLOW_DUMMY_PAGE | OPEN_BATCHED | OPEN_SQPOLL | OPEN_POSTED;
/// `HDPFLUSH_FLUSH_POSTED`.
pub const FLUSH_POSTED: u32 = 1 << 0;
/// `HDPFLUSH_FLUSH_COMPLETED`.
pub const FLUSH_COMPLETED: u32 = 1 << 1;
/// SQ poller idle time when the caller leaves it 0.
const DEFAULT_SQPOLL_IDLE_MS: u32 = 1000;

/// `struct hdpflush_open_options`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    /// `sizeof(struct hdpflush_open_options)`.
    pub size: u32,
    /// `HDPFLUSH_OPEN_*`.
    pub flags: u32,
    /// `HDP_MEM_FLUSH_CNTL` in the caller's remap page mapping, or NULL.
    pub remap: *mut u32,
    /// A VRAM page of this GPU, or NULL.
    pub dummy_page: *mut c_void,
    /// Its length.
    pub dummy_page_len: usize,
    /// SQ poller idle time (0: the default).
    pub sqpoll_idle_ms: u32,
    /// Zero.
    pub reserved: u32,
}

/// `hdpflush_gpu`: one GPU's flusher and the C string of its reason.
pub struct GpuHandle {
    flusher: GpuFlusher,
    reason: CString,
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// A C string from Rust text (interior NULs, which our messages never have, become spaces).
fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', " ")).unwrap_or_default()
}

fn set_last_error(message: Option<&str>) {
    LAST_ERROR.with(|e| *e.borrow_mut() = message.map(c_string));
}

/// Run `f`: record its outcome for `hdpflush_last_error()`, turn an error into its negative
/// errno and a panic into `-ENOTRECOVERABLE`.
fn call(f: impl FnOnce() -> libflush::Result<()>) -> c_int {
    let outcome = catch_unwind(AssertUnwindSafe(f));
    let (code, message) = match outcome {
        Ok(Ok(())) => (0, None),
        Ok(Err(e)) => (e.errno() as c_int, Some(e.to_string())),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            (
                Errno::ENOTRECOVERABLE as c_int,
                Some(format!(
                    "internal error in libhdpflush (please report it): {what}"
                )),
            )
        }
    };
    set_last_error(message.as_deref());
    -code
}

fn invalid(what: impl Into<String>) -> Error {
    Error::InvalidArgument { what: what.into() }
}

/// The caller's options, checked, as libflush's.
///
/// # Safety
///
/// `opts` is NULL or points at a readable `hdpflush_open_options` of at least `size` bytes,
/// whose mappings satisfy the header's contract.
unsafe fn options(opts: *const OpenOptions) -> libflush::Result<FlusherOptions> {
    // SAFETY: the caller's contract: NULL or a readable struct.
    let Some(o) = (unsafe { opts.as_ref() }) else {
        return Ok(FlusherOptions::new());
    };
    if (o.size as usize) < std::mem::size_of::<OpenOptions>() {
        return Err(invalid(format!(
            "hdpflush_open_options.size is {}, need {} (set it to sizeof(struct hdpflush_open_options))",
            o.size,
            std::mem::size_of::<OpenOptions>()
        )));
    }
    if o.flags & !OPEN_FLAGS != 0 || o.reserved != 0 {
        return Err(invalid(format!(
            "hdpflush_open_options: unknown flag bits {:#x} or nonzero reserved",
            o.flags & !OPEN_FLAGS
        )));
    }
    if o.flags & OPEN_SQPOLL != 0 && o.flags & OPEN_BATCHED == 0 {
        return Err(invalid("HDPFLUSH_OPEN_SQPOLL needs HDPFLUSH_OPEN_BATCHED"));
    }
    let mut options = FlusherOptions::new()
        .allow_dummy_page(o.flags & OPEN_ALLOW_DUMMY_PAGE != 0)
        .completion(if o.flags & OPEN_POSTED != 0 {
            Completion::Posted
        } else {
            Completion::Completed
        });
    if o.flags & OPEN_BATCHED != 0 {
        let idle = (o.flags & OPEN_SQPOLL != 0).then_some(match o.sqpoll_idle_ms {
            0 => DEFAULT_SQPOLL_IDLE_MS,
            ms => ms,
        });
        options = options.batched(idle);
    }
    if !o.remap.is_null() {
        // SAFETY: the header's contract for `remap`.
        options = unsafe { options.remap_page(o.remap) }?;
    }
    if !o.dummy_page.is_null() {
        // SAFETY: the header's contract for `dummy_page`.
        options = unsafe { options.dummy_page(o.dummy_page.cast(), o.dummy_page_len) }?;
    }
    Ok(options)
}

/// Open `named` with `opts` into `*out`.
///
/// # Safety
///
/// `opts` as for [`options`]; `out` NULL or writable.
unsafe fn open(
    named: impl FnOnce() -> libflush::Result<GpuSelector>,
    opts: *const OpenOptions,
    out: *mut *mut GpuHandle,
) -> c_int {
    call(|| {
        if out.is_null() {
            return Err(invalid("the out pointer is NULL"));
        }
        // SAFETY: `out` is non-null and, per the contract, writable.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller's contract for `opts`.
        let options = unsafe { options(opts) }?;
        let flusher = libflush::open_gpu(named()?, options)?;
        let reason = c_string(&flusher.selection().reason);
        let handle = Box::new(GpuHandle { flusher, reason });
        // SAFETY: as above.
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(())
    })
}

/// `int hdpflush_open_pci(const char *, const struct hdpflush_open_options *, hdpflush_gpu **)`.
///
/// # Safety
///
/// `pci_address` NULL or a NUL-terminated string; `opts` and `out` as the header says.
#[no_mangle]
pub unsafe extern "C" fn hdpflush_open_pci(
    pci_address: *const c_char,
    opts: *const OpenOptions,
    out: *mut *mut GpuHandle,
) -> c_int {
    let named = || {
        if pci_address.is_null() {
            return Err(invalid("the PCI address is NULL"));
        }
        // SAFETY: non-null and, per the contract, NUL-terminated.
        let text = unsafe { CStr::from_ptr(pci_address) }.to_string_lossy();
        Ok(GpuSelector::Pci(text.parse()?))
    };
    // SAFETY: the caller's contract.
    unsafe { open(named, opts, out) }
}

/// `int hdpflush_open_gpu_id(uint32_t, const struct hdpflush_open_options *, hdpflush_gpu **)`.
///
/// # Safety
///
/// `opts` and `out` as the header says.
#[no_mangle]
pub unsafe extern "C" fn hdpflush_open_gpu_id(
    kfd_gpu_id: u32,
    opts: *const OpenOptions,
    out: *mut *mut GpuHandle,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { open(|| Ok(GpuSelector::KfdGpuId(kfd_gpu_id)), opts, out) }
}

/// `int hdpflush_open_index(uint32_t, const struct hdpflush_open_options *, hdpflush_gpu **)`.
///
/// # Safety
///
/// `opts` and `out` as the header says.
#[no_mangle]
pub unsafe extern "C" fn hdpflush_open_index(
    module_index: u32,
    opts: *const OpenOptions,
    out: *mut *mut GpuHandle,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { open(|| Ok(GpuSelector::ModuleIndex(module_index)), opts, out) }
}

/// The handle behind `gpu`, or EINVAL.
///
/// # Safety
///
/// `gpu` NULL or a live handle from `hdpflush_open_*`.
unsafe fn handle<'a>(gpu: *const GpuHandle) -> libflush::Result<&'a GpuHandle> {
    // SAFETY: the caller's contract.
    unsafe { gpu.as_ref() }.ok_or_else(|| invalid("the hdpflush_gpu handle is NULL"))
}

fn completion_of(flags: u32, flusher: &dyn Flush) -> libflush::Result<Completion> {
    match flags {
        0 => Ok(flusher.completion()),
        FLUSH_POSTED => Ok(Completion::Posted),
        FLUSH_COMPLETED => Ok(Completion::Completed),
        _ => Err(invalid(format!(
            "flush flags {flags:#x}: give HDPFLUSH_FLUSH_POSTED or HDPFLUSH_FLUSH_COMPLETED, not both, nothing else"
        ))),
    }
}

/// `int hdpflush_gpu_flush(hdpflush_gpu *, uint32_t)`.
///
/// # Safety
///
/// `gpu` NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn hdpflush_gpu_flush(gpu: *mut GpuHandle, flags: u32) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let h = unsafe { handle(gpu) }?;
        h.flusher.flush_with(completion_of(flags, &h.flusher)?)
    })
}

/// `int hdpflush_flush_gpus(hdpflush_gpu *const *, size_t, uint32_t)`.
///
/// # Safety
///
/// `gpus` points at `count` handles (each NULL or live), or is NULL with `count` 0.
#[no_mangle]
pub unsafe extern "C" fn hdpflush_flush_gpus(
    gpus: *const *mut GpuHandle,
    count: usize,
    flags: u32,
) -> c_int {
    call(|| {
        if count == 0 {
            return Ok(());
        }
        if gpus.is_null() {
            return Err(invalid("the GPU array is NULL"));
        }
        // SAFETY: non-null, and per the contract `count` readable handles.
        let all = unsafe { std::slice::from_raw_parts(gpus, count) };
        let mut first = None;
        for (i, &gpu) in all.iter().enumerate() {
            // SAFETY: each is NULL or live, per the contract.
            let flushed = unsafe { handle(gpu) }.and_then(|h| {
                h.flusher
                    .flush_with(completion_of(flags, &h.flusher)?)
                    .map_err(|e| Error::Os {
                        what: format!("GPU {} (entry {i}): {e}", h.flusher.gpu()),
                        op: "flush",
                        errno: e.errno(),
                    })
            });
            if let Err(e) = flushed {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    })
}

/// `int hdpflush_gpu_invalidate(hdpflush_gpu *)`.
///
/// # Safety
///
/// `gpu` NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn hdpflush_gpu_invalidate(gpu: *mut GpuHandle) -> c_int {
    // SAFETY: the caller's contract.
    call(|| unsafe { handle(gpu) }?.flusher.invalidate())
}

/// A strategy's name as a static C string.
fn strategy_name(kind: StrategyKind) -> &'static CStr {
    match kind {
        StrategyKind::MmioRemap => c"mmio-remap",
        StrategyKind::KfdIoctl => c"kfd-ioctl",
        StrategyKind::Ioctl => c"ioctl",
        StrategyKind::Uring => c"uring",
        StrategyKind::DummyPage => c"dummy-page",
        StrategyKind::Legacy => c"legacy",
        StrategyKind::Sim => c"sim",
    }
}

/// `const char *hdpflush_gpu_strategy(const hdpflush_gpu *)`.
///
/// # Safety
///
/// `gpu` NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn hdpflush_gpu_strategy(gpu: *const GpuHandle) -> *const c_char {
    // SAFETY: the caller's contract.
    unsafe { gpu.as_ref() }.map_or(std::ptr::null(), |h| {
        strategy_name(h.flusher.kind()).as_ptr()
    })
}

/// `const char *hdpflush_gpu_reason(const hdpflush_gpu *)`.
///
/// # Safety
///
/// `gpu` NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn hdpflush_gpu_reason(gpu: *const GpuHandle) -> *const c_char {
    // SAFETY: the caller's contract.
    unsafe { gpu.as_ref() }.map_or(std::ptr::null(), |h| h.reason.as_ptr())
}

/// `void hdpflush_close(hdpflush_gpu *)`.
///
/// # Safety
///
/// `gpu` NULL or a live handle no other thread is using; it is dead afterwards.
#[no_mangle]
pub unsafe extern "C" fn hdpflush_close(gpu: *mut GpuHandle) {
    if gpu.is_null() {
        return;
    }
    // A panic while dropping (there is none to expect) must not unwind into C either.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: a live handle from Box::into_raw, given back exactly once per the contract.
        drop(unsafe { Box::from_raw(gpu) });
    }));
}

/// `const char *hdpflush_last_error(void)`.
#[no_mangle]
pub extern "C" fn hdpflush_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ref().map_or(std::ptr::null(), |s| s.as_ptr()))
}

/// `int hdpflush_flush(void)`.
#[no_mangle]
pub extern "C" fn hdpflush_flush() -> c_int {
    call(|| libflush::global()?.flush())
}

/// `int hdpflush_invalidate(void)`.
#[no_mangle]
pub extern "C" fn hdpflush_invalidate() -> c_int {
    call(|| libflush::global()?.invalidate())
}

/// The process-wide strategy's name and error, as C strings that live as long as the process.
fn process_wide() -> &'static (Option<&'static CStr>, Option<CString>) {
    static NAMES: OnceLock<(Option<&'static CStr>, Option<CString>)> = OnceLock::new();
    NAMES.get_or_init(|| {
        catch_unwind(|| match libflush::global() {
            Ok(f) => (Some(strategy_name(f.kind())), None),
            Err(e) => (None, Some(c_string(&e.to_string()))),
        })
        .unwrap_or_else(|_| {
            (
                None,
                Some(c_string("internal error in libhdpflush while selecting")),
            )
        })
    })
}

/// `const char *hdpflush_strategy(void)`.
#[no_mangle]
pub extern "C" fn hdpflush_strategy() -> *const c_char {
    process_wide().0.map_or(std::ptr::null(), CStr::as_ptr)
}

/// `const char *hdpflush_error(void)`.
#[no_mangle]
pub extern "C" fn hdpflush_error() -> *const c_char {
    process_wide()
        .1
        .as_deref()
        .map_or(std::ptr::null(), CStr::as_ptr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_enotrecoverable_with_a_message() {
        let code = call(|| panic!("boom"));
        assert_eq!(code, -(Errno::ENOTRECOVERABLE as c_int));
        // SAFETY: set just above on this thread.
        let msg = unsafe { CStr::from_ptr(hdpflush_last_error()) }.to_string_lossy();
        assert!(
            msg.contains("internal error") && msg.contains("boom"),
            "{msg}"
        );
        assert_eq!(call(|| Ok(())), 0);
        assert!(hdpflush_last_error().is_null(), "a success clears it");
    }

    #[test]
    fn the_last_error_is_per_thread() {
        assert_eq!(call(|| Err(invalid("here"))), -(Errno::EINVAL as c_int));
        std::thread::spawn(|| assert!(hdpflush_last_error().is_null()))
            .join()
            .unwrap();
        assert!(!hdpflush_last_error().is_null());
    }

    #[test]
    fn the_options_struct_matches_the_header_layout_on_lp64() {
        // size, flags, remap, dummy_page, dummy_page_len, sqpoll_idle_ms, reserved.
        assert_eq!(std::mem::size_of::<OpenOptions>(), 40);
        assert_eq!(std::mem::offset_of!(OpenOptions, remap), 8);
        assert_eq!(std::mem::offset_of!(OpenOptions, dummy_page_len), 24);
        assert_eq!(std::mem::offset_of!(OpenOptions, reserved), 36);
    }
}
