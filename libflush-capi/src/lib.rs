//! C ABI of libflush (`include/libhdpflush.h`, `libhdpflush.so` / `.a`): one opaque handle per
//! GPU, and the process-wide flusher for single-GPU programs.
//!
//! Every entry point returns 0 or a negative errno (what C runtimes already handle), records
//! the failure's message in a thread-local for `hdpflush_last_error()`, and catches panics so
//! none crosses into C.
//!
//! The ABI grows without breaking callers: `struct hdpflush_open_options` carries its size, the
//! library reads what the caller's version has and treats the rest as zero, and refuses a newer
//! caller's struct only if it sets something this library does not know
//! ([`HDPFLUSH_OPEN_OPTIONS_SIZE_VER1`], [`hdpflush_version`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::mem::{offset_of, size_of, ManuallyDrop};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, TryLockError};

use libflush::select::GpuFlusher;
use libflush::strategy::BackingKind;
use libflush::{Completion, Error, Flush, FlusherOptions, GpuSelector, StrategyKind};
use nix::errno::Errno;

/// `HDPFLUSH_API_VERSION`: what this library implements. 1: the first release; 2: adds
/// `hdpflush_open_options.strategy`, `HDPFLUSH_OPEN_REQUIRE_HARDWARE`, `hdpflush_gpu_backing()`
/// and `hdpflush_version()`.
pub const API_VERSION: u32 = 2;

/// `HDPFLUSH_OPEN_ALLOW_DUMMY_PAGE`.
pub const OPEN_ALLOW_DUMMY_PAGE: u32 = 1 << 0;
/// `HDPFLUSH_OPEN_BATCHED`.
pub const OPEN_BATCHED: u32 = 1 << 1;
/// `HDPFLUSH_OPEN_SQPOLL`.
pub const OPEN_SQPOLL: u32 = 1 << 2;
/// `HDPFLUSH_OPEN_POSTED`.
pub const OPEN_POSTED: u32 = 1 << 3;
/// `HDPFLUSH_OPEN_REQUIRE_HARDWARE` (API 2).
pub const OPEN_REQUIRE_HARDWARE: u32 = 1 << 4;
const OPEN_FLAGS: u32 =
    OPEN_ALLOW_DUMMY_PAGE | OPEN_BATCHED | OPEN_SQPOLL | OPEN_POSTED | OPEN_REQUIRE_HARDWARE;
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
    /// A strategy's name to use exactly ("ioctl", "kfd-ioctl", ...), or NULL to choose (API 2).
    pub strategy: *const c_char,
}

/// `HDPFLUSH_OPEN_OPTIONS_SIZE_VER1`: the first version's struct, everything before `strategy`.
/// The smallest `size` accepted.
pub const HDPFLUSH_OPEN_OPTIONS_SIZE_VER1: usize = offset_of!(OpenOptions, strategy);

/// The struct's size in each header version before this one.
const OPEN_OPTIONS_SIZES: [usize; 1] = [HDPFLUSH_OPEN_OPTIONS_SIZE_VER1];

/// What a live handle's first word holds; [`DEAD`] once it is closed.
const LIVE: u64 = u64::from_be_bytes(*b"hdpflush");
const DEAD: u64 = u64::from_be_bytes(*b"hdpDEAD!");
/// Closed handles kept allocated (their flusher dropped), so that a use after close is caught
/// as `-EBADF` rather than touching freed memory.
const QUARANTINE: usize = 256;
/// How often a close tries the quarantine's lock before leaving its handle unfreed.
const QUARANTINE_TRIES: usize = 1000;

/// `hdpflush_gpu`: one GPU's flusher and the C string of its reason.
pub struct GpuHandle {
    state: AtomicU64,
    flusher: ManuallyDrop<GpuFlusher>,
    reason: CString,
}

/// A closed handle's address (sent between threads only to be freed).
struct Closed(*mut GpuHandle);
// SAFETY: the pointer is only dereferenced to free the handle, by whichever thread evicts it.
unsafe impl Send for Closed {}

static CLOSED: Mutex<VecDeque<Closed>> = Mutex::new(VecDeque::new());

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// A C string from Rust text (interior NULs, which our messages never have, become spaces).
fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', " ")).unwrap_or_default()
}

fn set_last_error(message: Option<&str>) {
    // During thread exit the thread-local may be gone: the message is then dropped, never a
    // panic (which would abort the process from a destructor).
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = message.map(c_string));
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

/// The caller's struct, whatever its version: `size` checked first, then `min(size, ours)`
/// bytes read and the rest zero; a newer caller's extra bytes must be zero (`E2BIG`).
///
/// # Safety
///
/// `opts` points at a readable struct of at least `size` bytes, `size` being its first field.
unsafe fn read_options(opts: *const OpenOptions) -> libflush::Result<OpenOptions> {
    // SAFETY: the first field, readable per the contract; the caller's alignment is not trusted.
    let size = unsafe { opts.cast::<u32>().read_unaligned() } as usize;
    if size < HDPFLUSH_OPEN_OPTIONS_SIZE_VER1 {
        return Err(invalid(format!(
            "hdpflush_open_options.size is {size}, less than the first version's {HDPFLUSH_OPEN_OPTIONS_SIZE_VER1} (set it to sizeof(struct hdpflush_open_options))"
        )));
    }
    let ours = size_of::<OpenOptions>();
    // Every size a header version had, or larger than ours: never one that splits a field.
    if size < ours && !OPEN_OPTIONS_SIZES.contains(&size) {
        return Err(invalid(format!(
            "hdpflush_open_options.size is {size}, which no version of the struct has (set it to sizeof(struct hdpflush_open_options))"
        )));
    }
    let bytes = opts.cast::<u8>();
    for at in ours..size {
        // SAFETY: `at < size`, readable per the contract.
        if unsafe { bytes.add(at).read() } != 0 {
            return Err(Error::Os {
                what: format!(
                    "hdpflush_open_options: byte {at} of the caller's {size} is set, and this library (API {API_VERSION}) knows only the first {ours}; use a newer libhdpflush or leave the new fields 0"
                ),
                op: "open",
                errno: Errno::E2BIG,
            });
        }
    }
    let mut o = std::mem::MaybeUninit::<OpenOptions>::zeroed();
    // SAFETY: `min(size, ours)` bytes are readable from the caller and writable in `o`.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes, o.as_mut_ptr().cast::<u8>(), size.min(ours));
    }
    // SAFETY: all-zero is a valid OpenOptions (integers and null pointers), and the bytes copied
    // over it came from the caller's struct of the same layout.
    Ok(unsafe { o.assume_init() })
}

/// The caller's options, checked, as libflush's.
///
/// # Safety
///
/// `opts` is NULL or points at a readable `hdpflush_open_options` of at least `size` bytes,
/// whose mappings and strings satisfy the header's contract.
unsafe fn options(opts: *const OpenOptions) -> libflush::Result<FlusherOptions> {
    if opts.is_null() {
        return Ok(FlusherOptions::new());
    }
    // SAFETY: the caller's contract.
    let o = unsafe { read_options(opts) }?;
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
        .require_hardware(o.flags & OPEN_REQUIRE_HARDWARE != 0)
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
    if !o.strategy.is_null() {
        // SAFETY: non-null and, per the contract, NUL-terminated.
        let name = unsafe { CStr::from_ptr(o.strategy) }.to_string_lossy();
        options = options.strategy(StrategyKind::parse(
            &name,
            "hdpflush_open_options.strategy",
        )?);
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
        let handle = Box::new(GpuHandle {
            state: AtomicU64::new(LIVE),
            flusher: ManuallyDrop::new(flusher),
            reason,
        });
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

/// The handle behind `gpu`: EINVAL for NULL, EBADF for one already closed.
///
/// # Safety
///
/// `gpu` NULL, a live handle from `hdpflush_open_*`, or one of the last [`QUARANTINE`] closed.
unsafe fn handle<'a>(gpu: *const GpuHandle) -> libflush::Result<&'a GpuHandle> {
    // SAFETY: the caller's contract.
    let h = unsafe { gpu.as_ref() }.ok_or_else(|| invalid("the hdpflush_gpu handle is NULL"))?;
    if h.state.load(Ordering::Acquire) != LIVE {
        return Err(Error::Os {
            what: format!("hdpflush_gpu {gpu:p}: the handle was closed (or is not a handle)"),
            op: "use",
            errno: Errno::EBADF,
        });
    }
    Ok(h)
}

/// The completion `HDPFLUSH_FLUSH_*` flags ask for; `None` (flags 0): each flusher's own.
fn requested_completion(flags: u32) -> libflush::Result<Option<Completion>> {
    match flags {
        0 => Ok(None),
        FLUSH_POSTED => Ok(Some(Completion::Posted)),
        FLUSH_COMPLETED => Ok(Some(Completion::Completed)),
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
        let completion = requested_completion(flags)?.unwrap_or_else(|| h.flusher.completion());
        h.flusher.flush_with(completion)
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
        let completion = requested_completion(flags)?;
        // SAFETY: non-null, and per the contract `count` readable handles.
        let all = unsafe { std::slice::from_raw_parts(gpus, count) };
        // Every entry checked first: a bad one fails alone, the others are still flushed.
        let handles: Vec<libflush::Result<&GpuHandle>> = all
            .iter()
            .enumerate()
            .map(|(i, &gpu)| {
                // SAFETY: each is NULL, live or recently closed, per the contract.
                unsafe { handle(gpu) }.map_err(|e| match e {
                    Error::InvalidArgument { .. } => {
                        invalid(format!("entry {i} of the GPU array is NULL"))
                    }
                    other => other,
                })
            })
            .collect();
        let live: Vec<&dyn Flush> = handles
            .iter()
            .filter_map(|h| h.as_ref().ok())
            .map(|h| &*h.flusher as &dyn Flush)
            .collect();
        // One kernel entry for every GPU the module serves (libflush::flush_gpus).
        let mut flushed = libflush::flush_gpus(&live, completion).into_iter();
        let mut first = None;
        for (i, h) in handles.into_iter().enumerate() {
            let result = h.and_then(|h| {
                flushed
                    .next()
                    .unwrap_or_else(|| {
                        Err(invalid("internal: flush_gpus gave fewer results than GPUs"))
                    })
                    .map_err(|e| Error::Os {
                        what: format!("GPU {} (entry {i}): {e}", h.flusher.gpu()),
                        op: "flush",
                        errno: e.errno(),
                    })
            });
            if let Err(e) = result {
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
    unsafe { handle(gpu) }.map_or(std::ptr::null(), |h| {
        strategy_name(h.flusher.kind()).as_ptr()
    })
}

/// What a backing is called in C.
fn backing_name(kind: BackingKind) -> &'static CStr {
    match kind {
        BackingKind::Hardware => c"hardware",
        BackingKind::EmulatedDevice => c"emulated-device",
        BackingKind::KernelModel => c"kernel-model",
        BackingKind::StandIn => c"stand-in",
        BackingKind::Simulator => c"simulator",
        BackingKind::HostKernel => c"host-kernel",
    }
}

/// `const char *hdpflush_gpu_backing(const hdpflush_gpu *)`.
///
/// # Safety
///
/// `gpu` NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn hdpflush_gpu_backing(gpu: *const GpuHandle) -> *const c_char {
    // SAFETY: the caller's contract.
    unsafe { handle(gpu) }.map_or(std::ptr::null(), |h| {
        backing_name(h.flusher.backing().kind).as_ptr()
    })
}

/// `uint32_t hdpflush_version(void)`: the API version this library implements.
#[no_mangle]
pub extern "C" fn hdpflush_version() -> u32 {
    API_VERSION
}

/// `const char *hdpflush_gpu_reason(const hdpflush_gpu *)`.
///
/// # Safety
///
/// `gpu` NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn hdpflush_gpu_reason(gpu: *const GpuHandle) -> *const c_char {
    // SAFETY: the caller's contract.
    unsafe { handle(gpu) }.map_or(std::ptr::null(), |h| h.reason.as_ptr())
}

/// `void hdpflush_close(hdpflush_gpu *)`.
///
/// The flusher is dropped (its fds and rings closed) at once; the handle's memory is kept for
/// the next [`QUARANTINE`] closes, so a later use or a second close of it is caught (`-EBADF`;
/// a second close is ignored and recorded for `hdpflush_last_error()`).
///
/// # Safety
///
/// `gpu` NULL, a live handle no other thread is using, or one of the last [`QUARANTINE`]
/// closed.
#[no_mangle]
pub unsafe extern "C" fn hdpflush_close(gpu: *mut GpuHandle) {
    if gpu.is_null() {
        return;
    }
    // SAFETY: a handle from Box::into_raw, live or quarantined, per the contract.
    let state = unsafe { &(*gpu).state };
    if state
        .compare_exchange(LIVE, DEAD, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        set_last_error(Some(&format!(
            "hdpflush_close({gpu:p}): the handle was already closed (or is not a handle); ignored"
        )));
        return;
    }
    // A panic while dropping (there is none to expect) must not unwind into C either.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: this call won the LIVE -> DEAD exchange, so it alone drops the flusher, once;
        // no other thread uses the handle, per the contract.
        unsafe { ManuallyDrop::drop(&mut (*gpu).flusher) };
        // Never blocks: in a child, a lock a parent's thread held at the fork never opens. If
        // it stays busy, the closed shell (its flusher already dropped) is left unfreed.
        let quarantined = (0..QUARANTINE_TRIES).find_map(|_| match CLOSED.try_lock() {
            Ok(closed) => Some(closed),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => {
                std::thread::yield_now();
                None
            }
        });
        let evicted = quarantined.and_then(|mut closed| {
            closed.push_back(Closed(gpu));
            (closed.len() > QUARANTINE)
                .then(|| closed.pop_front())
                .flatten()
        });
        if let Some(Closed(old)) = evicted {
            // SAFETY: a handle from Box::into_raw whose flusher was dropped at its close; it
            // leaves the quarantine exactly once, here.
            drop(unsafe { Box::from_raw(old) });
        }
    }));
}

/// `const char *hdpflush_last_error(void)`.
#[no_mangle]
pub extern "C" fn hdpflush_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.borrow().as_ref().map_or(std::ptr::null(), |s| s.as_ptr()))
        .unwrap_or(std::ptr::null())
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
        // size, flags, remap, dummy_page, dummy_page_len, sqpoll_idle_ms, reserved, strategy.
        assert_eq!(size_of::<OpenOptions>(), 48);
        assert_eq!(offset_of!(OpenOptions, remap), 8);
        assert_eq!(offset_of!(OpenOptions, dummy_page_len), 24);
        assert_eq!(offset_of!(OpenOptions, reserved), 36);
        assert_eq!(
            HDPFLUSH_OPEN_OPTIONS_SIZE_VER1, 40,
            "the first release's struct"
        );
    }

    /// A caller's struct of `size` bytes: ours, cut short or zero-extended, then `tail` set.
    fn caller_struct(size: usize, strategy: &CStr, tail: Option<usize>) -> Vec<u64> {
        let mut words = vec![0u64; size.div_ceil(8).max(6)];
        let o = OpenOptions {
            size: size as u32,
            flags: 0,
            remap: std::ptr::null_mut(),
            dummy_page: std::ptr::null_mut(),
            dummy_page_len: 0,
            sqpoll_idle_ms: 0,
            reserved: 0,
            strategy: strategy.as_ptr(),
        };
        let n = size.min(size_of::<OpenOptions>());
        // SAFETY: `words` holds at least `size` bytes; `o` is `size_of::<OpenOptions>()` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&o as *const OpenOptions).cast::<u8>(),
                words.as_mut_ptr().cast::<u8>(),
                n,
            );
        }
        if let Some(at) = tail {
            // SAFETY: `at < size`, inside `words`.
            unsafe { words.as_mut_ptr().cast::<u8>().add(at).write(1) };
        }
        words
    }

    #[test]
    fn older_equal_and_newer_callers_are_read_by_their_own_size() {
        let read = |w: &Vec<u64>| {
            // SAFETY: `w` holds the struct's `size` bytes.
            unsafe { read_options(w.as_ptr().cast()) }
        };
        // An older caller (the first release): no strategy field; it reads as NULL.
        let o = read(&caller_struct(
            HDPFLUSH_OPEN_OPTIONS_SIZE_VER1,
            c"sim",
            None,
        ))
        .unwrap();
        assert!(o.strategy.is_null(), "nothing read past the caller's size");
        // An equal caller: every field.
        let o = read(&caller_struct(48, c"sim", None)).unwrap();
        // SAFETY: set from a static C string just above.
        assert_eq!(unsafe { CStr::from_ptr(o.strategy) }, c"sim");
        // A newer caller with a zero tail is accepted; a set tail is E2BIG and says which byte.
        assert!(read(&caller_struct(64, c"sim", None)).is_ok());
        let err = read(&caller_struct(64, c"sim", Some(57))).unwrap_err();
        assert_eq!(err.errno(), Errno::E2BIG);
        assert!(
            err.to_string().contains("byte 57 of the caller's 64"),
            "{err}"
        );
        // A size that splits a field (part of a pointer): EINVAL.
        let err = read(&caller_struct(44, c"sim", None)).unwrap_err();
        assert_eq!(err.errno(), Errno::EINVAL);
        assert!(
            err.to_string().contains("no version of the struct"),
            "{err}"
        );
        // Smaller than the first release: EINVAL, before anything else is read.
        let err = read(&caller_struct(36, c"sim", None)).unwrap_err();
        assert_eq!(err.errno(), Errno::EINVAL);
        assert!(
            err.to_string().contains("less than the first version's 40"),
            "{err}"
        );
    }
}
