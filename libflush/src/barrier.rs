//! CPU barriers for accesses to device memory, per architecture, and the [`Fences`] trait the
//! strategies issue them through.
//!
//! Two barriers, named after the kernel's:
//! - [`store_fence`] (`wmb()`): every earlier store, to device memory too (write-combined VRAM,
//!   uncached registers), is ordered before every later store;
//! - [`full_fence`] (`mb()`): every earlier load and store before every later load and store.
//!
//! | arch | `store_fence` | `full_fence` |
//! |---|---|---|
//! | x86_64 | `sfence` | `mfence` |
//! | aarch64 | `dsb st` | `dsb sy` |
//! | powerpc64 | `sync` | `sync` |
//!
//! std's `fence` is not used on aarch64: it emits `dmb ish` (inner shareable), which does not
//! order accesses to a PCIe device. On powerpc64 a `SeqCst` fence is `sync` (hwsync), which
//! orders cache-inhibited and write-combined accesses too; Rust has no stable inline assembly
//! for powerpc, so that is how `sync` is emitted. Any other architecture is a compile error:
//! its device barriers must be written here, not guessed.
//!
//! Which strategy issues which barrier, and why, is the barrier contract in docs/design.md; the
//! simulator ([`crate::sim`]) sees every barrier issued through [`Fences`], and its tests show
//! that removing any one of them lets the GPU read stale data.

#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "powerpc64"
)))]
compile_error!(
    "libflush knows the device-memory barriers of x86_64, aarch64 and powerpc64 only; \
     add this architecture's to libflush/src/barrier.rs"
);

/// Order all earlier stores before all later stores, as a device sees them.
#[inline(always)]
pub fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` only orders stores; it touches no memory or registers.
    unsafe {
        core::arch::asm!("sfence", options(nostack, preserves_flags));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `dsb st` waits for earlier stores to complete; no memory or registers touched.
    unsafe {
        core::arch::asm!("dsb st", options(nostack, preserves_flags));
    }
    #[cfg(target_arch = "powerpc64")]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// Order all earlier loads and stores before all later ones, as a device sees them.
#[inline(always)]
pub fn full_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `mfence` only orders memory accesses; it touches no memory or registers.
    unsafe {
        core::arch::asm!("mfence", options(nostack, preserves_flags));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `dsb sy` waits for all earlier accesses to complete; nothing else is touched.
    unsafe {
        core::arch::asm!("dsb sy", options(nostack, preserves_flags));
    }
    #[cfg(target_arch = "powerpc64")]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// Where a strategy's barriers go: the CPU's instructions by default, the simulator's CPU model
/// in the oracle tests. Strategies issue every barrier through this trait, never directly, so
/// that the model sees each one.
pub trait Fences {
    /// [`store_fence`] on this CPU.
    fn store_fence(&self) {
        store_fence();
    }

    /// [`full_fence`] on this CPU.
    fn full_fence(&self) {
        full_fence();
    }
}
