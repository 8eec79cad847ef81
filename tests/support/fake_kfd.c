/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * A fixture KFD for tests, loaded with LD_PRELOAD: opening /dev/kfd opens /dev/null instead,
 * and on that file AMDKFD_IOC_GET_VERSION answers FAKE_KFD_VERSION ("1.23" if unset: Debian's
 * linux-source-7.3 7.3.4-1~bpo13+1, read 2026-12-02). Every KFD-type ioctl ('K') is appended
 * to FAKE_KFD_LOG, one line each.
 *
 * The proposed AMDKFD_IOC_HDP_FLUSH (docs/upstream/, v2) is nr 0x29, _IOWR of 12 bytes
 * (gpu_id, flags, status), on a kernel that reports 1.24. The fake serves it only when it
 * reports 1.24 and only with that encoding: any other call with nr 0x29 aborts the process,
 * since a real kernel would route it to whatever owns 0x29 there (or answer ENOTTY), and a test
 * must not miss it. nr 0x27 (AMDKFD_IOC_CREATE_PROCESS upstream since KFD 1.19, v1's number)
 * always aborts. Other KFD ioctls get ENOTTY; other calls go to libc.
 *
 * How the served flush answers, FAKE_KFD_FLUSH:
 *   unset or "ok"   0, status 0
 *   "not-needed"    0, status KFD_IOC_HDP_FLUSH_STATUS_NOT_NEEDED
 *   an errno        -1 with that errno: a name (EIO, ENXIO, ENODEV, EOPNOTSUPP, EINVAL)
 *                   or a number (not EINTR: libflush retries that, for ever)
 * Nonzero flags get EINVAL, as the patch's handler answers.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct kfd_version { uint32_t major, minor; };
struct kfd_hdp_flush { uint32_t gpu_id, flags, status; };

#define HDP_FLUSH_NR 0x29
#define HDP_FLUSH_VERSION "1.24"
#define CREATE_PROCESS_NR 0x27
#define STATUS_NOT_NEEDED (1u << 0)

static int kfd_fd = -1;

static const char *dir_name(unsigned long req)
{
    switch (_IOC_DIR(req)) {
    case _IOC_NONE: return "none";
    case _IOC_READ: return "r";
    case _IOC_WRITE: return "w";
    case _IOC_READ | _IOC_WRITE: return "rw";
    default: return "?";
    }
}

/* One line: what, the encoding, and `detail` (may be empty). */
static void note(const char *what, unsigned long req, const char *detail)
{
    const char *path = getenv("FAKE_KFD_LOG");
    FILE *f = path ? fopen(path, "a") : NULL;
    if (f) {
        fprintf(f, "%s nr=0x%02lx size=%lu dir=%s%s\n", what, (unsigned long)_IOC_NR(req),
                (unsigned long)_IOC_SIZE(req), dir_name(req), detail);
        fclose(f);
    }
}

static const char *version(void)
{
    const char *v = getenv("FAKE_KFD_VERSION");
    return v ? v : "1.23";
}

/* FAKE_KFD_FLUSH as an errno; 0 for success (unset, "ok", "not-needed"). */
static int flush_errno(const char *answer)
{
    static const struct { const char *name; int value; } names[] = {
        {"EIO", EIO},       {"ENXIO", ENXIO},   {"ENODEV", ENODEV},
        {"EOPNOTSUPP", EOPNOTSUPP}, {"EINVAL", EINVAL},
    };
    if (!answer || strcmp(answer, "ok") == 0 || strcmp(answer, "not-needed") == 0)
        return 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(answer, names[i].name) == 0)
            return names[i].value;
    int n = atoi(answer);
    if (n <= 0 || n == EINTR) {
        fprintf(stderr, "fake_kfd: FAKE_KFD_FLUSH=%s is not ok, not-needed or an errno\n",
                answer);
        abort();
    }
    return n;
}

/* The patched kernel's AMDKFD_IOC_HDP_FLUSH, as FAKE_KFD_FLUSH says it answers. */
static int hdp_flush(unsigned long req, struct kfd_hdp_flush *args)
{
    const char *answer = getenv("FAKE_KFD_FLUSH");
    char detail[128];
    int err = args->flags ? EINVAL : flush_errno(answer);
    if (!err) {
        args->status = answer && strcmp(answer, "not-needed") == 0 ? STATUS_NOT_NEEDED : 0;
        snprintf(detail, sizeof detail, " gpu_id=%u flags=%u -> status=%u", args->gpu_id,
                 args->flags, args->status);
    } else {
        snprintf(detail, sizeof detail, " gpu_id=%u flags=%u -> errno=%d", args->gpu_id,
                 args->flags, err);
    }
    note("HDP_FLUSH", req, detail);
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

static int redirect(const char *path, int flags, mode_t mode,
                    int (*real)(const char *, int, ...))
{
    if (strcmp(path, "/dev/kfd") != 0)
        return real(path, flags, mode);
    int fd = real("/dev/null", flags, mode);
    if (fd >= 0)
        kfd_fd = fd;
    return fd;
}

#define REAL(name) ((int (*)(const char *, int, ...))dlsym(RTLD_NEXT, name))
#define MODE_ARG(flags)                                                                        \
    mode_t mode = 0;                                                                           \
    if (flags & (O_CREAT | O_TMPFILE)) {                                                       \
        va_list ap;                                                                            \
        va_start(ap, flags);                                                                   \
        mode = va_arg(ap, mode_t);                                                             \
        va_end(ap);                                                                            \
    }

int open(const char *path, int flags, ...)
{
    MODE_ARG(flags);
    return redirect(path, flags, mode, REAL("open"));
}

int open64(const char *path, int flags, ...)
{
    MODE_ARG(flags);
    return redirect(path, flags, mode, REAL("open64"));
}

int openat(int dir, const char *path, int flags, ...)
{
    MODE_ARG(flags);
    int (*real)(int, const char *, int, ...) = dlsym(RTLD_NEXT, "openat");
    if (strcmp(path, "/dev/kfd") == 0)
        return open64(path, flags, mode);
    return real(dir, path, flags, mode);
}

int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (_IOC_TYPE(req) == 'K') {
        if (fd == kfd_fd && _IOC_NR(req) == 0x01 && _IOC_SIZE(req) == sizeof(struct kfd_version)) {
            struct kfd_version *v = arg;
            unsigned major = 1, minor = 23;
            sscanf(version(), "%u.%u", &major, &minor);
            v->major = major;
            v->minor = minor;
            note("GET_VERSION", req, "");
            return 0;
        }
        if (fd == kfd_fd && _IOC_NR(req) == HDP_FLUSH_NR &&
            strcmp(version(), HDP_FLUSH_VERSION) == 0 &&
            _IOC_DIR(req) == (_IOC_READ | _IOC_WRITE) &&
            _IOC_SIZE(req) == sizeof(struct kfd_hdp_flush))
            return hdp_flush(req, arg);
        note("KFD ioctl", req, "");
        if (_IOC_NR(req) == CREATE_PROCESS_NR || _IOC_NR(req) == HDP_FLUSH_NR)
            abort();
        errno = ENOTTY;
        return -1;
    }
    int (*real)(int, unsigned long, ...) = dlsym(RTLD_NEXT, "ioctl");
    return real(fd, req, arg);
}
