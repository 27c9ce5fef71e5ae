# SPDX-License-Identifier: GPL-2.0
# Shell library of the guest's run.sh (runs chrooted in the host's root, as root).
# run.sh = this file + a few lines the harness writes for the boot.
set -u
W=/tmp/work
R=$W/results
mkdir -p "$R"
cd "$W" || exit 1

log() { echo "harness: $*"; }

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

# wait_p2pmem: wait (bounded) until every NVMe has registered its CMB as p2pmem.
wait_p2pmem() {
	for s in p2p-a p2p-b p2p-lone; do
		i=0
		while :; do
			set -- $(nvme_by_serial $s) ""
			if [ -n "$1" ] && [ -e "/sys/bus/pci/devices/$2/p2pmem/available" ] && [ -b "/dev/${1}n1" ]; then
				break
			fi
			i=$((i + 1))
			if [ $i -gt 300 ]; then
				log "NVMe $s did not come up with p2pmem in 30 s"
				return 1
			fi
			sleep 0.1
		done
	done
}

run_tests() {
	log "p2pdma implementation requested: $IMPL"
	wait_p2pmem
	for t in "$W"/bin/*; do
		case "$t" in *bench*) continue ;; esac
		n=$(basename "$t")
		log "running $n"
		{ "$t"; echo $? > "$R/$n.rc"; } 2>&1 | tee "$R/$n.tap"
	done
}

devices() {
	for s in p2p-a p2p-b p2p-lone; do
		set -- $(nvme_by_serial $s)
		d=/sys/bus/pci/devices/$2/p2pmem
		printf '%-9s %-8s %s  p2pmem size %10s  available %10s\n' "$s" "$1" "$2" \
			"$(cat $d/size)" "$(cat $d/available)"
	done
}

# fio_pair LABEL BUFFER_SERIAL IO_SERIAL IOMEM: a verified write then a read.
fio_pair() {
	set -- "$1" "$(nvme_by_serial $2)" "$(nvme_by_serial $3)" "$4"
	ctrl_io=${3% *}
	bdf_buf=${2#* }
	mem=$4
	[ "$mem" = p2pmem ] && mem="mmapshared:/sys/bus/pci/devices/$bdf_buf/p2pmem/allocate"
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
	fio_pair 1_p2pmem_of_p2p-a_to_from_nvme_p2p-b p2p-a p2p-b p2pmem
	fio_pair 2_system_RAM_to_from_nvme_p2p-b p2p-a p2p-b malloc
	fio_pair 3_p2pmem_of_p2p-b_to_from_nvme_p2p-a p2p-b p2p-a p2pmem
	fio_pair 4_system_RAM_to_from_nvme_p2p-a p2p-b p2p-a malloc
}

# profile FIGURE: where the time of benchmark FIGURE goes, as a flat profile (self
# time per function, whole system) sampled on the CPU clock (TCG has no PMU).
profile() {
	log "perf profile of benchmark $1"
	perf record -e cpu-clock -F 2000 -a -o /tmp/perf.data -- \
		"$W/bin/p2pmem_bench" 3 "$1" > /dev/null 2> "$R/perf-$1.err"
	echo "perf record: $?" >> "$R/perf-$1.err"
	perf report -i /tmp/perf.data --stdio --no-children --sort sym \
		--percent-limit 0.5 > "$R/perf-$1.txt" 2>> "$R/perf-$1.err"
	rm -f /tmp/perf.data
}

# run_bench REPS [FIGURE]: the mmap benchmarks and the fio matrix, REPS times each,
# and profiles of benchmarks 2 and 7; with FIGURE, only that benchmark and its
# profile (4: only fio). fio measures steady state: one second of ramp (where the
# buffer is first touched, and the Rust path zeroes it) is left out of its figures;
# benchmarks 1 and 7 time first touch.
run_bench() {
	log "p2pdma implementation requested: $IMPL"
	wait_p2pmem
	only=${2:-0}
	if [ "$only" != 4 ]; then
		"$W/bin/p2pmem_bench" "$1" "$only" > "$R/bench.jsonl"
		echo $? > "$R/bench.rc"
		case $only in
		0) profile 2; profile 7 ;;
		*) profile "$only" ;;
		esac
	else
		echo 0 > "$R/bench.rc"
	fi
	[ "$only" = 0 ] || [ "$only" = 4 ] || return 0
	set -- "$1" "$(nvme_by_serial p2p-a)" "$(nvme_by_serial p2p-b)"
	reps=$1 a_ctrl=${2% *} a_bdf=${2#* } b_ctrl=${3% *}
	for qd in 1 16; do
		for rw in read write; do
			for io in same:$a_ctrl cross:$b_ctrl; do
				for mem in p2pmem ram; do
					m=malloc
					[ $mem = p2pmem ] && m="mmapshared:/sys/bus/pci/devices/$a_bdf/p2pmem/allocate"
					i=0
					while [ $i -lt "$reps" ]; do
						f="$R/fio-qd$qd-$rw-${io%%:*}-$mem-$i.json"
						log "fio qd=$qd $rw ${io%%:*} $mem #$i"
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
