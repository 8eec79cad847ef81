/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * A 32-bit program (gcc -m32 -static) that drives /dev/hdp_flush/all through the kernel's compat
 * ioctl path (the module's compat_ioctl, compat_ptr_ioctl): every command with its struct as a
 * 32-bit process lays it out, bad input included. Built from kmod/include/hdp_flush.h alone, as
 * a C integrator would. Prints one line per check; exits 0 only if every check passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "hdp_flush.h"

_Static_assert(sizeof(void *) == 4, "compat32 must be built for a 32-bit ABI (-m32)");

static int failed;

static void check(int ok, const char *what)
{
	printf("compat32: %s %s\n", ok ? "ok    " : "FAILED", what);
	if (!ok)
		failed = 1;
}

/* ioctl() returning 0 or the errno. */
static int call(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) == 0 ? 0 : errno;
}

int main(void)
{
	int fd = open(HDP_FLUSH_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("compat32: FAILED open %s: %s\n", HDP_FLUSH_DEVICE_PATH, strerror(errno));
		return 1;
	}
	struct hdp_flush_version v;
	memset(&v, 0, sizeof(v));
	check(call(fd, HDP_FLUSH_IOC_VERSION, &v) == 0 && v.api_major == HDP_FLUSH_API_MAJOR &&
		      v.api_minor == HDP_FLUSH_API_MINOR && v.num_devices > 0,
	      "VERSION: this header's uAPI, devices served");
	check(call(fd, HDP_FLUSH_IOC_NOP, NULL) == 0, "NOP");

	struct hdp_flush_device_info info;
	memset(&info, 0, sizeof(info));
	info.index = 0;
	check(call(fd, HDP_FLUSH_IOC_DEVICE_INFO, &info) == 0 && info.index == 0 && info.name[0],
	      "DEVICE_INFO 0 names the device");

	struct hdp_flush_stats before, after;
	memset(&before, 0, sizeof(before));
	memset(&after, 0, sizeof(after));
	check(call(fd, HDP_FLUSH_IOC_STATS, &before) == 0, "STATS");

	struct hdp_flush_request req;
	memset(&req, 0, sizeof(req));
	req.device = 0;
	req.flags = HDP_FLUSH_F_SYNC;
	check(call(fd, HDP_FLUSH_IOC_FLUSH, &req) == 0, "FLUSH SYNC");
	req.flags = 0;
	check(call(fd, HDP_FLUSH_IOC_FLUSH, &req) == 0, "FLUSH posted");
	check(call(fd, HDP_FLUSH_IOC_STATS, &after) == 0 &&
		      after.flush_requests == before.flush_requests + 2,
	      "STATS counts both flushes");

	/* Bad input: the same answers as from a 64-bit caller. */
	req.flags = 1u << 7;
	check(call(fd, HDP_FLUSH_IOC_FLUSH, &req) == EINVAL, "FLUSH with an unknown flag: EINVAL");
	req.flags = 0;
	req.device = v.num_devices;
	check(call(fd, HDP_FLUSH_IOC_FLUSH, &req) == ENODEV, "FLUSH of no device: ENODEV");
	check(call(fd, HDP_FLUSH_IOC_FLUSH, (void *)(uintptr_t)16) == EFAULT,
	      "FLUSH from an unmapped address: EFAULT");
	check(call(fd, HDP_FLUSH_IOC_VERSION, (void *)(uintptr_t)0xfffff000u) == EFAULT,
	      "VERSION to an address past user space: EFAULT");
	check(call(fd, _IO(HDP_FLUSH_IOC_MAGIC, 0xAF), NULL) == ENOTTY,
	      "an unknown command: ENOTTY");
	close(fd);
	printf("compat32: %s\n", failed ? "FAILED" : "all passed");
	return failed;
}
