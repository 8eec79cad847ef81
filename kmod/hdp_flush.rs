// SPDX-License-Identifier: GPL-2.0
//! `/dev/hdp_flush`: flush an AMD GPU's HDP write FIFO on behalf of user space.
//!
//! On 64K-page kernels KFD cannot map the 4K HDP "MMIO remap" page into a process, so user
//! space has no way to flush the HDP before ringing a doorbell. This module does it for them,
//! through a node per GPU (`/dev/hdp_flush/<pci address>`, and `all` for administrators):
//! FLUSH (ioctl, or io_uring `URING_CMD` for batches) writes the HDP flush register, with
//! concurrent requests coalesced into one hardware flush (group commit).
//!
//! The uAPI is `uapi.rs`, shared with user space (libflush) and stated for C in
//! `include/hdp_flush.h`; docs/uapi.md and docs/kernel-module.md describe it. In C:
//!
//! ```c
//! int fd = open("/dev/hdp_flush/0000:03:00.0", O_RDWR);  /* the GPU's own node */
//! struct hdp_flush_version v;
//! ioctl(fd, HDP_FLUSH_IOC_VERSION, &v);           /* v.api_major must be 2 */
//! struct hdp_flush_request r = { .device = 0, .flags = HDP_FLUSH_F_SYNC };  /* 0: its GPU */
//! /* ... payload stores through the VRAM BAR, then a store fence ... */
//! ioctl(fd, HDP_FLUSH_IOC_FLUSH, &r);             /* flushed; now ring the doorbell */
//! ```
//!
//! Layout: this file holds the uAPI dispatch; `sys.rs` is the only place with `unsafe`;
//! `backend.rs` has the hardware; `coalesce.rs` the group commit.

use core::mem::size_of;

use compat::{AsBytes, FromBytes};
use kernel::c_str;
use kernel::prelude::*;

pub mod backend;
pub mod compat;
/// The C interfaces Kbuild generates from bindings.h (see Kbuild and bindings.allow): what the
/// kernel crate does not expose on every kernel the module supports.
#[allow(
    clippy::all,
    dead_code,
    improper_ctypes,
    missing_docs,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    unreachable_pub,
    unsafe_op_in_unsafe_fn
)]
pub mod c {
    type __kernel_size_t = usize;
    type __kernel_ssize_t = isize;
    type __kernel_ptrdiff_t = isize;
    include!("bindings_generated.rs");
}
pub mod coalesce;
pub mod params;
pub mod sys;
pub mod uapi;

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use backend::{Amdgpu, AnyBackend, Backend, Ident, NotServed, AMDGPU_DRIVER};
#[cfg(hdp_test)]
use backend::{PciTest, Sim};
use coalesce::{Arrival, Coalescer, FlushLock, Issue, Killed, Request, State};
use kernel::error::Error;
use kernel::sync::Arc;
use params::AmdgpuDevice;
use sys::{
    BoundDevice, KillableMutex, LockClass, MiscDevice, MiscHandler, PciBusNotifier, PciDev,
    PciEvents, UringCmd, UringReply, UserSlicer,
};
use uapi::*;

#[cfg(not(hdp_linux7))]
module! {
    type: HdpFlushModule,
    name: "hdp_flush",
    author: "hdpflush developers",
    description: "Flush AMD GPU HDP write FIFOs from user space on any page size",
    license: "GPL",
}

// 7.x's `module!` takes a list of authors.
#[cfg(hdp_linux7)]
module! {
    type: HdpFlushModule,
    name: "hdp_flush",
    authors: ["hdpflush developers"],
    description: "Flush AMD GPU HDP write FIFOs from user space on any page size",
    license: "GPL",
}

// The test variant (Kbuild's HDP_TEST=1, `--cfg hdp_test`): the simulator, the emulated test
// device and the knobs that break things on purpose. The production module has none of them
// (`cargo xtask test` checks its modinfo).
#[cfg(hdp_test)]
module_param!(sim_devices: u32 = 0, param_ops_uint, "uint",
    "Simulated devices to create after the hardware ones, 0-8 (default 0)");
#[cfg(hdp_test)]
module_param!(sim_delay_ns: u32 = 1000, param_ops_uint, "uint",
    "Modelled PCIe round trip of a synchronous sim flush in ns, 0-1000000 (default 1000)");
#[cfg(hdp_test)]
module_param!(sim_fail_every: u32 = 0, param_ops_uint, "uint",
    "Make every n-th sim flush or invalidate fail with EIO, to test error paths (default 0: never)");
#[cfg(hdp_test)]
module_param!(pcitest: bool = true, param_ops_bool, "bool",
    "Serve QEMU edu devices (1234:11e8) as test hardware (default Y)");
#[cfg(hdp_test)]
module_param!(test_load_pause_ms: u32 = 0, param_ops_uint, "uint",
    "For tests: pause this long at load between finding devices and listening for their removal, 0-10000 (default 0)");
#[cfg(hdp_test)]
module_param_rw!(test_stall_ms: u32 = 0,
    "For tests: each sim flush first sleeps this long (at most 10000 ms) holding its device, as a flush stuck on a dying GPU does (default 0)");
#[cfg(hdp_test)]
module_param_rw!(test_edu_all_ones: u32 = 0,
    "For tests: while nonzero, edu devices answer all ones (their liveness register is written 0), as a GPU that is gone or in reset does (default 0)");
#[cfg(hdp_test)]
module_param_call!(test_pci_error_state, set_test_pci_error_state,
    "For tests: DOMAIN:BUS:DEV.FN=normal|frozen|failed sets an edu device's PCI error state, as error recovery does");
module_param_string_hw!(amdgpu_devices, 1024,
    "The AMD GPUs to serve, each with its register offsets: DOMAIN:BUS:DEV.FN@FLUSH[/post=OFFSET][/invalidate=OFFSET],... (default: none; see docs/kernel-module.md)");

/// Largest accepted `test_load_pause_ms`.
#[cfg(hdp_test)]
const MAX_TEST_LOAD_PAUSE_MS: u32 = 10_000;
/// Largest accepted `sim_devices`.
#[cfg(hdp_test)]
const MAX_SIM_DEVICES: u32 = 8;
/// Largest accepted `sim_delay_ns` (1 ms: anything longer is a configuration mistake).
#[cfg(hdp_test)]
const MAX_SIM_DELAY_NS: u32 = 1_000_000;

/// The lockdep class of the device locks.
static DEVICE_LOCK_CLASS: LockClass = LockClass::new();

/// A kernel mutex around a device's coalescing state and counters. Sleeping, not spinning:
/// a flush holds it across a PCIe round trip (the posting read), and a hung or removed GPU
/// must not stall every other CPU spinning on it. Requests wait for it killably. Nothing takes
/// it where sleeping is not allowed: io_uring commands are served from task work.
struct KernelLock(Pin<KBox<KillableMutex<State<AnyBackend, Error>>>>);

impl FlushLock<AnyBackend, Error> for KernelLock {
    fn with<R>(&self, f: impl FnOnce(&mut State<AnyBackend, Error>) -> R) -> R {
        f(&mut self.0.lock())
    }
    fn with_killable<R>(
        &self,
        f: impl FnOnce(&mut State<AnyBackend, Error>) -> R,
    ) -> core::result::Result<R, Killed> {
        let mut guard = self.0.lock_killable().map_err(|_| Killed)?;
        Ok(f(&mut guard))
    }
    fn full_barrier() {
        sys::full_barrier();
    }
}

impl From<Killed> for Error {
    fn from(_: Killed) -> Self {
        EINTR
    }
}

/// How a device's hardware is set up again when its PCI device comes back (a driver binds to
/// it after an unbind, or after a removal and a rescan).
#[derive(Clone, Copy)]
enum Reattach {
    /// Never (the simulator has no PCI device).
    #[cfg(hdp_test)]
    Never,
    /// A QEMU edu device, once pci-stub (which plays amdgpu in the tests) binds.
    #[cfg(hdp_test)]
    PciTest,
    /// An AMD GPU, with the offsets it was named with, once amdgpu binds.
    Amdgpu(AmdgpuDevice),
}

/// One served device: what user space sees of it, and its hardware behind the device lock.
struct Device {
    ident: Ident,
    /// The PCI device it holds ([`PciDev::key`]), to recognise bus events about it; 0: none.
    key: AtomicUsize,
    /// Set while the hardware is revoked (removed or unbound); for DEVICE_INFO.
    revoked: AtomicBool,
    reattach: Reattach,
    coalescer: Coalescer<KernelLock, AnyBackend, Error>,
}

impl Device {
    fn new(backend: AnyBackend, reattach: Reattach) -> Result<Self> {
        let (ident, key) = (backend.ident(), backend.key());
        let lock = KBox::pin_init(
            KillableMutex::new(
                State::new(backend),
                c_str!("hdp_flush_device"),
                &DEVICE_LOCK_CLASS,
            ),
            GFP_KERNEL,
        )?;
        Ok(Self {
            ident,
            key: AtomicUsize::new(key.unwrap_or(0)),
            revoked: AtomicBool::new(false),
            reattach,
            coalescer: Coalescer::new(KernelLock(lock)),
        })
    }

    /// Whether `pci` is where this device's PCI device is.
    fn is_at(&self, pci: &sys::PciIdent) -> bool {
        self.ident
            .pci
            .is_some_and(|p| (p.domain, p.bus, p.devfn) == (pci.domain, pci.bus, pci.devfn))
    }

    /// Set up the hardware of a revoked device again, on `pci` (identified as `now`), which a
    /// driver has just bound (`bound` says what it is), if it is the same kind of device as
    /// before: after a removal and a rescan another one may sit at the address, and the offsets
    /// it was named with would be another device's registers.
    fn reattach(&self, index: usize, pci: PciDev, now: &sys::PciIdent, bound: &BoundDevice<'_>) {
        let name = self.ident.name;
        let was = self.ident.pci;
        if was.is_none_or(|w| (w.vendor, w.device, w.class) != (now.vendor, now.device, now.class))
        {
            pr_warn!(
                "device {}: {} got a driver again, but is now {:04x}:{:04x} (class {:06x}); not served\n",
                index,
                name_str(&name),
                now.vendor,
                now.device,
                now.class
            );
            return;
        }
        let hw = match self.reattach {
            #[cfg(hdp_test)]
            Reattach::Never => return,
            // The tests' stand-in for amdgpu is pci-stub, as at the unbind it followed.
            #[cfg(hdp_test)]
            Reattach::PciTest if !bound.is_bound_to(c_str!("pci-stub")) => return,
            #[cfg(hdp_test)]
            Reattach::PciTest => PciTest::probe(pci, &test_edu_all_ones)
                .map(AnyBackend::PciTest)
                .map_err(|_| "the emulated device did not answer"),
            Reattach::Amdgpu(gpu) => {
                match Amdgpu::probe(pci, &gpu, bound.is_bound_to(AMDGPU_DRIVER)) {
                    Ok(b) => Ok(AnyBackend::Amdgpu(b)),
                    Err(NotServed::Absent(why)) => Err(why),
                    Err(NotServed::Refused(_)) => Err("its parameters do not fit it now"),
                }
            }
        };
        let hw = match hw {
            Ok(hw) => hw,
            Err(why) => {
                pr_info!(
                    "device {}: {} got a driver again, but is not served: {}\n",
                    index,
                    name_str(&name),
                    why
                );
                return;
            }
        };
        let key = hw.key().unwrap_or(0);
        // Still attached (a bind without an unbind before it): what was set up is not needed.
        if self.coalescer.reattach(hw).is_some() {
            return;
        }
        self.key.store(key, Ordering::Release);
        self.revoked.store(false, Ordering::Release);
        pr_info!(
            "device {}: {} is back; serving it again\n",
            index,
            name_str(&name)
        );
    }

    /// Take the hardware away (it is being removed or unbound): waits for the request using
    /// it; every later request fails with ENODEV. Logs it, once.
    fn revoke(&self, index: usize) {
        let hw = self.coalescer.revoke();
        self.revoked.store(true, Ordering::Release);
        if hw.is_some() {
            pr_info!(
                "device {}: {} removed or unbound; its requests now fail with ENODEV\n",
                index,
                name_str(&self.ident.name)
            );
        }
        // Unmap and release the device now, outside the device lock.
        drop(hw);
    }

    /// FLUSH, for a request that arrived at `arrived`.
    fn flush(&self, arrived: Arrival, flags: u32, issue: Issue) -> Result {
        let sync = flags & HDP_FLUSH_F_SYNC != 0;
        let req = Request {
            coalesce: flags & HDP_FLUSH_F_NO_COALESCE == 0,
            sync,
            issue,
        };
        let hw = |b: Option<&AnyBackend>| b.ok_or(ENODEV)?.flush(sync);
        self.coalescer.flush_arrived(arrived, req, hw).map(drop)
    }

    /// INVALIDATE.
    fn invalidate(&self, issue: Issue) -> Result {
        let hw = |b: Option<&AnyBackend>| b.ok_or(ENODEV)?.invalidate();
        self.coalescer.invalidate(issue, hw)
    }
}

/// A `URING_CMD` between its issue and its task work.
#[derive(Clone, Copy)]
struct UringTask {
    cmd_op: u32,
    device: u32,
    flags: u32,
    /// Taken at issue, so that commands submitted together share a flush.
    arrived: Arrival,
}

/// The devices the module serves; the list is fixed after module init (a device that goes is
/// revoked in place, and may come back).
struct HdpFlush {
    devices: KVec<Device>,
}

/// What one device node reaches.
#[derive(Clone, Copy)]
enum Scope {
    /// Every device, by its module index: `/dev/hdp_flush/all`, for administrators.
    All,
    /// One device, as index 0: `/dev/hdp_flush/<name>`, what a container is given for its GPU.
    One(u32),
}

/// The handler of one device node: the shared device list, seen through its scope.
struct Node {
    shared: Arc<HdpFlush>,
    scope: Scope,
}

/// `name` up to its first NUL, for messages.
pub(crate) fn name_str(name: &[u8]) -> &str {
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    core::str::from_utf8(&name[..end]).unwrap_or("?")
}

impl HdpFlush {
    /// Device `index` of the module.
    fn device(&self, index: u32) -> Result<&Device> {
        let count = self.devices.len();
        let index = index as usize;
        if index >= count {
            return Err(ENODEV);
        }
        // The bounds check above may be speculated past; the clamped index cannot.
        self.devices
            .get(sys::array_index_nospec(index, count))
            .ok_or(ENODEV)
    }
}

impl Node {
    /// How many devices requests on this node can name.
    fn count(&self) -> u32 {
        match self.scope {
            Scope::All => self.shared.devices.len() as u32,
            Scope::One(_) => 1,
        }
    }

    /// Device `index` as this node numbers them: only 0, its own device, on a device's node.
    fn device(&self, index: u32) -> Result<&Device> {
        match self.scope {
            Scope::All => self.shared.device(index),
            Scope::One(own) if index == 0 => self.shared.device(own),
            Scope::One(_) => Err(ENODEV),
        }
    }

    fn version(&self) -> HdpFlushVersion {
        HdpFlushVersion {
            api_major: HDP_FLUSH_API_MAJOR,
            api_minor: HDP_FLUSH_API_MINOR,
            num_devices: self.count(),
            page_size: kernel::page::PAGE_SIZE as u32,
            features: HDP_FLUSH_FEAT_URING_CMD | HDP_FLUSH_FEAT_COALESCE,
            reserved: [0; 2],
        }
    }

    /// Validate a FLUSH/INVALIDATE request and find its device.
    fn request(&self, req: &HdpFlushRequest, valid_flags: u32) -> Result<&Device> {
        if req.flags & !valid_flags != 0 || req.reserved != 0 {
            return Err(EINVAL);
        }
        // A dedicated hardware flush per request is for measuring; unprivileged floods of
        // them would cost every other caller of the device.
        if req.flags & HDP_FLUSH_F_NO_COALESCE != 0 && !sys::capable_sys_admin() {
            return Err(EPERM);
        }
        self.device(req.device)
    }

    fn device_info(&self, req: &HdpFlushDeviceInfo) -> Result<HdpFlushDeviceInfo> {
        if req.flags != 0 || req.uring_requests != 0 || req.reserved != [0; 1] {
            return Err(EINVAL);
        }
        let dev = self.device(req.index)?;
        let ident = dev.ident;
        let pci = ident.pci;
        let (suspended, offline) = dev
            .coalescer
            .inspect(|hw| hw.map_or((false, false), |hw| (hw.suspended(), hw.offline())))?;
        let mut flags = 0;
        if dev.revoked.load(Ordering::Acquire) {
            flags |= HDP_FLUSH_DEVICE_F_REVOKED;
        }
        if suspended {
            flags |= HDP_FLUSH_DEVICE_F_SUSPENDED;
        }
        if offline {
            flags |= HDP_FLUSH_DEVICE_F_OFFLINE;
        }
        Ok(HdpFlushDeviceInfo {
            index: req.index,
            backend: ident.backend,
            pci_domain: pci.map_or(0, |p| p.domain),
            pci_bdf: pci.map_or(0, |p| (u32::from(p.bus) << 8) | u32::from(p.devfn)),
            vendor: pci.map_or(0, |p| p.vendor),
            device: pci.map_or(0, |p| p.device),
            flags,
            uring_requests: dev.coalescer.counters(false)?.uring_requests,
            reserved: [0; 1],
            name: ident.name,
        })
    }

    fn stats(&self, req: &HdpFlushStats) -> Result<HdpFlushStats> {
        if req.flags & !HDP_FLUSH_STATS_FLAGS != 0 {
            return Err(EINVAL);
        }
        let reset = req.flags & HDP_FLUSH_STATS_F_RESET != 0;
        // Anyone who may flush may read the counters; zeroing them under another user's
        // measurement is the administrator's.
        if reset && !sys::capable_sys_admin() {
            return Err(EPERM);
        }
        let v = self.device(req.device)?.coalescer.counters(reset)?;
        Ok(HdpFlushStats {
            device: req.device,
            flags: req.flags,
            flush_requests: v.flush_requests,
            hw_flushes: v.hw_flushes,
            coalesced: v.coalesced,
            invalidates: v.invalidates,
            flush_errors: v.flush_errors,
            invalidate_errors: v.invalidate_errors,
            flush_skipped: v.flush_skipped,
        })
    }
}

impl PciEvents for HdpFlush {
    fn device_going(&self, key: usize) {
        for (index, dev) in self.devices.iter().enumerate() {
            if dev.key.load(Ordering::Acquire) == key && !dev.revoked.load(Ordering::Acquire) {
                dev.revoke(index);
            }
        }
    }

    fn device_bound(&self, bound: &BoundDevice<'_>) {
        let pci = bound.pci();
        let at = pci.ident();
        for (index, dev) in self.devices.iter().enumerate() {
            if dev.revoked.load(Ordering::Acquire) && dev.is_at(&at) {
                dev.reattach(index, pci.new_ref(), &at, bound);
            }
        }
    }
}

impl HdpFlush {
    /// Revoke the devices that went between discovery and the bus notifier's registration;
    /// from then on the notifier reports them. Called before user space can reach a device.
    fn revoke_gone_before_listening(&self) {
        for (index, dev) in self.devices.iter().enumerate() {
            // A new reference, so the check (which takes the PCI device's lock, held by the
            // driver core around the notifier calls that take ours) runs outside our lock.
            // Not killable: the check must happen before the device is published.
            let attachment = dev
                .coalescer
                .lock()
                .with(|st| st.hw.as_ref().and_then(Backend::attachment));
            let Some((pci, driver)) = attachment else {
                continue;
            };
            pci.unless_attached(driver, || dev.revoke(index));
        }
    }
}

/// Read a `T` from the ioctl argument.
fn read_arg<T: FromBytes>(arg: &UserSlicer) -> Result<T> {
    arg.slice(size_of::<T>()).reader().read::<T>()
}

/// Write a `T` to the ioctl argument.
fn write_arg<T: AsBytes>(arg: &UserSlicer, value: &T) -> Result {
    arg.slice(size_of::<T>()).writer().write(value)
}

impl MiscHandler for Node {
    fn ioctl(&self, cmd: u32, arg: UserSlicer) -> Result<i64> {
        match cmd {
            HDP_FLUSH_IOC_VERSION => write_arg(&arg, &self.version())?,
            HDP_FLUSH_IOC_NOP => {}
            HDP_FLUSH_IOC_DEVICE_INFO => {
                let reply = self.device_info(&read_arg(&arg)?)?;
                write_arg(&arg, &reply)?;
            }
            HDP_FLUSH_IOC_FLUSH => {
                let req = read_arg(&arg)?;
                let dev = self.request(&req, HDP_FLUSH_FLUSH_FLAGS)?;
                dev.flush(dev.coalescer.arrive(), req.flags, Issue::Ioctl)?;
            }
            HDP_FLUSH_IOC_INVALIDATE => {
                let req = read_arg(&arg)?;
                let dev = self.request(&req, HDP_FLUSH_INVALIDATE_FLAGS)?;
                dev.invalidate(Issue::Ioctl)?;
            }
            HDP_FLUSH_IOC_STATS => {
                let reply = self.stats(&read_arg(&arg)?)?;
                write_arg(&arg, &reply)?;
            }
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }

    type UringTask = UringTask;

    fn uring_cmd(&self, cmd: UringCmd) -> Result<UringReply<UringTask>> {
        let valid_flags = match cmd.cmd_op {
            HDP_FLUSH_IOC_FLUSH => HDP_FLUSH_FLUSH_FLAGS,
            HDP_FLUSH_IOC_INVALIDATE => HDP_FLUSH_INVALIDATE_FLAGS,
            // Checked like a FLUSH, then answered at once: the io_uring floor for benchmarks.
            HDP_FLUSH_IOC_NOP => 0,
            _ => return Err(ENOTTY),
        };
        // No command of ours uses a fixed buffer or any SQE field besides its 16-byte request:
        // anything else set is a caller's mistake, refused so it can gain meaning later.
        if cmd.cmd_flags != 0 || cmd.unused_set {
            return Err(EINVAL);
        }
        let dev = self.request(&cmd.req, valid_flags)?;
        if cmd.cmd_op == HDP_FLUSH_IOC_NOP {
            return Ok(UringReply::Done(0));
        }
        // Arrives now, is served from task work once the whole submission is issued: a batch
        // of flushes rides on the first one's hardware flush. Never EAGAIN: io_uring would
        // retry from a worker that re-reads the SQE, and 6.12's io_uring_cmd() leaves
        // ioucmd->sqe at the shared ring slot, which user space may have reused by then.
        Ok(UringReply::InTask(UringTask {
            cmd_op: cmd.cmd_op,
            device: cmd.req.device,
            flags: cmd.req.flags,
            arrived: dev.coalescer.arrive(),
        }))
    }

    fn uring_task(&self, task: UringTask) -> Result<i32> {
        let dev = self.device(task.device)?;
        match task.cmd_op {
            HDP_FLUSH_IOC_FLUSH => dev.flush(task.arrived, task.flags, Issue::Uring)?,
            _ => dev.invalidate(Issue::Uring)?,
        }
        Ok(0)
    }
}

/// Check the parameters before touching any hardware.
fn check_params() -> Result {
    #[cfg(hdp_test)]
    for (name, value, max) in [
        ("sim_devices", sim_devices.get(), MAX_SIM_DEVICES),
        ("sim_delay_ns", sim_delay_ns.get(), MAX_SIM_DELAY_NS),
        (
            "test_load_pause_ms",
            test_load_pause_ms.get(),
            MAX_TEST_LOAD_PAUSE_MS,
        ),
    ] {
        if value > max {
            pr_err!("{}={} is out of range 0-{}\n", name, value, max);
            return Err(EINVAL);
        }
    }
    named_gpus().map(drop)
}

/// The GPUs `amdgpu_devices` names, parsed and checked.
fn named_gpus() -> Result<params::AmdgpuDevices> {
    let value = amdgpu_devices.get().inspect_err(|_| {
        pr_err!("amdgpu_devices is not UTF-8\n");
    })?;
    params::parse_amdgpu_devices(value).map_err(|e| {
        pr_err!("{}\n", e);
        EINVAL
    })
}

/// Set up the simulated devices the parameters ask for, after the hardware ones.
#[cfg(hdp_test)]
fn add_sims(devices: &mut KVec<Device>) -> Result {
    for i in 0..sim_devices.get() {
        let sim = Sim::new(i, sim_delay_ns.get(), sim_fail_every.get(), &test_stall_ms);
        devices.push(
            Device::new(AnyBackend::Sim(sim), Reattach::Never)?,
            GFP_KERNEL,
        )?;
        match sim_fail_every.get() {
            0 => pr_info!(
                "device {}: sim{} (round trip {} ns)\n",
                devices.len() - 1,
                i,
                sim_delay_ns.get()
            ),
            n => pr_info!(
                "device {}: sim{} (round trip {} ns, every {}th operation fails: sim_fail_every)\n",
                devices.len() - 1,
                i,
                sim_delay_ns.get(),
                n
            ),
        }
    }
    Ok(())
}

/// Set up the QEMU `edu` devices, when asked to.
#[cfg(hdp_test)]
fn add_pcitest(devices: &mut KVec<Device>) -> Result {
    if !pcitest.get() {
        return Ok(());
    }
    for dev in PciDev::find_all(backend::EDU_VENDOR, backend::EDU_DEVICE)? {
        let name = dev.ident().name;
        match PciTest::probe(dev, &test_edu_all_ones) {
            Ok(b) => {
                devices.push(
                    Device::new(AnyBackend::PciTest(b), Reattach::PciTest)?,
                    GFP_KERNEL,
                )?;
                pr_info!(
                    "device {}: pcitest {} (QEMU edu, BAR0 liveness register)\n",
                    devices.len() - 1,
                    name_str(&name)
                );
            }
            Err(e) => pr_warn!("pcitest {}: not used ({:?})\n", name_str(&name), e),
        }
    }
    Ok(())
}

/// Set up the AMD GPUs `amdgpu_devices` names. One that is absent or not bound to amdgpu is
/// skipped with a warning; one the parameter gets wrong fails the load.
fn add_amdgpus(devices: &mut KVec<Device>) -> Result {
    for gpu in named_gpus()?.iter() {
        let at = gpu.pci;
        let Some(dev) = PciDev::find_at(at.domain, at.bus, at.devfn) else {
            pr_warn!(
                "amdgpu_devices: no PCI device at {:04x}:{:02x}:{:02x}.{}; not served\n",
                at.domain,
                at.bus,
                at.devfn >> 3,
                at.devfn & 7
            );
            continue;
        };
        let name = dev.ident().name;
        let bound = dev.is_bound_to(AMDGPU_DRIVER);
        match Amdgpu::probe(dev, gpu, bound) {
            Ok(b) => {
                devices.push(
                    Device::new(AnyBackend::Amdgpu(b), Reattach::Amdgpu(*gpu))?,
                    GFP_KERNEL,
                )?;
                pr_info!(
                    "device {}: amdgpu {} (flush register at {:#x}, post read at {:#x}, invalidate {})\n",
                    devices.len() - 1,
                    name_str(&name),
                    gpu.flush,
                    gpu.post,
                    match gpu.invalidate {
                        params::Invalidate::Register(_) => "register set",
                        params::Invalidate::NotNeeded => "not needed on this HDP",
                        params::Invalidate::Unset => "unset: EOPNOTSUPP",
                    }
                );
            }
            Err(NotServed::Absent(why)) => {
                pr_warn!("amdgpu_devices: {}: {}; not served\n", name_str(&name), why)
            }
            Err(NotServed::Refused(e)) => return Err(e),
        }
    }
    Ok(())
}

/// `test_pci_error_state=DOMAIN:BUS:DEV.FN=STATE`: set an edu device's PCI error state, as the
/// PCI core's error recovery does, for the tests of a frozen channel.
#[cfg(hdp_test)]
fn set_test_pci_error_state(value: &str) -> Result {
    let (at, named) = value.split_once('=').ok_or(EINVAL)?;
    let at = params::parse_pci(at).ok_or(EINVAL)?;
    let state = match named {
        "normal" => c::pci_channel_io_normal,
        "frozen" => c::pci_channel_io_frozen,
        "failed" => c::pci_channel_io_perm_failure,
        _ => return Err(EINVAL),
    };
    let dev = PciDev::find_at(at.domain, at.bus, at.devfn).ok_or(ENODEV)?;
    let id = dev.ident();
    // Only the emulated test device: nothing else's recovery state is the tests' to change.
    if (u32::from(id.vendor), u32::from(id.device)) != (backend::EDU_VENDOR, backend::EDU_DEVICE) {
        return Err(EINVAL);
    }
    dev.test_set_error_state(state);
    pr_info!(
        "test_pci_error_state: {} now {}\n",
        name_str(&id.name),
        named
    );
    Ok(())
}

/// Find and set up every device the parameters ask for. Hardware first: GPUs, then emulated
/// test devices, then simulated ones, so that index 0 is a simulator only where nothing else
/// is served (and only when `sim_devices` asks for one).
fn discover() -> Result<KVec<Device>> {
    let mut devices = KVec::new();
    add_amdgpus(&mut devices)?;
    #[cfg(hdp_test)]
    add_pcitest(&mut devices)?;
    #[cfg(hdp_test)]
    add_sims(&mut devices)?;
    Ok(devices)
}

/// Register the device node of `scope`, `/dev/hdp_flush/<node>`, with `mode`.
fn add_node(
    nodes: &mut KVec<Pin<KBox<MiscDevice<Node>>>>,
    shared: &Arc<HdpFlush>,
    scope: Scope,
    node: &str,
    mode: u16,
    module: &'static ThisModule,
) -> Result {
    let mut name = [0u8; sys::MISC_NAME_LEN];
    let mut path = [0u8; sys::MISC_NAME_LEN];
    let name = join(&mut name, "hdp_flush_", node)?;
    let path = join(&mut path, "hdp_flush/", node)?;
    let dev = MiscDevice::new(Node {
        shared: shared.clone(),
        scope,
    })?;
    dev.as_ref().register(name, path, mode, module)?;
    nodes.push(dev, GFP_KERNEL)?;
    Ok(())
}

/// `a` then `b` in `buf`.
fn join<'a>(buf: &'a mut [u8], a: &str, b: &str) -> Result<&'a str> {
    let len = a.len() + b.len();
    if len > buf.len() {
        return Err(EINVAL);
    }
    buf[..a.len()].copy_from_slice(a.as_bytes());
    buf[a.len()..len].copy_from_slice(b.as_bytes());
    core::str::from_utf8(&buf[..len]).map_err(|_| EINVAL)
}

struct HdpFlushModule {
    // Fields drop in order. First the notifier: no bus event reaches the devices once it goes.
    // Then the nodes: no file is open (each pins the module). Then the devices.
    _events: Pin<KBox<PciBusNotifier<HdpFlush>>>,
    _nodes: KVec<Pin<KBox<MiscDevice<Node>>>>,
    _shared: Arc<HdpFlush>,
}

impl kernel::Module for HdpFlushModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        check_params()?;
        let devices = discover()?;
        let count = devices.len();
        let shared = Arc::new(HdpFlush { devices }, GFP_KERNEL)?;
        #[cfg(hdp_test)]
        if test_load_pause_ms.get() > 0 {
            // Widens the window the check below closes, so a test can remove a device in it.
            pr_info!(
                "pausing {} ms before listening for device removal (test_load_pause_ms)\n",
                test_load_pause_ms.get()
            );
            sys::msleep(test_load_pause_ms.get());
        }
        // Listen for removals and unbinds before anyone can reach a device, then drop what
        // went before we listened; only then publish the nodes.
        // SAFETY: the devices live in `shared`'s allocation, which does not move and which
        // this module value keeps (a field declared after the notifier, so dropped after it;
        // on an error below, a local declared before it, so dropped after it).
        let events = unsafe { PciBusNotifier::register(&*shared) }?;
        shared.revoke_gone_before_listening();
        // One node per device, for a container given that device (index 0 there); one for
        // every device, by module index, for administrators only.
        let mut nodes = KVec::new();
        add_node(&mut nodes, &shared, Scope::All, "all", 0o600, module)?;
        for (index, dev) in shared.devices.iter().enumerate() {
            let node = name_str(&dev.ident.name);
            add_node(
                &mut nodes,
                &shared,
                Scope::One(index as u32),
                node,
                0o660,
                module,
            )?;
        }
        // Nothing can fail from here on: let opens through. (Had init failed above, the nodes
        // would have been freed with the module while a file could have been open on one.)
        for node in nodes.iter() {
            node.publish();
        }
        pr_info!(
            "/dev/hdp_flush/ ready: uAPI {}.{}, {} device(s) with a node each, and all; PAGE_SIZE {}\n",
            HDP_FLUSH_API_MAJOR,
            HDP_FLUSH_API_MINOR,
            count,
            kernel::page::PAGE_SIZE
        );
        Ok(Self {
            _events: events,
            _nodes: nodes,
            _shared: shared,
        })
    }
}

impl Drop for HdpFlushModule {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}
