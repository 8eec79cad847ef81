/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * /dev/hdp_flush user-space ABI, C view.
 *
 * The authoritative declaration is kmod/uapi.rs; this header states the same ABI for C users
 * (ROCm runtimes, test programs). libflush's tests compile this header and compare every size,
 * field offset and ioctl number with the Rust values, so the two cannot drift apart silently.
 */
#ifndef _UAPI_HDP_FLUSH_H
#define _UAPI_HDP_FLUSH_H

#include <linux/ioctl.h>
#include <linux/types.h>

/*
 * Ordering: the caller's side. A FLUSH covers the BAR stores that were ordered before the
 * request reached the kernel, and the module cannot order a caller's stores for it: a request
 * may be satisfied by a flush another CPU issued (coalescing), or be submitted by io_uring's SQ
 * polling thread on another CPU (IORING_SETUP_SQPOLL, where the caller makes no system call at
 * all). So, after the payload stores and before the ioctl() or before the SQE is published to
 * the kernel (the SQ tail store, which with SQPOLL is all the polling thread sees), issue a
 * store fence:
 *	x86_64     sfence  (write-combined VRAM stores are not ordered by the system call)
 *	arm64      dsb st
 *	powerpc64  sync
 * After a posted FLUSH (no HDP_FLUSH_F_SYNC) has returned, or its CQE has been seen, issue the
 * same fence before the store that tells the GPU to look (the doorbell). After an INVALIDATE,
 * issue a full fence (mfence / dsb sy / sync) before the next BAR load.
 */

#define HDP_FLUSH_API_MAJOR 2
#define HDP_FLUSH_API_MINOR 0
/* 2.0: one node per device, HDP_FLUSH_NODE_DIR "/<name>" (name as DEVICE_INFO gives it,
 * "0000:03:00.0"), on which that device is index 0 and the only one; and "all", every device
 * by its module index, for administrators. */
#define HDP_FLUSH_NODE_DIR "/dev/hdp_flush"
#define HDP_FLUSH_DEVICE_PATH "/dev/hdp_flush/all"
#define HDP_FLUSH_IOC_MAGIC 'H'

/* FLUSH flags */
#define HDP_FLUSH_F_SYNC (1u << 0)        /* return after the flush has landed (readback) */
#define HDP_FLUSH_F_NO_COALESCE (1u << 1) /* own hardware flush; for measurements; CAP_SYS_ADMIN */
#define HDP_FLUSH_FLUSH_FLAGS (HDP_FLUSH_F_SYNC | HDP_FLUSH_F_NO_COALESCE)
#define HDP_FLUSH_INVALIDATE_FLAGS 0u
/* STATS flags */
#define HDP_FLUSH_STATS_F_RESET (1u << 0) /* zero after reading; CAP_SYS_ADMIN (EPERM otherwise) */
#define HDP_FLUSH_STATS_FLAGS HDP_FLUSH_STATS_F_RESET

/* DEVICE_INFO.flags out (uAPI 1.1) */
#define HDP_FLUSH_DEVICE_F_REVOKED (1u << 0)   /* removed or unbound: requests fail with ENODEV */
#define HDP_FLUSH_DEVICE_F_SUSPENDED (1u << 1) /* runtime-suspended now: flushes skip it */
#define HDP_FLUSH_DEVICE_F_OFFLINE (1u << 2)   /* 2.0: channel offline or answered all ones: EIO */

/* VERSION.features */
#define HDP_FLUSH_FEAT_URING_CMD (1ull << 0)
#define HDP_FLUSH_FEAT_COALESCE (1ull << 1)

/* DEVICE_INFO.backend */
#define HDP_FLUSH_BACKEND_SIM 0u
#define HDP_FLUSH_BACKEND_PCITEST 1u
#define HDP_FLUSH_BACKEND_AMDGPU 2u

#define HDP_FLUSH_NAME_LEN 32

struct hdp_flush_version {
	__u32 api_major;
	__u32 api_minor;
	__u32 num_devices;
	__u32 page_size;
	__u64 features;
	__u64 reserved[2];
};

struct hdp_flush_device_info {
	__u32 index;      /* in */
	__u32 backend;    /* out: HDP_FLUSH_BACKEND_* */
	__u32 pci_domain; /* out */
	__u32 pci_bdf;    /* out: bus << 8 | devfn */
	__u16 vendor;     /* out */
	__u16 device;     /* out */
	__u32 flags;      /* in: 0; out: HDP_FLUSH_DEVICE_F_* (1.1) */
	__u64 uring_requests; /* in: 0; out: FLUSH/INVALIDATE requests through io_uring (1.1) */
	__u64 reserved[1];
	char name[HDP_FLUSH_NAME_LEN]; /* out, NUL-padded */
};

/* FLUSH / INVALIDATE; 16 bytes so it fits an io_uring SQE command area (URING_CMD). */
struct hdp_flush_request {
	__u32 device;
	__u32 flags;
	__u64 reserved;
};

/* Counted, read and reset at one instant:
 * flush_requests == hw_flushes + coalesced + flush_errors + flush_skipped. */
struct hdp_flush_stats {
	__u32 device; /* in */
	__u32 flags;  /* in: HDP_FLUSH_STATS_F_* */
	__u64 flush_requests;
	__u64 hw_flushes;
	__u64 coalesced;
	__u64 invalidates;
	__u64 flush_errors;      /* uAPI 1.0: "errors" */
	__u64 invalidate_errors; /* uAPI 1.1 */
	__u64 flush_skipped;     /* uAPI 1.1: the GPU was runtime-suspended: nothing to flush */
};

#define HDP_FLUSH_IOC_VERSION _IOR(HDP_FLUSH_IOC_MAGIC, 0xA0, struct hdp_flush_version)
#define HDP_FLUSH_IOC_NOP _IO(HDP_FLUSH_IOC_MAGIC, 0xA1)
#define HDP_FLUSH_IOC_DEVICE_INFO _IOWR(HDP_FLUSH_IOC_MAGIC, 0xA2, struct hdp_flush_device_info)
#define HDP_FLUSH_IOC_FLUSH _IOW(HDP_FLUSH_IOC_MAGIC, 0xA3, struct hdp_flush_request)
#define HDP_FLUSH_IOC_INVALIDATE _IOW(HDP_FLUSH_IOC_MAGIC, 0xA4, struct hdp_flush_request)
#define HDP_FLUSH_IOC_STATS _IOWR(HDP_FLUSH_IOC_MAGIC, 0xA5, struct hdp_flush_stats)

#endif /* _UAPI_HDP_FLUSH_H */
