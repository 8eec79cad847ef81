#!/bin/busybox sh
# /init of the test initramfs (packed by `cargo xtask vm-test`): load the module, run the
# guest tests, power off. The guest tests' last line ("guest: N passed, M failed") is the
# verdict xtask reads; any path that skips them prints a failing line itself.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
echo "guest: booted $(uname -r) $(uname -m)"
if insmod /hdp_flush.ko; then
    dmesg | grep hdp_flush
    /hdpflush-guest-tests || { echo "guest: kernel log:"; dmesg | tail -40; }
else
    echo "guest: insmod /hdp_flush.ko failed"
    dmesg | tail -40
    echo "guest: 0 passed, 1 failed"
fi
poweroff -f
