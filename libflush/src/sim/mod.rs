//! An HDP model with the CPU in front of it: a write-combining buffer and device operations
//! that take effect only when a barrier says so, then the HDP's write FIFO between the BAR and
//! VRAM, and its read cache in front of VRAM.
//!
//! **CPU side.** Stores to a VRAM window ([`Hdp::bar_write`]) are write-combined: they wait in a
//! small buffer and may leave it in any order and at any time. Device operations (a store to a
//! register, a load through the BAR) are *issued* at once but *performed* at the device later;
//! among themselves they stay in program order. Nothing is performed before it has to be:
//! - [`Hdp::store_fence`] (`wmb`) orders stores before later stores, and nothing else: the
//!   stores before it are performed before any store after it (a write-combined store leaving
//!   the buffer, a register store, the doorbell, a request to the kernel), but a load after it
//!   may be performed before them, and a store after it before a load ahead of it;
//! - [`Hdp::full_fence`] (`mb`) performs everything issued before it, loads first (a load not
//!   separated from a store by a full fence may pass it), then the buffered stores;
//! - a store to ordinary memory that tells someone to look (the doorbell, the AQL packet
//!   header: [`Hdp::publish`]; a request to the kernel) is a store: it waits for the stores
//!   before the last store fence and for nothing else;
//! - a load through the BAR after an invalidation the kernel made may be satisfied from the
//!   read cache as it was before it, until a full fence.
//!
//! That is what x86, arm64 and powerpc64 permit for write-combined and uncached mappings, taken
//! at its most adversarial: a strategy that leaves out a barrier, or issues a store fence where
//! it needs a full one, lets the GPU see the doorbell before the flush, or returns from a
//! completed flush before it landed.
//!
//! **HDP side.** Stores from the write-combining buffer wait in the FIFO; the GPU
//! ([`Hdp::gpu_read_u32`]) sees only VRAM. The FIFO drains when the flush register is written,
//! when it overflows, at random (seeded: [`HdpConfig::drain_probability`], optionally out of
//! order), and on BAR reads as the [`ReadPolicy`] says. BAR reads may be served from a read
//! cache that goes stale when the GPU writes VRAM, until the invalidate register is written.
//! Under [`ReadPolicy::DelayedFlushCompletion`] a flush-register write the HDP has accepted
//! drains the FIFO only [`HdpConfig::flush_latency`] steps later (every CPU or GPU operation
//! on the model is a step), or as soon as a register read needs it: the HDP answers a register
//! read only once the flushes it accepted before it have drained.
//!
//! Nobody outside AMD knows exactly how a BAR read interacts with pending writes, so the model
//! makes that a parameter: [`ReadPolicy`] names the hypotheses the readback-based strategies
//! (legacy, dummy page) rely on, and the oracle ([`oracle`]) shows which strategy is correct
//! under which one. [`HdpConfig::remove_fence`] takes one barrier away from a strategy, and
//! [`HdpConfig::weaken_fence`] makes one full barrier a store barrier, to show that it is needed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;

use crate::barrier::Fences;
use crate::region::{check_access, Bar};
use crate::strategy::{Backing, BackingKind};

pub mod oracle;
pub mod verdicts;

/// How a BAR read, when the HDP performs it, treats writes still waiting in the FIFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadPolicy {
    /// A read drains the whole FIFO first (PCIe: a read may not pass posted writes, and the HDP
    /// handles requests in order). Readback strategies flush under this hypothesis.
    Ordered,
    /// The FIFO drains strictly in order, and a read waits only for earlier writes to the bytes
    /// it reads: the FIFO drains up to the newest of them, and writes behind it stay pending.
    /// A readback then flushes what was ordered before the write it reads back, and nothing
    /// else. (Out-of-order drains, [`HdpConfig::reorder`], do not happen under it: with them,
    /// the write read back could leave before the writes ahead of it.)
    SameAddress,
    /// A read of an address with a pending write is answered from the FIFO without draining
    /// it; other reads drain it. Reading back what was just written then flushes nothing.
    Forwarding,
    /// Reads never drain the FIFO (answered from pending writes where they overlap); only the
    /// flush register does.
    Unordered,
    /// BAR reads as under [`ReadPolicy::Ordered`], but a flush completes some time after its
    /// register write is accepted: performing the store to the flush register starts a drain
    /// of every write then in the FIFO, which has happened [`HdpConfig::flush_latency`] model
    /// steps later. A register read is answered only once every flush accepted before it has
    /// drained (the posting read of a completed flush waits for it); a BAR read drains the
    /// whole FIFO as under `Ordered`. A posted flush (the store alone, ordered before the
    /// doorbell) then lets the GPU act on the doorbell before the flush has drained.
    DelayedFlushCompletion,
}

impl ReadPolicy {
    /// Every policy the model knows.
    pub const ALL: [ReadPolicy; 5] = [
        Self::Ordered,
        Self::SameAddress,
        Self::Forwarding,
        Self::Unordered,
        Self::DelayedFlushCompletion,
    ];
}

/// Model parameters.
#[derive(Clone, Debug)]
pub struct HdpConfig {
    /// Size of the VRAM aperture in bytes.
    pub vram_size: usize,
    /// FIFO entries; a store into a full FIFO first drains its oldest entry.
    pub fifo_depth: usize,
    /// Chance, per store reaching the FIFO, that one pending entry drains on its own.
    pub drain_probability: f64,
    /// Whether a spontaneous drain may pick any entry (not only the oldest). Entries that
    /// overlap an older pending entry never overtake it. Ignored under
    /// [`ReadPolicy::SameAddress`], which presumes an in-order FIFO.
    pub reorder: bool,
    /// Write-combining buffer entries on the CPU; a store into a full buffer sends one
    /// buffered store, picked at random, to the HDP first.
    pub wc_depth: usize,
    /// Chance, per store, that the write-combining buffer sends one buffered store (picked at
    /// random) on its own.
    pub wc_evict_probability: f64,
    /// RNG seed, so a failing run can be replayed.
    pub seed: u64,
    /// BAR read semantics.
    pub read_policy: ReadPolicy,
    /// Under [`ReadPolicy::DelayedFlushCompletion`]: model steps (one per CPU or GPU operation
    /// on the model: a store, a load, a barrier, a doorbell, a request to the kernel, a GPU
    /// read or write) from the HDP accepting a flush-register write to its drain having
    /// happened. 0 drains at once. Ignored under the other policies, where a flush drains as it
    /// is accepted.
    pub flush_latency: u64,
    /// Read-cache line size in bytes.
    pub cache_line: usize,
    /// Ignore the n-th barrier (0-based) after each [`Hdp::publish`]: a strategy with that one
    /// barrier removed.
    pub remove_fence: Option<usize>,
    /// Take the n-th barrier (0-based) after each [`Hdp::publish`], if it is a full barrier, as
    /// a store barrier: a strategy with that `mb` weakened to a `wmb`.
    pub weaken_fence: Option<usize>,
}

impl Default for HdpConfig {
    fn default() -> Self {
        Self {
            vram_size: 1 << 20,
            fifo_depth: 64,
            drain_probability: 0.05,
            reorder: true,
            wc_depth: 8,
            wc_evict_probability: 0.05,
            seed: 0x5eed_4d50,
            read_policy: ReadPolicy::Ordered,
            flush_latency: 8,
            cache_line: 64,
            remove_fence: None,
            weaken_fence: None,
        }
    }
}

/// Counters of what the model saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// Stores through a VRAM window.
    pub bar_writes: u64,
    /// Loads through a VRAM window.
    pub bar_reads: u64,
    /// Stores to the flush register issued (by the CPU or the kernel).
    pub flush_register_writes: u64,
    /// Writes to the invalidate register.
    pub invalidate_register_writes: u64,
    /// Loads of a register (a readback of the remap page).
    pub register_reads: u64,
    /// BAR reads that drained (part of) the FIFO.
    pub reads_that_drained: u64,
    /// BAR reads answered from a pending write.
    pub forwarded_reads: u64,
    /// BAR reads answered from the read cache.
    pub cache_hits: u64,
    /// Steps at which flushes accepted earlier drained, their time having come
    /// ([`ReadPolicy::DelayedFlushCompletion`]).
    pub late_flush_drains: u64,
    /// Register reads (a completed flush's posting read) that waited for a flush in progress
    /// to drain ([`ReadPolicy::DelayedFlushCompletion`]).
    pub reads_that_waited_for_a_flush: u64,
    /// FIFO entries that drained spontaneously or on overflow.
    pub spontaneous_drains: u64,
    /// Stores the write-combining buffer sent on its own (overflow or at random).
    pub wc_evictions: u64,
    /// Barriers issued (store and full), including removed ones.
    pub fences: u64,
    /// Barriers ignored because of [`HdpConfig::remove_fence`].
    pub removed_fences: u64,
    /// Full barriers taken as store barriers because of [`HdpConfig::weaken_fence`].
    pub weakened_fences: u64,
    /// Doorbells ([`Hdp::publish`]).
    pub publishes: u64,
}

#[derive(Clone, Copy, Debug)]
struct PendingWrite {
    offset: usize,
    len: usize,
    bytes: [u8; 4],
    /// In the FIFO, under [`ReadPolicy::DelayedFlushCompletion`]: the step by which a flush the
    /// HDP accepted has drained this write. The writes with one are a prefix of the FIFO (a
    /// flush covers everything in it), their steps in order.
    flush_due: Option<u64>,
}

impl PendingWrite {
    fn overlaps(&self, offset: usize, len: usize) -> bool {
        self.offset < offset + len && offset < self.offset + self.len
    }
}

/// A device operation the CPU has issued but the device has not yet performed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeviceOp {
    /// A store to the flush register (the remap page, or the kernel's posted flush).
    FlushRegister,
    /// A load of a register: performed in order; the HDP answers it once the flushes it
    /// accepted before it have drained.
    RegisterRead,
    /// A load through the VRAM BAR: reaching the HDP, it drains the FIFO per [`ReadPolicy`].
    BarRead { offset: usize, len: usize },
}

impl DeviceOp {
    fn is_store(self) -> bool {
        matches!(self, Self::FlushRegister)
    }
}

/// A store in the write-combining buffer, or a device operation, and how many store barriers
/// came before it: a store may be performed only after every store of a lower epoch.
#[derive(Clone, Copy, Debug)]
struct Issued<T> {
    what: T,
    epoch: u64,
}

/// Device operations the CPU keeps issued but unperformed; one more performs the oldest (a
/// CPU's queues are finite, so a strategy that never fences still makes progress).
const MAX_OUTSTANDING: usize = 64;

struct State {
    vram: Vec<u8>,
    wc: Vec<Issued<PendingWrite>>,
    outstanding: VecDeque<Issued<DeviceOp>>,
    /// Store barriers so far: the epoch of what is issued now.
    epoch: u64,
    /// The read cache as it was before the oldest invalidation that no full barrier has
    /// followed: what a BAR load may still be satisfied from.
    cache_before_invalidation: Option<HashMap<usize, Vec<u8>>>,
    fifo: VecDeque<PendingWrite>,
    cache: HashMap<usize, Vec<u8>>,
    rng: fastrand::Rng,
    fences_this_round: usize,
    /// Model steps so far: one per CPU or GPU operation ([`HdpConfig::flush_latency`]).
    now: u64,
    stats: SimStats,
}

/// The model. Shared between the CPU side (BAR windows, registers, barriers) and the GPU side.
pub struct Hdp {
    config: HdpConfig,
    state: Mutex<State>,
}

impl Hdp {
    /// A model with `config`; VRAM starts zeroed.
    pub fn new(config: HdpConfig) -> Arc<Self> {
        let state = State {
            vram: vec![0; config.vram_size],
            wc: Vec::with_capacity(config.wc_depth + 1),
            outstanding: VecDeque::new(),
            epoch: 0,
            cache_before_invalidation: None,
            fifo: VecDeque::with_capacity(config.fifo_depth + 1),
            cache: HashMap::new(),
            rng: fastrand::Rng::with_seed(config.seed),
            fences_this_round: 0,
            now: 0,
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
            offset
                .checked_add(len)
                .is_some_and(|end| end <= self.config.vram_size),
            "VRAM access {offset:#x}+{len} outside the {}-byte aperture",
            self.config.vram_size
        );
    }

    // --- CPU side --------------------------------------------------------------------------

    /// A CPU store of 1 to 4 bytes to a write-combined VRAM window: it waits in the
    /// write-combining buffer.
    pub fn bar_write(&self, offset: usize, bytes: &[u8]) {
        self.check(offset, bytes.len());
        assert!(
            (1..=4).contains(&bytes.len()),
            "BAR stores are 1 to 4 bytes"
        );
        let mut entry = PendingWrite {
            offset,
            len: bytes.len(),
            bytes: [0; 4],
            flush_due: None,
        };
        entry.bytes[..bytes.len()].copy_from_slice(bytes);
        let mut st = self.lock();
        let st = &mut *st;
        self.step(st);
        st.stats.bar_writes += 1;
        let epoch = st.epoch;
        st.wc.push(Issued { what: entry, epoch });
        while st.wc.len() > self.config.wc_depth {
            self.evict_one(st);
        }
        if !st.wc.is_empty() && st.rng.f64() < self.config.wc_evict_probability {
            self.evict_one(st);
        }
    }

    /// A CPU load of `out.len()` (1 to 4) bytes through a VRAM window. The value is what the
    /// CPU would read now (its own buffered stores, pending writes, the read cache or VRAM);
    /// the load reaches the HDP, and drains what its [`ReadPolicy`] says, only when something
    /// performs it: a full barrier, or a device store after it.
    pub fn bar_read(&self, offset: usize, out: &mut [u8]) {
        let len = out.len();
        self.check(offset, len);
        let mut st = self.lock();
        let st = &mut *st;
        self.step(st);
        st.stats.bar_reads += 1;
        self.read_value(st, offset, out);
        self.issue(st, DeviceOp::BarRead { offset, len });
    }

    /// A CPU store to the flush register through an uncached mapping (the remap page), or the
    /// kernel's posted register store on this CPU: performed when a later store that a store
    /// barrier orders after it is, or at a full barrier.
    pub fn flush_register_store(&self) {
        let mut st = self.lock();
        let st = &mut *st;
        self.step(st);
        st.stats.flush_register_writes += 1;
        self.issue(st, DeviceOp::FlushRegister);
    }

    /// A CPU load of a register through an uncached mapping: performed in order with the other
    /// device operations. When performed, it returns only once the flushes the HDP accepted
    /// before it have drained.
    pub fn register_read(&self) {
        let mut st = self.lock();
        let st = &mut *st;
        self.step(st);
        st.stats.register_reads += 1;
        self.issue(st, DeviceOp::RegisterRead);
    }

    /// `wmb()`: stores issued so far are performed before any store issued after it. Nothing
    /// is performed now, and loads are not ordered.
    pub fn store_fence(&self) {
        self.fence(false);
    }

    /// `mb()`: every device operation issued so far is performed (loads before the buffered
    /// stores they were not fenced from), then the write-combining buffer is emptied into the
    /// HDP, store barrier by store barrier, in any order between two.
    pub fn full_fence(&self) {
        self.fence(true);
    }

    /// A store to ordinary memory that tells the GPU to look (the AQL packet header, a
    /// doorbell): it waits for the stores a store barrier ordered before it, and for nothing
    /// else the CPU has not yet performed. Starts a new round for [`HdpConfig::remove_fence`]
    /// and [`HdpConfig::weaken_fence`].
    pub fn publish(&self) {
        let mut st = self.lock();
        let st = &mut *st;
        self.step(st);
        self.store_from_elsewhere(st);
        st.stats.publishes += 1;
        st.fences_this_round = 0;
    }

    // --- the kernel or another CPU, synchronously -----------------------------------------

    /// The flush register written and posted by someone who waits for it to land (the kernel's
    /// store plus posting read, on any CPU), at this CPU's request: the request is a store, so
    /// the stores a store barrier ordered before it are in the FIFO first; then the HDP accepts
    /// the flush, and the kernel's read of the register returns once it has drained: every
    /// store in the FIFO has reached VRAM, in order. Stores issued since the last store barrier
    /// may still be in this CPU's write-combining buffer.
    pub fn flush_register_write(&self) {
        let mut st = self.lock();
        let st = &mut *st;
        self.step(st);
        self.store_from_elsewhere(st);
        st.stats.flush_register_writes += 1;
        self.accept_flush(st);
        self.posting_read(st);
    }

    /// A write to the read-cache invalidate register, read back (always synchronous), at this
    /// CPU's request. This CPU's later BAR loads may still be satisfied from the cache as it
    /// was, until a full barrier: nothing orders a load after the request otherwise.
    pub fn invalidate_register_write(&self) {
        let mut st = self.lock();
        let st = &mut *st;
        self.step(st);
        self.store_from_elsewhere(st);
        st.stats.invalidate_register_writes += 1;
        let before = std::mem::take(&mut st.cache);
        st.cache_before_invalidation.get_or_insert(before);
    }

    // --- GPU side ---------------------------------------------------------------------------

    /// The GPU reads VRAM directly (no HDP on its side).
    pub fn gpu_read_u32(&self, offset: usize) -> u32 {
        self.check(offset, 4);
        let mut st = self.lock();
        self.step(&mut st);
        let mut b = [0; 4];
        b.copy_from_slice(&st.vram[offset..offset + 4]);
        u32::from_ne_bytes(b)
    }

    /// The GPU writes VRAM directly; lines the HDP cached before now hold stale data.
    pub fn gpu_write_u32(&self, offset: usize, value: u32) {
        self.check(offset, 4);
        let mut st = self.lock();
        self.step(&mut st);
        st.vram[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
    }

    // --- inspection -------------------------------------------------------------------------

    /// Stores waiting in the HDP's FIFO.
    pub fn pending_writes(&self) -> usize {
        self.lock().fifo.len()
    }

    /// Stores still in the CPU's write-combining buffer.
    pub fn buffered_writes(&self) -> usize {
        self.lock().wc.len()
    }

    /// Device operations the CPU issued that no barrier has performed yet.
    pub fn unperformed_operations(&self) -> usize {
        self.lock().outstanding.len()
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

    /// A 4K MMIO remap page as KFD maps it (uncached): a store at offset 0
    /// (`HDP_MEM_FLUSH_CNTL`) flushes; offset 4 (`HDP_REG_FLUSH_CNTL`) is accepted and does
    /// nothing here.
    pub fn remap_page(self: &Arc<Self>) -> SimBar {
        SimBar {
            hdp: Arc::clone(self),
            base: 0,
            len: 4096,
            target: Target::RemapPage,
        }
    }

    // --- internals --------------------------------------------------------------------------

    fn fence(&self, full: bool) {
        let mut st = self.lock();
        let st = &mut *st;
        self.step(st);
        st.stats.fences += 1;
        let n = st.fences_this_round;
        st.fences_this_round += 1;
        if self.config.remove_fence == Some(n) {
            st.stats.removed_fences += 1;
            return;
        }
        let weakened = full && self.config.weaken_fence == Some(n);
        st.stats.weakened_fences += u64::from(weakened);
        if !full || weakened {
            st.epoch += 1;
            return;
        }
        // Everything, in program order among the device operations; a device store waits for
        // the buffered stores a store barrier put before it, a load waits for none of them.
        while let Some(op) = st.outstanding.pop_front() {
            self.perform(st, op);
        }
        self.send_buffered_before(st, u64::MAX);
        st.cache_before_invalidation = None;
        st.epoch += 1;
    }

    /// Issue a device operation; one past [`MAX_OUTSTANDING`] performs the oldest.
    fn issue(&self, st: &mut State, op: DeviceOp) {
        let epoch = st.epoch;
        st.outstanding.push_back(Issued { what: op, epoch });
        while st.outstanding.len() > MAX_OUTSTANDING {
            if let Some(oldest) = st.outstanding.pop_front() {
                self.perform(st, oldest);
            }
        }
    }

    /// A store after the last store barrier, seen by someone else (the doorbell, a request to
    /// the kernel): the stores a store barrier ordered before it are performed first.
    fn store_from_elsewhere(&self, st: &mut State) {
        let epoch = st.epoch;
        self.perform_stores_before(st, epoch);
    }

    /// Perform every store of an epoch below `epoch`: device operations in program order (a
    /// load only where a device store behind it needs it gone), buffered stores epoch by
    /// epoch.
    fn perform_stores_before(&self, st: &mut State, epoch: u64) {
        if let Some(last) = st
            .outstanding
            .iter()
            .rposition(|op| op.what.is_store() && op.epoch < epoch)
        {
            for _ in 0..=last {
                if let Some(op) = st.outstanding.pop_front() {
                    self.perform(st, op);
                }
            }
        }
        self.send_buffered_before(st, epoch);
    }

    /// Send every buffered store of an epoch below `epoch` to the HDP FIFO: epoch by epoch,
    /// in any order within one.
    fn send_buffered_before(&self, st: &mut State, epoch: u64) {
        while let Some(lowest) = st.wc.iter().map(|e| e.epoch).min() {
            if lowest >= epoch {
                break;
            }
            self.send_one_of(st, lowest);
        }
    }

    /// Send one store, picked at random, of the buffer's lowest epoch to the HDP FIFO, after
    /// the device stores of lower epochs it is ordered after.
    fn evict_one(&self, st: &mut State) {
        if let Some(lowest) = st.wc.iter().map(|e| e.epoch).min() {
            if st
                .outstanding
                .iter()
                .any(|op| op.what.is_store() && op.epoch < lowest)
            {
                self.perform_stores_before(st, lowest);
            }
            self.send_one_of(st, lowest);
        }
    }

    /// Send one buffered store of `epoch`, picked at random, to the HDP FIFO.
    fn send_one_of(&self, st: &mut State, epoch: u64) {
        let candidates = st.wc.iter().filter(|e| e.epoch == epoch).count();
        if candidates == 0 {
            return;
        }
        let pick = st.rng.usize(..candidates);
        let index = st
            .wc
            .iter()
            .enumerate()
            .filter(|(_, e)| e.epoch == epoch)
            .nth(pick)
            .map(|(i, _)| i);
        if let Some(i) = index {
            let e = st.wc.remove(i);
            st.stats.wc_evictions += 1;
            self.fifo_push(st, e.what);
        }
    }

    fn fifo_push(&self, st: &mut State, entry: PendingWrite) {
        st.fifo.push_back(entry);
        while st.fifo.len() > self.config.fifo_depth {
            self.commit_at(st, 0);
            st.stats.spontaneous_drains += 1;
        }
        if !st.fifo.is_empty() && st.rng.f64() < self.config.drain_probability {
            let in_order = self.config.read_policy == ReadPolicy::SameAddress;
            let pick = if self.config.reorder && !in_order {
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
            self.commit_at(st, if blocked { 0 } else { pick });
            st.stats.spontaneous_drains += 1;
        }
    }

    /// Perform one device operation; a store first sends the buffered stores a store barrier
    /// ordered before it.
    fn perform(&self, st: &mut State, op: Issued<DeviceOp>) {
        if op.what.is_store() {
            self.send_buffered_before(st, op.epoch);
        }
        match op.what {
            DeviceOp::FlushRegister => self.accept_flush(st),
            DeviceOp::RegisterRead => self.posting_read(st),
            DeviceOp::BarRead { offset, len } => {
                let newest_own = st.fifo.iter().rposition(|e| e.overlaps(offset, len));
                let drain_upto = match self.config.read_policy {
                    ReadPolicy::Ordered | ReadPolicy::DelayedFlushCompletion => st.fifo.len(),
                    ReadPolicy::SameAddress => newest_own.map_or(0, |i| i + 1),
                    ReadPolicy::Forwarding if newest_own.is_none() => st.fifo.len(),
                    ReadPolicy::Forwarding | ReadPolicy::Unordered => 0,
                };
                if drain_upto > 0 {
                    st.stats.reads_that_drained += 1;
                }
                for _ in 0..drain_upto {
                    self.commit_at(st, 0);
                }
            }
        }
    }

    /// The HDP accepts a flush-register write: it drains every write now in the FIFO, at once,
    /// or under [`ReadPolicy::DelayedFlushCompletion`] by [`HdpConfig::flush_latency`] steps
    /// from now.
    fn accept_flush(&self, st: &mut State) {
        if self.config.read_policy != ReadPolicy::DelayedFlushCompletion {
            while !st.fifo.is_empty() {
                self.commit_at(st, 0);
            }
            return;
        }
        let due = st.now.saturating_add(self.config.flush_latency);
        for e in st.fifo.iter_mut().filter(|e| e.flush_due.is_none()) {
            e.flush_due = Some(due);
        }
        self.drain_flushes(st, due <= st.now);
    }

    /// A register read reaches the HDP: it is answered once every flush accepted before it has
    /// drained.
    fn posting_read(&self, st: &mut State) {
        if st.fifo.front().is_some_and(|e| e.flush_due.is_some()) {
            st.stats.reads_that_waited_for_a_flush += 1;
        }
        self.drain_flushes(st, true);
    }

    /// One model step: a CPU or GPU operation. Accepted flushes whose time has come drain.
    fn step(&self, st: &mut State) {
        st.now += 1;
        let pending = st.fifo.len();
        self.drain_flushes(st, false);
        st.stats.late_flush_drains += u64::from(st.fifo.len() < pending);
    }

    /// Drain the writes accepted flushes cover: all of them (`all`), or those due by now.
    fn drain_flushes(&self, st: &mut State, all: bool) {
        let now = st.now;
        while st
            .fifo
            .front()
            .and_then(|e| e.flush_due)
            .is_some_and(|due| all || due <= now)
        {
            self.commit_at(st, 0);
        }
    }

    /// The value a CPU load sees: VRAM through the read cache (filling it), then pending FIFO
    /// writes, then the CPU's own buffered stores, newest last.
    fn read_value(&self, st: &mut State, offset: usize, out: &mut [u8]) {
        let len = out.len();
        let line = offset / self.config.cache_line;
        let line_start = line * self.config.cache_line;
        let line_end = (line_start + self.config.cache_line).min(self.config.vram_size);
        if st.cache.contains_key(&line) {
            st.stats.cache_hits += 1;
        } else {
            let copy = st.vram[line_start..line_end].to_vec();
            st.cache.insert(line, copy);
        }
        // A load not fenced from an earlier invalidation may still be satisfied from before it.
        let cached = match &st.cache_before_invalidation {
            Some(before) if before.contains_key(&line) => &before[&line],
            _ => &st.cache[&line],
        };
        for (i, b) in out.iter_mut().enumerate() {
            let a = offset + i;
            *b = if a < line_end {
                cached[a - line_start]
            } else {
                st.vram[a]
            };
        }
        let mut forwarded = false;
        for e in st.fifo.iter().chain(st.wc.iter().map(|b| &b.what)) {
            if e.overlaps(offset, len) {
                forwarded = true;
                for i in 0..e.len {
                    let a = e.offset + i;
                    if (offset..offset + len).contains(&a) {
                        out[a - offset] = e.bytes[i];
                    }
                }
            }
        }
        st.stats.forwarded_reads += u64::from(forwarded);
    }

    /// FIFO entry `index` (0: the oldest) reaches VRAM. The HDP keeps its read cache coherent
    /// with its own writes: lines holding those bytes are dropped (only the GPU's writes make
    /// the cache stale).
    fn commit_at(&self, st: &mut State, index: usize) {
        if let Some(e) = st.fifo.remove(index) {
            st.vram[e.offset..e.offset + e.len].copy_from_slice(&e.bytes[..e.len]);
            let line = self.config.cache_line;
            for l in e.offset / line..=(e.offset + e.len - 1) / line {
                st.cache.remove(&l);
                if let Some(before) = &mut st.cache_before_invalidation {
                    before.remove(&l);
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Vram,
    RemapPage,
}

/// A [`Bar`] onto the model: a VRAM window (write-combined) or the remap page (uncached). Its
/// barriers are the model's.
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
        check_access(offset, size, self.len);
        self.base + offset
    }

    fn register_store(&self, offset: usize) {
        if offset == crate::strategy::REMAP_HDP_MEM_FLUSH_CNTL {
            self.hdp.flush_register_store();
        }
    }
}

impl Fences for SimBar {
    fn store_fence(&self) {
        self.hdp.store_fence();
    }

    fn full_fence(&self) {
        self.hdp.full_fence();
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
            Target::RemapPage => self.register_store(offset),
        }
    }

    fn write_u8(&self, offset: usize, value: u8) {
        let a = self.addr(offset, 1);
        match self.target {
            Target::Vram => self.hdp.bar_write(a, &[value]),
            Target::RemapPage => self.register_store(offset),
        }
    }

    fn read_u32(&self, offset: usize) -> u32 {
        let a = self.addr(offset, 4);
        let mut b = [0; 4];
        match self.target {
            Target::Vram => self.hdp.bar_read(a, &mut b),
            Target::RemapPage => self.hdp.register_read(),
        }
        u32::from_ne_bytes(b)
    }

    fn read_u8(&self, offset: usize) -> u8 {
        let a = self.addr(offset, 1);
        let mut b = [0; 1];
        match self.target {
            Target::Vram => self.hdp.bar_read(a, &mut b),
            Target::RemapPage => self.hdp.register_read(),
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
            wc_evict_probability: 0.0,
            read_policy,
            ..HdpConfig::default()
        })
    }

    #[test]
    fn stores_wait_in_the_cpu_then_the_fifo_until_a_fence_and_the_flush_register() {
        let hdp = quiet(ReadPolicy::Ordered);
        let bar = hdp.vram_window(0, 4096);
        bar.write_u32(16, 7);
        assert_eq!(hdp.buffered_writes(), 1);
        hdp.flush_register_write();
        assert_eq!(
            hdp.gpu_read_u32(16),
            0,
            "still in the CPU: no flush reaches it"
        );
        hdp.store_fence();
        assert_eq!(
            (hdp.buffered_writes(), hdp.pending_writes()),
            (1, 0),
            "a store fence orders, it does not send"
        );
        hdp.publish();
        assert_eq!(
            (hdp.buffered_writes(), hdp.pending_writes()),
            (0, 1),
            "the doorbell, a store after the fence, waits for it"
        );
        assert_eq!(hdp.gpu_read_u32(16), 0);
        hdp.flush_register_write();
        assert_eq!(hdp.gpu_read_u32(16), 7);
        assert_eq!(hdp.pending_writes(), 0);
    }

    #[test]
    fn a_request_to_the_kernel_is_a_store_after_the_fence() {
        let hdp = quiet(ReadPolicy::Ordered);
        let bar = hdp.vram_window(0, 4096);
        bar.write_u32(16, 7);
        hdp.store_fence();
        bar.write_u32(20, 8);
        hdp.flush_register_write();
        assert_eq!(hdp.gpu_read_u32(16), 7, "fenced before the request");
        assert_eq!(hdp.gpu_read_u32(20), 0, "issued after the last fence");
        assert_eq!(hdp.buffered_writes(), 1);
    }

    #[test]
    fn a_full_fifo_drains_its_oldest_entry() {
        let hdp = quiet(ReadPolicy::Unordered);
        let bar = hdp.vram_window(0, 4096);
        for i in 0..=hdp.config().fifo_depth {
            bar.write_u32(i * 4, i as u32 + 1);
            hdp.full_fence();
        }
        assert_eq!(hdp.gpu_read_u32(0), 1, "oldest entry drained");
        assert_eq!(hdp.gpu_read_u32(4), 0, "second entry still pending");
    }

    #[test]
    fn a_full_write_combining_buffer_sends_stores_on_its_own_in_any_order() {
        let hdp = quiet(ReadPolicy::Unordered);
        let bar = hdp.vram_window(0, 4096);
        for i in 0..100u32 {
            bar.write_u32(i as usize * 4, i + 1);
        }
        let depth = hdp.config().wc_depth;
        assert_eq!(hdp.buffered_writes(), depth, "the rest was sent on");
        assert!(hdp.pending_writes() > 0);
        hdp.store_fence();
        hdp.flush_register_write();
        let order: Vec<u32> = (0..100).map(|i| hdp.gpu_read_u32(i * 4)).collect();
        assert_eq!(order, (1..=100).collect::<Vec<u32>>(), "all landed");
        assert!(hdp.stats().wc_evictions >= 100);
    }

    #[test]
    fn device_operations_wait_for_the_barrier_that_orders_them() {
        let hdp = quiet(ReadPolicy::Ordered);
        let bar = hdp.vram_window(0, 4096);
        bar.write_u32(0, 5);
        hdp.store_fence();
        hdp.flush_register_store();
        assert_eq!(hdp.gpu_read_u32(0), 0, "issued, not performed");
        hdp.publish();
        assert_eq!(
            hdp.gpu_read_u32(0),
            0,
            "a doorbell does not wait for a store after the last fence"
        );
        hdp.store_fence();
        assert_eq!(hdp.gpu_read_u32(0), 0, "a store fence performs nothing");
        hdp.publish();
        assert_eq!(hdp.gpu_read_u32(0), 5, "a doorbell after it waits for it");

        // A load waits for no store fence; a full fence performs it.
        bar.write_u32(4, 6);
        hdp.full_fence();
        bar.read_u32(4);
        hdp.store_fence();
        hdp.publish();
        assert_eq!(hdp.unperformed_operations(), 1);
        assert_eq!(hdp.gpu_read_u32(4), 0);
        hdp.full_fence();
        assert_eq!(hdp.gpu_read_u32(4), 6, "Ordered: the read drained the FIFO");
    }

    #[test]
    fn a_load_passes_an_earlier_store_unless_a_full_fence_separates_them() {
        // Store, fence, read back; under Ordered the read drains what reached the FIFO first.
        let run = |full: bool| {
            let hdp = quiet(ReadPolicy::Ordered);
            let bar = hdp.vram_window(0, 4096);
            bar.write_u32(0, 5);
            if full {
                hdp.full_fence();
            } else {
                hdp.store_fence();
            }
            bar.read_u32(0);
            hdp.full_fence();
            hdp.gpu_read_u32(0)
        };
        assert_eq!(run(true), 5, "the read waited for the store and drained it");
        assert_eq!(
            run(false),
            0,
            "the read went first; the store is left in the FIFO"
        );
    }

    #[test]
    fn a_store_passes_an_earlier_load_unless_a_full_fence_separates_them() {
        let hdp = quiet(ReadPolicy::Ordered);
        let bar = hdp.vram_window(0, 4096);
        bar.write_u32(0, 5);
        hdp.full_fence();
        bar.read_u32(0);
        hdp.store_fence();
        bar.write_u32(8, 9);
        hdp.store_fence();
        hdp.publish();
        assert_eq!(hdp.unperformed_operations(), 1, "the load is still waiting");
        assert_eq!(hdp.pending_writes(), 2, "the later store reached the FIFO");
        assert_eq!(hdp.gpu_read_u32(0), 0, "and the read did not drain it");
    }

    #[test]
    fn a_weakened_full_fence_is_a_store_fence() {
        let hdp = Hdp::new(HdpConfig {
            weaken_fence: Some(1),
            drain_probability: 0.0,
            wc_evict_probability: 0.0,
            ..HdpConfig::default()
        });
        let bar = hdp.vram_window(0, 4096);
        bar.write_u32(0, 1);
        hdp.full_fence(); // fence 0: kept
        assert_eq!(hdp.buffered_writes(), 0);
        bar.write_u32(4, 2);
        hdp.full_fence(); // fence 1: a store fence
        assert_eq!(hdp.buffered_writes(), 1);
        hdp.store_fence(); // fence 2: a store fence is never "weakened"
        let s = hdp.stats();
        assert_eq!((s.fences, s.weakened_fences, s.removed_fences), (3, 1, 0));
    }

    #[test]
    fn read_policies_differ_exactly_in_what_a_readback_drains() {
        for (policy, drains_same, drains_other, drains_behind) in [
            (ReadPolicy::Ordered, true, true, true),
            (ReadPolicy::SameAddress, true, false, false),
            (ReadPolicy::Forwarding, false, true, false),
            (ReadPolicy::Unordered, false, false, false),
            (ReadPolicy::DelayedFlushCompletion, true, true, true),
        ] {
            // Write word 0, then word 1; read back word 0 (same) or 512 (other).
            let run = |read_at: usize| {
                let hdp = quiet(policy);
                let bar = hdp.vram_window(0, 4096);
                bar.write_u32(0, 5);
                hdp.store_fence();
                bar.write_u32(4, 6);
                hdp.full_fence();
                assert_eq!(bar.read_u32(read_at), if read_at == 0 { 5 } else { 0 });
                hdp.full_fence();
                (hdp.gpu_read_u32(0) == 5, hdp.gpu_read_u32(4) == 6)
            };
            let (same, behind) = run(0);
            assert_eq!(same, drains_same, "{policy:?} same address");
            assert_eq!(
                behind, drains_behind,
                "{policy:?} write behind the one read"
            );
            assert_eq!(run(512).0, drains_other, "{policy:?} other address");
        }
    }

    #[test]
    fn a_delayed_flush_drains_its_latency_later_or_when_a_register_read_waits_for_it() {
        let latency = quiet(ReadPolicy::DelayedFlushCompletion)
            .config()
            .flush_latency;
        assert!(latency > 1, "the default delays a flush");
        // The posted shape: store, fence, flush-register store, fence, doorbell.
        let posted = quiet(ReadPolicy::DelayedFlushCompletion);
        let bar = posted.vram_window(0, 4096);
        bar.write_u32(0, 5);
        posted.store_fence();
        posted.flush_register_store();
        posted.store_fence();
        posted.publish();
        assert_eq!(posted.unperformed_operations(), 0, "the HDP accepted it");
        assert_eq!(posted.pending_writes(), 1, "and has not drained yet");
        let seen: Vec<u32> = (0..latency).map(|_| posted.gpu_read_u32(0)).collect();
        assert_eq!(seen[0], 0, "the GPU acts on the doorbell before the drain");
        assert_eq!(
            seen[seen.len() - 1],
            5,
            "{latency} steps later it has drained"
        );
        let s = posted.stats();
        assert_eq!(
            (s.late_flush_drains, s.reads_that_waited_for_a_flush),
            (1, 0)
        );

        // The completed shape: the same, with a read of the register before the full fence.
        let completed = quiet(ReadPolicy::DelayedFlushCompletion);
        let bar = completed.vram_window(0, 4096);
        bar.write_u32(0, 5);
        completed.store_fence();
        completed.flush_register_store();
        completed.register_read();
        assert_eq!(completed.gpu_read_u32(0), 0, "nothing performed yet");
        completed.full_fence();
        assert_eq!(
            completed.gpu_read_u32(0),
            5,
            "the read-back waited for the drain"
        );
        let s = completed.stats();
        assert_eq!(
            (s.late_flush_drains, s.reads_that_waited_for_a_flush),
            (0, 1)
        );

        // The kernel's store and posting read.
        let kernel = quiet(ReadPolicy::DelayedFlushCompletion);
        kernel.vram_window(0, 4096).write_u32(0, 5);
        kernel.store_fence();
        kernel.flush_register_write();
        assert_eq!(kernel.gpu_read_u32(0), 5);
        assert_eq!(kernel.stats().reads_that_waited_for_a_flush, 1);
    }

    #[test]
    fn a_flush_accepted_later_does_not_cover_writes_that_reached_the_fifo_after_it() {
        let hdp = quiet(ReadPolicy::DelayedFlushCompletion);
        let bar = hdp.vram_window(0, 4096);
        bar.write_u32(0, 1);
        hdp.full_fence();
        hdp.flush_register_store();
        hdp.full_fence(); // accepted: covers word 0
        bar.write_u32(4, 2);
        hdp.full_fence(); // word 1 reaches the FIFO behind the flush
        let latency = hdp.config().flush_latency;
        for _ in 0..latency {
            hdp.gpu_read_u32(64);
        }
        assert_eq!((hdp.gpu_read_u32(0), hdp.gpu_read_u32(4)), (1, 0));
        assert_eq!(hdp.pending_writes(), 1);
        hdp.register_read();
        hdp.full_fence();
        assert_eq!(
            hdp.pending_writes(),
            1,
            "a register read waits for accepted flushes only"
        );
        assert_eq!(hdp.stats().reads_that_waited_for_a_flush, 0);
    }

    #[test]
    fn without_a_latency_a_delayed_flush_is_an_immediate_one() {
        let hdp = Hdp::new(HdpConfig {
            drain_probability: 0.0,
            wc_evict_probability: 0.0,
            read_policy: ReadPolicy::DelayedFlushCompletion,
            flush_latency: 0,
            ..HdpConfig::default()
        });
        hdp.vram_window(0, 4096).write_u32(0, 5);
        hdp.store_fence();
        hdp.flush_register_store();
        hdp.store_fence();
        hdp.publish();
        assert_eq!(hdp.gpu_read_u32(0), 5);
        assert_eq!(hdp.stats().late_flush_drains, 0);
    }

    #[test]
    fn the_read_cache_serves_stale_data_until_invalidated_and_fenced() {
        let hdp = quiet(ReadPolicy::Ordered);
        let bar = hdp.vram_window(0, 4096);
        assert_eq!(bar.read_u32(64), 0);
        hdp.gpu_write_u32(64, 9);
        assert_eq!(bar.read_u32(64), 0, "stale line from the read cache");
        hdp.invalidate_register_write();
        assert_eq!(
            bar.read_u32(64),
            0,
            "a load not fenced from the invalidation may be satisfied before it"
        );
        hdp.store_fence();
        assert_eq!(bar.read_u32(64), 0, "a store fence orders no load");
        hdp.full_fence();
        assert_eq!(bar.read_u32(64), 9);
    }

    #[test]
    fn the_cpu_reads_its_own_stores_wherever_they_wait() {
        let hdp = quiet(ReadPolicy::Unordered);
        let bar = hdp.vram_window(0, 4096);
        assert_eq!(bar.read_u32(8), 0); // caches the line
        bar.write_u32(8, 1);
        assert_eq!(bar.read_u32(8), 1, "from the write-combining buffer");
        hdp.full_fence();
        assert_eq!(bar.read_u32(8), 1, "from the FIFO");
        hdp.flush_register_write();
        assert_eq!(
            bar.read_u32(8),
            1,
            "from VRAM: the HDP dropped its stale line"
        );
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
                hdp.store_fence();
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
        hdp.store_fence();
        remap.write_u32(4, 1);
        hdp.full_fence();
        assert_eq!(hdp.gpu_read_u32(0), 0);
        remap.write_u32(0, 1);
        hdp.full_fence();
        assert_eq!(hdp.gpu_read_u32(0), 3);
    }

    #[test]
    fn a_removed_fence_is_counted_and_does_nothing() {
        let hdp = Hdp::new(HdpConfig {
            remove_fence: Some(1),
            wc_evict_probability: 0.0,
            ..HdpConfig::default()
        });
        let bar = hdp.vram_window(0, 4096);
        bar.write_u32(0, 1);
        hdp.store_fence(); // fence 0: kept
        bar.write_u32(4, 2);
        hdp.store_fence(); // fence 1: removed
        hdp.publish();
        assert_eq!(
            hdp.buffered_writes(),
            1,
            "the doorbell waited for the first store only"
        );
        hdp.store_fence(); // fence 0 of the next round: kept
        hdp.publish();
        assert_eq!(hdp.buffered_writes(), 0);
        let s = hdp.stats();
        assert_eq!((s.fences, s.removed_fences, s.publishes), (3, 1, 2));
    }
}
