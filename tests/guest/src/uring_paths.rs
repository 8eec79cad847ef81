//! The ways io_uring can issue a `URING_CMD` besides inline at submission: from its worker
//! (`IOSQE_ASYNC`), after the request it is linked to (`IOSQE_IO_LINK`, `IOSQE_IO_HARDLINK`),
//! after everything submitted before it (`IOSQE_IO_DRAIN`). Each must reach the module and be
//! answered as a plain command is, and a failed link must cancel the rest before they reach it.

use std::os::fd::{AsFd, AsRawFd};

use io_uring::{opcode, squeue, types, IoUring};
use libflush::device::HdpFlushDevice;
use libflush::uapi::*;
use nix::errno::Errno;

use crate::runner::TestResult;
use crate::{dev, devices_with, ensure, stats};

/// A FLUSH of `device` with `flags`, tagged `tag`, with IOSQE `sqe_flags`.
fn flush(
    d: &HdpFlushDevice,
    device: u32,
    flags: u32,
    tag: u64,
    sqe_flags: squeue::Flags,
) -> squeue::Entry {
    let fd = types::Fd(d.as_fd().as_raw_fd());
    opcode::UringCmd16::new(fd, HDP_FLUSH_IOC_FLUSH)
        .cmd(HdpFlushRequest::new(device, flags).to_cmd_bytes())
        .build()
        .user_data(tag)
        .flags(sqe_flags)
}

/// Submit `sqes` at once and return their completions, (tag, result), in completion order.
fn submit(sqes: &[squeue::Entry]) -> Result<Vec<(u64, i32)>, String> {
    let mut ring = IoUring::new(16).map_err(|e| e.to_string())?;
    for e in sqes {
        // SAFETY: the request is inline; the SQE references no memory.
        unsafe { ring.submission().push(e) }.map_err(|e| e.to_string())?;
    }
    let mut done = Vec::new();
    while done.len() < sqes.len() {
        ring.submit_and_wait(sqes.len() - done.len())
            .map_err(|e| format!("io_uring: {e}"))?;
        done.extend(ring.completion().map(|c| (c.user_data(), c.result())));
    }
    Ok(done)
}

/// The simulated device the tests flush, its counters zeroed.
fn sim(d: &HdpFlushDevice) -> Result<u32, String> {
    let index = *devices_with(d, HDP_FLUSH_BACKEND_SIM)?
        .first()
        .ok_or("no sim device")?;
    stats(d, index, true)?;
    Ok(index)
}

/// A FLUSH issued from io_uring's worker (`IOSQE_ASYNC`), three linked ones, two hard-linked
/// ones and one drained behind two others: every one completes with 0 and is counted once; the
/// linked ones complete in order, and the drained one after the commands before it.
pub fn flushes_issued_async_linked_or_drained_complete_and_are_counted() -> TestResult {
    use squeue::Flags;
    let d = dev()?;
    let device = sim(&d)?;
    let sync = HDP_FLUSH_F_SYNC;
    let cases: [(&str, Vec<squeue::Entry>); 4] = [
        (
            "IOSQE_ASYNC",
            vec![flush(&d, device, sync, 1, Flags::ASYNC)],
        ),
        (
            "IOSQE_IO_LINK",
            vec![
                flush(&d, device, sync, 1, Flags::IO_LINK),
                flush(&d, device, 0, 2, Flags::IO_LINK),
                flush(&d, device, sync, 3, Flags::empty()),
            ],
        ),
        (
            "IOSQE_IO_HARDLINK",
            vec![
                flush(&d, device, sync, 1, Flags::IO_HARDLINK | Flags::ASYNC),
                flush(&d, device, sync, 2, Flags::empty()),
            ],
        ),
        (
            "IOSQE_IO_DRAIN",
            vec![
                flush(&d, device, sync, 1, Flags::empty()),
                flush(&d, device, 0, 2, Flags::empty()),
                flush(&d, device, sync, 3, Flags::IO_DRAIN),
            ],
        ),
    ];
    let mut submitted = 0;
    for (what, sqes) in cases {
        let done = submit(&sqes)?;
        ensure(done.iter().all(|&(_, r)| r == 0), || {
            format!("{what}: {done:?}")
        })?;
        let tags: Vec<u64> = done.iter().map(|&(t, _)| t).collect();
        let in_order = tags.windows(2).all(|w| w[0] < w[1]);
        match what {
            "IOSQE_IO_LINK" | "IOSQE_IO_HARDLINK" => {
                ensure(in_order, || format!("{what}: out of order: {tags:?}"))?
            }
            "IOSQE_IO_DRAIN" => ensure(tags.last() == Some(&3), || {
                format!("{what}: the drained command did not complete last: {tags:?}")
            })?,
            _ => {}
        }
        submitted += sqes.len() as u64;
        let s = stats(&d, device, false)?;
        ensure(
            s.flush_requests == submitted
                && s.flush_errors == 0
                && s.hw_flushes + s.coalesced == s.flush_requests,
            || format!("{what}: {s:?}"),
        )?;
        println!("  {what}: {} command(s) completed and counted", sqes.len());
    }
    Ok(())
}

/// A link whose first command is refused (bad flags: EINVAL) cancels the rest (ECANCELED),
/// which never reach the module; a hard link goes on regardless.
pub fn a_failed_link_cancels_the_rest_before_they_reach_the_module() -> TestResult {
    use squeue::Flags;
    let d = dev()?;
    let device = sim(&d)?;
    let bad = 1 << 7;
    let done = submit(&[
        flush(&d, device, bad, 1, Flags::IO_LINK),
        flush(&d, device, HDP_FLUSH_F_SYNC, 2, Flags::IO_LINK),
        flush(&d, device, HDP_FLUSH_F_SYNC, 3, Flags::empty()),
    ])?;
    let want = [
        (1, -(Errno::EINVAL as i32)),
        (2, -(Errno::ECANCELED as i32)),
        (3, -(Errno::ECANCELED as i32)),
    ];
    ensure(done == want, || {
        format!("a failed link: {done:?}, expected {want:?}")
    })?;
    let s = stats(&d, device, false)?;
    ensure(s.flush_requests == 0, || {
        format!("cancelled commands reached the module: {s:?}")
    })?;
    let done = submit(&[
        flush(&d, device, bad, 1, Flags::IO_HARDLINK),
        flush(&d, device, HDP_FLUSH_F_SYNC, 2, Flags::empty()),
    ])?;
    let want = [(1, -(Errno::EINVAL as i32)), (2, 0)];
    ensure(done == want, || {
        format!("a failed hard link: {done:?}, expected {want:?}")
    })?;
    let s = stats(&d, device, false)?;
    ensure(s.flush_requests == 1 && s.flush_errors == 0, || {
        format!("after the hard link: {s:?}")
    })
}
