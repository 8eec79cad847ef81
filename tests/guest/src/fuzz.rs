//! The uAPI fuzzer: random and mutated ioctl commands and payloads, hostile pointers (NULL,
//! kernel addresses, a struct straddling a PROT_NONE page), random `URING_CMD` SQEs with random
//! IOSQE flags (async, links, hard links, drain) on three kinds of ring (64-byte SQEs, 128-byte
//! SQEs, `DEFER_TASKRUN`), from four threads, with a fifth opening and closing the device all
//! along and an emulated device hot-removed halfway. Every answer must be success or an errno the uAPI documents; afterwards
//! every device's counters must add up and the removed one must say it is revoked. Seeded, so a
//! failing run can be replayed (`hdpflush.fuzz_seed=N` on the kernel command line).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use io_uring::{opcode, squeue, types, IoUring};
use libflush::device::HdpFlushDevice;
use libflush::uapi::*;
use nix::errno::Errno;

/// What a run did: calls, and answers by errno (0: success).
#[derive(Debug, Default)]
pub struct Report {
    pub calls: u64,
    pub answers: BTreeMap<i32, u64>,
    pub removed_at: u64,
}

/// The answers a call may get: success, or one of the uAPI's errnos (EPERM never: the fuzzer
/// runs as root; EBADF/EFAULT from io_uring itself for a fixed buffer or file it does not have;
/// ECANCELED from io_uring for an SQE linked to one that failed).
const DOCUMENTED: [Errno; 8] = [
    Errno::ENOTTY,
    Errno::EINVAL,
    Errno::EFAULT,
    Errno::ENODEV,
    Errno::EIO,
    Errno::EOPNOTSUPP,
    Errno::EBADF,
    Errno::ECANCELED,
];

/// The rings a fuzzing thread may use: io_uring serves commands differently on each (the
/// command area's size, and where task work runs).
enum Ring {
    /// 64-byte SQEs.
    Plain(IoUring),
    /// 128-byte SQEs (`IORING_SETUP_SQE128`): the module's 16 bytes, then 64 that must be zero.
    Sqe128(IoUring<squeue::Entry128>),
    /// `IORING_SETUP_DEFER_TASKRUN`: task work only while the thread waits for completions.
    DeferTaskrun(IoUring),
}

impl Ring {
    /// Thread `t`'s ring.
    fn for_thread(t: u64) -> Result<Self, String> {
        let e = |e: std::io::Error| format!("io_uring setup: {e}");
        Ok(match t % 4 {
            1 => Self::Sqe128(IoUring::builder().build(32).map_err(e)?),
            2 => Self::DeferTaskrun(
                IoUring::builder()
                    .setup_single_issuer()
                    .setup_defer_taskrun()
                    .build(32)
                    .map_err(e)?,
            ),
            _ => Self::Plain(IoUring::new(32).map_err(e)?),
        })
    }

    /// A batch of `n` random SQEs, all reaped before the slots are used again. One batch in
    /// four may drain; see [`Mix`].
    fn batch(
        &mut self,
        rng: &mut fastrand::Rng,
        n: usize,
        fd: RawFd,
        devices: u32,
        answers: &mut BTreeMap<i32, u64>,
    ) -> Result<(), String> {
        let mix = if rng.u8(..4) == 0 {
            Mix::Drain
        } else {
            Mix::IoUringRefusals
        };
        match self {
            Self::Plain(r) | Self::DeferTaskrun(r) => {
                run_batch(r, n, |tag| sqe(rng, fd, devices, tag, mix), answers)
            }
            Self::Sqe128(r) => run_batch(r, n, |tag| sqe128(rng, fd, devices, tag, mix), answers),
        }
    }
}

/// What a batch may mix. Not both: in 6.12 (io_uring/io_uring.c `req_need_defer`) a drained
/// request waits until the CQ tail *equals* the count of requests submitted before it, so an SQE
/// after it that io_uring itself refuses at submission (a nonzero `ioprio`, a fixed-buffer index
/// with no buffers registered) posts its CQE early, the equality never holds, and the drained
/// request and all after it wait forever: an io_uring bug of any operation, not the module's
/// (7.x counts allocated requests instead: `nr_drained`). The fuzzer stalled on it (tried).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mix {
    /// `IOSQE_IO_DRAIN` among the flags; no SQE io_uring refuses.
    Drain,
    /// SQEs io_uring refuses at submission; no drain.
    IoUringRefusals,
}

/// How long a batch may take to complete before the fuzzer calls it lost.
const BATCH_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Submit `n` SQEs from `next` and reap their `n` completions; an error naming the SQEs (op,
/// IOSQE flags, result so far) if they do not all complete within [`BATCH_LIMIT`].
fn run_batch<S: squeue::EntryMarker + Clone + std::fmt::Debug>(
    ring: &mut IoUring<S>,
    n: usize,
    mut next: impl FnMut(u64) -> S,
    answers: &mut BTreeMap<i32, u64>,
) -> Result<(), String> {
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        let e = next(i as u64);
        sent.push(e.clone());
        // SAFETY: the request is inline; the SQE references no memory.
        unsafe { ring.submission().push(&e) }.map_err(|e| e.to_string())?;
    }
    let mut results: Vec<Option<i32>> = vec![None; n];
    let started = std::time::Instant::now();
    let mut reaped = 0;
    while reaped < n {
        let left = BATCH_LIMIT.saturating_sub(started.elapsed());
        let ts = types::Timespec::from(left.max(std::time::Duration::from_millis(1)));
        let args = types::SubmitArgs::new().timespec(&ts);
        match ring.submitter().submit_with_args(n - reaped, &args) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ETIME) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::EINTR) => {}
            Err(e) => return Err(format!("io_uring: {e}")),
        }
        for cqe in ring.completion() {
            reaped += 1;
            *answers.entry(-cqe.result().min(0)).or_default() += 1;
            if let Some(r) = results.get_mut(cqe.user_data() as usize) {
                *r = Some(cqe.result());
            }
        }
        if reaped < n && started.elapsed() >= BATCH_LIMIT {
            let lost: Vec<String> = sent
                .iter()
                .zip(&results)
                .map(|(sqe, r)| format!("{r:?} <- {sqe:?}"))
                .collect();
            return Err(format!(
                "{reaped} of {n} completions after {BATCH_LIMIT:?}; the batch: {}",
                lost.join("; ")
            ));
        }
    }
    Ok(())
}

/// IOSQE flags now and then: each makes io_uring issue the command another way (from its
/// worker, after the previous one, after everything before it).
fn sqe_flags(rng: &mut fastrand::Rng, mix: Mix) -> squeue::Flags {
    match rng.u8(..16) {
        0 => squeue::Flags::ASYNC,
        1 => squeue::Flags::IO_LINK,
        2 => squeue::Flags::IO_HARDLINK,
        3 if mix == Mix::Drain => squeue::Flags::IO_DRAIN,
        4 => squeue::Flags::ASYNC | squeue::Flags::IO_LINK,
        _ => squeue::Flags::empty(),
    }
}

/// `ioctl(fd, cmd, arg)` with any command and any argument address. A fuzzer needs numbers
/// chosen at run time, which nix's ioctl macros (constants) cannot take.
fn ioctl(fd: RawFd, cmd: u32, arg: *mut u8) -> i32 {
    // SAFETY: the kernel validates `cmd` and `arg`: unknown commands are refused, bad
    // addresses are EFAULT; `arg`, when valid, points at a buffer of at least the largest
    // struct, owned by the caller.
    match unsafe { nix::libc::ioctl(fd, cmd as nix::libc::c_ulong as _, arg) } {
        r if r >= 0 => 0,
        _ => Errno::last() as i32,
    }
}

/// Memory the hostile pointers point into: two pages, the second PROT_NONE.
struct Straddle {
    base: *mut u8,
    page: usize,
}

// SAFETY: the pages are only handed to the kernel as addresses; nothing reads them from Rust.
unsafe impl Send for Straddle {}
// SAFETY: as above.
unsafe impl Sync for Straddle {}

impl Straddle {
    fn new() -> Result<Self, String> {
        let page = libflush::page_size();
        let len = std::num::NonZeroUsize::new(2 * page).ok_or("page size 0")?;
        use nix::sys::mman::{mmap_anonymous, mprotect, MapFlags, ProtFlags};
        // SAFETY: a fresh anonymous mapping aliases nothing.
        let base = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .map_err(|e| e.to_string())?;
        // SAFETY: the second page of our own mapping.
        unsafe {
            mprotect(
                std::ptr::NonNull::new_unchecked(base.as_ptr().cast::<u8>().add(page).cast()),
                page,
                ProtFlags::PROT_NONE,
            )
        }
        .map_err(|e| e.to_string())?;
        Ok(Self {
            base: base.as_ptr().cast(),
            page,
        })
    }

    /// `len` bytes before the PROT_NONE page, the rest of a struct running into it.
    fn across(&self, len: usize) -> *mut u8 {
        self.base.wrapping_add(self.page - len)
    }
}

/// The commands, each with its argument size, and some that are ours only in type byte.
fn command(rng: &mut fastrand::Rng) -> u32 {
    let ours = HDP_FLUSH_COMMANDS.map(|(_, spec)| spec.encode(IOC_LAYOUT));
    if rng.u8(..) < 200 {
        ours[rng.usize(..ours.len())]
    } else {
        // Type 'H', any number, direction and size: never a VFS-wide ioctl.
        let (dir, size, nr) = (rng.u32(..4), rng.u32(..256), rng.u32(..256));
        (dir << 30) | (size << 16) | (HDP_FLUSH_IOC_MAGIC << 8) | nr
    }
}

/// A 128-byte argument: a valid request for `devices`, then mutated.
fn payload(rng: &mut fastrand::Rng, devices: u32, buf: &mut [u8; 128]) {
    rng.fill(buf);
    let req = HdpFlushRequest::new(rng.u32(..devices + 2), rng.u32(..4));
    if rng.bool() {
        buf[..16].copy_from_slice(&req.to_cmd_bytes());
    }
    if rng.bool() {
        buf[4..16].fill(0); // flags 0, reserved 0: mostly valid
    }
    if rng.u8(..) < 30 {
        let bit = rng.usize(..128 * 8);
        buf[bit / 8] ^= 1 << (bit % 8);
    }
}

/// A `URING_CMD` op (mostly FLUSH or INVALIDATE, else any of our type byte) and a mutated
/// 16-byte request.
fn uring_request(rng: &mut fastrand::Rng, devices: u32) -> (u32, [u8; 16]) {
    let op = match rng.u8(..10) {
        0..=5 => HDP_FLUSH_IOC_FLUSH,
        6..=7 => HDP_FLUSH_IOC_INVALIDATE,
        _ => command(rng),
    };
    let mut buf = [0u8; 128];
    payload(rng, devices, &mut buf);
    let mut request = [0u8; 16];
    request.copy_from_slice(&buf[..16]);
    (op, request)
}

/// An SQE: FLUSH, INVALIDATE or any op, a mutated request, and now and then a field set
/// that must be refused.
fn sqe(rng: &mut fastrand::Rng, fd: RawFd, devices: u32, tag: u64, mix: Mix) -> squeue::Entry {
    let (op, request) = uring_request(rng, devices);
    let mut b = opcode::UringCmd16::new(types::Fd(fd), op).cmd(request);
    let refusals = mix == Mix::IoUringRefusals;
    match rng.u8(..40) {
        0 => b = b.addr(Some(rng.u64(..))),
        1 if refusals => b = b.buf_index(Some(rng.u16(..))),
        _ => {}
    }
    let e = b.build().flags(sqe_flags(rng, mix)).user_data(tag);
    if rng.u8(..40) == 0 {
        // SAFETY: Entry is a repr(C) wrapper of the 64-byte io_uring_sqe, plain bytes; `len`
        // (offset 24) and `ioprio` (offset 2) take any value.
        let mut bytes: [u8; 64] = unsafe { std::mem::transmute(e) };
        let ioprio = refusals && rng.bool();
        bytes[if ioprio { 2 } else { 24 }] = rng.u8(1..);
        // SAFETY: as above.
        return unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(bytes) };
    }
    e
}

/// A 128-byte SQE: as [`sqe`], with the 80-byte command area, whose bytes past the request are
/// zero but now and then.
fn sqe128(
    rng: &mut fastrand::Rng,
    fd: RawFd,
    devices: u32,
    tag: u64,
    mix: Mix,
) -> squeue::Entry128 {
    let (op, request) = uring_request(rng, devices);
    let mut cmd = [0u8; 80];
    cmd[..16].copy_from_slice(&request);
    if rng.u8(..20) == 0 {
        cmd[rng.usize(16..80)] = rng.u8(1..);
    }
    opcode::UringCmd80::new(types::Fd(fd), op)
        .cmd(cmd)
        .build()
        .flags(sqe_flags(rng, mix))
        .user_data(tag)
}

/// One fuzzing thread: `calls` calls on a handle of its own.
fn fuzz_thread(
    t: u64,
    seed: u64,
    calls: u64,
    straddle: &Straddle,
    done: &AtomicU64,
) -> Result<BTreeMap<i32, u64>, String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let dev = HdpFlushDevice::open_default().map_err(|e| e.to_string())?;
    let fd = dev.as_fd().as_raw_fd();
    let devices = dev.version().num_devices;
    let mut ring = Ring::for_thread(t)?;
    let mut answers: BTreeMap<i32, u64> = BTreeMap::new();
    let mut buf = [0u8; 128];
    let mut made = 0u64;
    let kernel_address = usize::MAX & !0xfff;
    while made < calls {
        if rng.u8(..4) == 0 {
            // A batch of SQEs, all reaped before the slots are used again.
            let n = rng.usize(1..=16).min((calls - made) as usize);
            ring.batch(&mut rng, n, fd, devices, &mut answers)?;
            made += n as u64;
            done.fetch_add(n as u64, Ordering::Relaxed);
        } else {
            let cmd = command(&mut rng);
            payload(&mut rng, devices, &mut buf);
            let arg = match rng.u8(..20) {
                0 => std::ptr::null_mut(),
                1 => kernel_address as *mut u8,
                2 => straddle.across(rng.usize(1..16)),
                _ => buf.as_mut_ptr(),
            };
            *answers.entry(ioctl(fd, cmd, arg)).or_default() += 1;
            made += 1;
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(answers)
}

/// Open, ask VERSION, close, as fast as possible, until told to stop.
fn churn(stop: &AtomicBool) -> Result<u64, String> {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let d = HdpFlushDevice::open_default().map_err(|e| format!("churn: {e}"))?;
        d.nop().map_err(|e| format!("churn: {e}"))?;
        n += 1;
    }
    Ok(n)
}

/// Fuzz with `calls` calls in all, removing the PCI device `remove` halfway.
pub fn run(calls: u64, seed: u64, remove: &str) -> Result<Report, String> {
    let straddle = Straddle::new()?;
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let per_thread = calls.div_ceil(4);
    let mut report = Report::default();
    let results: Vec<Result<BTreeMap<i32, u64>, String>> = std::thread::scope(|s| {
        let churner = s.spawn(|| churn(&stop));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (straddle, done) = (&straddle, &done);
                s.spawn(move || fuzz_thread(t, seed.wrapping_add(t), per_thread, straddle, done))
            })
            .collect();
        while done.load(Ordering::Relaxed) < calls / 2 && !threads.iter().all(|t| t.is_finished()) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        report.removed_at = done.load(Ordering::Relaxed);
        let path = format!("/sys/bus/pci/devices/{remove}/remove");
        let removal = std::fs::write(&path, "1").map_err(|e| format!("{path}: {e}"));
        let mut all: Vec<_> = threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("a fuzz thread panicked".into()))
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        all.push(
            churner
                .join()
                .unwrap_or_else(|_| Err("churn panicked".into()))
                .map(|n| BTreeMap::from([(i32::MIN, n)])),
        );
        all.push(removal.map(|()| BTreeMap::new()));
        all
    });
    for r in results {
        for (answer, n) in r? {
            if answer == i32::MIN {
                continue; // the churn thread's opens, not calls
            }
            let documented = answer == 0 || DOCUMENTED.iter().any(|e| *e as i32 == answer);
            if !documented {
                return Err(format!(
                    "{n} call(s) answered errno {answer} ({}), which the uAPI does not document",
                    Errno::from_raw(answer)
                ));
            }
            report.calls += n;
            *report.answers.entry(answer).or_default() += n;
        }
    }
    if !Path::new(libflush::uapi::HDP_FLUSH_DEVICE_PATH).exists() {
        return Err("the device node vanished".into());
    }
    Ok(report)
}

/// `hdpflush.NAME=VALUE` from the kernel command line, if there.
pub fn cmdline(name: &str) -> Option<u64> {
    let line = std::fs::read_to_string("/proc/cmdline").ok()?;
    let key = format!("hdpflush.{name}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&key))
        .and_then(|v| v.parse().ok())
}
