/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C interfaces hdp_flush calls that the kernel crate does not expose on every kernel it
 * supports (6.12 has no misc-device, PCI or io_uring bindings; 7.x none for io_uring
 * commands). Kbuild runs bindgen over this file with the kernel's own C flags; bindings.allow
 * says which items are kept.
 */
#include <linux/capability.h>
#include <linux/delay.h>
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/io.h>
#include <linux/io_uring/cmd.h>
#include <linux/ktime.h>
#include <linux/miscdevice.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/notifier.h>
#include <linux/pci.h>
#include <linux/pm_runtime.h>
