//! CPU barriers for stores to device memory, per architecture.
//!
//! `store_fence` orders earlier stores before later ones as the device sees them (the kernel's
//! `wmb()`); `full_fence` also orders loads (`mb()`). std's `fence` is not enough on arm64,
//! where it emits `dmb ish` (inner shareable), which does not cover a PCIe device.

/// Order all earlier stores before all later stores, as seen by a device.
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
    // powerpc64 (`sync`, as the kernel's wmb() for I/O) and everything else.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// Order all earlier loads and stores before all later ones, as seen by a device.
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
    // powerpc64: SeqCst emits `sync` (hwsync), which orders cache-inhibited accesses too.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}
