#!/bin/busybox sh
# /init of the test initramfs (packed by `cargo xtask vm-test` and `vm-bench`): mount, run the
# guest tests (they load hdp_flush.ko with their parameters) or the evidence benches, power
# off. Their last line ("guest: N passed, M failed") is the verdict xtask reads; on a crash,
# the kernel log follows.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
echo "guest: booted $(uname -r) $(uname -m)"
# A distribution kernel (`cargo xtask deb73 --boot`) has as modules what the test kernels build
# in: the initramfs then carries them, loaded here.
for ko in /lib/modules/*.ko; do [ -e "$ko" ] && insmod "$ko"; done
# `cargo xtask vm-bench` boots with hdpflush_evidence on the command line: measure, don't test.
mode=
grep -qw hdpflush_evidence /proc/cmdline && mode=evidence
# `cargo xtask upstream --boot` boots its patched kernel with hdpflush_kfd: the KFD tests.
tests=/hdpflush-guest-tests
grep -qw hdpflush_kfd /proc/cmdline && tests=/hdpflush-kfd-tests
$tests $mode || { echo "guest: kernel log:"; dmesg | tail -40; }
poweroff -f
