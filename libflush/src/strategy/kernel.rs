//! Flushes someone else performs: the kernel module (through an ioctl or io_uring), or the
//! in-process model standing in for it. What the caller's CPU must order around the request is
//! the same whatever carries it, so it is written once, here.
//!
//! Before the request, a store fence: the payload stores may still sit in this CPU's
//! write-combining buffer, and the register store may come from another CPU (the module
//! coalesces concurrent requests; io_uring's SQ polling thread runs elsewhere), whose barriers
//! do not order our stores.
//!
//! After a posted request, the caller's next store (the AQL packet header, the doorbell) must
//! stay behind the register store. What keeps it there depends on which CPU made that store:
//! - this one (the ioctl; io_uring task work run by this task, without SQPOLL): the register
//!   store is uncached, and a later store to ordinary memory may pass it. The store fence after
//!   the request orders it.
//! - another one (a request that rode another CPU's flush; under SQPOLL, the kernel's SQ
//!   polling thread): no barrier of ours orders another CPU's store. What does is a release on
//!   that CPU after its register store and our acquire of it before the request returns: the
//!   flushing CPU stores to the register before it unlocks the device mutex, and the SQ thread
//!   posts the CQE (a store-release of the CQ tail) after its task work unlocked it; we return
//!   only after taking that mutex (the ioctl) or loading that CQ tail with acquire (the ring).
//!   That is the lock-handover rule of docs/kernel-module.md ("Coalescing"), which x86_64 and
//!   arm64 give by the architecture; a powerpc64 port of the module would need a `sync` after
//!   the register store. The store fence after the request is then harmless, not what orders.
//!
//! A completed request needs no fence after: the kernel's posting read, and its barrier,
//! returned before the request did, and the same release and acquire order them before our
//! later stores.
//!
//! After an invalidation, a full fence: the request (a system call, or a CQE read from
//! ordinary memory) does not keep this CPU's later BAR loads, which may be speculated on a
//! write-combined mapping, from being satisfied before the read cache was invalidated.

use super::{Backing, Completion, Flush, ModuleTarget, StrategyKind};
use crate::barrier::Fences;
use crate::Result;

/// How a flush request reaches whoever writes the flush register. Its [`Fences`] are this
/// CPU's.
pub trait Transport: Fences + Send + Sync {
    /// The strategy this transport makes.
    const KIND: StrategyKind;
    /// What the requests act on.
    fn backing(&self) -> Backing;
    /// Ask for `count` flushes, each returning once `completion` holds for it.
    fn request_flush(&self, count: usize, completion: Completion) -> Result<()>;
    /// Ask for an HDP read-cache invalidation (always completed).
    fn request_invalidate(&self) -> Result<()>;
    /// The hdp_flush module device the requests go to, if that is where they go.
    fn module_target(&self) -> Option<ModuleTarget<'_>> {
        None
    }
}

/// A flush performed on the caller's behalf, over transport `T`.
pub struct KernelFlush<T> {
    transport: T,
    completion: Completion,
}

impl<T: Transport> KernelFlush<T> {
    /// Flush through `transport`; [`Flush::flush`] gives `completion`.
    pub fn with_transport(transport: T, completion: Completion) -> Self {
        Self {
            transport,
            completion,
        }
    }

    /// The transport (the device handle, the ring, the model).
    pub fn transport(&self) -> &T {
        &self.transport
    }

    fn flush_n(&self, count: usize, completion: Completion) -> Result<()> {
        self.transport.store_fence();
        self.transport.request_flush(count, completion)?;
        if completion == Completion::Posted {
            self.transport.store_fence();
        }
        Ok(())
    }
}

impl<T: Transport> Flush for KernelFlush<T> {
    fn kind(&self) -> StrategyKind {
        T::KIND
    }

    fn backing(&self) -> Backing {
        self.transport.backing()
    }

    fn completion(&self) -> Completion {
        self.completion
    }

    fn flush_with(&self, completion: Completion) -> Result<()> {
        self.flush_n(1, completion)
    }

    fn invalidate(&self) -> Result<()> {
        self.transport.request_invalidate()?;
        // Later BAR loads wait for the invalidation (see the module doc).
        self.transport.full_fence();
        Ok(())
    }

    fn flush_batch(&self, count: usize) -> Result<()> {
        self.flush_n(count, self.completion)
    }

    fn module_target(&self) -> Option<ModuleTarget<'_>> {
        self.transport.module_target()
    }
}
