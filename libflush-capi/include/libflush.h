/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * libflush C ABI: flush an AMD GPU's HDP write FIFO with the best strategy this host offers.
 * Link with -lflush (libflush.a or libflush.so from the libflush-capi crate).
 *
 * The strategy is chosen once per process, on first use: the 4K MMIO remap page where KFD
 * allows it, else the hdp_flush kernel module, else the in-process simulator; the environment
 * variable HDPFLUSH_STRATEGY overrides the choice. Every function is thread-safe.
 *
 *     stores to VRAM through the BAR ...
 *     if (hdpflush_flush() < 0) { ... }   // payload now visible to the GPU
 *     ring the doorbell
 */
#ifndef LIBFLUSH_H
#define LIBFLUSH_H

#ifdef __cplusplus
extern "C" {
#endif

/* Flush the HDP write FIFO. 0 on success, a negative errno on failure:
 * -EINVAL bad HDPFLUSH_STRATEGY, -ENODEV strategy not usable here, -ENOENT/-EACCES the device
 * node is missing/forbidden, -EOPNOTSUPP not supported by the strategy, or the kernel's errno. */
int hdpflush_flush(void);

/* Invalidate the HDP read cache before reading what the GPU wrote; same return values. */
int hdpflush_invalidate(void);

/* Name of the process-wide strategy ("mmio-remap", "ioctl", "uring", "dummy-page", "legacy",
 * "sim"), or NULL if none could be selected. Static storage; do not free. */
const char *hdpflush_strategy(void);

/* Why selection failed, or NULL if it did not. Static storage; do not free. */
const char *hdpflush_error(void);

#ifdef __cplusplus
}
#endif

#endif /* LIBFLUSH_H */
