#!/bin/busybox sh
# /init of the test initramfs (packed by `cargo xtask vm-test`): mount, run the guest tests
# (they load hdp_flush.ko with their parameters), power off. The guest tests' last line
# ("guest: N passed, M failed") is the verdict xtask reads; on a crash, the kernel log follows.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
echo "guest: booted $(uname -r) $(uname -m)"
/hdpflush-guest-tests || { echo "guest: kernel log:"; dmesg | tail -40; }
poweroff -f
