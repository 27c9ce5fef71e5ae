#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# fio through p2pmem: O_DIRECT writes from the p2pmem of the provider under test to
# an NVMe namespace and verified reads back into it, with fio's
# --iomem=mmapshared:<p2pmem/allocate>, for NVMe A's namespace (the provider's own
# when the provider is NVMe A's CMB) and NVMe B's (across the PCIe switch).
# The provider is P2PDMA_PROVIDER (a BDF), or NVMe A. TAP output.

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
echo "1..2"
if ! command -v fio >/dev/null; then
	echo "ok 1 fio.provider_a # SKIP fio is not installed"
	echo "ok 2 fio.provider_b # SKIP fio is not installed"
	exit 4
fi

provider=${P2PDMA_PROVIDER:-}
if [ -z "$provider" ]; then
	set -- $(nvme_by_serial "$serial_a")
	provider=${2:-}
fi
if [ ! -e "/sys/bus/pci/devices/$provider/p2pmem/allocate" ]; then
	echo "ok 1 fio.provider_a # SKIP no p2pmem provider"
	echo "ok 2 fio.provider_b # SKIP no p2pmem provider"
	exit 4
fi
echo "# provider: $provider"

n=0
rc=0
run() { # name io-serial
	n=$((n + 1))
	set -- "$1" "$(nvme_by_serial "$2")"
	ctrl=${2% *}
	out=$(fio --name="$1" --filename="/dev/${ctrl}n1" --direct=1 --ioengine=psync \
		--rw=write --bs=128k --size=8M --offset=256M --verify=crc32c --do_verify=1 \
		--iomem="mmapshared:/sys/bus/pci/devices/$provider/p2pmem/allocate" \
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

run provider_a "$serial_a"
run provider_b "$serial_b"
exit $rc
