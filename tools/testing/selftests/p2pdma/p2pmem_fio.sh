#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# fio through p2pmem: O_DIRECT writes from the CMB of one NVMe to a namespace and
# verified reads back into the CMB, on the same device and across the PCIe
# switch, with fio's --iomem=mmapshared:<p2pmem/allocate>. TAP output.

serial_a=${P2PDMA_SERIAL_A:-p2p-a}
serial_b=${P2PDMA_SERIAL_B:-p2p-b}

nvme_by_serial() {
	for c in /sys/class/nvme/nvme*; do
		[ "$(tr -d ' ' < "$c/serial" 2>/dev/null)" = "$1" ] || continue
		echo "$(basename "$c") $(basename "$(readlink -f "$c/device")")"
		return 0
	done
	return 1
}

echo "TAP version 13"
echo "1..3"
if ! command -v fio >/dev/null; then
	for i in 1 2 3; do echo "not ok $i fio # fio is not installed"; done
	exit 1
fi

n=0
rc=0
run() { # name buffer-serial io-serial
	n=$((n + 1))
	set -- "$1" "$(nvme_by_serial "$2")" "$(nvme_by_serial "$3")"
	bdf=${2#* }
	ctrl=${3% *}
	out=$(fio --name="$1" --filename="/dev/${ctrl}n1" --direct=1 --ioengine=psync \
		--rw=write --bs=128k --size=8M --offset=256M --verify=crc32c --do_verify=1 \
		--iomem="mmapshared:/sys/bus/pci/devices/$bdf/p2pmem/allocate" \
		--output-format=terse 2>&1)
	st=$?
	echo "$out" | sed 's/^/# /'
	if [ $st -eq 0 ]; then
		echo "ok $n fio.$1"
	else
		echo "not ok $n fio.$1"
		rc=1
	fi
}

run same_dev "$serial_a" "$serial_a"
run a_to_b "$serial_a" "$serial_b"
run b_to_a "$serial_b" "$serial_a"
exit $rc
