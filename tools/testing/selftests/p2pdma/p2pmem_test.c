// SPDX-License-Identifier: GPL-2.0
/*
 * p2pmem userspace mmap: /sys/bus/pci/devices/<BDF>/p2pmem/allocate.
 *
 * Needs the topology of the p2pdma-rs harness: NVMe "p2p-a" and "p2p-b" with
 * CMBs behind one PCIe switch, "p2p-lone" on its own root port. Every test checks
 * that p2pmem/available is back to its starting value when it ends.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include "p2pdma_lib.h"
#include "../kselftest_harness.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ	22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE	23
#endif

#define IO_LEN		P2P_MIB
/*
 * Every test asserts one behaviour, whichever implementation serves p2pmem; the
 * 7.3 C path is known to fail some of them (the harness lists them with the reason
 * in harness/known-failures.txt). REPORT lines show what was seen, for the summary.
 */
#define REPORT(fmt, ...) \
	printf("# REPORT: [%s] %s: " fmt "\n", p2p_impl(), _metadata->name, ##__VA_ARGS__)

#define FAST_TIMEOUT	120
#define SLOW_TIMEOUT	300

FIXTURE(p2pmem) {
	struct p2p_dev a, b, lone;
	long long avail_a, avail_b, avail_lone;
};

FIXTURE_SETUP(p2pmem)
{
	if (p2p_provider_ready(&self->a, 10000))
		SKIP(return, "no p2pmem provider (P2PDMA_PROVIDER, or NVMe %s with a CMB)",
		     p2p_serial('A'));
	if (p2p_find_ready(p2p_serial('B'), &self->b, 10000))
		SKIP(return, "no NVMe %s with a CMB behind the same switch", p2p_serial('B'));
	if (p2p_find_ready(p2p_serial('L'), &self->lone, 10000))
		SKIP(return, "no NVMe %s with a CMB on its own root port", p2p_serial('L'));
	self->avail_a = p2p_attr(&self->a, "available");
	self->avail_b = p2p_attr(&self->b, "available");
	self->avail_lone = p2p_attr(&self->lone, "available");
	ASSERT_GT(self->avail_a, 0);
	ASSERT_GT(self->avail_b, 0);
}

FIXTURE_TEARDOWN(p2pmem)
{
	struct p2p_dev d;
	int waited;

	/* The device may have been rebound under a new controller name. */
	if (!p2p_provider_ready(&d, 10000)) {
		EXPECT_EQ(self->avail_a, p2p_wait_available(&d, self->avail_a, 10000, &waited));
		if (waited)
			TH_LOG("%s: available returned after %d ms", p2p_name(&d), waited);
	}
	EXPECT_EQ(self->avail_b, p2p_wait_available(&self->b, self->avail_b, 10000, NULL));
	EXPECT_EQ(self->avail_lone, p2p_wait_available(&self->lone, self->avail_lone, 10000, NULL));
}

/* MAP_SHARED mapping: the CPU writes a random pattern and reads it back. */
TEST_F_TIMEOUT(p2pmem, mmap_rw, FAST_TIMEOUT)
{
	size_t len = 4 * P2P_MIB;
	uint64_t seed = p2p_seed();
	void *p = p2p_map(&self->a, len);

	ASSERT_NE(MAP_FAILED, p) TH_LOG("mmap: %s", strerror(errno));
	p2p_fill(p, len, seed);
	EXPECT_EQ(-1, p2p_check(p, len, seed));
	EXPECT_EQ(0, munmap(p, len));
}

TEST_F_TIMEOUT(p2pmem, map_private_einval, FAST_TIMEOUT)
{
	void *p = p2p_map_flags(&self->a, P2P_MIB, MAP_PRIVATE, 0);

	ASSERT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
}

TEST_F_TIMEOUT(p2pmem, offset_einval, FAST_TIMEOUT)
{
	void *p = p2p_map_flags(&self->a, P2P_MIB, MAP_SHARED, p2p_page_size());

	ASSERT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
}

/*
 * O_DIRECT write from p2pmem of @buf to the namespace of @io, read back into a
 * second p2pmem buffer, checked against the pattern and a system-RAM read.
 */
static void odirect_roundtrip(struct __test_metadata *_metadata,
			      const struct p2p_dev *buf, const struct p2p_dev *io)
{
	uint64_t seed = p2p_seed();
	off_t off = (off_t)(seed % 128) * P2P_MIB;
	void *src, *dst, *ram;
	int fd;

	fd = open(io->blk, O_RDWR | O_DIRECT);
	ASSERT_LE(0, fd) TH_LOG("open %s: %s", io->blk, strerror(errno));
	src = p2p_map(buf, IO_LEN);
	ASSERT_NE(MAP_FAILED, src);
	dst = p2p_map(buf, IO_LEN);
	ASSERT_NE(MAP_FAILED, dst);
	ASSERT_EQ(0, posix_memalign(&ram, 4096, IO_LEN));

	p2p_fill(src, IO_LEN, seed);
	p2p_fill(dst, IO_LEN, ~seed);
	memset(ram, 0, IO_LEN);

	ASSERT_EQ(IO_LEN, pwrite(fd, src, IO_LEN, off))
		TH_LOG("pwrite from p2pmem of %s to %s: %s", buf->serial, io->blk, strerror(errno));
	ASSERT_EQ(IO_LEN, pread(fd, dst, IO_LEN, off))
		TH_LOG("pread into p2pmem of %s from %s: %s", buf->serial, io->blk, strerror(errno));
	ASSERT_EQ(IO_LEN, pread(fd, ram, IO_LEN, off));

	EXPECT_EQ(-1, p2p_check(ram, IO_LEN, seed)) TH_LOG("the disk does not hold what p2pmem wrote");
	EXPECT_EQ(-1, p2p_check(dst, IO_LEN, seed)) TH_LOG("p2pmem read back differs");
	EXPECT_EQ(0, memcmp(dst, ram, IO_LEN));

	free(ram);
	munmap(src, IO_LEN);
	munmap(dst, IO_LEN);
	close(fd);
}

TEST_F_TIMEOUT(p2pmem, odirect_same_dev, SLOW_TIMEOUT)
{
	odirect_roundtrip(_metadata, &self->a, &self->a);
}

TEST_F_TIMEOUT(p2pmem, odirect_a_to_b, SLOW_TIMEOUT)
{
	odirect_roundtrip(_metadata, &self->a, &self->b);
}

TEST_F_TIMEOUT(p2pmem, odirect_b_to_a, SLOW_TIMEOUT)
{
	odirect_roundtrip(_metadata, &self->b, &self->a);
}

/*
 * The lone NVMe shares no upstream bridge with A: I/O between its namespace and
 * A's p2pmem must fail cleanly, in both directions, and leave the data alone.
 */
TEST_F_TIMEOUT(p2pmem, refused_lone, SLOW_TIMEOUT)
{
	void *pa, *pl;
	int fd_lone, fd_a;
	ssize_t n;

	fd_lone = open(self->lone.blk, O_RDWR | O_DIRECT);
	ASSERT_LE(0, fd_lone);
	fd_a = open(self->a.blk, O_RDWR | O_DIRECT);
	ASSERT_LE(0, fd_a);
	pa = p2p_map(&self->a, IO_LEN);
	ASSERT_NE(MAP_FAILED, pa);
	pl = p2p_map(&self->lone, IO_LEN);
	ASSERT_NE(MAP_FAILED, pl);
	memset(pa, 0x5a, IO_LEN);
	memset(pl, 0xa5, IO_LEN);

	errno = 0;
	n = pwrite(fd_lone, pa, IO_LEN, 0);
	EXPECT_EQ(-1, n) TH_LOG("p2pmem of %s -> %s was not refused", p2p_name(&self->a), self->lone.blk);
	TH_LOG("write p2pmem(%s) -> %s: %zd (%s)", p2p_name(&self->a), self->lone.blk, n, strerror(errno));
	errno = 0;
	n = pread(fd_a, pl, IO_LEN, 0);
	EXPECT_EQ(-1, n) TH_LOG("%s -> p2pmem of %s was not refused", self->a.blk, self->lone.serial);
	TH_LOG("read %s -> p2pmem(%s): %zd (%s)", self->a.blk, self->lone.serial, n, strerror(errno));

	munmap(pa, IO_LEN);
	munmap(pl, IO_LEN);
	close(fd_lone);
	close(fd_a);
}

/* Map 1 MiB at a time until the pool is empty: the first that does not fit gets ENOMEM. */
TEST_F_TIMEOUT(p2pmem, exhaust_pool, SLOW_TIMEOUT)
{
	size_t max = self->avail_a / P2P_MIB + 2, n = 0, i;
	long long size = p2p_attr(&self->a, "size");
	void **maps = calloc(max, sizeof(void *));
	void *p;

	ASSERT_NE(NULL, maps);
	while (n < max) {
		p = p2p_map(&self->a, P2P_MIB);
		if (p == MAP_FAILED)
			break;
		maps[n++] = p;
	}
	ASSERT_LT(n, max) TH_LOG("the pool never ran out");
	EXPECT_EQ(ENOMEM, errno);
	/* Only the tail the NVMe driver's queues fragmented may be left over. */
	EXPECT_GE(n + 2, (size_t)(self->avail_a / P2P_MIB));
	EXPECT_LT(p2p_attr(&self->a, "available"), (long long)P2P_MIB);
	/* A mapping larger than the whole BAR never fits. */
	for (i = 0; i < n; i++)
		munmap(maps[i], P2P_MIB);
	p = p2p_map(&self->a, size + P2P_MIB);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(ENOMEM, errno);
	TH_LOG("%zu x 1 MiB mappings fit in %lld bytes available", n, self->avail_a);
	free(maps);
}

/*
 * munmap and mmap again, back to back, the largest mapping that fits the pool,
 * touched each round (so its pages are released the slow way, after an RCU grace
 * period on the Rust path): every mmap succeeds. Up to 1000 rounds or 45 s.
 */
TEST_F_TIMEOUT(p2pmem, remap_whole_pool, SLOW_TIMEOUT)
{
	size_t mib = self->avail_a / P2P_MIB, len, off;
	uint64_t t0 = p2p_now_ns();
	int rounds = 0, failed = 0;
	volatile char *p = MAP_FAILED;
	int fd = p2p_open_alloc(&self->a);

	ASSERT_LE(0, fd);
	for (; mib > 0 && p == MAP_FAILED; mib--)
		p = mmap(NULL, mib * P2P_MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	len = (mib + 1) * P2P_MIB;
	while (rounds < 1000 && p2p_now_ns() - t0 < 45000000000ULL) {
		for (off = 0; off < len; off += 64 * 1024)
			p[off] = 1;
		munmap((void *)p, len);
		rounds++;
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			failed++;
			TH_LOG("round %d: mmap of %zu MiB: %s", rounds, len / P2P_MIB,
			       strerror(errno));
			break;
		}
	}
	if (p != MAP_FAILED)
		munmap((void *)p, len);
	close(fd);
	REPORT("%d rounds of munmap + mmap of %zu MiB (touched), %d failed",
	       rounds, len / P2P_MIB, failed);
	EXPECT_EQ(0, failed);
	EXPECT_LE(20, rounds);
}

/*
 * MADV_POPULATE_WRITE and MADV_POPULATE_READ fault every page of a p2pmem mapping
 * in (as MAP_POPULATE does), zeroed, without an error.
 */
TEST_F_TIMEOUT(p2pmem, madv_populate, FAST_TIMEOUT)
{
	static const int advice[] = { MADV_POPULATE_READ, MADV_POPULATE_WRITE };
	size_t len = P2P_MIB, i, j;

	for (i = 0; i < 2; i++) {
		volatile uint64_t *p = p2p_map(&self->a, len);
		size_t nonzero = 0;
		int ret;

		ASSERT_NE(MAP_FAILED, p);
		ret = madvise((void *)p, len, advice[i]);
		REPORT("MADV_POPULATE_%s: %s, Rss %ld kB", i ? "WRITE" : "READ",
		       ret ? strerror(errno) : "ok", p2p_rss_kb((void *)p));
		EXPECT_EQ(0, ret);
		EXPECT_EQ((long)(len / 1024), p2p_rss_kb((void *)p));
		for (j = 0; j < len / sizeof(*p); j++)
			nonzero += p[j] != 0;
		EXPECT_EQ(0, nonzero);
		munmap((void *)p, len);
	}
}

struct toucher {
	volatile uint64_t *page;
	int slot;
	pthread_barrier_t *go;
};

static void *touch_slot(void *arg)
{
	struct toucher *t = arg;

	pthread_barrier_wait(t->go);
	t->page[t->slot] = 0x100 + t->slot;
	return NULL;
}

/*
 * Many threads first-touch the same fresh page at once, each storing to its own
 * word: the page is cleared once, before any store, so no store is lost and the
 * rest of the page is zero.
 */
TEST_F_TIMEOUT(p2pmem, concurrent_first_touch, FAST_TIMEOUT)
{
	enum { THREADS = 16, ROUNDS = 64 };
	size_t len = ROUNDS * p2p_page_size(), words = p2p_page_size() / 8;
	struct toucher t[THREADS];
	pthread_t th[THREADS];
	pthread_barrier_t go;
	size_t lost = 0, dirty = 0, r, w;
	volatile uint64_t *p = p2p_map(&self->a, len);
	int i;

	ASSERT_NE(MAP_FAILED, p);
	for (r = 0; r < ROUNDS; r++) {
		volatile uint64_t *page = p + r * words;

		pthread_barrier_init(&go, NULL, THREADS);
		for (i = 0; i < THREADS; i++) {
			t[i] = (struct toucher){ .page = page, .slot = i * 8, .go = &go };
			ASSERT_EQ(0, pthread_create(&th[i], NULL, touch_slot, &t[i]));
		}
		for (i = 0; i < THREADS; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&go);
		for (w = 0; w < words; w++) {
			bool slot = w % 8 == 0 && w / 8 < THREADS;

			if (slot && page[w] != 0x100 + w)
				lost++;
			if (!slot && page[w])
				dirty++;
		}
	}
	REPORT("%d pages, %d threads each: %zu stores lost, %zu other words not zero",
	       ROUNDS, THREADS, lost, dirty);
	EXPECT_EQ(0, lost);
	EXPECT_EQ(0, dirty);
	munmap((void *)p, len);
}

struct mapper {
	const struct p2p_dev *d;
	void *maps[512];
	int n, other_errno;
};

static void *map_until_full(void *arg)
{
	struct mapper *m = arg;

	while (m->n < 512) {
		void *p = p2p_map(m->d, P2P_MIB);

		if (p == MAP_FAILED) {
			if (errno != ENOMEM)
				m->other_errno = errno;
			break;
		}
		((volatile char *)p)[0] = 1;
		m->maps[m->n++] = p;
	}
	return NULL;
}

/*
 * Four threads map 1 MiB each until the pool is exhausted: every failure is
 * ENOMEM, no more is mapped than was available, and all of it comes back.
 */
TEST_F_TIMEOUT(p2pmem, exhaust_pool_concurrently, SLOW_TIMEOUT)
{
	struct mapper m[4] = { 0 };
	pthread_t th[4];
	long long mapped = 0;
	int i, j;

	for (i = 0; i < 4; i++) {
		m[i].d = &self->a;
		ASSERT_EQ(0, pthread_create(&th[i], NULL, map_until_full, &m[i]));
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		mapped += m[i].n * (long long)P2P_MIB;
		EXPECT_EQ(0, m[i].other_errno) TH_LOG("thread %d: %s", i, strerror(m[i].other_errno));
	}
	REPORT("4 threads mapped %lld MiB of %lld MiB available", mapped / P2P_MIB,
	       self->avail_a / P2P_MIB);
	EXPECT_LE(mapped, self->avail_a);
	EXPECT_LE(self->avail_a - 2 * (long long)P2P_MIB, mapped);
	for (i = 0; i < 4; i++)
		for (j = 0; j < m[i].n; j++)
			munmap(m[i].maps[j], P2P_MIB);
}

/*
 * Mapping 16 MiB and touching one byte populates one page, not 4096 (4 KiB faults;
 * pmd_fault checks that a 2 MiB fault populates 2 MiB).
 */
TEST_F_TIMEOUT(p2pmem, lazy_population, FAST_TIMEOUT)
{
	size_t len = 16 * P2P_MIB;
	volatile char *p = p2p_map_4k(&self->a, len);
	long before, after;

	ASSERT_NE(MAP_FAILED, p);
	before = p2p_rss_kb((void *)p);
	p[len / 2] = 1;
	after = p2p_rss_kb((void *)p);
	ASSERT_LE(0, after);
	REPORT("16 MiB mapping: Rss %ld kB after mmap, %ld kB after touching one byte",
	       before, after);
	EXPECT_EQ(0, before);
	EXPECT_EQ(p2p_page_size() / 1024, after);
	munmap((void *)p, len);
}

/* MAP_POPULATE maps every page at mmap time, zeroed on the Rust path. */
TEST_F_TIMEOUT(p2pmem, map_populate, FAST_TIMEOUT)
{
	size_t len = P2P_MIB, i, nonzero = 0;
	volatile uint64_t *p = p2p_map_flags(&self->a, len, MAP_SHARED | MAP_POPULATE, 0);
	long rss;

	ASSERT_NE(MAP_FAILED, p);
	rss = p2p_rss_kb((void *)p);
	for (i = 0; i < len / sizeof(*p); i++)
		nonzero += p[i] != 0;
	REPORT("1 MiB MAP_POPULATE mapping: Rss %ld kB, %zu non-zero words", rss, nonzero);
	EXPECT_EQ((long)(len / 1024), rss);
	EXPECT_EQ(0, nonzero);
	munmap((void *)p, len);
}

/*
 * munmap gives p2pmem that no PTE ever pointed to back at once: no grace period, so
 * a loop of mmap/munmap never finds the pool short. A touched page (4 KiB faults)
 * may take a grace period on the Rust path.
 */
TEST_F_TIMEOUT(p2pmem, untouched_back_at_munmap, FAST_TIMEOUT)
{
	size_t len = 16 * P2P_MIB;
	long long during, after, after_touched;
	volatile char *p = p2p_map(&self->a, len);
	int waited = 0;

	ASSERT_NE(MAP_FAILED, p);
	during = p2p_attr(&self->a, "available");
	munmap((void *)p, len);
	after = p2p_attr(&self->a, "available");
	p = p2p_map_4k(&self->a, len);
	ASSERT_NE(MAP_FAILED, p);
	p[0] = 1;
	munmap((void *)p, len);
	after_touched = p2p_attr(&self->a, "available");
	p2p_wait_available(&self->a, self->avail_a, 10000, &waited);
	REPORT("available: %lld before, %lld mapped, %lld after munmap", self->avail_a,
	       during, after);
	REPORT("one page touched: %lld after munmap, whole after %d ms", after_touched,
	       waited);
	EXPECT_EQ(self->avail_a - (long long)len, during);
	EXPECT_EQ(self->avail_a, after);
	EXPECT_LE(self->avail_a - p2p_page_size(), after_touched);
}

/* A new mapping never sees data written through an earlier one, even another process's. */
TEST_F_TIMEOUT(p2pmem, zeroed_across_processes, FAST_TIMEOUT)
{
	size_t len = 2 * P2P_MIB, nonzero = 0, i;
	uint64_t seed = p2p_seed();
	volatile uint64_t *q;
	int status;
	pid_t pid;

	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		void *p = p2p_map(&self->a, len);

		if (p == MAP_FAILED)
			_exit(2);
		p2p_fill(p, len, seed);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(self->avail_a, p2p_wait_available(&self->a, self->avail_a, 10000, NULL));

	q = p2p_map(&self->a, len);
	ASSERT_NE(MAP_FAILED, q);
	for (i = 0; i < len / 8; i++)
		if (q[i])
			nonzero++;
	REPORT("fresh mapping after another process wrote %zu bytes and exited: %zu non-zero words",
	       len, nonzero);
	EXPECT_EQ(0, nonzero);
	munmap((void *)q, len);
}

/* After MADV_DONTNEED a touch faults the same page back, with its data. */
TEST_F_TIMEOUT(p2pmem, madv_dontneed, FAST_TIMEOUT)
{
	size_t len = P2P_MIB;
	uint64_t seed = p2p_seed(), v = 0;
	void *p = p2p_map(&self->a, len);
	int sig;

	ASSERT_NE(MAP_FAILED, p);
	p2p_fill(p, len, seed);
	ASSERT_EQ(0, madvise(p, len, MADV_DONTNEED));
	sig = p2p_probe(p, false, &v);
	REPORT("touch after MADV_DONTNEED: %s%s", p2p_sig_name(sig),
	       sig ? "" : p2p_check(p, len, seed) == -1 ? ", data kept" : ", data lost");
	EXPECT_EQ(0, sig);
	if (!sig)
		EXPECT_EQ(-1, p2p_check(p, len, seed));
	munmap(p, len);
}

/* No VM_MIXEDMAP ("mm"), VM_PFNMAP ("pf") or VM_IO ("io"); not expandable, not dumped. */
TEST_F_TIMEOUT(p2pmem, vm_flags, FAST_TIMEOUT)
{
	volatile char *p = p2p_map(&self->a, P2P_MIB);
	char flags[256] = "";

	ASSERT_NE(MAP_FAILED, p);
	p[0] = 1;
	ASSERT_EQ(0, p2p_smaps((void *)p, "VmFlags:", flags, sizeof(flags)));
	REPORT("VmFlags:%s", flags);
	EXPECT_FALSE(p2p_has_vmflag((void *)p, "mm"));
	EXPECT_FALSE(p2p_has_vmflag((void *)p, "pf"));
	EXPECT_FALSE(p2p_has_vmflag((void *)p, "io"));
	EXPECT_TRUE(p2p_has_vmflag((void *)p, "de"));
	EXPECT_TRUE(p2p_has_vmflag((void *)p, "dd"));
	munmap((void *)p, P2P_MIB);
}

/*
 * Faults map 2 MiB at once where the mapping allows: mmap(NULL, 4 MiB) gets a 2 MiB-
 * aligned address, one touch per 2 MiB maps all of it (Rss) with one minor fault
 * each, and touching every other page then takes no fault.
 */
TEST_F_TIMEOUT(p2pmem, pmd_fault, FAST_TIMEOUT)
{
	long ps = p2p_page_size();
	size_t len = 2 * P2P_PMD_SIZE, off;
	volatile char *p = p2p_map(&self->a, len);
	struct rusage r0, r1, r2;
	long before, rss;

	ASSERT_NE(MAP_FAILED, p) TH_LOG("mmap: %s", strerror(errno));
	EXPECT_EQ(0, (uintptr_t)p & (P2P_PMD_SIZE - 1))
		TH_LOG("mmap(NULL, %zu) gave %p: not 2 MiB-aligned", len, p);
	before = p2p_rss_kb((void *)p);
	ASSERT_EQ(0, getrusage(RUSAGE_SELF, &r0));
	rss = p2p_touch_pmds(p, len);
	ASSERT_EQ(0, getrusage(RUSAGE_SELF, &r1));
	for (off = 0; off < len; off += ps)
		p[off] = 1;
	ASSERT_EQ(0, getrusage(RUSAGE_SELF, &r2));
	REPORT("Rss %ld kB after mmap, %ld kB after one touch per 2 MiB (%ld faults), %ld more faults to touch every page",
	       before, rss, r1.ru_minflt - r0.ru_minflt, r2.ru_minflt - r1.ru_minflt);
	EXPECT_EQ(0, before);
	EXPECT_EQ((long)(len >> 10), rss);
	/* One per 2 MiB, and a little slack for faults elsewhere in the process. */
	EXPECT_LE(r1.ru_minflt - r0.ru_minflt, (long)(len / P2P_PMD_SIZE) + 2);
	EXPECT_LE(r2.ru_minflt - r1.ru_minflt, 2);
	EXPECT_EQ(0, munmap((void *)p, len));
}

/*
 * A fresh 2 MiB-aligned mapping of len bytes, mapped with PMDs (nothing mapped before
 * the first touch, all of it after one touch per 2 MiB), then filled page by page.
 */
static char *pmd_map_filled(struct __test_metadata *_metadata, const struct p2p_dev *d,
			    size_t len, uint64_t seed)
{
	char *p = p2p_map_aligned(d, len, P2P_PMD_SIZE);
	long before, rss;

	if (p == MAP_FAILED) {
		TH_LOG("mmap: %s", strerror(errno));
		return NULL;
	}
	before = p2p_rss_kb(p);
	rss = p2p_touch_pmds(p, len);
	if (before != 0 || rss != (long)(len >> 10)) {
		TH_LOG("Rss %ld kB after mmap, %ld kB of %zu kB after one touch per 2 MiB: not mapped with PMDs",
		       before, rss, len >> 10);
		munmap(p, len);
		return NULL;
	}
	p2p_fill_pages(p, len / p2p_page_size(), seed);
	return p;
}

/*
 * A PMD-mapped range survives being split: after munmap of one page inside it and
 * mprotect of another, every other page is mapped with its data, writable where it
 * was; unmapping the rest gives the 2 MiB back to the pool (checked at teardown).
 */
TEST_F_TIMEOUT(p2pmem, pmd_split, FAST_TIMEOUT)
{
	long ps = p2p_page_size();
	size_t len = P2P_PMD_SIZE, n = len / ps;
	uint64_t seed = p2p_seed(), v = 0;
	char *p = pmd_map_filled(_metadata, &self->a, len, seed);

	ASSERT_NE(NULL, p);
	ASSERT_EQ(0, munmap(p + 100 * ps, ps));
	ASSERT_EQ(0, mprotect(p + 300 * ps, ps, PROT_READ));
	EXPECT_TRUE(p2p_check_pages(p, 0, 100, seed));
	EXPECT_TRUE(p2p_check_pages(p, 101, n - 101, seed));
	EXPECT_EQ(SIGSEGV, p2p_probe((uint64_t *)(p + 100 * ps), false, &v));
	v = seed;
	EXPECT_EQ(SIGSEGV, p2p_probe((uint64_t *)(p + 300 * ps), true, &v));
	EXPECT_EQ(0, p2p_probe((uint64_t *)(p + 299 * ps), true, &v));
	EXPECT_EQ(0, p2p_probe((uint64_t *)(p + 301 * ps), true, &v));
	EXPECT_EQ(seed, *(uint64_t *)(p + 299 * ps));
	EXPECT_EQ(seed, *(uint64_t *)(p + 301 * ps));
	EXPECT_TRUE(p2p_check_pages(p, 302, n - 302, seed));
	ASSERT_EQ(0, munmap(p, 100 * ps));
	ASSERT_EQ(0, munmap(p + 101 * ps, (n - 101) * ps));
}

/*
 * fork copies no page table entries: the child faults the parent's PMD-mapped pages
 * in, reads the parent's data and writes data the parent then sees.
 */
TEST_F_TIMEOUT(p2pmem, pmd_fork, FAST_TIMEOUT)
{
	long ps = p2p_page_size();
	size_t len = P2P_PMD_SIZE, n = len / ps;
	uint64_t seed = p2p_seed();
	char *p = pmd_map_filled(_metadata, &self->a, len, seed);
	int status;
	pid_t pid;

	ASSERT_NE(NULL, p);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		if (!p2p_check_pages(p, 0, n, seed))
			_exit(1);
		p2p_fill_pages(p + len / 2, n / 2, ~seed);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("the child did not see the parent's data");
	EXPECT_TRUE(p2p_check_pages(p, 0, n / 2, seed));
	EXPECT_TRUE(p2p_check_pages(p + len / 2, 0, n / 2, ~seed));
	EXPECT_EQ(0, munmap(p, len));
}

/* MADV_DONTNEED of a PMD-mapped range: a touch maps it again, with its data. */
TEST_F_TIMEOUT(p2pmem, pmd_dontneed, FAST_TIMEOUT)
{
	size_t len = P2P_PMD_SIZE, n = len / p2p_page_size();
	uint64_t seed = p2p_seed();
	char *p = pmd_map_filled(_metadata, &self->a, len, seed);

	ASSERT_NE(NULL, p);
	ASSERT_EQ(0, madvise(p, len, MADV_DONTNEED));
	EXPECT_EQ(0, p2p_rss_kb(p));
	EXPECT_EQ((long)(len >> 10), p2p_touch_pmds(p, len));
	EXPECT_TRUE(p2p_check_pages(p, 0, n, seed));
	EXPECT_EQ(0, munmap(p, len));
}

/*
 * O_DIRECT from and to PMD-mapped p2pmem (GUP-fast on a PMD of device memory): write
 * 2 MiB to A's namespace, read it back into a second PMD-mapped range, compare.
 */
TEST_F_TIMEOUT(p2pmem, pmd_odirect, SLOW_TIMEOUT)
{
	size_t len = P2P_PMD_SIZE, n = len / p2p_page_size();
	uint64_t seed = p2p_seed();
	off_t off = (off_t)(seed % 64) * len;
	char *src, *dst;
	void *ram;
	int fd;

	fd = open(self->a.blk, O_RDWR | O_DIRECT);
	ASSERT_LE(0, fd) TH_LOG("open %s: %s", self->a.blk, strerror(errno));
	src = pmd_map_filled(_metadata, &self->a, len, seed);
	ASSERT_NE(NULL, src);
	dst = pmd_map_filled(_metadata, &self->a, len, ~seed);
	ASSERT_NE(NULL, dst);
	ASSERT_EQ(0, posix_memalign(&ram, 4096, len));
	ASSERT_EQ((ssize_t)len, pwrite(fd, src, len, off))
		TH_LOG("pwrite from PMD-mapped p2pmem: %s", strerror(errno));
	ASSERT_EQ((ssize_t)len, pread(fd, dst, len, off))
		TH_LOG("pread into PMD-mapped p2pmem: %s", strerror(errno));
	ASSERT_EQ((ssize_t)len, pread(fd, ram, len, off));
	EXPECT_TRUE(p2p_check_pages(ram, 0, n, seed)) TH_LOG("the disk does not hold what p2pmem wrote");
	EXPECT_TRUE(p2p_check_pages(dst, 0, n, seed)) TH_LOG("p2pmem read back differs");
	free(ram);
	munmap(src, len);
	munmap(dst, len);
	close(fd);
}

/*
 * A 2 MiB block mapped with a PMD goes back to the pool whole, once no VMA maps any
 * page of it: of a PMD-mapped 4 MiB, munmap of [1, 2) MiB gives nothing back (the
 * block is still half mapped), munmap of [2, 4) MiB gives its 2 MiB, and munmap of
 * [0, 1) MiB the first block's 2 MiB.
 */
TEST_F_TIMEOUT(p2pmem, pmd_partial_release, FAST_TIMEOUT)
{
	size_t len = 2 * P2P_PMD_SIZE, n = len / p2p_page_size();
	long long before = self->avail_a, got;
	uint64_t seed = p2p_seed();
	char *p = pmd_map_filled(_metadata, &self->a, len, seed);
	int waited, i;

	ASSERT_NE(NULL, p);
	ASSERT_EQ(0, munmap(p + P2P_MIB, P2P_MIB));
	/* Anything wrongly released would come back within a second. */
	for (i = 0; i < 100; i++) {
		got = p2p_attr(&self->a, "available");
		if (got != before - (long long)len)
			break;
		usleep(10 * 1000);
	}
	EXPECT_EQ(before - (long long)len, got) TH_LOG("part of a half-mapped block went back");
	ASSERT_EQ(0, munmap(p + P2P_PMD_SIZE, P2P_PMD_SIZE));
	got = p2p_wait_available(&self->a, before - (long long)P2P_PMD_SIZE, 5000, &waited);
	REPORT("munmap of the second 2 MiB: back in %d ms", waited);
	EXPECT_EQ(before - (long long)P2P_PMD_SIZE, got);
	EXPECT_TRUE(p2p_check_pages(p, 0, n / 4, seed));
	ASSERT_EQ(0, munmap(p, P2P_MIB));
	got = p2p_wait_available(&self->a, before, 5000, &waited);
	REPORT("munmap of the rest of the first 2 MiB: back in %d ms", waited);
	EXPECT_EQ(before, got);
}

/* Unmapping the middle of a mapping keeps both ends, with their data. */
TEST_F_TIMEOUT(p2pmem, partial_munmap_middle, FAST_TIMEOUT)
{
	long ps = p2p_page_size();
	size_t n = P2P_MIB / ps;
	uint64_t seed = p2p_seed(), v = 0;
	char *p = p2p_map(&self->a, P2P_MIB);

	ASSERT_NE(MAP_FAILED, p);
	p2p_fill_pages(p, n, seed);
	ASSERT_EQ(0, munmap(p + n / 4 * ps, n / 4 * ps));
	EXPECT_TRUE(p2p_check_pages(p, 0, n / 4, seed));
	EXPECT_TRUE(p2p_check_pages(p, n / 2, n / 2, seed));
	EXPECT_EQ(SIGSEGV, p2p_probe((uint64_t *)(p + n / 4 * ps), false, &v));
	ASSERT_EQ(0, munmap(p, n / 4 * ps));
	EXPECT_TRUE(p2p_check_pages(p, n / 2, n / 2, seed));
	ASSERT_EQ(0, munmap(p + n / 2 * ps, n / 2 * ps));
}

/*
 * The pages of a part of a mapping that is unmapped go back to the pool then, not
 * when the rest of the mapping goes: munmap of half a touched mapping, then an
 * mremap shrink of what is left, each give `available` back their share (within a
 * bounded wait: pages that were mapped are released after an RCU grace period).
 * 4 KiB faults: see pmd_partial_release for 2 MiB blocks.
 */
TEST_F_TIMEOUT(p2pmem, partial_release, FAST_TIMEOUT)
{
	long ps = p2p_page_size();
	size_t len = 4 * P2P_MIB, n = len / ps;
	long long before = self->avail_a, got;
	uint64_t seed = p2p_seed();
	char *p = p2p_map_4k(&self->a, len), *q;
	int waited;

	ASSERT_NE(MAP_FAILED, p);
	p2p_fill_pages(p, n, seed);
	ASSERT_EQ(0, munmap(p + len / 2, len / 2));
	got = p2p_wait_available(&self->a, before - (long long)len / 2, 5000, &waited);
	REPORT("munmap of half: %lld of %zu KiB back in %d ms",
	       (got - (before - (long long)len)) / 1024, len / 2 / 1024, waited);
	EXPECT_EQ(before - (long long)len / 2, got);
	EXPECT_TRUE(p2p_check_pages(p, 0, n / 2, seed));

	q = mremap(p, len / 2, len / 4, 0);
	ASSERT_EQ(p, q);
	got = p2p_wait_available(&self->a, before - (long long)len / 4, 5000, &waited);
	REPORT("mremap shrink by a quarter: %lld of %zu KiB back in %d ms",
	       (got - (before - (long long)len / 2)) / 1024, len / 4 / 1024, waited);
	EXPECT_EQ(before - (long long)len / 4, got);
	EXPECT_TRUE(p2p_check_pages(p, 0, n / 4, seed));
	ASSERT_EQ(0, munmap(p, len / 4));
}

/*
 * A part another process still maps is not released: a forked child unmaps all of
 * a shared mapping (in two steps) and exits; the parent keeps its data, can still
 * write pages neither had touched, and the pool gets nothing back until the parent
 * unmaps.
 */
TEST_F_TIMEOUT(p2pmem, partial_release_fork, FAST_TIMEOUT)
{
	long ps = p2p_page_size();
	size_t len = 2 * P2P_MIB, n = len / ps, i, faults = 0;
	long long before = self->avail_a;
	uint64_t seed = p2p_seed();
	char *p = p2p_map_4k(&self->a, len);
	int status;
	pid_t pid;

	ASSERT_NE(MAP_FAILED, p);
	p2p_fill_pages(p, n / 2, seed);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(munmap(p + len / 4, len / 2) || munmap(p, len) ? 1 : 0);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	/* Anything wrongly released would come back within a second. */
	for (i = 0; i < 100; i++) {
		long long now = p2p_attr(&self->a, "available");

		if (now != before - (long long)len) {
			EXPECT_EQ(before - (long long)len, now);
			break;
		}
		usleep(10 * 1000);
	}
	EXPECT_TRUE(p2p_check_pages(p, 0, n / 2, seed));
	for (i = n / 2; i < n; i++) {
		uint64_t v = seed;

		faults += p2p_probe((uint64_t *)(p + i * ps), true, &v) != 0;
	}
	EXPECT_EQ(0, faults);
	ASSERT_EQ(0, munmap(p + len / 2, len / 2));
	EXPECT_EQ(before - (long long)len / 2,
		  p2p_wait_available(&self->a, before - (long long)len / 2, 5000, NULL));
	EXPECT_TRUE(p2p_check_pages(p, 0, n / 2, seed));
	ASSERT_EQ(0, munmap(p, len / 2));
}

/* A forked child reads the parent's data and writes data the parent then sees. */
TEST_F_TIMEOUT(p2pmem, fork_shared, FAST_TIMEOUT)
{
	size_t n = P2P_MIB / p2p_page_size();
	uint64_t seed = p2p_seed();
	char *p = p2p_map(&self->a, P2P_MIB);
	int status;
	pid_t pid;

	ASSERT_NE(MAP_FAILED, p);
	p2p_fill_pages(p, n / 2, seed);	/* the second half is left for the child to fault */
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		if (!p2p_check_pages(p, 0, n / 2, seed))
			_exit(1);
		p2p_fill_pages(p, n, ~seed);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status)) TH_LOG("the child did not see the parent's data");
	EXPECT_TRUE(p2p_check_pages(p, 0, n, ~seed));
	munmap(p, P2P_MIB);
}

/* mremap: shrinking and moving keep the data; growing is refused. */
TEST_F_TIMEOUT(p2pmem, mremap_shrink_move_grow, FAST_TIMEOUT)
{
	long ps = p2p_page_size();
	size_t n = 2 * P2P_MIB / ps;
	uint64_t seed = p2p_seed();
	char *p = p2p_map(&self->a, 2 * P2P_MIB), *q, *target, *r;

	ASSERT_NE(MAP_FAILED, p);
	p2p_fill_pages(p, n, seed);

	q = mremap(p, 2 * P2P_MIB, P2P_MIB, 0);
	ASSERT_EQ(p, q);
	EXPECT_TRUE(p2p_check_pages(q, 0, n / 2, seed));

	target = mmap(NULL, P2P_MIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, target);
	q = mremap(p, P2P_MIB, P2P_MIB, MREMAP_MAYMOVE | MREMAP_FIXED, target);
	ASSERT_EQ(target, q);
	EXPECT_TRUE(p2p_check_pages(q, 0, n / 2, seed));

	r = mremap(q, P2P_MIB, 2 * P2P_MIB, MREMAP_MAYMOVE);
	REPORT("mremap growth: %s", r == MAP_FAILED ? strerror(errno) : "allowed");
	EXPECT_EQ(MAP_FAILED, r);
	if (r == MAP_FAILED)
		munmap(q, P2P_MIB);
	else
		munmap(r, 2 * P2P_MIB);
}

/*
 * mprotect: read-only refuses writes; a page first faulted read-only is
 * writable after mprotect back to read-write. The last step runs in a child
 * with a deadline, as it never completes on the 7.3 C path.
 */
TEST_F_TIMEOUT(p2pmem, mprotect, FAST_TIMEOUT)
{
	long ps = p2p_page_size();
	uint64_t seed = p2p_seed(), v = 0, one = 1;
	char *p = p2p_map(&self->a, P2P_MIB);
	int status;
	pid_t pid;

	ASSERT_NE(MAP_FAILED, p);
	p2p_fill_pages(p, 1, seed);
	ASSERT_EQ(0, mprotect(p, P2P_MIB, PROT_READ));
	EXPECT_EQ(0, p2p_probe((uint64_t *)p, false, &v));
	EXPECT_EQ(SIGSEGV, p2p_probe((uint64_t *)p, true, &one));
	EXPECT_TRUE(p2p_check_pages(p, 0, 1, seed));

	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		volatile uint64_t *page = (uint64_t *)(p + 2 * ps);

		alarm(10);
		(void)*page;				/* faulted read-only */
		if (mprotect(p, P2P_MIB, PROT_READ | PROT_WRITE))
			_exit(2);
		*page = 42;				/* must become writable */
		_exit(*page == 42 ? 0 : 3);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	REPORT("write after mprotect RO->RW of a page faulted read-only: %s",
	       WIFEXITED(status) && !WEXITSTATUS(status) ? "ok" :
	       WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ? "no progress in 10 s (livelock)" :
	       "failed");
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	munmap(p, P2P_MIB);
}

struct io_loop {
	int fd;
	void *buf;
	volatile bool stop;
	unsigned long ok, err;
	int last_errno;
};

static void *io_loop_fn(void *arg)
{
	struct io_loop *l = arg;
	off_t off = 0;

	while (!l->stop) {
		ssize_t n = (off / P2P_MIB) % 2 ? pread(l->fd, l->buf, P2P_MIB, off) :
						    pwrite(l->fd, l->buf, P2P_MIB, off);
		if (n == P2P_MIB) {
			l->ok++;
		} else {
			l->err++;
			l->last_errno = errno;
			usleep(1000);
		}
		off = (off + P2P_MIB) % (64 * P2P_MIB);
	}
	return NULL;
}

/*
 * munmap while O_DIRECT I/O into and out of the mapping is in flight: the pages
 * pinned by the I/O outlive the mapping, the I/O ends with data or a clean error,
 * and the pool is whole again afterwards (the fixture's teardown checks it).
 */
TEST_F_TIMEOUT(p2pmem, munmap_during_odirect, SLOW_TIMEOUT)
{
	struct io_loop l = { 0 };
	pthread_t th;

	l.fd = open(self->b.blk, O_RDWR | O_DIRECT);
	ASSERT_LE(0, l.fd);
	l.buf = p2p_map(&self->a, P2P_MIB);
	ASSERT_NE(MAP_FAILED, l.buf);
	memset(l.buf, 0x5a, P2P_MIB);
	ASSERT_EQ(0, pthread_create(&th, NULL, io_loop_fn, &l));
	while (l.ok < 4 && !l.err)
		usleep(10000);
	EXPECT_EQ(0, munmap(l.buf, P2P_MIB));
	usleep(200 * 1000);
	l.stop = true;
	pthread_join(th, NULL);
	REPORT("munmap with O_DIRECT in flight: %lu I/Os ok, %lu failed (last: %s)",
	       l.ok, l.err, l.err ? strerror(l.last_errno) : "none");
	EXPECT_LT(0, l.ok);
	/* After munmap the address is gone: the I/O that followed failed cleanly. */
	EXPECT_LT(0, l.err);
	EXPECT_EQ(EFAULT, l.last_errno);
	close(l.fd);
}

/*
 * O_DIRECT between B's namespace and A's p2pmem in flight while A is unbound:
 * unbind completes once the I/O in flight ends, the I/O returns data or a clean
 * error, nothing hangs; rebind brings A's p2pmem back.
 */
TEST_F_TIMEOUT(p2pmem, unbind_during_odirect, SLOW_TIMEOUT)
{
	long long size = p2p_attr(&self->a, "size");
	struct io_loop l = { 0 };
	struct p2p_dev again;
	pthread_t th;
	uint64_t t0, ms;

	l.fd = open(self->b.blk, O_RDWR | O_DIRECT);
	ASSERT_LE(0, l.fd);
	l.buf = p2p_map(&self->a, P2P_MIB);
	ASSERT_NE(MAP_FAILED, l.buf);
	memset(l.buf, 0x3c, P2P_MIB);
	ASSERT_EQ(0, pthread_create(&th, NULL, io_loop_fn, &l));
	while (l.ok < 4 && !l.err)
		usleep(10000);

	t0 = p2p_now_ns();
	ASSERT_EQ(0, p2p_unbind(&self->a));
	ms = (p2p_now_ns() - t0) / 1000000;
	usleep(200 * 1000);
	l.stop = true;
	pthread_join(th, NULL);
	REPORT("unbind with O_DIRECT in flight: %llu ms; %lu I/Os ok, %lu failed (last: %s)",
	       (unsigned long long)ms, l.ok, l.err, l.err ? strerror(l.last_errno) : "none");
	EXPECT_LT(0, l.ok);
	munmap(l.buf, P2P_MIB);
	close(l.fd);

	ASSERT_EQ(0, p2p_rebind(&self->a));
	ASSERT_EQ(0, p2p_provider_ready(&again, 60000));
	EXPECT_EQ(size, p2p_attr(&again, "size"));
}

/*
 * Unbind with a PMD-mapped range: it is zapped, a read afterwards gets SIGBUS, and
 * after rebind the pool is whole (the folio went back as single pages).
 */
TEST_F_TIMEOUT(p2pmem, pmd_unbind, SLOW_TIMEOUT)
{
	size_t len = P2P_PMD_SIZE;
	uint64_t seed = p2p_seed(), v = 0;
	char *p = pmd_map_filled(_metadata, &self->a, len, seed);
	struct p2p_dev again;
	int sig, waited;

	ASSERT_NE(NULL, p);
	ASSERT_EQ(0, p2p_unbind(&self->a));
	sig = p2p_probe((uint64_t *)(p + len / 2), false, &v);
	REPORT("read of a PMD-mapped range after unbind: %s", p2p_sig_name(sig));
	EXPECT_EQ(SIGBUS, sig);
	EXPECT_EQ(0, munmap(p, len));
	ASSERT_EQ(0, p2p_rebind(&self->a));
	ASSERT_EQ(0, p2p_provider_ready(&again, 60000));
	EXPECT_EQ(self->avail_a, p2p_wait_available(&again, self->avail_a, 10000, &waited));
}

/*
 * Unbind the NVMe driver while a mapping exists, touch the old mapping, rebind:
 * unbind must not hang, and p2pmem must come back with its full size.
 */
TEST_F_TIMEOUT(p2pmem, unbind_rebind, SLOW_TIMEOUT)
{
	long long size = p2p_attr(&self->a, "size");
	uint64_t seed = p2p_seed(), first = seed, v = 0;
	struct p2p_dev again;
	uint64_t t0, unbind_ms;
	int sig, waited;
	void *p;

	p = p2p_map(&self->a, P2P_MIB);
	ASSERT_NE(MAP_FAILED, p);
	p2p_fill(p, P2P_MIB, seed);

	t0 = p2p_now_ns();
	ASSERT_EQ(0, p2p_unbind(&self->a));
	unbind_ms = (p2p_now_ns() - t0) / 1000000;

	p2p_next(&first);
	sig = p2p_probe(p, false, &v);
	TH_LOG("unbind with a live mapping took %llu ms; a read of the old mapping afterwards: %s",
	       (unsigned long long)unbind_ms, p2p_sig_name(sig));
	printf("# REPORT: [%s] unbind with a live mapping: %llu ms; read after unbind: %s%s\n",
	       p2p_impl(), (unsigned long long)unbind_ms, p2p_sig_name(sig),
	       sig ? "" : (v == first ? " (old data)" : " (other data)"));
	EXPECT_EQ(SIGBUS, sig);
	EXPECT_EQ(0, munmap(p, P2P_MIB));

	ASSERT_EQ(0, p2p_rebind(&self->a));
	ASSERT_EQ(0, p2p_provider_ready(&again, 60000));
	EXPECT_EQ(size, p2p_attr(&again, "size"));
	EXPECT_EQ(self->avail_a, p2p_wait_available(&again, self->avail_a, 10000, &waited));
}

TEST_HARNESS_MAIN
