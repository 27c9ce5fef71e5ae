// SPDX-License-Identifier: GPL-2.0
/*
 * p2pmem mmap benchmarks, run inside the guest by the harness's bench command,
 * once per implementation. Prints one JSON object per line:
 *   {"figure": "...", "unit": "...", "values": [v1, v2, ...]}
 *
 * Usage: p2pmem_bench [repetitions [figure]]
 * With a figure number (1-7), only that benchmark runs: to profile it with perf.
 */
#define _GNU_SOURCE
#include <sys/wait.h>
#include "p2pdma_lib.h"

static int reps = 5;
static struct p2p_dev dev;
/* One open file for the many-mapping figures: they measure mmap, not sysfs open. */
static int alloc_fd = -1;

static char *map_page(void)
{
	return mmap(NULL, p2p_page_size(), PROT_READ | PROT_WRITE, MAP_SHARED, alloc_fd, 0);
}

static double now_s(void)
{
	return p2p_now_ns() / 1e9;
}

static void emit(const char *figure, const char *unit, const double *v, int n)
{
	int i;

	printf("{\"figure\": \"%s\", \"unit\": \"%s\", \"values\": [", figure, unit);
	for (i = 0; i < n; i++)
		printf("%s%.6g", i ? ", " : "", v[i]);
	printf("]}\n");
	fflush(stdout);
}

static void die(const char *what)
{
	fprintf(stderr, "p2pmem_bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* mmap of the open allocate file; ENOMEM is a failure of the benchmark. */
static void *map_alloc(size_t len)
{
	return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, alloc_fd, 0);
}

/*
 * The same at a 2 MiB-aligned address (see p2p_map_aligned()), where faults can map
 * 2 MiB at once: what a user who wants PMD mappings does.
 */
static void *map_alloc_aligned(size_t len)
{
	char *area = mmap(NULL, len + P2P_PMD_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	size_t lead;
	char *p;

	if (area == MAP_FAILED)
		return MAP_FAILED;
	lead = (P2P_PMD_SIZE - ((uintptr_t)area & (P2P_PMD_SIZE - 1))) & (P2P_PMD_SIZE - 1);
	p = mmap(area + lead, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, alloc_fd, 0);
	if (p == MAP_FAILED) {
		munmap(area, len + P2P_PMD_SIZE);
		return MAP_FAILED;
	}
	if (lead)
		munmap(area, lead);
	munmap(p + len, P2P_PMD_SIZE - lead);
	return p;
}

static void wait_pool(long long avail)
{
	p2p_wait_available(&dev, avail, 20000, NULL);
}

/* The largest mapping (in MiB) that fits in the pool now. */
static size_t largest_mapping(void)
{
	size_t mib = p2p_attr(&dev, "available") / P2P_MIB;

	for (; mib > 0; mib--) {
		void *p = p2p_map(&dev, mib * P2P_MIB);

		if (p != MAP_FAILED) {
			munmap(p, mib * P2P_MIB);
			return mib * P2P_MIB;
		}
	}
	return 0;
}

/* Stores v into the first byte of each page of [p, p + len). */
static void store_each_page(volatile char *p, size_t len, char v)
{
	size_t ps = p2p_page_size(), off;

	for (off = 0; off < len; off += ps)
		p[off] = v;
}

/*
 * mmap, one store per page, munmap: s. aligned: at a 2 MiB-aligned address; else
 * wherever the kernel puts it, with MADV_NOHUGEPAGE, so that every page takes a
 * fault of its own in Rust (C inserts every page at mmap either way).
 */
static double touch_pages(size_t len, bool aligned)
{
	volatile char *p;
	double t0 = now_s(), t;

	p = aligned ? map_alloc_aligned(len) : map_alloc(len);
	if (p == MAP_FAILED)
		die("mmap");
	if (!aligned && madvise((void *)p, len, MADV_NOHUGEPAGE))
		die("madvise");
	store_each_page(p, len, 1);
	t = now_s() - t0;
	munmap((void *)p, len);
	return t;
}

/*
 * 1. mmap + first touch of all available p2pmem, one byte per page, at a 2 MiB-aligned
 * address: s/GiB.
 */
static void first_touch(long long avail)
{
	size_t len = largest_mapping();
	double v[64];
	int i;

	wait_pool(avail);
	for (i = 0; i < reps; i++) {
		v[i] = touch_pages(len, true) * (double)(1UL << 30) / len;
		wait_pool(avail);
	}
	emit("1 mmap + first touch of the whole pool", "s/GiB", v, reps);
}

/*
 * 2. mmap/munmap churn of 2 MiB without touching: ops/s; beside it the same churn of
 * anonymous MAP_SHARED memory, the cost of the two system calls alone.
 */
static double churn_once(bool p2p)
{
	int j, n = 200;
	double t0 = now_s();

	for (j = 0; j < n; j++) {
		void *p = p2p ? map_alloc(2 * P2P_MIB) :
			  mmap(NULL, 2 * P2P_MIB, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			die("mmap");
		munmap(p, 2 * P2P_MIB);
	}
	return n / (now_s() - t0);
}

static void churn(long long avail)
{
	double v[64], a[64];
	int i;

	for (i = 0; i < reps; i++) {
		v[i] = churn_once(true);
		wait_pool(avail);
		a[i] = churn_once(false);
	}
	emit("2 mmap/munmap churn, 2 MiB, untouched", "ops/s", v, reps);
	emit("2 mmap/munmap churn, 2 MiB anonymous MAP_SHARED", "ops/s", a, reps);
}

/* 3. mmap, touch every page, munmap of 2 MiB at a 2 MiB-aligned address: ops/s. */
static void map_touch_unmap(long long avail)
{
	double v[64];
	int i, j, n = 20;

	for (i = 0; i < reps; i++) {
		double t0 = now_s();

		for (j = 0; j < n; j++)
			touch_pages(2 * P2P_MIB, true);
		v[i] = n / (now_s() - t0);
		wait_pool(avail);
	}
	emit("3 mmap + touch all + munmap, 2 MiB", "ops/s", v, reps);
}

static double per_page_us(double t, size_t len)
{
	return t * 1e6 / (len / p2p_page_size());
}

/*
 * 7a-7c: what a first touch is made of. 7a: one store to a page that is already
 * mapped (all C pays per page in 7: it inserted every page at mmap); 7b: a fault on a
 * page the mapping has already seen, after MADV_DONTNEED (a fault that finds the page
 * live already; C has no such fault: it SIGBUSes there, so no figure); 7c: 4 KiB of
 * 8-byte stores to mapped p2pmem, what clearing a page costs (Rust clears pages when
 * they come back, off the fault path).
 */
static void fault_parts(long long avail)
{
	size_t len = 16 * P2P_MIB, off, w;
	long ps = p2p_page_size();
	double a[64], b[64], c[64];
	int i;

	for (i = 0; i < reps; i++) {
		volatile char *p = map_alloc(len);
		double t0;

		if (p == MAP_FAILED || madvise((void *)p, len, MADV_NOHUGEPAGE))
			die("mmap");
		store_each_page(p, len, 1);
		t0 = now_s();
		store_each_page(p, len, 2);
		a[i] = per_page_us(now_s() - t0, len);
		if (p2p_is_rust()) {
			if (madvise((void *)p, len, MADV_DONTNEED))
				die("madvise");
			t0 = now_s();
			store_each_page(p, len, 3);
			b[i] = per_page_us(now_s() - t0, len);
		}
		t0 = now_s();
		for (off = 0; off < len; off += ps)
			for (w = 0; w < (size_t)ps; w += 8)
				*(volatile uint64_t *)(p + off + w) = 0;
		c[i] = per_page_us(now_s() - t0, len);
		munmap((void *)p, len);
		wait_pool(avail);
	}
	emit("7a store to a mapped page", "us/page", a, reps);
	if (p2p_is_rust())
		emit("7b fault on a page seen before (MADV_DONTNEED)", "us/page", b, reps);
	emit("7c 4 KiB of 8-byte stores to a mapped page", "us/page", c, reps);
}

/* 5. Unbind latency with k live (touched, one page each) mappings: ms. */
static void unbind_latency(long long avail, int k)
{
	char name[64];
	double v[64];
	int i, j;

	for (i = 0; i < reps; i++) {
		char **maps = calloc(k ? k : 1, sizeof(*maps));
		double t0;

		for (j = 0; j < k; j++) {
			maps[j] = map_page();
			if (maps[j] == MAP_FAILED)
				die("mmap");
			maps[j][0] = 1;
		}
		t0 = now_s();
		if (p2p_unbind(&dev))
			die("unbind");
		v[i] = (now_s() - t0) * 1e3;
		for (j = 0; j < k; j++)
			munmap(maps[j], p2p_page_size());
		free(maps);
		close(alloc_fd);
		if (p2p_rebind(&dev) || p2p_provider_ready(&dev, 60000))
			die("rebind");
		alloc_fd = p2p_open_alloc(&dev);
		if (alloc_fd < 0)
			die("open allocate");
		wait_pool(avail);
	}
	snprintf(name, sizeof(name), "5 unbind latency, %d live mappings", k);
	emit(name, "ms", v, reps);
}

/* 6. Exit time of a process holding n VMAs (p2pmem or anonymous shared): ms. */
static double exit_time(int n, bool p2p)
{
	volatile double *stamp = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int status, ready[2], go[2];
	double t;
	pid_t pid;
	char c;

	if (stamp == MAP_FAILED || pipe(ready) || pipe(go))
		die("setup");
	pid = fork();
	if (!pid) {
		int i;

		close(ready[0]);
		close(go[1]);
		for (i = 0; i < n; i++) {
			char *p = p2p ? map_page() :
				  mmap(NULL, p2p_page_size(), PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED)
				_exit(2);
			p[0] = 1;
		}
		if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(3);
		*stamp = now_s();
		_exit(0);
	}
	close(ready[1]);
	close(go[0]);
	/* EOF here means the child failed before it was ready. */
	if (read(ready[0], &c, 1) != 1 || write(go[1], "g", 1) != 1)
		die("child setup");
	waitpid(pid, &status, 0);
	t = (now_s() - *stamp) * 1e3;
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		die("child");
	munmap((void *)stamp, 4096);
	close(ready[0]);
	close(go[1]);
	return t;
}

static void exit_times(long long avail)
{
	double v[64], a[64], back[64];
	int i, waited;

	for (i = 0; i < reps; i++) {
		double t0;

		v[i] = exit_time(10000, true);
		t0 = now_s();
		p2p_wait_available(&dev, avail, 20000, &waited);
		back[i] = (now_s() - t0) * 1e3;
		a[i] = exit_time(10000, false);
	}
	emit("6 exit with 10,000 p2pmem VMAs", "ms", v, reps);
	emit("6 exit with 10,000 anonymous MAP_SHARED VMAs", "ms", a, reps);
	emit("6 p2pmem back in the pool after that exit", "ms", back, reps);
}

/*
 * 7. Faults per second on a fresh 16 MiB mapping, 4 KiB pages (mmap included;
 * MADV_NOHUGEPAGE: one fault per page).
 */
static void fault_rate(long long avail)
{
	size_t len = 16 * P2P_MIB;
	double v[64];
	int i;

	for (i = 0; i < reps; i++) {
		v[i] = (len / p2p_page_size()) / touch_pages(len, false);
		wait_pool(avail);
	}
	emit("7 page faults on a fresh mapping", "faults/s", v, reps);
}

int main(int argc, char **argv)
{
	long long avail;
	int only = 0;

	if (argc > 1)
		reps = atoi(argv[1]);
	if (reps < 1 || reps > 64)
		reps = 5;
	if (argc > 2)
		only = atoi(argv[2]);
	if (p2p_provider_ready(&dev, 30000))
		die("no p2pmem device");
	avail = p2p_attr(&dev, "available");
	alloc_fd = p2p_open_alloc(&dev);
	if (alloc_fd < 0)
		die("open allocate");
	fprintf(stderr, "p2pmem_bench: %s, %s, %d repetitions, implementation %s\n",
		p2p_name(&dev), dev.bdf, reps, p2p_impl());

	if (only == 0 || only == 1)
		first_touch(avail);
	if (only == 0 || only == 2)
		churn(avail);
	if (only == 0 || only == 3)
		map_touch_unmap(avail);
	if (only == 0 || only == 7) {
		fault_rate(avail);
		fault_parts(avail);
	}
	if (only == 0 || only == 6)
		exit_times(avail);
	if (only == 0 || only == 5) {
		unbind_latency(avail, 0);
		unbind_latency(avail, 100);
		unbind_latency(avail, 1000);
	}
	return 0;
}
