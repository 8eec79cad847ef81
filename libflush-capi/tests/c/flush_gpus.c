/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * A runtime's use of libhdpflush, written against libhdpflush.h alone. The tests run it on the
 * host (libflush-capi/tests/c_program.rs, and through pkg-config after `cargo xtask install`)
 * and inside both QEMU guests against the hdp_flush module.
 *
 *   flush_gpus [--posted] [--batched] [--require-hardware] GPU...
 *                                             open a flusher per GPU (PCI address, gpu_id:N or
 *                                             index:N), flush each as opened, posted and
 *                                             completed, invalidate, flush all at once, close
 *   flush_gpus --process                      the process-wide hdpflush_flush()
 *   flush_gpus --caller-mappings              a remap page and a VRAM page the caller mapped
 *                                             (here: ordinary memory) are used as given
 *   flush_gpus --bad-input                    every bad argument gets its errno, never 0
 *   flush_gpus --abi                          callers of older, equal and newer headers; the
 *                                             caller's strategy over the environment; hardware
 *                                             required; handles used after close
 *   flush_gpus --layout                       sizeof/offsetof of hdpflush_open_options
 *
 * Every call prints one line "<call> <gpu>: <rc> <errno name> [strategy|message]". Exit status
 * 0 if every call returned 0 (--bad-input: if every check held), else 1.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libhdpflush.h"

static int failures;

static const char *errno_name(int rc)
{
    switch (-rc) {
    case 0: return "ok";
    case EINVAL: return "EINVAL";
    case ENODEV: return "ENODEV";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case E2BIG: return "E2BIG";
    case EBADF: return "EBADF";
    case ENOTRECOVERABLE: return "ENOTRECOVERABLE";
    default: return "other";
    }
}

static void report(const char *call, const char *gpu, int rc, const char *detail)
{
    const char *msg = rc ? hdpflush_last_error() : detail;
    printf("%s %s: %d %s %s\n", call, gpu, rc, errno_name(rc), msg ? msg : "(no message)");
    if (rc != 0)
        failures++;
}

static int open_gpu(const char *name, const struct hdpflush_open_options *o, hdpflush_gpu **g)
{
    if (strncmp(name, "index:", 6) == 0)
        return hdpflush_open_index((uint32_t)strtoul(name + 6, NULL, 10), o, g);
    if (strncmp(name, "gpu_id:", 7) == 0)
        return hdpflush_open_gpu_id((uint32_t)strtoul(name + 7, NULL, 10), o, g);
    return hdpflush_open_pci(name, o, g);
}

static int gpus(int argc, char **argv, uint32_t flags)
{
    hdpflush_gpu *open_ones[16];
    size_t n = 0;
    struct hdpflush_open_options o = {.size = sizeof o, .flags = flags};
    for (int i = 0; i < argc && n < 16; i++) {
        hdpflush_gpu *g = NULL;
        int rc = open_gpu(argv[i], &o, &g);
        report("open", argv[i], rc, rc ? NULL : hdpflush_gpu_strategy(g));
        if (rc)
            continue;
        printf("reason %s: %s [backing: %s]\n", argv[i], hdpflush_gpu_reason(g),
               hdpflush_gpu_backing(g));
        report("flush", argv[i], hdpflush_gpu_flush(g, 0), "as opened");
        report("flush", argv[i], hdpflush_gpu_flush(g, HDPFLUSH_FLUSH_POSTED), "posted");
        report("flush", argv[i], hdpflush_gpu_flush(g, HDPFLUSH_FLUSH_COMPLETED), "completed");
        report("invalidate", argv[i], hdpflush_gpu_invalidate(g), "done");
        open_ones[n++] = g;
    }
    if (n > 0)
        report("flush-all", "-", hdpflush_flush_gpus(open_ones, n, 0), "done");
    for (size_t i = 0; i < n; i++)
        hdpflush_close(open_ones[i]);
    return failures ? 1 : 0;
}

static int process(void)
{
    report("flush", "process", hdpflush_flush(), hdpflush_strategy());
    report("invalidate", "process", hdpflush_invalidate(), hdpflush_strategy());
    const char *s = hdpflush_strategy(), *e = hdpflush_error();
    printf("strategy=%s error=%s\n", s ? s : "(null)", e ? e : "(null)");
    return failures ? 1 : 0;
}

static void check(const char *what, int ok)
{
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok)
        failures++;
}

/* A GPU no module serves, with the caller's own mappings: the remap page wins; the VRAM page
 * is used only when opted into. Ordinary memory stands in for the mappings, so the stores are
 * checked where they land. */
static int caller_mappings(void)
{
    static uint32_t remap[1024] __attribute__((aligned(4096)));
    static uint32_t vram[1024] __attribute__((aligned(4096)));
    const char *gpu = "0000:7f:1f.7";
    hdpflush_gpu *g = NULL;
    struct hdpflush_open_options o = {.size = sizeof o, .remap = remap};
    int rc = hdpflush_open_pci(gpu, &o, &g);
    report("open-remap", gpu, rc, rc ? NULL : hdpflush_gpu_strategy(g));
    if (rc == 0) {
        check("remap page chosen", strcmp(hdpflush_gpu_strategy(g), "mmio-remap") == 0);
        report("flush-remap", gpu, hdpflush_gpu_flush(g, 0), "completed");
        check("1 stored to HDP_MEM_FLUSH_CNTL", remap[0] == 1);
        hdpflush_close(g);
    }
    o.remap = NULL;
    o.dummy_page = vram;
    o.dummy_page_len = sizeof vram;
    rc = hdpflush_open_pci(gpu, &o, &g);
    const char *msg = hdpflush_last_error();
    check("a VRAM page without the opt-in is not used: ENODEV",
          rc == -ENODEV && msg && strstr(msg, "not opted into"));
    o.flags = HDPFLUSH_OPEN_ALLOW_DUMMY_PAGE;
    rc = hdpflush_open_pci(gpu, &o, &g);
    report("open-dummy", gpu, rc, rc ? NULL : hdpflush_gpu_strategy(g));
    if (rc == 0) {
        check("dummy page chosen", strcmp(hdpflush_gpu_strategy(g), "dummy-page") == 0);
        report("flush-dummy", gpu, hdpflush_gpu_flush(g, 0), "1");
        report("flush-dummy", gpu, hdpflush_gpu_flush(g, 0), "2");
        check("two stores half a page apart", vram[0] == 1 && vram[512] == 1);
        check("no invalidate register: EOPNOTSUPP", hdpflush_gpu_invalidate(g) == -EOPNOTSUPP);
        hdpflush_close(g);
    }
    return failures ? 1 : 0;
}

/* Each check: what the call returned must be `want`, and a message must say why. */
static void expect(const char *what, int rc, int want)
{
    const char *msg = hdpflush_last_error();
    int ok = rc == want && rc != 0 && msg != NULL;
    printf("%s %s: %d %s %s\n", ok ? "ok  " : "FAIL", what, rc, errno_name(rc),
           msg ? msg : "(no message)");
    if (!ok)
        failures++;
}

static int bad_input(void)
{
    hdpflush_gpu *g = (hdpflush_gpu *)0x1;
    struct hdpflush_open_options o = {.size = sizeof o};
    uint32_t word;
    expect("NULL out pointer", hdpflush_open_pci("0000:03:00.0", NULL, NULL), -EINVAL);
    expect("NULL PCI address", hdpflush_open_pci(NULL, NULL, &g), -EINVAL);
    if (g != NULL) {
        printf("FAIL *out not cleared on failure\n");
        failures++;
    }
    expect("malformed PCI address", hdpflush_open_pci("03:00", NULL, &g), -EINVAL);
    struct hdpflush_open_options small = {.size = 8};
    expect("options.size too small", hdpflush_open_pci("0000:03:00.0", &small, &g), -EINVAL);
    o.flags = 1u << 30;
    expect("unknown open flag", hdpflush_open_pci("0000:03:00.0", &o, &g), -EINVAL);
    o.flags = HDPFLUSH_OPEN_SQPOLL;
    expect("SQPOLL without BATCHED", hdpflush_open_pci("0000:03:00.0", &o, &g), -EINVAL);
    o.flags = 0;
    o.reserved = 1;
    expect("reserved not 0", hdpflush_open_pci("0000:03:00.0", &o, &g), -EINVAL);
    o.reserved = 0;
    o.remap = (volatile uint32_t *)((char *)&word + 1);
    expect("misaligned remap pointer", hdpflush_open_pci("0000:03:00.0", &o, &g), -EINVAL);
    o.remap = NULL;
    o.dummy_page = &word;
    o.dummy_page_len = sizeof word;
    expect("dummy page under 4096 bytes", hdpflush_open_pci("0000:03:00.0", &o, &g), -EINVAL);
    expect("NULL handle flush", hdpflush_gpu_flush(NULL, 0), -EINVAL);
    expect("NULL handle invalidate", hdpflush_gpu_invalidate(NULL), -EINVAL);
    expect("NULL array", hdpflush_flush_gpus(NULL, 2, 0), -EINVAL);
    hdpflush_gpu *none[1] = {NULL};
    expect("NULL handle in array", hdpflush_flush_gpus(none, 1, 0), -EINVAL);
    const char *msg = hdpflush_last_error();
    check("the NULL entry is named", msg && strstr(msg, "entry 0 of the GPU array is NULL"));
    if (hdpflush_gpu_strategy(NULL) != NULL || hdpflush_gpu_reason(NULL) != NULL) {
        printf("FAIL NULL handle strategy/reason not NULL\n");
        failures++;
    }
    hdpflush_close(NULL);
    /* A flusher that exists, for the flag checks: the simulator when the environment names it. */
    if (getenv("HDPFLUSH_STRATEGY") && strcmp(getenv("HDPFLUSH_STRATEGY"), "sim") == 0) {
        int rc = hdpflush_open_index(0, NULL, &g);
        report("open", "sim", rc, hdpflush_gpu_strategy(g));
        if (rc == 0) {
            expect("both flush flags", hdpflush_gpu_flush(g, 3), -EINVAL);
            expect("unknown flush flag", hdpflush_gpu_flush(g, 4), -EINVAL);
            hdpflush_close(g);
        }
    }
    return failures ? 1 : 0;
}

/* A caller built against another version of the header: the struct is `size` bytes. */
struct grown {
    struct hdpflush_open_options o;
    uint64_t future[2]; /* fields a newer header would have */
};

static int abi(void)
{
    hdpflush_gpu *g = NULL;
    check("hdpflush_version() is this header's", hdpflush_version() == HDPFLUSH_API_VERSION);

    /* An older caller (the first release's struct) names no strategy: the environment's. */
    struct hdpflush_open_options old = {.size = HDPFLUSH_OPEN_OPTIONS_SIZE_VER1,
                                        .strategy = "ioctl" /* past its size: never read */};
    int rc = hdpflush_open_index(0, &old, &g);
    check("an older caller's struct is read by its size",
          rc == 0 && strcmp(hdpflush_gpu_strategy(g), "sim") == 0);
    if (rc == 0)
        hdpflush_close(g);

    /* A newer caller: zero new fields are accepted, a set one is refused with E2BIG. */
    struct grown newer = {.o = {.size = sizeof newer, .strategy = "sim"}};
    rc = hdpflush_open_index(0, &newer.o, &g);
    check("a newer caller with zero new fields is accepted", rc == 0);
    if (rc == 0)
        hdpflush_close(g);
    newer.future[1] = 7;
    expect("a newer caller's unknown field set", hdpflush_open_index(0, &newer.o, &g), -E2BIG);

    /* The caller's strategy wins over HDPFLUSH_STRATEGY (sim, set by the test). */
    struct hdpflush_open_options o = {.size = sizeof o, .strategy = "ioctl"};
    rc = hdpflush_open_pci("0000:7f:1f.7", &o, &g);
    const char *msg = hdpflush_last_error();
    check("the caller's strategy beats the environment's",
          rc == -ENODEV && msg && strstr(msg, "strategy `ioctl`") &&
              strstr(msg, "named by the caller"));
    o.strategy = "warp";
    expect("an unknown strategy", hdpflush_open_pci("0000:7f:1f.7", &o, &g), -EINVAL);

    /* Hardware required: the simulator is refused, whoever named it. */
    o.strategy = NULL;
    o.flags = HDPFLUSH_OPEN_REQUIRE_HARDWARE;
    expect("the environment's simulator when hardware is required",
           hdpflush_open_index(0, &o, &g), -ENODEV);
    o.strategy = "sim";
    expect("the caller's simulator when hardware is required",
           hdpflush_open_index(0, &o, &g), -ENODEV);

    /* What backs a handle; a handle used and closed after close. */
    rc = hdpflush_open_index(0, NULL, &g);
    check("the simulator says so", rc == 0 && strcmp(hdpflush_gpu_backing(g), "simulator") == 0);
    if (rc == 0) {
        hdpflush_close(g);
        expect("flush after close", hdpflush_gpu_flush(g, 0), -EBADF);
        expect("invalidate after close", hdpflush_gpu_invalidate(g), -EBADF);
        check("strategy after close is NULL", hdpflush_gpu_strategy(g) == NULL);
        hdpflush_close(g);
        msg = hdpflush_last_error();
        check("a second close is ignored and said", msg && strstr(msg, "already closed"));
    }
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    /* Unbuffered: the guest's console shows each line as it happens. */
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 2 && strcmp(argv[1], "--process") == 0)
        return process();
    if (argc == 2 && strcmp(argv[1], "--bad-input") == 0)
        return bad_input();
    if (argc == 2 && strcmp(argv[1], "--abi") == 0)
        return abi();
    if (argc == 2 && strcmp(argv[1], "--caller-mappings") == 0)
        return caller_mappings();
    if (argc == 2 && strcmp(argv[1], "--layout") == 0) {
        printf("size %zu remap %zu dummy_page %zu dummy_page_len %zu sqpoll_idle_ms %zu "
               "reserved %zu strategy %zu ver1 %zu\n",
               sizeof(struct hdpflush_open_options),
               offsetof(struct hdpflush_open_options, remap),
               offsetof(struct hdpflush_open_options, dummy_page),
               offsetof(struct hdpflush_open_options, dummy_page_len),
               offsetof(struct hdpflush_open_options, sqpoll_idle_ms),
               offsetof(struct hdpflush_open_options, reserved),
               offsetof(struct hdpflush_open_options, strategy),
               (size_t)HDPFLUSH_OPEN_OPTIONS_SIZE_VER1);
        return 0;
    }
    uint32_t flags = 0;
    int first = 1;
    for (; first < argc && strncmp(argv[first], "--", 2) == 0; first++) {
        if (strcmp(argv[first], "--posted") == 0)
            flags |= HDPFLUSH_OPEN_POSTED;
        else if (strcmp(argv[first], "--batched") == 0)
            flags |= HDPFLUSH_OPEN_BATCHED;
        else if (strcmp(argv[first], "--require-hardware") == 0)
            flags |= HDPFLUSH_OPEN_REQUIRE_HARDWARE;
        else {
            fprintf(stderr, "flush_gpus: unknown option %s\n", argv[first]);
            return 2;
        }
    }
    if (first == argc) {
        fprintf(stderr, "usage: flush_gpus [--posted] [--batched] [--require-hardware] GPU... | "
                        "--process | "
                        "--caller-mappings | --bad-input | --abi | --layout\n");
        return 2;
    }
    return gpus(argc - first, argv + first, flags);
}
