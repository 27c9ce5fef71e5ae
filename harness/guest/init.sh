#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0
# Guest init of the p2pdma-rs harness: mount the host's root read-only over 9p,
# chroot into it and run the boot's /tmp/work/run.sh, then power off.
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
opts=trans=virtio,version=9p2000.L,msize=1048576,cache=loose
if ! $bb mount -t 9p -o ro,$opts hostroot /host; then
	echo "harness: cannot mount the host root over 9p"
	$bb poweroff -f
fi
$bb mount -t proc proc /host/proc
$bb mount -t sysfs sysfs /host/sys
$bb mount -t devtmpfs devtmpfs /host/dev
$bb mount -t debugfs debugfs /host/sys/kernel/debug
$bb mount -t tmpfs tmpfs /host/tmp
$bb mount -t tmpfs tmpfs /host/run
$bb mkdir -p /host/tmp/work
$bb mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576 work /host/tmp/work
echo "harness: guest up: $($bb uname -r), $($bb nproc) CPUs, cmdline: $($bb cat /proc/cmdline)"
HOME=/tmp PATH=/usr/sbin:/usr/bin:/sbin:/bin $bb chroot /host /bin/sh /tmp/work/run.sh
echo "harness: run.sh exited with $?"
$bb sync
$bb poweroff -f
