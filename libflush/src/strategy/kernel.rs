//! Flushes someone else performs: the kernel module (through an ioctl or io_uring), or the
//! in-process model standing in for it. What the caller's CPU must order around the request is
//! the same whatever carries it, so it is written once, here.
//!
//! Before the request, a store fence: the payload stores may still sit in this CPU's
//! write-combining buffer, and the register store may come from another CPU (the module
//! coalesces concurrent requests; io_uring's SQ polling thread runs elsewhere), whose barriers
//! do not order our stores. After a posted request, a store fence: the kernel's register store
//! on this CPU is uncached, and the caller's next store to ordinary memory (the AQL packet
//! header) may otherwise pass it. A completed request needs none after: the kernel's posting
//! read, and its barrier, already returned.

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
        self.transport.request_invalidate()
    }

    fn flush_batch(&self, count: usize) -> Result<()> {
        self.flush_n(count, self.completion)
    }

    fn module_target(&self) -> Option<ModuleTarget<'_>> {
        self.transport.module_target()
    }
}
