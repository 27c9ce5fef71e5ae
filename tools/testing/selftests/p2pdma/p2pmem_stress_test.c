// SPDX-License-Identifier: GPL-2.0
/*
 * Races of the p2pmem mmap path with device unbind, bounded in count and time:
 * faults, fork, mmap/munmap churn and O_DIRECT against unbind/rebind, and GUP-fast
 * pressure while mappings are torn down and the pool is reused.
 *
 * P2PDMA_STRESS_ITERS sets the number of rounds of each test (default 3). After
 * every round p2pmem/available must be back to its starting value and a rebind
 * must give the full size; the harness checks the kernel log for splats.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/wait.h>
#include "p2pdma_lib.h"
#include "../kselftest_harness.h"

#define TIMEOUT 3600

static int iters(void)
{
	const char *v = getenv("P2PDMA_STRESS_ITERS");
	int n = v ? atoi(v) : 3;

	return n > 0 ? n : 3;
}

static __thread sigjmp_buf *thread_env;

static void sigbus_handler(int sig)
{
	if (thread_env)
		siglongjmp(*thread_env, sig);
	_exit(100 + sig);
}

static void install_handlers(void)
{
	struct sigaction sa = { .sa_handler = sigbus_handler };

	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
}

FIXTURE(stress) {
	struct p2p_dev a, b;
	long long avail, size;
};

FIXTURE_SETUP(stress)
{
	if (p2p_provider_ready(&self->a, 10000))
		SKIP(return, "no p2pmem provider (P2PDMA_PROVIDER, or NVMe %s with a CMB)", p2p_serial('A'));
	if (p2p_find_ready(p2p_serial('B'), &self->b, 10000))
		SKIP(return, "no second NVMe %s with a CMB", p2p_serial('B'));
	self->avail = p2p_attr(&self->a, "available");
	self->size = p2p_attr(&self->a, "size");
	ASSERT_GT(self->avail, 0);
	install_handlers();
	printf("# iterations: %d\n", iters());
}

FIXTURE_TEARDOWN(stress)
{
	struct p2p_dev d;

	if (!p2p_provider_ready(&d, 10000))
		EXPECT_EQ(self->avail, p2p_wait_available(&d, self->avail, 10000, NULL));
}

/* Rebinds A and checks that its p2pmem comes back whole. */
static void rebind(struct __test_metadata *_metadata, FIXTURE_DATA(stress) *self)
{
	ASSERT_EQ(0, p2p_rebind(&self->a));
	ASSERT_EQ(0, p2p_provider_ready(&self->a, 60000));
	ASSERT_EQ(self->size, p2p_attr(&self->a, "size"));
	ASSERT_EQ(self->avail, p2p_wait_available(&self->a, self->avail, 10000, NULL));
}

struct toucher {
	volatile char *p;
	size_t len;
	volatile bool stop;
	unsigned long touches;
	int sig;
};

static void *touch_fn(void *arg)
{
	struct toucher *t = arg;
	sigjmp_buf env;
	size_t off = 0;
	int sig;

	thread_env = &env;
	sig = sigsetjmp(env, 1);
	if (sig) {
		t->sig = sig;
		thread_env = NULL;
		return NULL;
	}
	while (!t->stop) {
		t->p[off] = (char)off;
		t->touches++;
		off = (off + 4096 * 7) % t->len;
	}
	thread_env = NULL;
	return NULL;
}

/* Threads touching a mapping while the device is unbound. */
TEST_F_TIMEOUT(stress, fault_vs_unbind, TIMEOUT)
{
	int i, sigbus = 0;

	for (i = 0; i < iters(); i++) {
		struct toucher t = { .len = 4 * P2P_MIB };
		pthread_t th[2];
		int j;

		t.p = p2p_map(&self->a, t.len);
		ASSERT_NE(MAP_FAILED, t.p);
		for (j = 0; j < 2; j++)
			ASSERT_EQ(0, pthread_create(&th[j], NULL, touch_fn, &t));
		usleep(50 * 1000);
		ASSERT_EQ(0, p2p_unbind(&self->a));
		usleep(50 * 1000);
		t.stop = true;
		for (j = 0; j < 2; j++)
			pthread_join(th[j], NULL);
		sigbus += t.sig == SIGBUS;
		ASSERT_EQ(0, munmap((void *)t.p, t.len));
		rebind(_metadata, self);
	}
	printf("# REPORT: [%s] stress.fault_vs_unbind: %d rounds, %d ended in SIGBUS\n",
	       p2p_impl(), iters(), sigbus);
}

/* Forked children touching an inherited mapping while the device is unbound. */
TEST_F_TIMEOUT(stress, fork_vs_unbind, TIMEOUT)
{
	int i, j, status;

	for (i = 0; i < iters(); i++) {
		volatile char *p = p2p_map(&self->a, P2P_MIB);
		pid_t pid[2];

		ASSERT_NE(MAP_FAILED, p);
		p[0] = 1;
		for (j = 0; j < 2; j++) {
			pid[j] = fork();
			ASSERT_LE(0, pid[j]);
			if (!pid[j]) {
				uint64_t end = p2p_now_ns() + 5000000000ULL;
				size_t off = 0;

				/* SIGBUS after unbind ends the child (exit 107) */
				while (p2p_now_ns() < end) {
					p[off] = 2;
					off = (off + 4096) % P2P_MIB;
				}
				_exit(0);
			}
		}
		usleep(100 * 1000);
		ASSERT_EQ(0, p2p_unbind(&self->a));
		for (j = 0; j < 2; j++) {
			ASSERT_EQ(pid[j], waitpid(pid[j], &status, 0));
			EXPECT_TRUE(WIFEXITED(status));
		}
		munmap((void *)p, P2P_MIB);
		rebind(_metadata, self);
	}
}

struct churner {
	const struct p2p_dev *dev;
	volatile bool stop;
	unsigned long maps, errors;
};

static void *churn_fn(void *arg)
{
	struct churner *c = arg;
	sigjmp_buf env;

	thread_env = &env;
	while (!c->stop) {
		volatile char *p = p2p_map(c->dev, P2P_MIB);

		if (p == MAP_FAILED) {
			c->errors++;
			usleep(1000);
			continue;
		}
		if (!sigsetjmp(env, 1))
			p[4096] = 1;
		munmap((void *)p, P2P_MIB);
		c->maps++;
	}
	thread_env = NULL;
	return NULL;
}

/* mmap/munmap churn from several threads while the device is unbound. */
TEST_F_TIMEOUT(stress, churn_vs_unbind, TIMEOUT)
{
	int i, j;

	for (i = 0; i < iters(); i++) {
		struct churner c = { .dev = &self->a };
		pthread_t th[3];

		for (j = 0; j < 3; j++)
			ASSERT_EQ(0, pthread_create(&th[j], NULL, churn_fn, &c));
		usleep(200 * 1000);
		ASSERT_EQ(0, p2p_unbind(&self->a));
		usleep(100 * 1000);
		c.stop = true;
		for (j = 0; j < 3; j++)
			pthread_join(th[j], NULL);
		EXPECT_LT(0, c.maps);
		rebind(_metadata, self);
	}
}

struct gup_worker {
	const struct p2p_dev *buf, *io;
	volatile int rounds;
	int failures, id;
};

/* Map, fill, O_DIRECT write and read back through GUP-fast, unmap; repeat. */
static void *gup_fn(void *arg)
{
	struct gup_worker *w = arg;
	size_t len = 256 * 1024;
	off_t off = (off_t)w->id * 8 * P2P_MIB;
	int fd = open(w->io->blk, O_RDWR | O_DIRECT), r;

	if (fd < 0) {
		w->failures++;
		return NULL;
	}
	sigjmp_buf env;

	thread_env = &env;
	for (r = 0; r < w->rounds; r++) {
		uint64_t seed = p2p_seed();
		char *volatile p = p2p_map(w->buf, 2 * len);

		if (p == MAP_FAILED) {
			w->failures++;
			usleep(1000);
			continue;
		}
		if (sigsetjmp(env, 1)) {
			/* the device went away under the CPU access */
			w->failures++;
		} else {
			p2p_fill(p, len, seed);
			memset(p + len, 0, len);
			if (pwrite(fd, p, len, off) != (ssize_t)len ||
			    pread(fd, p + len, len, off) != (ssize_t)len ||
			    p2p_check(p + len, len, seed) != -1)
				w->failures++;
		}
		munmap(p, 2 * len);
	}
	thread_env = NULL;
	close(fd);
	return NULL;
}

/* O_DIRECT from several threads while mappings are torn down and pages reused. */
TEST_F_TIMEOUT(stress, gup_fast_pressure, TIMEOUT)
{
	struct gup_worker w[4];
	pthread_t th[4];
	int j, failures = 0;

	for (j = 0; j < 4; j++) {
		w[j] = (struct gup_worker){ .buf = &self->a, .io = j % 2 ? &self->b : &self->a,
					    .rounds = 10 * iters(), .id = j };
		ASSERT_EQ(0, pthread_create(&th[j], NULL, gup_fn, &w[j]));
	}
	for (j = 0; j < 4; j++) {
		pthread_join(th[j], NULL);
		failures += w[j].failures;
	}
	printf("# REPORT: [%s] stress.gup_fast_pressure: %d O_DIRECT round trips, %d failed\n",
	       p2p_impl(), 4 * 10 * iters(), failures);
	EXPECT_EQ(0, failures);
}

/* O_DIRECT between B's namespace and A's p2pmem in flight while A is unbound. */
TEST_F_TIMEOUT(stress, odirect_vs_unbind, TIMEOUT)
{
	int i;

	for (i = 0; i < iters(); i++) {
		struct gup_worker w = { .buf = &self->a, .io = &self->b, .rounds = 1000000 };
		pthread_t th;
		uint64_t t0;

		ASSERT_EQ(0, pthread_create(&th, NULL, gup_fn, &w));
		usleep(200 * 1000);
		t0 = p2p_now_ns();
		ASSERT_EQ(0, p2p_unbind(&self->a));
		printf("# round %d: unbind with O_DIRECT in flight took %llu ms\n", i,
		       (unsigned long long)((p2p_now_ns() - t0) / 1000000));
		/* The worker now fails every round quickly; let it finish. */
		w.rounds = 0;
		pthread_join(th, NULL);
		rebind(_metadata, self);
	}
}

TEST_HARNESS_MAIN
