//! Correctness checks that run a strategy against the [`Hdp`] model and catch a missing flush.
//!
//! [`producer_consumer`]: the CPU writes a payload through the BAR, flushes, rings a doorbell
//! (a store to ordinary memory, [`Hdp::publish`], which waits for nothing the CPU has not yet
//! performed); a "GPU" thread wakes on the doorbell and reads the payload from VRAM. Any word
//! it finds stale is a round the strategy failed: the flush did not happen, or was not ordered
//! before the doorbell. [`completed_lands`] checks what a completed flush promises besides:
//! that the flush has landed when it returns, before the caller does anything else.
//! [`read_after_gpu_write`] checks the other direction: after the GPU writes VRAM, an
//! invalidate must make BAR reads see it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use super::Hdp;
use crate::region::Bar;
use crate::{Flush, Result};

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct OracleConfig {
    /// Producer/consumer rounds.
    pub rounds: u32,
    /// 32-bit words of payload per round.
    pub payload_words: usize,
}

impl Default for OracleConfig {
    fn default() -> Self {
        Self {
            rounds: 300,
            payload_words: 16,
        }
    }
}

/// The first stale word seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StaleRead {
    /// Round (1-based).
    pub round: u32,
    /// Word index in the payload.
    pub word: usize,
    /// What the producer stored.
    pub expected: u32,
    /// What the GPU read.
    pub seen: u32,
}

/// Outcome of an oracle run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OracleReport {
    /// Rounds run.
    pub rounds: u32,
    /// Rounds in which the consumer saw at least one stale word.
    pub stale_rounds: u32,
    /// The first stale word, if any.
    pub first_stale: Option<StaleRead>,
}

impl OracleReport {
    fn new(rounds: u32) -> Self {
        Self {
            rounds,
            stale_rounds: 0,
            first_stale: None,
        }
    }

    /// True if every round saw fresh data.
    pub fn passed(&self) -> bool {
        self.stale_rounds == 0
    }

    /// Note a stale word; the first one is kept for the report.
    fn saw_stale(&mut self, stale: StaleRead) {
        self.first_stale.get_or_insert(stale);
    }
}

const STOP: u64 = u64::MAX;

/// The value word `w` holds in round `r`: unique per (round, word), never 0.
fn tag(round: u32, word: usize) -> u32 {
    round.wrapping_mul(0x9E37_79B9) ^ (word as u32 + 1).wrapping_mul(0x85EB_CA6B) | 1
}

/// The oracles' precondition: `payload` is a window of `hdp` large enough for the payload.
fn check_window(hdp: &Arc<Hdp>, payload: &super::SimBar, cfg: OracleConfig) {
    assert!(
        Arc::ptr_eq(hdp, payload.hdp()),
        "payload must be a window of this model"
    );
    assert!(
        payload.len() >= cfg.payload_words * 4,
        "payload window too small"
    );
}

/// Payload stores -> `flusher.flush()` -> doorbell; a GPU thread checks the payload in VRAM.
///
/// `payload` must be a window of `hdp` (from [`Hdp::vram_window`]) holding
/// `cfg.payload_words` words. Returns the flusher's error if a flush fails.
pub fn producer_consumer(
    hdp: &Arc<Hdp>,
    payload: &super::SimBar,
    flusher: &dyn Flush,
    cfg: OracleConfig,
) -> Result<OracleReport> {
    check_window(hdp, payload, cfg);
    let doorbell = AtomicU64::new(0);
    let ack = AtomicU64::new(0);
    let base = payload.base;

    std::thread::scope(|s| {
        let gpu = s.spawn(|| {
            let mut report = OracleReport::new(0);
            loop {
                let bell = wait_for_change(&doorbell, u64::from(report.rounds));
                if bell == STOP {
                    return report;
                }
                let round = bell as u32;
                let mut stale = false;
                for word in 0..cfg.payload_words {
                    let expected = tag(round, word);
                    let seen = hdp.gpu_read_u32(base + word * 4);
                    if seen != expected {
                        stale = true;
                        report.saw_stale(StaleRead {
                            round,
                            word,
                            expected,
                            seen,
                        });
                    }
                }
                report.rounds = round;
                report.stale_rounds += u32::from(stale);
                ack.store(bell, Ordering::Release);
            }
        });

        let produced = (1..=cfg.rounds).try_for_each(|round| {
            for word in 0..cfg.payload_words {
                payload.write_u32(word * 4, tag(round, word));
            }
            flusher.flush()?;
            hdp.publish();
            doorbell.store(u64::from(round), Ordering::Release);
            wait_for_change(&ack, u64::from(round) - 1);
            Ok(())
        });
        doorbell.store(STOP, Ordering::Release);
        let report = gpu.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        produced.map(|()| report)
    })
}

/// Payload stores -> `flusher.flush()` -> the GPU reads the payload from VRAM at once, before
/// the CPU does anything else (then the doorbell, to start the next round).
///
/// For a flusher that completes ([`crate::Completion::Completed`]): its flush has landed when
/// it returns, which someone not behind this CPU's doorbell (another CPU, a peer device) may
/// rely on. A posted flush makes no such promise and fails here. `payload` as for
/// [`producer_consumer`].
pub fn completed_lands(
    hdp: &Arc<Hdp>,
    payload: &super::SimBar,
    flusher: &dyn Flush,
    cfg: OracleConfig,
) -> Result<OracleReport> {
    check_window(hdp, payload, cfg);
    let mut report = OracleReport::new(cfg.rounds);
    for round in 1..=cfg.rounds {
        for word in 0..cfg.payload_words {
            payload.write_u32(word * 4, tag(round, word));
        }
        flusher.flush()?;
        let mut stale = false;
        for word in 0..cfg.payload_words {
            let expected = tag(round, word);
            let seen = hdp.gpu_read_u32(payload.base + word * 4);
            if seen != expected {
                stale = true;
                report.saw_stale(StaleRead {
                    round,
                    word,
                    expected,
                    seen,
                });
            }
        }
        report.stale_rounds += u32::from(stale);
        hdp.publish();
    }
    Ok(report)
}

/// GPU writes a result word -> `flusher.invalidate()` -> CPU reads it through the BAR.
///
/// Each round the CPU first reads the word (so the HDP may cache the old value), then the GPU
/// writes a new one; at the end of the round the CPU tells the GPU it has read it (a store to
/// ordinary memory, [`Hdp::publish`]). Returns the flusher's error, e.g.
/// [`crate::Error::Unsupported`].
pub fn read_after_gpu_write(
    hdp: &Arc<Hdp>,
    result: &super::SimBar,
    flusher: &dyn Flush,
    rounds: u32,
) -> Result<OracleReport> {
    assert!(
        Arc::ptr_eq(hdp, result.hdp()),
        "result must be a window of this model"
    );
    let mut report = OracleReport::new(rounds);
    for round in 1..=rounds {
        let _warm = result.read_u32(0);
        let expected = tag(round, 0);
        hdp.gpu_write_u32(result.base, expected);
        flusher.invalidate()?;
        let seen = result.read_u32(0);
        if seen != expected {
            report.stale_rounds += 1;
            report.saw_stale(StaleRead {
                round,
                word: 0,
                expected,
                seen,
            });
        }
        hdp.publish();
    }
    Ok(report)
}

fn wait_for_change(cell: &AtomicU64, old: u64) -> u64 {
    loop {
        let v = cell.load(Ordering::Acquire);
        if v != old {
            return v;
        }
        std::thread::yield_now();
    }
}
