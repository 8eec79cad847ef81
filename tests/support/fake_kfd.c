/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * A fixture KFD for tests, loaded with LD_PRELOAD: opening /dev/kfd opens /dev/null instead,
 * and on that file AMDKFD_IOC_GET_VERSION answers FAKE_KFD_VERSION (e.g. "1.19"). Every other
 * KFD-type ioctl ('K') is written to FAKE_KFD_LOG. nr 0x27 is AMDKFD_IOC_CREATE_PROCESS
 * upstream (KFD 1.19) and the proposed HDP flush on a kernel carrying hdpflush's patch (which
 * reports 1.18): at 1.18 a _IOW of 8 bytes is answered as that flush; anything else with nr
 * 0x27 aborts the process, so a test cannot miss it. Other calls go to libc.
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

static int kfd_fd = -1;

static void note(const char *what, unsigned long req)
{
    const char *path = getenv("FAKE_KFD_LOG");
    FILE *f = path ? fopen(path, "a") : NULL;
    if (f) {
        fprintf(f, "%s nr=0x%02lx size=%lu dir=%lu\n", what, _IOC_NR(req), _IOC_SIZE(req),
                _IOC_DIR(req));
        fclose(f);
    }
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
            const char *want = getenv("FAKE_KFD_VERSION");
            unsigned major = 1, minor = 19;
            if (want)
                sscanf(want, "%u.%u", &major, &minor);
            v->major = major;
            v->minor = minor;
            note("GET_VERSION", req);
            return 0;
        }
        const char *version = getenv("FAKE_KFD_VERSION");
        if (_IOC_NR(req) == 0x27 && version && strcmp(version, "1.18") == 0 &&
            _IOC_DIR(req) == _IOC_WRITE && _IOC_SIZE(req) == 8) {
            note("HDP_FLUSH", req);
            return 0;
        }
        note("KFD ioctl", req);
        if (_IOC_NR(req) == 0x27)
            abort();
        errno = ENOTTY;
        return -1;
    }
    int (*real)(int, unsigned long, ...) = dlsym(RTLD_NEXT, "ioctl");
    return real(fd, req, arg);
}
