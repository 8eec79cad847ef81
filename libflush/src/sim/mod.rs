//! An HDP model: a write FIFO between the BAR and VRAM, and a read cache in front of VRAM.
//!
//! CPU stores through the BAR ([`Hdp::bar_write`]) wait in the FIFO; the GPU ([`Hdp::gpu_read`])
//! sees only VRAM. The FIFO drains when the flush register is written, when it overflows, at
//! random (seeded: [`HdpConfig::drain_probability`], optionally out of order), and on BAR reads
//! as the [`ReadPolicy`] says. BAR reads may be served from a read cache that goes stale when the
//! GPU writes VRAM, until the invalidate register is written.
//!
//! Nobody outside AMD knows exactly how a BAR read interacts with pending writes, so the model
//! makes that a parameter: [`ReadPolicy`] names the hypotheses the readback-based strategies
//! (legacy, dummy page) rely on, and the oracle ([`oracle`]) shows which strategy is correct
//! under which one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;

use crate::region::Bar;
use crate::strategy::{Backing, BackingKind};

pub mod oracle;

/// How a BAR read treats writes still waiting in the FIFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadPolicy {
    /// A read drains the whole FIFO first (PCIe: a read may not pass posted writes, and the HDP
    /// handles requests in order). Readback strategies flush under this hypothesis.
    Ordered,
    /// A read of an address with a pending write is answered from the FIFO without draining
    /// it; other reads drain it. Reading back what was just written then flushes nothing.
    Forwarding,
    /// Reads never drain the FIFO (answered from pending writes where they overlap); only the
    /// flush register does.
    Unordered,
}

/// Model parameters.
#[derive(Clone, Debug)]
pub struct HdpConfig {
    /// Size of the VRAM aperture in bytes.
    pub vram_size: usize,
    /// FIFO entries; a store into a full FIFO first drains its oldest entry.
    pub fifo_depth: usize,
    /// Chance, per store, that one pending entry drains on its own.
    pub drain_probability: f64,
    /// Whether a spontaneous drain may pick any entry (not only the oldest). Entries that
    /// overlap an older pending entry never overtake it.
    pub reorder: bool,
    /// RNG seed, so a failing run can be replayed.
    pub seed: u64,
    /// BAR read semantics.
    pub read_policy: ReadPolicy,
    /// Read-cache line size in bytes.
    pub cache_line: usize,
}

impl Default for HdpConfig {
    fn default() -> Self {
        Self {
            vram_size: 1 << 20,
            fifo_depth: 64,
            drain_probability: 0.05,
            reorder: true,
            seed: 0x5eed_4d50,
            read_policy: ReadPolicy::Ordered,
            cache_line: 64,
        }
    }
}

/// Counters of what the model saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// Stores through the BAR.
    pub bar_writes: u64,
    /// Loads through the BAR.
    pub bar_reads: u64,
    /// Writes to the flush register.
    pub flush_register_writes: u64,
    /// Writes to the invalidate register.
    pub invalidate_register_writes: u64,
    /// BAR reads that drained the FIFO.
    pub reads_that_drained: u64,
    /// BAR reads answered from a pending write.
    pub forwarded_reads: u64,
    /// BAR reads answered from the read cache.
    pub cache_hits: u64,
    /// Entries that drained spontaneously or on overflow.
    pub spontaneous_drains: u64,
}

#[derive(Clone, Copy, Debug)]
struct PendingWrite {
    offset: usize,
    len: usize,
    bytes: [u8; 4],
}

impl PendingWrite {
    fn overlaps(&self, offset: usize, len: usize) -> bool {
        self.offset < offset + len && offset < self.offset + self.len
    }
}

struct State {
    vram: Vec<u8>,
    fifo: VecDeque<PendingWrite>,
    cache: HashMap<usize, Vec<u8>>,
    rng: fastrand::Rng,
    stats: SimStats,
}

/// The HDP model. Shared between the CPU side (BAR windows, registers) and the GPU side.
pub struct Hdp {
    config: HdpConfig,
    state: Mutex<State>,
}

impl Hdp {
    /// A model with `config`; VRAM starts zeroed.
    pub fn new(config: HdpConfig) -> Arc<Self> {
        let state = State {
            vram: vec![0; config.vram_size],
            fifo: VecDeque::with_capacity(config.fifo_depth + 1),
            cache: HashMap::new(),
            rng: fastrand::Rng::with_seed(config.seed),
            stats: SimStats::default(),
        };
        Arc::new(Self {
            config,
            state: Mutex::new(state),
        })
    }

    /// The model's parameters.
    pub fn config(&self) -> &HdpConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements, so a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check(&self, offset: usize, len: usize) {
        assert!(
            offset + len <= self.config.vram_size,
            "VRAM access {offset:#x}+{len} outside the {}-byte aperture",
            self.config.vram_size
        );
    }

    /// A CPU store of 1 to 4 bytes through the BAR: queued in the FIFO.
    pub fn bar_write(&self, offset: usize, bytes: &[u8]) {
        self.check(offset, bytes.len());
        assert!(
            (1..=4).contains(&bytes.len()),
            "BAR stores are 1 to 4 bytes"
        );
        let mut st = self.lock();
        let st = &mut *st;
        st.stats.bar_writes += 1;
        let mut entry = PendingWrite {
            offset,
            len: bytes.len(),
            bytes: [0; 4],
        };
        entry.bytes[..bytes.len()].copy_from_slice(bytes);
        // The CPU's own later reads must not come from a line cached before this store.
        self.drop_cached_lines(st, offset, bytes.len());
        st.fifo.push_back(entry);
        while st.fifo.len() > self.config.fifo_depth {
            Self::commit_at(st, 0);
            st.stats.spontaneous_drains += 1;
        }
        if !st.fifo.is_empty() && st.rng.f64() < self.config.drain_probability {
            let pick = if self.config.reorder {
                st.rng.usize(..st.fifo.len())
            } else {
                0
            };
            let e = st.fifo[pick];
            let blocked = st
                .fifo
                .iter()
                .take(pick)
                .any(|o| o.overlaps(e.offset, e.len));
            Self::commit_at(st, if blocked { 0 } else { pick });
            st.stats.spontaneous_drains += 1;
        }
    }

    /// A CPU load of `out.len()` (1 to 4) bytes through the BAR.
    pub fn bar_read(&self, offset: usize, out: &mut [u8]) {
        let len = out.len();
        self.check(offset, len);
        let mut st = self.lock();
        let st = &mut *st;
        st.stats.bar_reads += 1;
        let pending = st.fifo.iter().any(|e| e.overlaps(offset, len));
        let drain = match self.config.read_policy {
            ReadPolicy::Ordered => true,
            ReadPolicy::Forwarding => !pending,
            ReadPolicy::Unordered => false,
        };
        if drain && !st.fifo.is_empty() {
            Self::drain_all(st);
            st.stats.reads_that_drained += 1;
        }
        // Base value: the read cache, else VRAM (filling the cache).
        let line = offset / self.config.cache_line;
        let line_start = line * self.config.cache_line;
        let line_end = (line_start + self.config.cache_line).min(self.config.vram_size);
        if st.cache.contains_key(&line) {
            st.stats.cache_hits += 1;
        } else {
            let copy = st.vram[line_start..line_end].to_vec();
            st.cache.insert(line, copy);
        }
        let cached = &st.cache[&line];
        for (i, b) in out.iter_mut().enumerate() {
            let a = offset + i;
            *b = if a < line_end {
                cached[a - line_start]
            } else {
                st.vram[a]
            };
        }
        // Whatever still pends at these bytes is newer than memory: forward it, oldest first.
        if !drain && pending {
            st.stats.forwarded_reads += 1;
            for e in st.fifo.iter().filter(|e| e.overlaps(offset, len)) {
                for i in 0..e.len {
                    let a = e.offset + i;
                    if (offset..offset + len).contains(&a) {
                        out[a - offset] = e.bytes[i];
                    }
                }
            }
        }
    }

    /// A write to the HDP flush register: every pending store reaches VRAM, in order.
    pub fn flush_register_write(&self) {
        let mut st = self.lock();
        st.stats.flush_register_writes += 1;
        Self::drain_all(&mut st);
    }

    /// A write to the read-cache invalidate register.
    pub fn invalidate_register_write(&self) {
        let mut st = self.lock();
        st.stats.invalidate_register_writes += 1;
        st.cache.clear();
    }

    /// The GPU reads VRAM directly (no HDP on its side).
    pub fn gpu_read_u32(&self, offset: usize) -> u32 {
        self.check(offset, 4);
        let st = self.lock();
        let mut b = [0; 4];
        b.copy_from_slice(&st.vram[offset..offset + 4]);
        u32::from_ne_bytes(b)
    }

    /// The GPU writes VRAM directly; lines the HDP cached before now hold stale data.
    pub fn gpu_write_u32(&self, offset: usize, value: u32) {
        self.check(offset, 4);
        let mut st = self.lock();
        st.vram[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
    }

    /// Stores still waiting in the FIFO.
    pub fn pending_writes(&self) -> usize {
        self.lock().fifo.len()
    }

    /// What the model has seen so far.
    pub fn stats(&self) -> SimStats {
        self.lock().stats
    }

    /// A BAR window onto VRAM `[base, base + len)`.
    pub fn vram_window(self: &Arc<Self>, base: usize, len: usize) -> SimBar {
        self.check(base, len);
        SimBar {
            hdp: Arc::clone(self),
            base,
            len,
            target: Target::Vram,
        }
    }

    /// A 4K MMIO remap page as KFD maps it: a store at offset 0 (`HDP_MEM_FLUSH_CNTL`) flushes;
    /// offset 4 (`HDP_REG_FLUSH_CNTL`) is accepted and does nothing here.
    pub fn remap_page(self: &Arc<Self>) -> SimBar {
        SimBar {
            hdp: Arc::clone(self),
            base: 0,
            len: 4096,
            target: Target::RemapPage,
        }
    }

    fn drop_cached_lines(&self, st: &mut State, offset: usize, len: usize) {
        let first = offset / self.config.cache_line;
        let last = (offset + len - 1) / self.config.cache_line;
        for line in first..=last {
            st.cache.remove(&line);
        }
    }

    fn commit_at(st: &mut State, index: usize) {
        if let Some(e) = st.fifo.remove(index) {
            st.vram[e.offset..e.offset + e.len].copy_from_slice(&e.bytes[..e.len]);
        }
    }

    fn drain_all(st: &mut State) {
        while !st.fifo.is_empty() {
            Self::commit_at(st, 0);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Vram,
    RemapPage,
}

/// A [`Bar`] onto the model: a VRAM window or the remap page.
#[derive(Clone)]
pub struct SimBar {
    hdp: Arc<Hdp>,
    base: usize,
    len: usize,
    target: Target,
}

impl SimBar {
    /// The model behind this window.
    pub fn hdp(&self) -> &Arc<Hdp> {
        &self.hdp
    }

    fn addr(&self, offset: usize, size: usize) -> usize {
        assert!(
            offset + size <= self.len,
            "offset {offset:#x} (size {size}) outside a {}-byte window",
            self.len
        );
        self.base + offset
    }

    fn register_write(&self, offset: usize) {
        if offset == crate::strategy::REMAP_HDP_MEM_FLUSH_CNTL {
            self.hdp.flush_register_write();
        }
    }
}

impl Bar for SimBar {
    fn len(&self) -> usize {
        self.len
    }

    fn backing(&self) -> Backing {
        Backing::new(BackingKind::Simulator, "in-process HDP simulator")
    }

    fn write_u32(&self, offset: usize, value: u32) {
        let a = self.addr(offset, 4);
        match self.target {
            Target::Vram => self.hdp.bar_write(a, &value.to_ne_bytes()),
            Target::RemapPage => self.register_write(offset),
        }
    }

    fn write_u8(&self, offset: usize, value: u8) {
        let a = self.addr(offset, 1);
        match self.target {
            Target::Vram => self.hdp.bar_write(a, &[value]),
            Target::RemapPage => self.register_write(offset),
        }
    }

    fn read_u32(&self, offset: usize) -> u32 {
        let a = self.addr(offset, 4);
        let mut b = [0; 4];
        if self.target == Target::Vram {
            self.hdp.bar_read(a, &mut b);
        }
        u32::from_ne_bytes(b)
    }

    fn read_u8(&self, offset: usize) -> u8 {
        let a = self.addr(offset, 1);
        let mut b = [0; 1];
        if self.target == Target::Vram {
            self.hdp.bar_read(a, &mut b);
        }
        b[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(read_policy: ReadPolicy) -> Arc<Hdp> {
        Hdp::new(HdpConfig {
            drain_probability: 0.0,
            read_policy,
            ..HdpConfig::default()
        })
    }

    #[test]
    fn stores_stay_invisible_to_the_gpu_until_the_flush_register_is_written() {
        let hdp = quiet(ReadPolicy::Ordered);
        let bar = hdp.vram_window(0, 4096);
        bar.write_u32(16, 7);
        assert_eq!(hdp.gpu_read_u32(16), 0);
        assert_eq!(hdp.pending_writes(), 1);
        hdp.flush_register_write();
        assert_eq!(hdp.gpu_read_u32(16), 7);
        assert_eq!(hdp.pending_writes(), 0);
    }

    #[test]
    fn a_full_fifo_drains_its_oldest_entry() {
        let hdp = quiet(ReadPolicy::Unordered);
        let bar = hdp.vram_window(0, 4096);
        for i in 0..=hdp.config().fifo_depth {
            bar.write_u32(i * 4, i as u32 + 1);
        }
        assert_eq!(hdp.gpu_read_u32(0), 1, "oldest entry drained");
        assert_eq!(hdp.gpu_read_u32(4), 0, "second entry still pending");
    }

    #[test]
    fn read_policies_differ_exactly_in_what_a_readback_drains() {
        for (policy, drains_same, drains_other) in [
            (ReadPolicy::Ordered, true, true),
            (ReadPolicy::Forwarding, false, true),
            (ReadPolicy::Unordered, false, false),
        ] {
            let hdp = quiet(policy);
            let bar = hdp.vram_window(0, 4096);
            bar.write_u32(0, 5);
            assert_eq!(
                bar.read_u32(0),
                5,
                "{policy:?}: the CPU reads its own store"
            );
            assert_eq!(
                hdp.gpu_read_u32(0) == 5,
                drains_same,
                "{policy:?} same address"
            );
            let hdp = quiet(policy);
            let bar = hdp.vram_window(0, 4096);
            bar.write_u32(0, 5);
            bar.read_u32(2048);
            assert_eq!(
                hdp.gpu_read_u32(0) == 5,
                drains_other,
                "{policy:?} other address"
            );
        }
    }

    #[test]
    fn the_read_cache_serves_stale_data_until_invalidated() {
        let hdp = quiet(ReadPolicy::Ordered);
        let bar = hdp.vram_window(0, 4096);
        assert_eq!(bar.read_u32(64), 0);
        hdp.gpu_write_u32(64, 9);
        assert_eq!(bar.read_u32(64), 0, "stale line from the read cache");
        hdp.invalidate_register_write();
        assert_eq!(bar.read_u32(64), 9);
    }

    #[test]
    fn random_drains_are_reproducible_from_the_seed_and_never_reorder_one_address() {
        let run = || {
            let hdp = Hdp::new(HdpConfig {
                drain_probability: 0.5,
                ..HdpConfig::default()
            });
            let bar = hdp.vram_window(0, 4096);
            for i in 0..200u32 {
                bar.write_u32(((i % 8) * 4) as usize, i);
            }
            let seen: Vec<u32> = (0..8).map(|w| hdp.gpu_read_u32(w * 4)).collect();
            hdp.flush_register_write();
            let last: Vec<u32> = (0..8).map(|w| hdp.gpu_read_u32(w * 4)).collect();
            (seen, last, hdp.stats())
        };
        let (a, last, stats) = run();
        assert_eq!((a.clone(), last.clone(), stats), run());
        assert!(stats.spontaneous_drains > 0);
        // The newest store to each address wins once everything has drained.
        assert_eq!(last, (192..200).collect::<Vec<u32>>());
    }

    #[test]
    fn the_remap_page_flushes_at_offset_zero_only() {
        let hdp = quiet(ReadPolicy::Unordered);
        let bar = hdp.vram_window(0, 4096);
        let remap = hdp.remap_page();
        bar.write_u32(0, 3);
        remap.write_u32(4, 1);
        assert_eq!(hdp.gpu_read_u32(0), 0);
        remap.write_u32(0, 1);
        assert_eq!(hdp.gpu_read_u32(0), 3);
    }
}
