/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * libhdpflush: flush one AMD GPU's HDP write FIFO after writing its VRAM through the BAR, on
 * any page size. The C ABI of the libflush Rust crate. Link with -lhdpflush
 * (pkg-config --cflags --libs hdpflush).
 *
 * A runtime opens one flusher per GPU when it creates the device, naming the GPU by PCI
 * address, KFD gpu_id or hdp_flush module device index, and passing the mappings it has:
 *
 *     struct hdpflush_open_options o = { .size = sizeof o };
 *     o.remap = info.HDP_MEM_FLUSH_CNTL;        // from HSA_AMD_AGENT_INFO_HDP_FLUSH; NULL on 64K
 *     hdpflush_gpu *g;
 *     if (hdpflush_open_pci("0000:03:00.0", &o, &g) < 0)
 *         fprintf(stderr, "no HDP flush: %s\n", hdpflush_last_error());
 *     ...
 *     memcpy(kernarg_in_vram, args, size);      // through the BAR
 *     hdpflush_gpu_flush(g, 0);                 // flushed, and ordered before what follows
 *     store the AQL packet header, ring the doorbell
 *
 * The strategy per GPU, in order: the remap page if given; else the hdp_flush kernel module if
 * it serves that GPU (ioctl, or io_uring with HDPFLUSH_OPEN_BATCHED); else the dummy page if
 * given and HDPFLUSH_OPEN_ALLOW_DUMMY_PAGE is set; else -ENODEV with the reason in
 * hdpflush_last_error(). "kfd-ioctl" (AMDKFD_IOC_HDP_FLUSH, a KFD flush ioctl proposed by
 * hdpflush's kernel patch that no upstream kernel has; called only on a KFD reporting exactly
 * 1.24, the version the patch sets), "legacy" and "sim" (the in-process simulator) are used
 * only when named: opts->strategy, or the environment. A partitioned GPU is one GPU: every
 * partition's gpu_id opens the device.
 *
 * What the caller passes wins over the environment: HDPFLUSH_STRATEGY (for tests and
 * benchmarks) names the strategy only of flushers whose caller set no opts->strategy and passed
 * no mapping, and says so once on stderr; one it cannot use is an error, not a fallback.
 * HDPFLUSH_OPEN_REQUIRE_HARDWARE refuses, with -ENODEV, anything that is not the GPU itself
 * (the simulator, a kernel model, an emulated test device); hdpflush_gpu_backing() says what
 * backs a handle.
 *
 * The ABI grows without breaking callers: set opts->size = sizeof *opts. The library reads the
 * fields a caller's header version has and treats the rest as 0; it refuses (-E2BIG) a newer
 * caller's struct only if a field it does not know is nonzero. hdpflush_version() returns the
 * HDPFLUSH_API_VERSION the library implements; a caller that sets fields of a newer version
 * should check it.
 *
 * Every function that returns int returns 0 on success or a negative errno, never 0 on
 * failure:
 *   -EINVAL      a bad argument: NULL handle or out pointer, a malformed PCI address, a NULL
 *                or misaligned mapping, a dummy page under 4096 bytes, unknown flag bits,
 *                options.size not the size of any version of the struct (smaller than this
 *                library's, it must be HDPFLUSH_OPEN_OPTIONS_SIZE_VER1), reserved not 0,
 *                an unknown opts->strategy; or a bad HDPFLUSH_STRATEGY / HDPFLUSH_GPU
 *   -E2BIG       opts->size is larger than this library's struct and a field it does not know
 *                is set (built against a newer header: update libhdpflush)
 *   -EBADF       the handle was closed
 *   -ENODEV      no way to flush this GPU here, the GPU is not found, a named strategy cannot
 *                flush it, or (hdpflush_flush) the process has no single GPU to flush; from
 *                kfd-ioctl's flush: KFD knows no such gpu_id for this process, or the GPU was
 *                removed
 *   -EOPNOTSUPP  invalidate on a strategy without an invalidate register (remap page, dummy
 *                page, kfd-ioctl: the proposed ioctl only flushes) or a module device without
 *                one configured; from kfd-ioctl's flush: amdgpu has no HDP flush for this GPU
 *   -EIO         the device failed the flush (the kernel module's error) or an io_uring lost
 *                a completion; from kfd-ioctl: a reset of the GPU is in progress, nothing was
 *                flushed, and the reset may discard what was stored (do not retry)
 *   -ENXIO       kfd-ioctl: the process has not acquired this GPU through KFD (no VM, memory
 *                or queues on it)
 *   -ENOTRECOVERABLE  a bug inside libhdpflush was caught (a Rust panic); the message says where
 *   or another errno the kernel returned for the request (see the module's uAPI).
 * After any failure, hdpflush_last_error() says what happened and what to do.
 *
 * Thread safety: every function may be called from any thread. One handle may be flushed
 * from several threads at once; hdpflush_close() must not race with other calls on it.
 *
 * After hdpflush_close(g), g is invalid: using or closing it again is a bug in the caller. The
 * library catches it cheaply for the 256 most recently closed handles (a call on one returns
 * -EBADF; a second close is ignored and recorded for hdpflush_last_error()); beyond that the
 * behaviour is undefined.
 */
#ifndef LIBHDPFLUSH_H
#define LIBHDPFLUSH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The API version of this header: 1, the first release; 2 adds hdpflush_open_options.strategy,
 * HDPFLUSH_OPEN_REQUIRE_HARDWARE, hdpflush_gpu_backing() and hdpflush_version(). */
#define HDPFLUSH_API_VERSION 2

/* One GPU's flusher. */
typedef struct hdpflush_gpu hdpflush_gpu;

/* hdpflush_open_options.flags */
#define HDPFLUSH_OPEN_ALLOW_DUMMY_PAGE (1u << 0) /* use dummy_page when nothing better serves
                                                    the GPU: it relies on a BAR read draining
                                                    the HDP write FIFO, which AMD has not
                                                    documented */
#define HDPFLUSH_OPEN_BATCHED (1u << 1) /* many threads flush this GPU: io_uring rather than an
                                           ioctl per flush (the ioctl where io_uring is refused;
                                           the reason says so). With SQPOLL it saves system
                                           calls, not time; no gain for one thread. */
#define HDPFLUSH_OPEN_SQPOLL (1u << 2)  /* with BATCHED: the process's kernel SQ polling thread,
                                           so steady flushing makes no system call */
#define HDPFLUSH_OPEN_POSTED (1u << 3)  /* hdpflush_gpu_flush(g, 0) posts instead of completing */
#define HDPFLUSH_OPEN_REQUIRE_HARDWARE (1u << 4) /* -ENODEV unless the GPU itself is flushed
                                                    (API 2) */

struct hdpflush_open_options {
    uint32_t size;  /* sizeof(struct hdpflush_open_options) */
    uint32_t flags; /* HDPFLUSH_OPEN_* */
    /* This GPU's HDP_MEM_FLUSH_CNTL in the caller's mapping of its MMIO remap page
     * (hsa_amd_hdp_flush_t.HDP_MEM_FLUSH_CNTL), or NULL. Must stay mapped until close. */
    volatile uint32_t *remap;
    /* A host-visible VRAM page of this GPU that nothing else uses, or NULL. Must stay mapped
     * until close. */
    volatile void *dummy_page;
    size_t dummy_page_len; /* at least 4096 */
    uint32_t sqpoll_idle_ms; /* with HDPFLUSH_OPEN_SQPOLL: poller idle time; 0 means 1000 */
    uint32_t reserved;       /* 0 */
    /* --- API 2 --- */
    const char *strategy; /* use exactly this strategy ("ioctl", "kfd-ioctl", ...), or NULL */
};

/* The first release's struct: everything before `strategy`. The smallest size accepted. */
#define HDPFLUSH_OPEN_OPTIONS_SIZE_VER1 offsetof(struct hdpflush_open_options, strategy)

/* Open a flusher for one GPU; *out is set on success. opts may be NULL (nothing offered,
 * completed flushes). */
int hdpflush_open_pci(const char *pci_address, const struct hdpflush_open_options *opts,
                      hdpflush_gpu **out); /* "0000:03:00.0" or "03:00.0" */
int hdpflush_open_gpu_id(uint32_t kfd_gpu_id, const struct hdpflush_open_options *opts,
                         hdpflush_gpu **out); /* KFD topology gpu_id */
int hdpflush_open_index(uint32_t module_index, const struct hdpflush_open_options *opts,
                        hdpflush_gpu **out); /* hdp_flush module device index: needs
                                              * /dev/hdp_flush/all (root's); others name
                                              * GPUs by PCI address or gpu_id */

/* hdpflush_gpu_flush() flags; 0: as opened (completed unless HDPFLUSH_OPEN_POSTED). */
#define HDPFLUSH_FLUSH_POSTED (1u << 0)    /* return once ordered before later stores */
#define HDPFLUSH_FLUSH_COMPLETED (1u << 1) /* return once the flush has landed */

/* Flush the GPU's HDP write FIFO: every BAR store made before the call reaches VRAM before
 * any store made after it (the AQL packet header, the doorbell). The barriers this needs are
 * issued inside; the caller adds none. */
int hdpflush_gpu_flush(hdpflush_gpu *gpu, uint32_t flags);

/* Flush several GPUs (e.g. after writing peer buffers on each): every GPU the hdp_flush module
 * serves in one kernel entry (one io_uring submission; one ioctl each where io_uring is
 * refused), the others one by one. Every one is flushed even if one fails; the first failure is
 * returned and hdpflush_last_error() names its GPU (or the NULL or closed entry). */
int hdpflush_flush_gpus(hdpflush_gpu *const *gpus, size_t count, uint32_t flags);

/* Invalidate the GPU's HDP read cache before reading through the BAR what the GPU wrote.
 * -EOPNOTSUPP where the strategy has no invalidate (see above). */
int hdpflush_gpu_invalidate(hdpflush_gpu *gpu);

/* The strategy: "mmio-remap", "kfd-ioctl", "ioctl", "uring", "dummy-page", "legacy" or "sim".
 * Static storage. NULL for a NULL or closed handle. */
const char *hdpflush_gpu_strategy(const hdpflush_gpu *gpu);

/* Why that strategy, for this GPU. Valid until hdpflush_close(gpu). */
const char *hdpflush_gpu_reason(const hdpflush_gpu *gpu);

/* What a flush acts on: "hardware" (the GPU), "emulated-device", "kernel-model" or "simulator".
 * Static storage. NULL for a NULL or closed handle. (API 2) */
const char *hdpflush_gpu_backing(const hdpflush_gpu *gpu);

/* The HDPFLUSH_API_VERSION this library implements. (API 2) */
uint32_t hdpflush_version(void);

/* Close the flusher (NULL is ignored; see above for a handle closed twice). */
void hdpflush_close(hdpflush_gpu *gpu);

/* This thread's last failure: what happened and what to do, or NULL if the last call on this
 * thread succeeded. Valid until this thread's next hdpflush_* call. */
const char *hdpflush_last_error(void);

/* --- One GPU per process ------------------------------------------------------------------
 * For programs that use a single GPU: the flusher is opened on first use for the GPU named by
 * HDPFLUSH_GPU (PCI address, gpu_id:N or index:N), else the host's only AMD GPU, with nothing
 * offered (so through the hdp_flush module). Same rules: no simulator unless named. */
int hdpflush_flush(void);
int hdpflush_invalidate(void);
/* Its strategy, or NULL if there is none. Static storage. */
const char *hdpflush_strategy(void);
/* Why there is none, or NULL. Static storage. */
const char *hdpflush_error(void);

#ifdef __cplusplus
}
#endif

#endif /* LIBHDPFLUSH_H */
