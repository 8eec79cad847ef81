// SPDX-License-Identifier: GPL-2.0
//! The binding layer: every `unsafe` of the module lives here, each with its SAFETY argument.
//!
//! Linux 6.12 has no Rust abstractions for misc devices, PCI, I/O memory, io_uring commands or
//! module parameters, so this file wraps the few C interfaces the module needs into safe types:
//! [`MiscDevice`], [`IoPage`], [`PciDev`], the `module_param!` macro, [`ndelay`]. Upstream grows
//! such abstractions from 6.13 on; keeping this layer small lets the module move to them.

use core::cell::UnsafeCell;
use core::marker::{PhantomData, PhantomPinned};
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

// The C interfaces come from the module's own bindings (Kbuild, bindings.h), so that the kernel
// tree needs no change; only the kernel crate's helpers for C inline functions (mutexes) are
// taken from `kernel::bindings`.
use crate::c as bindings;
use kernel::error::to_result;
use kernel::ffi::{c_int, c_long, c_uint, c_ulong};
use kernel::prelude::*;
use kernel::types::Opaque;
use kernel::uaccess::{UserPtr, UserSlice};
use kernel::ThisModule;

use crate::compat::{AsBytes, FromBytes};

use crate::uapi::{HdpFlushDeviceInfo, HdpFlushRequest, HdpFlushStats, HdpFlushVersion};

// ---------------------------------------------------------------------------------------------
// uAPI structs as user memory
// ---------------------------------------------------------------------------------------------

// SAFETY: plain-old-data `repr(C)` structs of integers with explicit reserved fields and no
// padding (asserted in uapi.rs by size): every bit pattern is valid and no byte is
// uninitialised.
unsafe impl FromBytes for HdpFlushRequest {}
// SAFETY: as above.
unsafe impl FromBytes for HdpFlushDeviceInfo {}
// SAFETY: as above.
unsafe impl AsBytes for HdpFlushDeviceInfo {}
// SAFETY: as above.
unsafe impl FromBytes for HdpFlushStats {}
// SAFETY: as above.
unsafe impl AsBytes for HdpFlushStats {}
// SAFETY: as above.
unsafe impl AsBytes for HdpFlushVersion {}

// ---------------------------------------------------------------------------------------------
// Misc device
// ---------------------------------------------------------------------------------------------

/// What a misc device does with the calls user space makes; implemented by the module.
pub trait MiscHandler: Sync + Sized {
    /// What a `URING_CMD` carries from its issue to its task work: plain data, kept in the
    /// command's own 32-byte `pdu` until then.
    type UringTask: Copy + 'static;
    /// An ioctl: `cmd` as given, `arg` the user pointer (or value).
    fn ioctl(&self, cmd: u32, arg: UserSlicer) -> Result<i64>;
    /// An io_uring `URING_CMD`, at issue, where it must not sleep: refused with an error,
    /// answered now, or accepted and then served by [`MiscHandler::uring_task`].
    fn uring_cmd(&self, cmd: UringCmd) -> Result<UringReply<Self::UringTask>>;
    /// Serve an accepted `URING_CMD` from the submitting task's task work (it may sleep). io_uring
    /// runs that work once the submission is done, so a batch of commands submitted together
    /// has all been issued before the first of them is served.
    fn uring_task(&self, task: Self::UringTask) -> Result<i32>;
}

/// How a `URING_CMD` is answered at issue.
pub enum UringReply<T> {
    /// Completed now, with this value.
    Done(i32),
    /// Served later, from the submitter's task work.
    InTask(T),
}

/// A `URING_CMD` SQE as read once, each field with one volatile read: the SQE may still be in
/// the ring user space shares with the kernel, where it can change under us.
pub struct UringCmd {
    /// `sqe->cmd_op`.
    pub cmd_op: u32,
    /// `sqe->uring_cmd_flags` (`IORING_URING_CMD_*`).
    pub cmd_flags: u32,
    /// Whether a field a command of ours never uses is nonzero: `ioprio`, `addr`, `len`,
    /// `buf_index`, `file_index`, or, with 128-byte SQEs, the command area past our 16 bytes.
    pub unused_set: bool,
    /// The request from the first 16 bytes of the command area.
    pub req: HdpFlushRequest,
}

/// Room for a misc device's name and its node's name, NUL included.
pub const MISC_NAME_LEN: usize = 48;

/// Bytes of `io_uring_cmd.pdu`, a driver's per-command scratch space.
const PDU_LEN: usize = 32;

/// Builds `UserSlice`s for an ioctl's argument, sized by the caller.
pub struct UserSlicer(UserPtr);

impl UserSlicer {
    /// The argument as a user buffer of `len` bytes. Access faults are reported as EFAULT by
    /// the reader and writer.
    pub fn slice(&self, len: usize) -> UserSlice {
        UserSlice::new(self.0, len)
    }
}

/// A misc device whose calls go to `T`. Pinned: the kernel holds pointers to the embedded
/// `miscdevice` and `file_operations` while it is registered, until `Drop` deregisters it.
/// Built first and registered later, so that the handler can be set up (and told about bus
/// events) before user space can reach it.
#[pin_data(PinnedDrop)]
pub struct MiscDevice<T: MiscHandler> {
    #[pin]
    misc: Opaque<bindings::miscdevice>,
    #[pin]
    fops: Opaque<bindings::file_operations>,
    /// The device's name and its node's name under /dev, NUL-terminated; the kernel keeps
    /// pointers to both while the device is registered.
    names: UnsafeCell<[[u8; MISC_NAME_LEN]; 2]>,
    handler: T,
    registered: AtomicBool,
    /// Set by [`MiscDevice::publish`]: until then opens fail with ENXIO, so a module whose
    /// init fails after registering this device (and so frees it) never has a file open on it.
    published: AtomicBool,
    #[pin]
    _pin: PhantomPinned,
}

// SAFETY: the C structures are written only by `register`, once (guarded by `registered`),
// before misc_register publishes them; after that only the kernel reads them. The handler is
// `Sync` (a MiscHandler bound).
unsafe impl<T: MiscHandler> Sync for MiscDevice<T> {}
// SAFETY: as above; the C structures are tied to no thread, and the handler may move with the
// device because it is `Send`.
unsafe impl<T: MiscHandler + Send> Send for MiscDevice<T> {}

impl<T: MiscHandler> MiscDevice<T> {
    /// A device for `handler`, not yet visible to user space.
    pub fn new(handler: T) -> Result<Pin<KBox<Self>>> {
        KBox::pin_init(
            pin_init!(Self {
                misc <- Opaque::ffi_init(|_| {}),
                fops <- Opaque::ffi_init(|_| {}),
                names: UnsafeCell::new([[0; MISC_NAME_LEN]; 2]),
                handler,
                registered: AtomicBool::new(false),
                published: AtomicBool::new(false),
                _pin: PhantomPinned,
            }),
            GFP_KERNEL,
        )
    }

    /// Register the device `name` (in /sys/class/misc) as `/dev/<node>` with `mode`, owned by
    /// `module` (so an open file pins the module and `rmmod` is refused while any file, or an
    /// io_uring holding one, is open). `node` may name a subdirectory. Once only: a second call
    /// fails with EBUSY; a name of [`MISC_NAME_LEN`] bytes or more, or with a NUL, is EINVAL.
    pub fn register(
        self: Pin<&Self>,
        name: &str,
        node: &str,
        mode: u16,
        module: &'static ThisModule,
    ) -> Result {
        let fits = |s: &str| s.len() < MISC_NAME_LEN && !s.as_bytes().contains(&0);
        if !fits(name) || !fits(node) {
            return Err(EINVAL);
        }
        if self.registered.swap(true, Ordering::AcqRel) {
            return Err(EBUSY);
        }
        let fops = self.fops.get();
        let misc = self.misc.get();
        let names = self.names.get();
        // SAFETY: `fops` and `misc` point at our own pinned structures, which nothing else
        // reads yet (they are published by misc_register below, and `registered` makes this
        // the only writer); zero is a valid value for every field of both C structs.
        unsafe {
            fops.write_bytes(0, 1);
            misc.write_bytes(0, 1);
            // Zeroed, then shorter than the buffer (checked above): NUL-terminated.
            *names = [[0; MISC_NAME_LEN]; 2];
            (*names)[0][..name.len()].copy_from_slice(name.as_bytes());
            (*names)[1][..node.len()].copy_from_slice(node.as_bytes());
            (*fops).owner = module.as_ptr().cast();
            (*fops).open = Some(Self::open_trampoline);
            (*fops).unlocked_ioctl = Some(Self::ioctl_trampoline);
            // 32-bit callers: the same structs (fixed-width, no pointers inside), the argument
            // pointer converted by compat_ptr(), as compat_ptr_ioctl does for every arch.
            #[cfg(CONFIG_COMPAT)]
            {
                (*fops).compat_ioctl = Some(bindings::compat_ptr_ioctl);
            }
            (*fops).uring_cmd = Some(Self::uring_cmd_trampoline);
            (*misc).minor = bindings::MISC_DYNAMIC_MINOR as c_int;
            (*misc).name = (*names)[0].as_ptr().cast();
            (*misc).nodename = (*names)[1].as_ptr().cast();
            (*misc).fops = fops;
            (*misc).mode = mode;
        }
        // SAFETY: `misc` is fully initialised and pinned for as long as it is registered
        // (until Drop, which deregisters it).
        if let Err(e) = to_result(unsafe { bindings::misc_register(misc) }) {
            self.registered.store(false, Ordering::Release);
            return Err(e);
        }
        Ok(())
    }

    /// Let opens through: everything the module's init could fail at is behind it.
    pub fn publish(&self) {
        self.published.store(true, Ordering::Release);
    }

    /// The handler calls go to.
    pub fn handler(&self) -> &T {
        &self.handler
    }

    /// `file_operations.open`: refused until [`MiscDevice::publish`].
    ///
    /// # Safety
    /// Only misc_open calls this, for a file of our registered device, with `private_data` set
    /// to our `miscdevice` and the misc list's lock held (so the device is registered throughout).
    unsafe extern "C" fn open_trampoline(
        _inode: *mut bindings::inode,
        file: *mut bindings::file,
    ) -> c_int {
        // SAFETY: per the contract, the file is one of our registered device's.
        let dev = unsafe { Self::from_file(file) };
        if dev.published.load(Ordering::Acquire) {
            0
        } else {
            ENXIO.to_errno()
        }
    }

    /// The `MiscDevice` a file of ours was opened on.
    ///
    /// # Safety
    /// `file` must be a file opened on a device registered by [`MiscDevice::register`] with
    /// this `T`; misc_open stored its `miscdevice` in `private_data`, and the module (so the
    /// device) stays alive while the file is open because `fops.owner` is this module.
    unsafe fn from_file<'a>(file: *mut bindings::file) -> &'a Self {
        // SAFETY: per the contract, `private_data` is the `misc` field of a live Self.
        unsafe {
            let misc = (*file).private_data.cast::<bindings::miscdevice>();
            &*kernel::container_of!(misc.cast::<Opaque<bindings::miscdevice>>(), Self, misc)
        }
    }

    /// `file_operations.unlocked_ioctl` (and `compat_ioctl`: the uAPI has no pointers inside
    /// structs and no `long`s, so 32-bit callers use the same layout).
    ///
    /// # Safety
    /// Only the VFS calls this, for files opened on our device (see [`Self::from_file`]).
    unsafe extern "C" fn ioctl_trampoline(
        file: *mut bindings::file,
        cmd: c_uint,
        arg: c_ulong,
    ) -> c_long {
        // SAFETY: the kernel calls this only for files of our registered device.
        let dev = unsafe { Self::from_file(file) };
        let user = UserSlicer(crate::compat::user_ptr(arg as usize));
        match dev.handler.ioctl(cmd, user) {
            Ok(v) => v as c_long,
            Err(e) => e.to_errno() as c_long,
        }
    }

    /// `file_operations.uring_cmd`.
    ///
    /// # Safety
    /// Only io_uring calls this, with a live command on a file opened on our device.
    unsafe extern "C" fn uring_cmd_trampoline(
        ioucmd: *mut bindings::io_uring_cmd,
        issue_flags: c_uint,
    ) -> c_int {
        let sqe128 = issue_flags & bindings::io_uring_cmd_flags_IO_URING_F_SQE128 as c_uint != 0;
        // SAFETY: io_uring passes a valid command whose file is one of ours; its SQE stays
        // readable for the duration of this call, 64 bytes long, or 128 with SQE128. Every
        // field is read once, volatile, through raw pointers: no reference to memory user
        // space may be writing is formed.
        let (dev, cmd) = unsafe {
            let dev = Self::from_file((*ioucmd).file);
            let sqe = (*ioucmd).sqe;
            let rd64 = |p: *const u64| core::ptr::read_volatile(p);
            let area = core::ptr::addr_of!((*sqe).__bindgen_anon_6).cast::<u8>();
            let mut bytes = [0u8; 16];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = core::ptr::read_volatile(area.add(i));
            }
            let mut unused =
                u64::from(core::ptr::read_volatile(core::ptr::addr_of!((*sqe).ioprio)))
                    | rd64(core::ptr::addr_of!((*sqe).__bindgen_anon_2).cast())
                    | u64::from(core::ptr::read_volatile(core::ptr::addr_of!((*sqe).len)))
                    | u64::from(core::ptr::read_volatile(
                        core::ptr::addr_of!((*sqe).__bindgen_anon_4).cast::<u16>(),
                    ))
                    | u64::from(core::ptr::read_volatile(
                        core::ptr::addr_of!((*sqe).__bindgen_anon_5).cast::<u32>(),
                    ));
            if sqe128 {
                // The command area is 80 bytes: ours is the first 16; the rest must be 0.
                for i in 16..80 {
                    unused |= u64::from(core::ptr::read_volatile(area.add(i)));
                }
            }
            let cmd = UringCmd {
                cmd_op: (*ioucmd).cmd_op,
                cmd_flags: (*ioucmd).flags,
                unused_set: unused != 0,
                req: HdpFlushRequest::from_cmd_bytes(&bytes),
            };
            (dev, cmd)
        };
        let task = match dev.handler.uring_cmd(cmd) {
            Ok(UringReply::InTask(task)) => task,
            Ok(UringReply::Done(v)) => return v,
            Err(e) => return e.to_errno(),
        };
        const {
            assert!(size_of::<T::UringTask>() <= PDU_LEN);
        }
        // SAFETY: `pdu` is the command's own scratch space for its driver, PDU_LEN bytes, ours
        // until the command completes; `UringTask` fits (checked above) and is written
        // unaligned. The command is in flight from here: io_uring runs the task work once,
        // which completes it, and keeps the file (so the module and `dev`) alive until then.
        unsafe {
            let pdu = core::ptr::addr_of_mut!((*ioucmd).pdu).cast::<T::UringTask>();
            pdu.write_unaligned(task);
            bindings::__io_uring_cmd_do_in_task(ioucmd, Some(Self::uring_task_trampoline), 0);
        }
        -(bindings::EIOCBQUEUED as c_int)
    }

    /// The task work of an accepted `URING_CMD` (6.x: the command and io_uring's issue flags).
    ///
    /// # Safety
    /// Only io_uring calls this, once, for a command [`Self::uring_cmd_trampoline`] accepted.
    #[cfg(not(hdp_linux7))]
    unsafe extern "C" fn uring_task_trampoline(ioucmd: *mut bindings::io_uring_cmd, flags: c_uint) {
        let cancel = flags & bindings::io_uring_cmd_flags_IO_URING_F_TASK_DEAD as c_uint != 0;
        // SAFETY: io_uring runs this work once, for a command we accepted and queued it for.
        let ret = unsafe { Self::serve_task(ioucmd, cancel) };
        // SAFETY: this command's only completion, from its task work, with the issue flags
        // io_uring gave this work (as its own task-work completions do).
        unsafe { bindings::io_uring_cmd_done(ioucmd, ret as isize, 0, flags) };
    }

    /// The task work of an accepted `URING_CMD` (7.x: the request, and whether the work is
    /// being cancelled).
    ///
    /// # Safety
    /// Only io_uring calls this, once, for a command [`Self::uring_cmd_trampoline`] accepted.
    #[cfg(hdp_linux7)]
    unsafe extern "C" fn uring_task_trampoline(
        tw_req: bindings::io_tw_req,
        tw: bindings::io_tw_state,
    ) {
        // io_uring_cmd_from_tw(): the command is the request's `cmd`, in the union that opens
        // `struct io_kiocb`, so at the request's own address.
        const {
            assert!(core::mem::offset_of!(bindings::io_kiocb, __bindgen_anon_1) == 0);
        }
        let ioucmd = tw_req.req.cast::<bindings::io_uring_cmd>();
        // SAFETY: io_uring runs this work once, for a command we accepted and queued it for.
        let ret = unsafe { Self::serve_task(ioucmd, tw.cancel) };
        // SAFETY: this command's only completion, from its task work, with the flags io_uring
        // prescribes there (`io_uring_cmd_done()` is this call, inline in C).
        unsafe {
            bindings::__io_uring_cmd_done(
                ioucmd,
                ret,
                0,
                bindings::io_uring_cmd_flags_IO_URING_F_COMPLETE_DEFER as c_uint,
                false,
            )
        };
    }

    /// Serve an accepted command from its task work; its result for the CQE.
    ///
    /// # Safety
    /// `ioucmd` must be a command [`Self::uring_cmd_trampoline`] accepted, still in flight.
    unsafe fn serve_task(ioucmd: *mut bindings::io_uring_cmd, cancel: bool) -> i32 {
        // SAFETY: the command is still in flight (this work completes it), so its file is one
        // of ours and alive, and its `pdu` holds the `UringTask` written at issue.
        let (dev, task) = unsafe {
            let dev = Self::from_file((*ioucmd).file);
            let pdu = core::ptr::addr_of!((*ioucmd).pdu).cast::<T::UringTask>();
            (dev, pdu.read_unaligned())
        };
        // The submitting task is exiting or its ring is going away: nobody waits for the
        // answer, and the hardware is left alone.
        if cancel {
            return -(bindings::ECANCELED as i32);
        }
        match dev.handler.uring_task(task) {
            Ok(v) => v,
            Err(e) => e.to_errno(),
        }
    }
}

#[pinned_drop]
impl<T: MiscHandler> PinnedDrop for MiscDevice<T> {
    fn drop(self: Pin<&mut Self>) {
        if self.registered.load(Ordering::Acquire) {
            // SAFETY: registered in `register` and not yet deregistered. No file can be open:
            // each open file holds a reference to this module, so the module (and this drop)
            // cannot run while one exists.
            unsafe { bindings::misc_deregister(self.misc.get()) };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// I/O memory: one page of a PCI BAR
// ---------------------------------------------------------------------------------------------

/// One mapped page of a device's register or memory BAR. Offsets are checked against the page
/// and never come from user space.
pub struct IoPage {
    base: *mut u8,
    len: usize,
    pdev: *mut bindings::pci_dev,
}

// SAFETY: MMIO through `base` is valid from any CPU; the mapping lives until Drop.
unsafe impl Send for IoPage {}
// SAFETY: single aligned 32-bit MMIO accesses are atomic with respect to each other.
unsafe impl Sync for IoPage {}

impl IoPage {
    fn at(&self, offset: usize) -> Result<*mut u32> {
        if offset % 4 != 0 || offset + 4 > self.len {
            return Err(EINVAL);
        }
        // SAFETY: offset + 4 <= len, so the pointer stays inside the mapping.
        Ok(unsafe { self.base.add(offset) }.cast())
    }

    /// `writel`: earlier memory accesses ordered before one 32-bit store.
    pub fn writel(&self, offset: usize, value: u32) -> Result {
        let p = self.at(offset)?;
        // SAFETY: `p` is an aligned address inside our live mapping of device memory.
        unsafe { mmio_write32(p, value) };
        Ok(())
    }

    /// `readl`: one 32-bit load, ordered before later memory accesses.
    pub fn readl(&self, offset: usize) -> Result<u32> {
        let p = self.at(offset)?;
        // SAFETY: as for `writel`.
        Ok(unsafe { mmio_read32(p) })
    }
}

// The kernel's `writel`/`readl` are static inline C, which bindgen cannot bind; these are the
// same instructions, per architecture (arch/*/include/asm/io.h in 6.12). There is no fallback:
// another architecture's accessors must be written here, not guessed. One that selects
// ARCH_HAS_MMIOWB (powerpc64, riscv) also needs mmiowb()'s barrier before the device lock is
// released, or a posted rider's doorbell could overtake the flush (docs/kernel-module.md,
// "Coalescing").
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("hdp_flush knows the MMIO accessors of x86_64 and arm64 only; add this architecture's to kmod/sys.rs");

/// x86's `writel`: one `movl` to uncached memory, which x86 keeps in order with every other
/// store; the `memory` clobber keeps the compiler from moving accesses across it.
///
/// # Safety
/// `p` is a 4-aligned address inside a live MMIO mapping.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn mmio_write32(p: *mut u32, value: u32) {
    // SAFETY: the caller's contract; the asm stores to `p` and nothing else.
    unsafe {
        core::arch::asm!("mov dword ptr [{p}], {v:e}", p = in(reg) p, v = in(reg) value,
            options(nostack, preserves_flags))
    };
}

/// x86's `readl`: one `movl` from uncached memory, with a `memory` clobber.
///
/// # Safety
/// As for [`mmio_write32`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn mmio_read32(p: *const u32) -> u32 {
    let v: u32;
    // SAFETY: the caller's contract; the asm loads from `p` and nothing else.
    unsafe {
        core::arch::asm!("mov {v:e}, dword ptr [{p}]", p = in(reg) p, v = out(reg) v,
            options(nostack, preserves_flags))
    };
    v
}

/// arm64's `writel`: `__iowmb()` (`dmb oshst`: earlier stores, normal memory included, are
/// observed first), then `__raw_writel`, a plain `str` with no writeback addressing, which a
/// hypervisor can emulate on MMIO.
///
/// # Safety
/// As for the x86 version.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn mmio_write32(p: *mut u32, value: u32) {
    // SAFETY: the caller's contract; a barrier, then one store to `p`.
    unsafe {
        core::arch::asm!("dmb oshst", "str {v:w}, [{p}]", p = in(reg) p, v = in(reg) value,
            options(nostack, preserves_flags))
    };
}

/// arm64's `readl`: `__raw_readl` (a plain `ldr`), then `__io_ar`: `dmb oshld` and a dummy
/// control dependency on the value, so later accesses (and a following delay) wait for it.
///
/// # Safety
/// As for the x86 version.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn mmio_read32(p: *const u32) -> u32 {
    let v: u32;
    // SAFETY: the caller's contract; one load from `p`, a barrier, and a branch that is never
    // taken (it depends on the loaded value only to order what follows).
    unsafe {
        core::arch::asm!(
            "ldr {v:w}, [{p}]",
            "dmb oshld",
            "eor {t}, {v:x}, {v:x}",
            "cbnz {t}, .",
            p = in(reg) p, v = out(reg) v, t = out(reg) _,
            options(nostack)
        )
    };
    v
}

impl Drop for IoPage {
    fn drop(&mut self) {
        // SAFETY: `base` came from pci_iomap_range on `pdev`, whose reference we hold until
        // after the unmap.
        unsafe {
            bindings::pci_iounmap(self.pdev, self.base.cast());
            bindings::pci_dev_put(self.pdev);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PCI devices
// ---------------------------------------------------------------------------------------------

/// A reference to a PCI device found by id or class; with [`PciDev::enable`], also enabled.
/// Both are undone on drop.
pub struct PciDev {
    pdev: *mut bindings::pci_dev,
    enabled: bool,
}

// SAFETY: a counted reference to a pci_dev may be used and dropped from any thread.
unsafe impl Send for PciDev {}
// SAFETY: the methods only read immutable identification fields or call thread-safe PCI API.
unsafe impl Sync for PciDev {}

/// Where a device sits and what it is.
#[derive(Clone, Copy)]
pub struct PciIdent {
    /// PCI segment.
    pub domain: u32,
    /// Bus number.
    pub bus: u8,
    /// Device and function.
    pub devfn: u8,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Class code (class << 16 | subclass << 8 | prog-if).
    pub class: u32,
    /// "dddd:bb:dd.f", NUL-padded.
    pub name: [u8; 32],
}

impl PciDev {
    /// Every device with `vendor` (and `device`, unless `PCI_ANY_ID`), in bus order.
    pub fn find_all(vendor: u32, device: u32) -> Result<KVec<PciDev>> {
        let mut found = KVec::new();
        let mut prev: *mut bindings::pci_dev = core::ptr::null_mut();
        loop {
            // SAFETY: pci_get_device drops the reference on `prev` (null at first) and returns
            // the next matching device with a new reference, or null at the end.
            let next = unsafe { bindings::pci_get_device(vendor, device, prev) };
            if next.is_null() {
                break;
            }
            // SAFETY: `next` is a valid device; take an extra reference for our list, since
            // the next iteration drops the one the iterator holds.
            unsafe { bindings::pci_dev_get(next) };
            let kept = PciDev {
                pdev: next,
                enabled: false,
            };
            if let Err(e) = found.push(kept, GFP_KERNEL) {
                // The failed push dropped our reference; drop the iterator's too.
                // SAFETY: the iterator's reference on `next` is still held and unused.
                unsafe { bindings::pci_dev_put(next) };
                return Err(e.into());
            }
            prev = next;
        }
        Ok(found)
    }

    /// The device at `domain:bus:devfn`, if there is one.
    pub fn find_at(domain: u32, bus: u8, devfn: u8) -> Option<PciDev> {
        // SAFETY: a lookup by location; it returns a new reference (or null), which the
        // returned PciDev puts on drop.
        let pdev = unsafe {
            bindings::pci_get_domain_bus_and_slot(domain as c_int, bus.into(), devfn.into())
        };
        (!pdev.is_null()).then_some(PciDev {
            pdev,
            enabled: false,
        })
    }

    /// Another counted reference to the same device, claiming nothing.
    pub fn new_ref(&self) -> PciDev {
        // SAFETY: we hold a reference, so the device is alive; pci_dev_get takes another,
        // which the returned PciDev puts on drop.
        let pdev = unsafe { bindings::pci_dev_get(self.pdev) };
        PciDev {
            pdev,
            enabled: false,
        }
    }

    /// Identification.
    pub fn ident(&self) -> PciIdent {
        let mut name = [0u8; 32];
        // SAFETY: we hold a reference; these fields are set at enumeration and never change,
        // and the kobject name ("dddd:bb:dd.f", what pci_name() returns) is a C string.
        let (d, bus) = unsafe {
            let d = &*self.pdev;
            let kname = CStr::from_char_ptr(d.dev.kobj.name);
            let bytes = crate::compat::c_str_bytes(kname);
            let n = bytes.len().min(name.len() - 1);
            name[..n].copy_from_slice(&bytes[..n]);
            (d, (*d.bus).number)
        };
        // pci_domain_nr() is inline on x86; the name starts with the domain in hex.
        let domain = name
            .iter()
            .take_while(|&&b| b != b':')
            .try_fold(0u32, |acc, &b| {
                (b as char).to_digit(16).map(|v| acc * 16 + v)
            })
            .unwrap_or(0);
        PciIdent {
            domain,
            bus,
            devfn: d.devfn as u8,
            vendor: d.vendor,
            device: d.device,
            class: d.class,
            name,
        }
    }

    /// An identity for matching bus events: the address of the device's `struct device`. Only
    /// compared, never dereferenced; unique while this reference keeps the device alive.
    pub fn key(&self) -> usize {
        // SAFETY: we hold a reference; only the field's address is taken.
        unsafe { core::ptr::addr_of!((*self.pdev).dev) as usize }
    }

    /// Take a runtime-PM reference if the device is active now, without waking it.
    pub fn pm_get_if_active(&self) -> PmState<'_> {
        #[cfg(CONFIG_PM)]
        {
            // SAFETY: we hold a reference to the device; pm_runtime_get_if_active only
            // increments its usage count if it is RPM_ACTIVE, and never resumes it.
            let r = unsafe { bindings::pm_runtime_get_if_active(&raw mut (*self.pdev).dev) };
            match r {
                1 => PmState::Active(Some(PmRef(self))),
                0 => PmState::Suspended,
                // -EINVAL: runtime PM is disabled for the device, which is therefore on.
                _ => PmState::Active(None),
            }
        }
        #[cfg(not(CONFIG_PM))]
        PmState::Active(None)
    }

    /// Whether the device is runtime-suspended now (a snapshot, for reports).
    pub fn runtime_suspended(&self) -> bool {
        #[cfg(CONFIG_PM)]
        {
            // SAFETY: we hold a reference; a racy read of one status word, as
            // pm_runtime_status_suspended() does.
            let status = unsafe {
                core::ptr::read_volatile(&raw const (*self.pdev).dev.power.runtime_status)
            };
            status == bindings::rpm_status_RPM_SUSPENDED
        }
        #[cfg(not(CONFIG_PM))]
        false
    }

    /// `bar`'s start and length, if it is a memory BAR.
    pub fn mem_bar(&self, bar: u32) -> Option<(u64, u64)> {
        if bar as usize >= bindings::PCI_STD_NUM_BARS as usize {
            return None;
        }
        // SAFETY: we hold a reference; `resource` has PCI_STD_NUM_BARS+ entries.
        let r = unsafe { &(*self.pdev).resource[bar as usize] };
        let is_mem = r.flags & (bindings::IORESOURCE_MEM as c_ulong) != 0;
        (is_mem && r.end > r.start).then(|| (r.start, r.end - r.start + 1))
    }

    /// `pci_channel_offline()`: whether the PCI core has marked the device's channel frozen
    /// (AER/DPC recovery in progress) or failed for good (surprise removal, unrecoverable
    /// error). Set before the bus notifier hears of a removal, so checked before each access.
    pub fn channel_offline(&self) -> bool {
        // Read once, as the C inline does.
        self.error_state().load(Ordering::Relaxed) != bindings::pci_channel_io_normal
    }

    /// The device's `error_state` (`pci_channel_state_t`).
    fn error_state(&self) -> &AtomicU32 {
        // SAFETY: we hold a reference, so the field lives as long as `self`; it is one aligned
        // word the PCI core changes only with atomic read-modify-writes (pci_dev_set_io_state),
        // so accessing it atomically races with nothing.
        unsafe { AtomicU32::from_ptr(&raw mut (*self.pdev).error_state) }
    }

    /// `pci_device_is_present()`: whether the device answers a config read of its vendor id.
    /// A config read, not MMIO: what the PCI core itself asks of a device that may be gone.
    pub fn is_present(&self) -> bool {
        // SAFETY: we hold a reference to the device.
        unsafe { bindings::pci_device_is_present(self.pdev) }
    }

    /// For tests: set the device's `error_state` to `state` (a `pci_channel_io_*` value), as
    /// the PCI core's error recovery would, since a guest cannot freeze an emulated device.
    /// Unlike the PCI core (pci_dev_set_io_state), it also takes a device back from
    /// `perm_failure` to normal, so a test can undo what it did.
    #[cfg(hdp_test)]
    pub fn test_set_error_state(&self, state: u32) {
        // An atomic exchange, so none of the PCI core's updates is lost.
        self.error_state().swap(state, Ordering::Relaxed);
    }

    /// Whether the driver bound to the device is `driver`. Asked under the device lock, which
    /// the driver core holds across a bind or unbind: unlocked, `dev.driver` could name a
    /// driver being unloaded, whose name would be freed memory.
    pub fn is_bound_to(&self, driver: &CStr) -> bool {
        self.with_device_lock(|| {
            // SAFETY: the device lock is held (`with_device_lock`).
            unsafe { self.bound_to_locked(driver) }
        })
    }

    /// [`Self::is_bound_to`], for a caller that holds the device lock.
    ///
    /// # Safety
    /// The device lock must be held, so `dev.driver` is null or a bound, registered driver.
    unsafe fn bound_to_locked(&self, driver: &CStr) -> bool {
        // SAFETY: we hold a reference; the lock per the contract.
        unsafe { bound_to(self.pdev, driver) }
    }

    /// `f`, with the device lock (`device_lock()`) held. Never called where the driver core
    /// may hold it already (bus notifiers run under it): only at module load.
    fn with_device_lock<R>(&self, f: impl FnOnce() -> R) -> R {
        // SAFETY: we hold a reference, so `dev` and its mutex are valid; device_lock() is
        // mutex_lock() on it, and we unlock it below.
        let dev = unsafe { core::ptr::addr_of_mut!((*self.pdev).dev) };
        // SAFETY: as above.
        unsafe { kernel::bindings::mutex_lock(core::ptr::addr_of_mut!((*dev).mutex).cast()) };
        let r = f();
        // SAFETY: locked above.
        unsafe { kernel::bindings::mutex_unlock(core::ptr::addr_of_mut!((*dev).mutex).cast()) };
        r
    }

    /// Run `gone` unless the device is still on the bus (in sysfs) and, if `driver` is given,
    /// still bound to it; all under the device lock, which the driver core holds across a bind
    /// and an unbind, so neither can slip between the check and `gone`. For a device removal it
    /// only catches one that has got as far as leaving sysfs.
    pub fn unless_attached(&self, driver: Option<&CStr>, gone: impl FnOnce()) {
        self.with_device_lock(|| {
            // SAFETY: we hold a reference; `state_in_sysfs` is what device_is_registered()
            // reads, and the lock is held for `bound_to_locked`.
            let attached = unsafe {
                (*self.pdev).dev.kobj.state_in_sysfs() != 0
                    && driver.map_or(true, |d| self.bound_to_locked(d))
            };
            if !attached {
                gone();
            }
        })
    }

    /// Whether the device decodes memory accesses (`PCI_COMMAND_MEMORY`), read from config
    /// space; false if the read fails or returns all ones. A device just back from a reset may
    /// answer config reads before its memory decoding is restored, and MMIO to it then goes
    /// nowhere (an Unsupported Request: on some arm64 servers an SError).
    pub fn decodes_memory(&self) -> bool {
        let mut command: u16 = 0;
        // SAFETY: we hold a reference; a config-space read into a local.
        let r = unsafe {
            bindings::pci_read_config_word(self.pdev, bindings::PCI_COMMAND as c_int, &mut command)
        };
        r == 0 && command != u16::MAX && command & bindings::PCI_COMMAND_MEMORY as u16 != 0
    }

    /// Enable the device; undone on drop. No BAR region is requested: the amdgpu backend maps
    /// without one (amdgpu holds the BARs) and the test backend takes the same path, and a
    /// requested region at a BAR's start would make the whole BAR unmappable from user space on
    /// kernels with `CONFIG_IO_STRICT_DEVMEM` (distribution kernels), where the tests map
    /// another page of it as a dummy page.
    pub fn enable(&mut self) -> Result {
        if self.enabled {
            return Ok(());
        }
        // SAFETY: we hold a reference to the device.
        to_result(unsafe { bindings::pci_enable_device(self.pdev) })?;
        self.enabled = true;
        Ok(())
    }

    /// Map `len` bytes of memory BAR `bar` at `offset`.
    pub fn map(&self, bar: u32, offset: u64, len: usize) -> Result<IoPage> {
        let (_, size) = self.mem_bar(bar).ok_or(ENODEV)?;
        if offset % 4 != 0
            || offset
                .checked_add(len as u64)
                .map_or(true, |end| end > size)
        {
            return Err(EINVAL);
        }
        // SAFETY: we hold a reference; offset + len lies inside the memory BAR.
        let base = unsafe {
            bindings::pci_iomap_range(self.pdev, bar as c_int, offset as c_ulong, len as c_ulong)
        };
        if base.is_null() {
            return Err(ENOMEM);
        }
        // The mapping holds its own device reference, so it may outlive `self`.
        // SAFETY: `pdev` is valid; IoPage::drop puts this reference.
        unsafe { bindings::pci_dev_get(self.pdev) };
        Ok(IoPage {
            base: base.cast(),
            len,
            pdev: self.pdev,
        })
    }
}

/// A device's runtime-PM state, for one access.
pub enum PmState<'a> {
    /// Powered: access it. The reference (if runtime PM is enabled) is dropped after.
    Active(Option<PmRef<'a>>),
    /// Runtime-suspended: do not touch it.
    Suspended,
}

/// A runtime-PM usage reference; put on drop (`pm_runtime_put_autosuspend`).
pub struct PmRef<'a>(&'a PciDev);

impl Drop for PmRef<'_> {
    fn drop(&mut self) {
        #[cfg(CONFIG_PM)]
        // SAFETY: this reference was taken by pm_runtime_get_if_active, and is put once.
        unsafe {
            bindings::__pm_runtime_suspend(
                &raw mut (*self.0.pdev).dev,
                (bindings::RPM_GET_PUT | bindings::RPM_ASYNC | bindings::RPM_AUTO) as c_int,
            );
        }
    }
}

impl Drop for PciDev {
    fn drop(&mut self) {
        if self.enabled {
            // SAFETY: enabled in `enable`, disabled exactly once here.
            unsafe { bindings::pci_disable_device(self.pdev) };
        }
        // SAFETY: drops the reference taken in `find_all`, `find_at` or `new_ref`.
        unsafe { bindings::pci_dev_put(self.pdev) };
    }
}

// ---------------------------------------------------------------------------------------------
// A mutex whose waiters can be killed
// ---------------------------------------------------------------------------------------------

#[cfg(CONFIG_PREEMPT_RT)]
compile_error!("hdp_flush's KillableMutex knows the non-RT struct mutex only");

/// A lockdep class for [`KillableMutex`]es: in static memory, as lockdep requires.
#[repr(transparent)]
pub struct LockClass(Opaque<bindings::lock_class_key>);

// SAFETY: lockdep uses a class key from any thread and synchronises itself.
unsafe impl Sync for LockClass {}

impl LockClass {
    /// A key for a `static`; lockdep expects it uninitialised.
    pub const fn new() -> Self {
        Self(Opaque::uninit())
    }
}

/// A kernel `struct mutex` around a `T`, whose waiters a fatal signal can wake
/// (`mutex_lock_killable`): the kernel crate's `Mutex` waits uninterruptibly, so a caller
/// queued behind a flush stuck on a dead GPU could not even be killed.
#[pin_data(PinnedDrop)]
pub struct KillableMutex<T> {
    #[pin]
    mutex: Opaque<bindings::mutex>,
    data: UnsafeCell<T>,
    #[pin]
    _pin: PhantomPinned,
}

// SAFETY: the data is only reached through a guard, which the mutex makes exclusive; the
// mutex itself may be taken and released from any thread.
unsafe impl<T: Send> Send for KillableMutex<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for KillableMutex<T> {}

impl<T> KillableMutex<T> {
    /// A mutex around `data`, named `name` for lockdep, of lock class `class`.
    pub fn new(data: T, name: &'static CStr, class: &'static LockClass) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes and pinned from here on; the function that
            // initialises a struct mutex is the one mutex_init() uses on this kernel.
            mutex <- Opaque::ffi_init(|slot: *mut bindings::mutex| unsafe {
                mutex_init(slot, crate::compat::c_str_ptr(name), class.0.get())
            }),
            data: UnsafeCell::new(data),
            _pin: PhantomPinned,
        })
    }

    /// Wait for the mutex however long it takes (for the bus notifier's revocation, which
    /// must happen).
    pub fn lock(&self) -> MutexGuard<'_, T> {
        // SAFETY: the mutex is initialised and pinned; the kernel crate's helper is mutex_lock()
        // (the same struct, reached through the kernel crate's bindings), undone by the guard.
        unsafe { kernel::bindings::mutex_lock(self.mutex.get().cast()) };
        MutexGuard(self, PhantomData)
    }

    /// Wait for the mutex unless a fatal signal arrives first: EINTR then, and the caller's
    /// task dies without having touched the device.
    pub fn lock_killable(&self) -> Result<MutexGuard<'_, T>> {
        // SAFETY: the mutex is initialised and pinned; on success it is held, and the guard
        // releases it.
        to_result(unsafe { mutex_lock_killable(self.mutex.get()) })?;
        Ok(MutexGuard(self, PhantomData))
    }
}

#[pinned_drop]
impl<T> PinnedDrop for KillableMutex<T> {
    fn drop(self: Pin<&mut Self>) {
        // `mutex_destroy()` is a function only with mutex debugging (an empty inline otherwise).
        // SAFETY: initialised in `new`, not held (dropping needs the only reference), and
        // destroyed once.
        #[cfg(CONFIG_DEBUG_MUTEXES)]
        unsafe {
            bindings::mutex_destroy(self.mutex.get())
        };
    }
}

/// The mutex of a [`KillableMutex`], held; released on drop, by the task that took it (so
/// neither `Send` nor, unless `T` is, `Sync`).
pub struct MutexGuard<'a, T>(&'a KillableMutex<T>, PhantomData<*mut ()>);

// SAFETY: a shared guard only hands out `&T`, which may be shared if `T: Sync`.
unsafe impl<T: Sync> Sync for MutexGuard<'_, T> {}

impl<T> core::ops::Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the mutex is held, so nobody else reaches the data.
        unsafe { &*self.0.data.get() }
    }
}

impl<T> core::ops::DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`, and this guard is borrowed mutably.
        unsafe { &mut *self.0.data.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the mutex is held by this guard, from this task.
        unsafe { bindings::mutex_unlock(self.0.mutex.get()) };
    }
}

/// `__mutex_init()`: exported on 6.x; on 7.x an inline over the exported lockdep or generic
/// initialiser.
///
/// # Safety
/// `m` is valid for writes and will not move; `name` and `key` live in static memory.
unsafe fn mutex_init(
    m: *mut bindings::mutex,
    name: *const kernel::ffi::c_char,
    key: *mut bindings::lock_class_key,
) {
    // SAFETY: the caller's contract.
    #[cfg(not(hdp_linux7))]
    unsafe {
        bindings::__mutex_init(m, name, key)
    };
    // SAFETY: the caller's contract.
    #[cfg(all(hdp_linux7, CONFIG_DEBUG_LOCK_ALLOC))]
    unsafe {
        bindings::mutex_init_lockdep(m, name, key)
    };
    #[cfg(all(hdp_linux7, not(CONFIG_DEBUG_LOCK_ALLOC)))]
    {
        let _ = (name, key);
        // SAFETY: the caller's contract.
        unsafe { bindings::mutex_init_generic(m) };
    }
}

/// `mutex_lock_killable()`, a macro over the lockdep variant where lockdep is on.
///
/// # Safety
/// `m` is an initialised mutex that stays in place while held.
unsafe fn mutex_lock_killable(m: *mut bindings::mutex) -> c_int {
    // SAFETY: the caller's contract.
    #[cfg(not(CONFIG_DEBUG_LOCK_ALLOC))]
    return unsafe { bindings::mutex_lock_killable(m) };
    // SAFETY: the caller's contract; subclass 0, as the C macro passes.
    #[cfg(all(not(hdp_linux7), CONFIG_DEBUG_LOCK_ALLOC))]
    return unsafe { bindings::mutex_lock_killable_nested(m, 0) };
    // SAFETY: the caller's contract; subclass 0 and no nest lock, as the C macro passes.
    #[cfg(all(hdp_linux7, CONFIG_DEBUG_LOCK_ALLOC))]
    return unsafe { bindings::_mutex_lock_killable(m, 0, core::ptr::null_mut()) };
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// Monotonic time in nanoseconds (`ktime_get()`).
pub fn now_ns() -> i64 {
    // SAFETY: reads the monotonic clock; callable from any context.
    unsafe { bindings::ktime_get() }
}

// ---------------------------------------------------------------------------------------------
// Barriers
// ---------------------------------------------------------------------------------------------

/// `mb()`: every earlier memory access of this CPU, to device memory too, completes before any
/// later one (x86 `mfence`, arm64 `dsb sy`, as arch/*/include/asm/barrier.h).
#[inline(always)]
pub fn full_barrier() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a barrier instruction; touches no memory or registers.
    unsafe {
        core::arch::asm!("mfence", options(nostack, preserves_flags))
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a barrier instruction; touches no memory or registers.
    unsafe {
        core::arch::asm!("dsb sy", options(nostack, preserves_flags))
    };
}

/// Whether the calling task may administer the system (`capable(CAP_SYS_ADMIN)`).
pub fn capable_sys_admin() -> bool {
    // SAFETY: capable() only reads the current task's credentials.
    unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as c_int) }
}

/// `array_index_nospec(index, size)`: `index` if it is below `size`, else 0, computed without a
/// branch the CPU could speculate past (the generic `array_index_mask_nospec` of
/// include/linux/nospec.h), so a bounds-checked index from user space cannot steer a
/// speculative load out of bounds.
#[inline(always)]
pub fn array_index_nospec(index: usize, size: usize) -> usize {
    let mut index = index;
    // OPTIMIZER_HIDE_VAR: the compiler may not see through the mask and make it a branch.
    // SAFETY: an empty asm statement that only claims to change a register.
    unsafe {
        core::arch::asm!("/* {0} */", inout(reg) index, options(pure, nomem, nostack, preserves_flags))
    };
    let mask = !((index | size.wrapping_sub(1).wrapping_sub(index)) as isize) >> (usize::BITS - 1);
    index & mask as usize
}

// ---------------------------------------------------------------------------------------------
// PCI bus events
// ---------------------------------------------------------------------------------------------

/// What a module does when a PCI device is about to go, or has got a driver.
pub trait PciEvents: Sync {
    /// The device with [`PciDev::key`] `key` is about to be removed from the bus, or to lose
    /// its driver: stop touching it before this returns.
    fn device_going(&self, key: usize);
    /// A driver has finished binding to `dev` (its probe succeeded).
    fn device_bound(&self, dev: &BoundDevice<'_>);
}

/// A PCI device a driver has just bound to, as the bus notifier reports it: the driver core
/// holds the device lock across the report, so the bound driver can be read without taking it.
pub struct BoundDevice<'a> {
    pdev: *mut bindings::pci_dev,
    _event: PhantomData<&'a ()>,
}

impl BoundDevice<'_> {
    /// A counted reference to the device, claiming nothing.
    pub fn pci(&self) -> PciDev {
        // SAFETY: the notifier reports a live device; pci_dev_get takes a reference, which the
        // returned PciDev puts on drop.
        let pdev = unsafe { bindings::pci_dev_get(self.pdev) };
        PciDev {
            pdev,
            enabled: false,
        }
    }

    /// Whether the driver that just bound is `driver`.
    pub fn is_bound_to(&self, driver: &CStr) -> bool {
        // SAFETY: the notifier reports a live device, and the driver core holds its device
        // lock across BUS_NOTIFY_BOUND_DRIVER.
        unsafe { bound_to(self.pdev, driver) }
    }
}

/// Whether `pdev`'s bound driver is `driver`.
///
/// # Safety
/// `pdev` is a live device whose device lock is held, so `dev.driver` is null or a bound,
/// registered driver whose name is a C string it owns.
unsafe fn bound_to(pdev: *mut bindings::pci_dev, driver: &CStr) -> bool {
    // SAFETY: the caller's contract.
    unsafe {
        let drv = (*pdev).dev.driver;
        !drv.is_null()
            && crate::compat::c_str_bytes(CStr::from_char_ptr((*drv).name))
                == crate::compat::c_str_bytes(driver)
    }
}

/// A registration on the PCI bus's notifier chain, delivering `BUS_NOTIFY_DEL_DEVICE`,
/// `BUS_NOTIFY_UNBIND_DRIVER` and `BUS_NOTIFY_BOUND_DRIVER` to a handler. Unregistered on
/// drop, which waits for a call in progress.
#[pin_data(PinnedDrop)]
pub struct PciBusNotifier<T: PciEvents> {
    #[pin]
    nb: Opaque<bindings::notifier_block>,
    handler: *const T,
    #[pin]
    _pin: PhantomPinned,
}

// SAFETY: the handler is Sync and outlives the registration (see `register`); the
// notifier_block is only touched by the notifier chain, which synchronises itself.
unsafe impl<T: PciEvents> Sync for PciBusNotifier<T> {}
// SAFETY: as above.
unsafe impl<T: PciEvents> Send for PciBusNotifier<T> {}

impl<T: PciEvents> PciBusNotifier<T> {
    /// Deliver PCI bus events to `handler` until the returned value is dropped.
    ///
    /// # Safety
    /// `handler` must stay valid (not move, not be dropped) until the notifier is dropped.
    pub unsafe fn register(handler: &T) -> Result<Pin<KBox<Self>>> {
        let handler: *const T = handler;
        let this = KBox::pin_init(
            pin_init!(Self {
                // SAFETY: zero is a valid notifier_block; the callback is set below.
                nb <- Opaque::ffi_init(|slot: *mut bindings::notifier_block| unsafe {
                    slot.write_bytes(0, 1);
                    (*slot).notifier_call = Some(Self::call);
                }),
                handler,
                _pin: PhantomPinned,
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: `nb` is initialised and pinned until drop, which unregisters it.
        to_result(unsafe {
            bindings::bus_register_notifier(&bindings::pci_bus_type, this.nb.get())
        })?;
        Ok(this)
    }

    /// The chain's callback.
    ///
    /// # Safety
    /// Only the PCI bus notifier chain calls this, with our `nb` and a `struct device *`.
    unsafe extern "C" fn call(
        nb: *mut bindings::notifier_block,
        action: c_ulong,
        data: *mut core::ffi::c_void,
    ) -> c_int {
        // SAFETY: `nb` is the field of a registered, pinned Self; `handler` is valid while it
        // is registered (the contract of `register`).
        let handler = unsafe {
            &*(*kernel::container_of!(nb.cast::<Opaque<bindings::notifier_block>>(), Self, nb))
                .handler
        };
        let going = action == bindings::bus_notifier_event_BUS_NOTIFY_DEL_DEVICE as c_ulong
            || action == bindings::bus_notifier_event_BUS_NOTIFY_UNBIND_DRIVER as c_ulong;
        if going {
            handler.device_going(data as usize);
        } else if action == bindings::bus_notifier_event_BUS_NOTIFY_BOUND_DRIVER as c_ulong {
            // SAFETY: the PCI bus's chain reports the `dev` of a live pci_dev, under its
            // device lock (driver_bound()).
            let pdev = unsafe {
                kernel::container_of!(data.cast::<bindings::device>(), bindings::pci_dev, dev)
            } as *mut bindings::pci_dev;
            handler.device_bound(&BoundDevice {
                pdev,
                _event: PhantomData,
            });
        }
        bindings::NOTIFY_DONE as c_int
    }
}

#[pinned_drop]
impl<T: PciEvents> PinnedDrop for PciBusNotifier<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: registered in `register` (a failed registration never returns a value).
        // Unregistering waits for a callback in progress.
        unsafe { bindings::bus_unregister_notifier(&bindings::pci_bus_type, self.nb.get()) };
    }
}

// ---------------------------------------------------------------------------------------------
// Delays
// ---------------------------------------------------------------------------------------------

/// Busy-wait `ns` nanoseconds (never sleeps: callable under a spinlock and from io_uring's
/// non-blocking issue path).
pub fn ndelay(ns: u32) {
    if ns > 0 {
        // SAFETY: __ndelay only spins.
        unsafe { bindings::__ndelay(ns as c_ulong) };
    }
}

/// Sleep at least `ms` milliseconds (process context only): 7.x's `fsleep`, 6.x's `msleep`.
pub fn msleep(ms: u32) {
    #[cfg(hdp_linux7)]
    kernel::time::delay::fsleep(kernel::time::Delta::from_millis(i64::from(ms)));
    // SAFETY: msleep only sleeps; our callers run in process context (module init, a test
    // variant's flush from a request's context).
    #[cfg(not(hdp_linux7))]
    unsafe {
        bindings::msleep(ms as c_uint)
    };
}

// ---------------------------------------------------------------------------------------------
// Module parameters (6.12's `module!` has none)
// ---------------------------------------------------------------------------------------------

/// Storage for one parameter: written by the kernel while loading the module, before `init`,
/// read-only afterwards (the sysfs mode is 0444).
#[repr(transparent)]
pub struct ParamCell<T>(UnsafeCell<T>);

// SAFETY: the only write happens while the module loads, before any reader can exist; readers
// copy the value out, so it must be shareable between threads.
unsafe impl<T: Copy + Sync> Sync for ParamCell<T> {}

impl<T: Copy> ParamCell<T> {
    /// A parameter with default `v`.
    pub const fn new(v: T) -> Self {
        Self(UnsafeCell::new(v))
    }
    /// The value given at load time (or the default).
    pub fn get(&self) -> T {
        // SAFETY: see the Sync impl: no writer exists once code can call this.
        unsafe { *self.0.get() }
    }
    /// For the `kernel_param` entry.
    pub const fn as_arg(&self) -> *mut core::ffi::c_void {
        self.0.get().cast()
    }
}

/// Storage for a `uint` parameter root may change at run time (mode 0600): the kernel stores
/// it with one aligned 32-bit write (`param_set_uint`), read here atomically.
#[repr(transparent)]
pub struct RuntimeParam(AtomicU32);

impl RuntimeParam {
    /// A parameter with default `v`.
    pub const fn new(v: u32) -> Self {
        Self(AtomicU32::new(v))
    }
    /// Its value now.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
    /// For the `kernel_param` entry.
    pub const fn as_arg(&self) -> *mut core::ffi::c_void {
        self.0.as_ptr().cast()
    }
}

/// A `struct kernel_param_ops` of a [`module_param_call!`] parameter.
#[repr(transparent)]
pub struct KernelParamOps(pub bindings::kernel_param_ops);

// SAFETY: immutable; its pointers are functions.
unsafe impl Sync for KernelParamOps {}

/// The body of a [`module_param_call!`] setter: `val` as text, without a trailing newline.
///
/// # Safety
/// `val` is a NUL-terminated string.
#[doc(hidden)]
pub unsafe fn param_call(val: *const kernel::ffi::c_char, set: fn(&str) -> Result) -> c_int {
    // SAFETY: the caller's contract.
    let bytes = crate::compat::c_str_bytes(unsafe { CStr::from_char_ptr(val) });
    let Ok(text) = core::str::from_utf8(bytes) else {
        return EINVAL.to_errno();
    };
    match set(text.trim_end_matches('\n')) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// Storage for a string parameter of at most `N - 1` bytes, NUL-terminated: written by the
/// kernel (`param_ops_string`) while loading the module, before `init`, read-only afterwards.
#[repr(transparent)]
pub struct ParamString<const N: usize>(UnsafeCell<[u8; N]>);

// SAFETY: as for ParamCell: the only write happens while the module loads.
unsafe impl<const N: usize> Sync for ParamString<N> {}

impl<const N: usize> ParamString<N> {
    /// An empty string.
    pub const fn new() -> Self {
        Self(UnsafeCell::new([0; N]))
    }

    /// The value given at load time, up to its NUL; EINVAL if it is not UTF-8.
    pub fn get(&self) -> Result<&str> {
        // SAFETY: see the Sync impl: no writer exists once code can call this.
        let bytes = unsafe { &*self.0.get() };
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(N);
        core::str::from_utf8(&bytes[..end]).map_err(|_| EINVAL)
    }

    /// The `kparam_string` the kernel parses into.
    pub const fn kparam(&'static self) -> KParamString {
        KParamString(bindings::kparam_string {
            maxlen: N as c_uint,
            string: self.0.get().cast(),
        })
    }
}

/// A `struct kparam_string`, as `module_param_string()` emits it in C.
#[repr(transparent)]
pub struct KParamString(pub bindings::kparam_string);

// SAFETY: the entry is immutable; its pointer refers to a static the kernel writes only while
// loading the module.
unsafe impl Sync for KParamString {}

/// A `struct kernel_param` in the `__param` section, as `module_param()` emits it in C.
#[repr(transparent)]
pub struct KernelParam(pub bindings::kernel_param);

// SAFETY: the entry is immutable; its pointers refer to statics.
unsafe impl Sync for KernelParam {}

// The module object is opaque to Rust and only ever used by address, as `module!` does.
#[allow(improper_ctypes)]
extern "C" {
    /// The module object the loader fills in (`THIS_MODULE` in C).
    pub static __this_module: Opaque<bindings::module>;
}

/// `module_param!(NAME: type = default, ops, "typename", "description")`: a 0444 parameter.
#[macro_export]
macro_rules! module_param {
    ($name:ident : $ty:ty = $default:expr, $ops:ident, $typename:literal, $desc:literal) => {
        #[allow(non_upper_case_globals)]
        #[doc = $desc]
        pub static $name: $crate::sys::ParamCell<$ty> = $crate::sys::ParamCell::new($default);
        $crate::kernel_param!(
            $name,
            core::ptr::addr_of!($crate::c::$ops),
            0o444,
            0,
            arg: $name.as_arg(),
            $typename,
            $desc
        );
    };
}

/// `module_param_rw!(NAME: u32 = default, "description")`: a 0600 `uint` parameter root may
/// change at run time; read with [`RuntimeParam::get`] where it is used.
#[macro_export]
macro_rules! module_param_rw {
    ($name:ident : u32 = $default:expr, $desc:literal) => {
        #[allow(non_upper_case_globals)]
        #[doc = $desc]
        pub static $name: $crate::sys::RuntimeParam = $crate::sys::RuntimeParam::new($default);
        $crate::kernel_param!(
            $name,
            core::ptr::addr_of!($crate::c::param_ops_uint),
            0o600,
            0,
            arg: $name.as_arg(),
            "uint",
            $desc
        );
    };
}

/// `module_param_call!(NAME, set_fn, "description")`: a write-only (0200) parameter whose
/// writes root makes call `set_fn(&str) -> Result` at once; nothing is stored. Marked unsafe
/// (`KERNEL_PARAM_FL_UNSAFE`): a write taints the kernel, as it changes the kernel's state.
#[macro_export]
macro_rules! module_param_call {
    ($name:ident, $set:path, $desc:literal) => {
        const _: () = {
            unsafe extern "C" fn set(
                val: *const kernel::ffi::c_char,
                _kp: *const $crate::c::kernel_param,
            ) -> kernel::ffi::c_int {
                // SAFETY: the kernel passes the NUL-terminated value written to the parameter.
                unsafe { $crate::sys::param_call(val, $set) }
            }
            static OPS: $crate::sys::KernelParamOps =
                $crate::sys::KernelParamOps($crate::c::kernel_param_ops {
                    flags: 0,
                    set: Some(set),
                    get: None,
                    free: None,
                });
            $crate::kernel_param!(
                $name,
                &OPS.0,
                0o200,
                $crate::c::KERNEL_PARAM_FL_UNSAFE as u8,
                arg: core::ptr::null_mut(),
                "string",
                $desc
            );
        };
    };
}

/// `module_param_string_hw!(NAME, LEN, "description")`: a 0444 string parameter of at most
/// `LEN - 1` bytes, declared as configuring hardware (`KERNEL_PARAM_FL_HWPARAM`, as
/// `module_param_hw` does in C), so the kernel refuses it under lockdown.
#[macro_export]
macro_rules! module_param_string_hw {
    ($name:ident, $len:expr, $desc:literal) => {
        #[allow(non_upper_case_globals)]
        #[doc = $desc]
        pub static $name: $crate::sys::ParamString<$len> = $crate::sys::ParamString::new();
        const _: () = {
            static KPARAM: $crate::sys::KParamString = $name.kparam();
            $crate::kernel_param!(
                $name,
                core::ptr::addr_of!($crate::c::param_ops_string),
                0o444,
                $crate::c::KERNEL_PARAM_FL_HWPARAM as u8,
                str_: &KPARAM.0,
                "string",
                $desc
            );
        };
    };
}

/// The `struct kernel_param` in `__param` and the `parm=`/`parmtype=` `.modinfo` entries that C's
/// `__module_param_call` and `MODULE_PARM_DESC` emit, for parameter `$name`.
#[doc(hidden)]
#[macro_export]
macro_rules! kernel_param {
    ($name:ident, $ops:expr, $perm:expr, $flags:expr, $field:ident: $arg:expr, $typename:literal, $desc:literal) => {
        const _: () = {
            #[link_section = "__param"]
            #[used]
            static PARAM: $crate::sys::KernelParam =
                $crate::sys::KernelParam($crate::c::kernel_param {
                    name: $crate::compat::c_str_ptr(kernel::c_str!(stringify!($name))),
                    // SAFETY: only the address of the loader-provided module object is taken.
                    mod_: unsafe { $crate::sys::__this_module.get() },
                    ops: $ops,
                    perm: $perm,
                    level: -1,
                    flags: $flags,
                    __bindgen_anon_1: $crate::c::kernel_param__bindgen_ty_1 { $field: $arg },
                });
            #[link_section = ".modinfo"]
            #[used]
            static PARM: [u8; concat!("parm=", stringify!($name), ":", $desc, "\0").len()] =
                *$crate::sys::bytes(concat!("parm=", stringify!($name), ":", $desc, "\0"));
            #[link_section = ".modinfo"]
            #[used]
            static PARMTYPE: [u8; concat!("parmtype=", stringify!($name), ":", $typename, "\0")
                .len()] = *$crate::sys::bytes(concat!(
                "parmtype=",
                stringify!($name),
                ":",
                $typename,
                "\0"
            ));
        };
    };
}

/// A `&str` as a byte array reference of its exact length (for `.modinfo` entries).
pub const fn bytes<const N: usize>(s: &str) -> &[u8; N] {
    assert!(s.len() == N);
    // SAFETY: the length was just checked; [u8; N] has the layout of N bytes.
    unsafe { &*s.as_ptr().cast::<[u8; N]>() }
}
