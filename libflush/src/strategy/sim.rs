//! The in-process simulator as a strategy: the embedded default where no GPU is present.

use std::sync::Arc;

use super::{Backing, BackingKind, Flush, StrategyKind};
use crate::sim::{Hdp, HdpConfig};
use crate::Result;

/// Writes the model's flush and invalidate registers, as the kernel does on real hardware.
pub struct Sim {
    hdp: Arc<Hdp>,
}

impl Sim {
    /// A simulator with the default model.
    pub fn new() -> Self {
        Self::with_model(Hdp::new(HdpConfig::default()))
    }

    /// Flush `hdp`, a model shared with the test or benchmark that drives it.
    pub fn with_model(hdp: Arc<Hdp>) -> Self {
        Self { hdp }
    }

    /// The model.
    pub fn model(&self) -> &Arc<Hdp> {
        &self.hdp
    }
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Flush for Sim {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Sim
    }

    fn backing(&self) -> Backing {
        Backing::new(BackingKind::Simulator, "in-process HDP simulator")
    }

    fn flush(&self) -> Result<()> {
        self.hdp.flush_register_write();
        Ok(())
    }

    fn invalidate(&self) -> Result<()> {
        self.hdp.invalidate_register_write();
        Ok(())
    }
}
