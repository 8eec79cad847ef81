//! The in-process HDP model as a strategy: what the kernel module does, with the model
//! standing in for the kernel and the GPU. Used only when asked for by name.
//!
//! It is [`KernelFlush`] over [`SimTransport`], so it issues exactly the barriers the `ioctl`
//! and `uring` strategies issue, and the oracle tests them: a completed request is the
//! kernel's register store and posting read (on whatever CPU), a posted one the kernel's
//! register store on this CPU (the case where this CPU's barriers order it), performed when a
//! later store fenced after it is, or at a full barrier.

use std::sync::Arc;

use super::{Backing, BackingKind, Completion, KernelFlush, StrategyKind, Transport};
use crate::barrier::Fences;
use crate::sim::{Hdp, HdpConfig};
use crate::Result;

/// The model's flush and invalidate registers, written as the kernel would.
pub type Sim = KernelFlush<SimTransport>;

/// Requests to the in-process model.
pub struct SimTransport {
    hdp: Arc<Hdp>,
}

impl Sim {
    /// A simulator with the default model; flushes complete.
    pub fn new() -> Self {
        Self::with_model(Hdp::new(HdpConfig::default()), Completion::Completed)
    }

    /// Flush `hdp`, a model shared with the test or benchmark that drives it.
    pub fn with_model(hdp: Arc<Hdp>, completion: Completion) -> Self {
        Self::with_transport(SimTransport { hdp }, completion)
    }

    /// The model.
    pub fn model(&self) -> &Arc<Hdp> {
        &self.transport().hdp
    }
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Fences for SimTransport {
    fn store_fence(&self) {
        self.hdp.store_fence();
    }

    fn full_fence(&self) {
        self.hdp.full_fence();
    }
}

impl Transport for SimTransport {
    const KIND: StrategyKind = StrategyKind::Sim;

    fn backing(&self) -> Backing {
        Backing::new(
            BackingKind::Simulator,
            "in-process HDP simulator: no GPU is flushed",
        )
    }

    fn request_flush(&self, count: usize, completion: Completion) -> Result<()> {
        for _ in 0..count {
            match completion {
                Completion::Completed => self.hdp.flush_register_write(),
                Completion::Posted => self.hdp.flush_register_store(),
            }
        }
        Ok(())
    }

    fn request_invalidate(&self) -> Result<()> {
        self.hdp.invalidate_register_write();
        Ok(())
    }
}
