# SPDX-License-Identifier: GPL-2.0
# Shell library of the guest's run.sh (runs chrooted in the host's root, as root).
# run.sh = this file + a few lines the harness writes for the boot.
set -u
W=/tmp/work
R=$W/results
mkdir -p "$R"
cd "$W" || exit 1

log() { echo "harness: $*"; }

CANARY_MARKER="harness: canary: a deliberate WARN through LKDTM"

# nvme_by_serial SERIAL: prints "CTRL BDF" of the NVMe controller with that serial.
nvme_by_serial() {
	for c in /sys/class/nvme/nvme*; do
		[ -e "$c/serial" ] || continue
		if [ "$(tr -d ' ' < "$c/serial")" = "$1" ]; then
			echo "$(basename "$c") $(basename "$(readlink -f "$c/device")")"
			return 0
		fi
	done
	return 1
}

# load_p2pmem_bar: load the BAR provider module the harness put in $W/modules.
load_p2pmem_bar() {
	[ -e "$W/modules/p2pmem_bar.ko" ] || return 0
	# busybox: Debian 12 hosts need not have kmod.
	busybox insmod "$W/modules/p2pmem_bar.ko" || log "insmod p2pmem_bar.ko failed"
}

# wait_until MESSAGE COMMAND...: run COMMAND every 0.1 s until it succeeds, for at
# most 30 s; then log MESSAGE and fail.
wait_until() {
	msg=$1
	shift
	i=0
	until "$@"; do
		i=$((i + 1))
		if [ $i -gt 300 ]; then
			log "$msg"
			return 1
		fi
		sleep 0.1
	done
}

# nvme_ready SERIAL: the NVMe has its namespace and has registered its CMB as p2pmem.
nvme_ready() {
	set -- $(nvme_by_serial "$1") ""
	[ -n "$1" ] && [ -e "/sys/bus/pci/devices/$2/p2pmem/available" ] && [ -b "/dev/${1}n1" ]
}

have_bar_provider() {
	[ -n "$(bar_providers)" ]
}

# wait_p2pmem: wait (bounded) until every NVMe has registered its CMB as p2pmem,
# and the BAR provider (if its module is here) its BAR.
wait_p2pmem() {
	load_p2pmem_bar
	for s in p2p-a p2p-b p2p-lone; do
		wait_until "NVMe $s did not come up with p2pmem in 30 s" nvme_ready $s || return 1
	done
	[ -e "$W/modules/p2pmem_bar.ko" ] || return 0
	wait_until "no device bound to p2pmem_bar came up with p2pmem in 30 s" have_bar_provider
}

# bar_providers: BDFs of the devices bound to p2pmem_bar that have p2pmem.
bar_providers() {
	for d in /sys/bus/pci/drivers/p2pmem_bar/*:*; do
		[ -e "$d/p2pmem/allocate" ] && basename "$d"
	done
}

# providers: "LABEL BDF" of each p2pmem provider under test, found by what it is:
# NVMe A's CMB ("nvme") and every BAR published by p2pmem_bar ("p2pmem_bar"), one
# of each kind. NVMe B and the lone NVMe are the peers of the tests.
providers() {
	set -- $(nvme_by_serial p2p-a)
	echo "nvme $2"
	for b in $(bar_providers); do
		echo "p2pmem_bar $b"
		break
	done
}

# args PROGRAM: the options a boot gives PROGRAM (kselftest -t filters of a mutant run).
args() {
	cat "$W/args/$1" 2>/dev/null
}

run_tests() {
	log "p2pdma implementation requested: $IMPL"
	wait_p2pmem
	providers > "$R/providers.txt"
	export P2PMEM_BAR_KO="$W/modules/p2pmem_bar.ko"
	while read -r label bdf; do
		log "provider $label: $bdf"
		# p2pmem_fault_test's fail-nth sweep walks the same p2pdma code on every
		# provider: with a p2pmem_bar provider in the boot, the NVMe one (seconds
		# per attempt under TCG) gets the fail points only, unless FULL_SWEEP=1.
		sweep=1
		if [ "$label" = nvme ] && [ "${FULL_SWEEP:-0}" != 1 ] &&
			grep -q '^p2pmem_bar ' "$R/providers.txt"; then
			sweep=0
		fi
		for t in "$W"/bin/*; do
			n=$(basename "$t")
			case "$n" in *bench* | p2pmem_bar_test) continue ;; esac
			log "running $n on provider $label"
			# shellcheck disable=SC2046 # args/<program>: kselftest options, split
			{ P2PDMA_PROVIDER=$bdf P2PDMA_FAULT_SWEEP=$sweep "$t" $(args "$n"); echo $? > "$R/$n@$label.rc"; } 2>&1 | tee "$R/$n@$label.tap"
		done
	done < "$R/providers.txt"
	if [ -x "$W/bin/p2pmem_bar_test" ]; then
		log "running p2pmem_bar_test"
		# shellcheck disable=SC2046
		{ "$W/bin/p2pmem_bar_test" $(args p2pmem_bar_test); echo $? > "$R/p2pmem_bar_test.rc"; } 2>&1 | tee "$R/p2pmem_bar_test.tap"
	fi
}

devices() {
	for s in p2p-a p2p-b p2p-lone; do
		set -- $(nvme_by_serial $s)
		d=/sys/bus/pci/devices/$2/p2pmem
		printf '%-10s %-8s %s  p2pmem size %10s  available %10s\n' "$s" "$1" "$2" \
			"$(cat $d/size)" "$(cat $d/available)"
	done
	for b in $(bar_providers); do
		d=/sys/bus/pci/devices/$b/p2pmem
		printf '%-10s %-8s %s  p2pmem size %10s  available %10s\n' "ram-bar" "ivshmem" "$b" \
			"$(cat $d/size)" "$(cat $d/available)"
	done
}

# fio_pair LABEL BUFFER IO_SERIAL IOMEM: a verified write then a read. BUFFER is the
# BDF of a p2pmem provider (used when IOMEM is p2pmem).
fio_pair() {
	set -- "$1" "$2" "$(nvme_by_serial $3)" "$4"
	ctrl_io=${3% *}
	mem=$4
	[ "$mem" = p2pmem ] && mem="mmapshared:/sys/bus/pci/devices/$2/p2pmem/allocate"
	common="--name=$1 --filename=/dev/${ctrl_io}n1 --direct=1 --ioengine=psync --bs=128k --size=32M --iomem=$mem --output-format=json"
	log "fio $1: --iomem=$mem --filename=/dev/${ctrl_io}n1"
	fio $common --rw=write --verify=crc32c --do_verify=1 --output="$R/fio-$1-write.json"
	echo $? > "$R/fio-$1-write.rc"
	fio $common --rw=read --output="$R/fio-$1-read.json"
	echo $? > "$R/fio-$1-read.rc"
}

run_demo() {
	log "p2pdma implementation requested: $IMPL"
	wait_p2pmem
	devices | tee "$R/devices.txt"
	set -- "$(nvme_by_serial p2p-a)" "$(nvme_by_serial p2p-b)"
	a=${1#* } b=${2#* }
	fio_pair 1_CMB_of_p2p-a_to_from_nvme_p2p-b "$a" p2p-b p2pmem
	fio_pair 2_system_RAM_to_from_nvme_p2p-b "$a" p2p-b malloc
	fio_pair 3_CMB_of_p2p-b_to_from_nvme_p2p-a "$b" p2p-a p2pmem
	fio_pair 4_system_RAM_to_from_nvme_p2p-a "$b" p2p-a malloc
	for bar in $(bar_providers); do
		fio_pair 5_RAM_BAR_p2pmem_to_from_nvme_p2p-a "$bar" p2p-a p2pmem
		fio_pair 6_RAM_BAR_p2pmem_to_from_nvme_p2p-b "$bar" p2p-b p2pmem
		break
	done
}

# profile LABEL FIGURE: where the time of benchmark FIGURE goes on provider LABEL,
# as a flat profile (self time per function, whole system) sampled on the CPU clock
# (TCG has no PMU), the same samples by caller (time spent in each function and
# what it calls), and the call chains of each function above 0.5% (`-graph`). The
# benchmark turns sampling on (perf's control FIFOs) only
# while it measures: for 6, only while the processes holding p2pmem VMAs exit; for 7,
# only mmap and the in-order first touches (100 more rounds of them, for the samples).
profile() {
	log "perf profile of benchmark $2 on provider $1"
	rm -f /tmp/perf.ctl /tmp/perf.ack
	mkfifo /tmp/perf.ctl /tmp/perf.ack
	P2P_PERF_CTL=/tmp/perf.ctl P2P_PERF_ACK=/tmp/perf.ack \
		perf record -e cpu-clock -F 2000 -a -g -o /tmp/perf.data -D -1 \
		--control fifo:/tmp/perf.ctl,/tmp/perf.ack -- \
		"$W/bin/p2pmem_bench" 3 "$2" > /dev/null 2> "$R/perf-$1-$2.err"
	echo "perf record: $?" >> "$R/perf-$1-$2.err"
	rm -f /tmp/perf.ctl /tmp/perf.ack
	perf report -i /tmp/perf.data --stdio --no-children --sort sym -g none \
		--percent-limit 0.5 > "$R/perf-$1-$2.txt" 2>> "$R/perf-$1-$2.err"
	perf report -i /tmp/perf.data --stdio --children --sort sym -g none \
		--percent-limit 1 > "$R/perf-$1-$2-callers.txt" 2>> "$R/perf-$1-$2.err"
	perf report -i /tmp/perf.data --stdio --no-children --sort sym -g caller,0.5,callee \
		--percent-limit 0.5 > "$R/perf-$1-$2-graph.txt" 2>> "$R/perf-$1-$2.err"
	rm -f /tmp/perf.data
}

# run_bench REPS [FIGURE]: the mmap benchmarks and the fio matrix on every provider,
# REPS times each, and profiles of benchmarks 2 and 7; with FIGURE, only that
# benchmark and its profile (4: only fio). fio measures steady state: one second of
# ramp (where the buffer is first touched, and the Rust path zeroes it) is left out
# of its figures; benchmarks 1 and 7 time first touch.
run_bench() {
	log "p2pdma implementation requested: $IMPL"
	wait_p2pmem
	providers > "$R/providers.txt"
	only=${2:-0}
	reps=$1
	while read -r label bdf; do
		if [ "$only" != 4 ]; then
			P2PDMA_PROVIDER=$bdf "$W/bin/p2pmem_bench" "$reps" "$only" > "$R/bench@$label.jsonl"
			echo $? > "$R/bench@$label.rc"
			case $only in
			0) P2PDMA_PROVIDER=$bdf profile "$label" 2
			   P2PDMA_PROVIDER=$bdf profile "$label" 7 ;;
			*) P2PDMA_PROVIDER=$bdf profile "$label" "$only" ;;
			esac
		fi
	done < "$R/providers.txt"
	[ "$only" = 0 ] || [ "$only" = 4 ] || return 0
	set -- "$(nvme_by_serial p2p-a)" "$(nvme_by_serial p2p-b)"
	a_ctrl=${1% *} b_ctrl=${2% *}
	mems="ram"
	while read -r label bdf; do
		mems="$mems p2pmem@$label:$bdf"
	done < "$R/providers.txt"
	for qd in 1 16; do
		for rw in read write; do
			for io in nsA:$a_ctrl nsB:$b_ctrl; do
				for mem in $mems; do
					m=malloc
					[ "$mem" = ram ] || m="mmapshared:/sys/bus/pci/devices/${mem#*:}/p2pmem/allocate"
					i=0
					while [ $i -lt "$reps" ]; do
						f="$R/fio-qd$qd-$rw-${io%%:*}-${mem%%:*}-$i.json"
						log "fio qd=$qd $rw ${io%%:*} ${mem%%:*} #$i"
						fio --name=bench --filename="/dev/${io#*:}n1" --direct=1 \
							--ioengine=libaio --iodepth=$qd --rw=$rw --bs=128k \
							--size=16M --time_based --ramp_time=1 --runtime=2 \
							--iomem="$m" --output-format=json \
							--output="$f" > /dev/null 2>&1
						i=$((i + 1))
					done
				done
			done
		done
	done
}

finish() {
	if [ -w /sys/kernel/debug/kmemleak ]; then
		log "kmemleak scan"
		echo scan > /sys/kernel/debug/kmemleak
		echo scan > /sys/kernel/debug/kmemleak
		cat /sys/kernel/debug/kmemleak > "$R/kmemleak.txt"
	fi
	cat /proc/sys/kernel/tainted > "$R/tainted"
	dmesg > "$R/dmesg.txt"
	echo done > "$R/done"
	log "finished"
}

# canary: after finish (whose results it leaves as they are), a WARN through LKDTM
# that the harness's splat check must find in the console after the marker line.
# The marker goes through the kernel log, so that it keeps its place among the
# kernel's lines on the console.
canary() {
	echo "$CANARY_MARKER" > /dev/kmsg
	mkdir -p "$R/canary"
	echo WARNING > /sys/kernel/debug/provoke-crash/DIRECT
	cat /proc/sys/kernel/tainted > "$R/canary/tainted"
	echo done > "$R/canary/done"
}
