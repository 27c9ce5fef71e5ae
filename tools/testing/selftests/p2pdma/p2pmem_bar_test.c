// SPDX-License-Identifier: GPL-2.0
/*
 * p2pmem_bar, the driver that publishes a memory BAR of any PCI device as p2pmem:
 * its parameters and their errors, binding by driver_override, unbind and module
 * unload with live mappings, and bind racing unbind.
 *
 * Needs the p2pmem_bar module (P2PMEM_BAR_KO: path of p2pmem_bar.ko) and a device it
 * is bound to (QEMU's ivshmem-plain with a 2 MiB aligned memory backend). The
 * driver_override cases also use a PCI device that no driver claims and has no
 * 64-bit prefetchable memory BAR (on QEMU q35, the ICH9 SMBus controller).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "../kselftest_harness.h"
#include "p2pdma_lib.h"

#define TIMEOUT 300
#define MOD "p2pmem_bar"
#define DRV "/sys/bus/pci/drivers/" MOD

FIXTURE(bar) {
	struct p2p_dev p;	/* the BAR provider */
	long long size, avail;
	const char *ko;
};

/* Loads p2pmem_bar.ko with params; 0 or -errno. */
static int load(const char *ko, const char *params)
{
	int fd = open(ko, O_RDONLY | O_CLOEXEC), ret;

	if (fd < 0)
		return -errno;
	ret = syscall(SYS_finit_module, fd, params, 0);
	ret = ret ? -errno : 0;
	close(fd);
	return ret;
}

static int unload(void)
{
	return syscall(SYS_delete_module, MOD, O_NONBLOCK) ? -errno : 0;
}

/* The first device bound to p2pmem_bar, into d (BDF and p2pmem only). */
static int find_bound(struct p2p_dev *d)
{
	struct dirent *e;
	DIR *dir = opendir(DRV);
	int ret = -ENODEV;

	if (!dir)
		return -ENODEV;
	while ((e = readdir(dir))) {
		if (!strchr(e->d_name, ':'))
			continue;
		memset(d, 0, sizeof(*d));
		snprintf(d->bdf, sizeof(d->bdf), "%.64s", e->d_name);
		snprintf(d->p2pmem, sizeof(d->p2pmem), "/sys/bus/pci/devices/%s/p2pmem", d->bdf);
		snprintf(d->driver, sizeof(d->driver), MOD);
		ret = 0;
		break;
	}
	closedir(dir);
	return ret;
}

/* Waits (bounded) for p2pmem/available of d to appear. */
static int wait_p2pmem(const struct p2p_dev *d, int timeout_ms)
{
	int waited;

	for (waited = 0; waited <= timeout_ms; waited += 20) {
		if (p2p_attr(d, "available") >= 0)
			return 0;
		usleep(20 * 1000);
	}
	return -ETIMEDOUT;
}

/* Reloads the module with params and returns what binding bdf to it gave. */
static int reload_and_bind(const char *ko, const char *params, const char *bdf)
{
	char path[P2P_PATH];
	int ret;

	unload();
	ret = load(ko, params);
	if (ret)
		return ret;
	/* The ID table binds ivshmem at load; bind explicitly to get the errno. */
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
	if (!access(path, F_OK))
		return 0;
	return p2p_write_file(DRV "/bind", bdf);
}

/* Whether bdf is bound to p2pmem_bar. */
static bool bound(const char *bdf)
{
	char path[P2P_PATH];

	snprintf(path, sizeof(path), DRV "/%s", bdf);
	return !access(path, F_OK);
}

/* A PCI device with no driver and no 64-bit prefetchable memory BAR, or NULL. */
static const char *find_unclaimed(char *out, size_t len)
{
	char path[P2P_PATH], buf[64];
	struct dirent *e;
	DIR *dir = opendir("/sys/bus/pci/devices");

	if (!dir)
		return NULL;
	while ((e = readdir(dir))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", e->d_name);
		if (!access(path, F_OK))
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/class", e->d_name);
		/* 0x0c0500: SMBus, I/O BARs only on q35. */
		if (p2p_read_file(path, buf, sizeof(buf)) || strcmp(buf, "0x0c0500"))
			continue;
		snprintf(out, len, "%.63s", e->d_name);
		closedir(dir);
		return out;
	}
	closedir(dir);
	return NULL;
}

FIXTURE_SETUP(bar)
{
	self->ko = getenv("P2PMEM_BAR_KO");
	if (!self->ko || access(self->ko, R_OK))
		SKIP(return, "P2PMEM_BAR_KO does not name p2pmem_bar.ko");
	if (find_bound(&self->p)) {
		load(self->ko, "");
		if (find_bound(&self->p))
			SKIP(return, "no device is bound to p2pmem_bar");
	}
	ASSERT_EQ(0, wait_p2pmem(&self->p, 10000));
	self->size = p2p_attr(&self->p, "size");
	self->avail = p2p_attr(&self->p, "available");
	ASSERT_GT(self->size, 0);
}

FIXTURE_TEARDOWN(bar)
{
	/*
	 * Leave the module loaded with its defaults and the provider whole; a test may
	 * have left it loaded with other parameters (or unloaded). The pool is checked
	 * first, before the reload gives a fresh one.
	 */
	if (!self->ko)
		return;
	if (bound(self->p.bdf) && p2p_attr(&self->p, "size") == self->size)
		EXPECT_EQ(self->avail, p2p_wait_available(&self->p, self->avail, 10000, NULL))
			TH_LOG("p2pmem of %s leaked", self->p.bdf);
	EXPECT_EQ(0, reload_and_bind(self->ko, "", self->p.bdf));
	EXPECT_EQ(0, wait_p2pmem(&self->p, 10000));
	EXPECT_EQ(self->size, p2p_attr(&self->p, "size"));
	EXPECT_EQ(self->avail, p2p_wait_available(&self->p, self->avail, 10000, NULL))
		TH_LOG("p2pmem of %s leaked", self->p.bdf);
}

/* The default is the largest 64-bit prefetchable BAR, whole: ivshmem's BAR 2. */
TEST_F_TIMEOUT(bar, default_whole_bar, TIMEOUT)
{
	char path[P2P_PATH], buf[256];
	unsigned long long start, end, flags, len = 0;
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource", self->p.bdf);
	f = fopen(path, "r");
	ASSERT_NE(NULL, f);
	for (i = 0; i < 6 && fgets(buf, sizeof(buf), f); i++) {
		if (sscanf(buf, "%llx %llx %llx", &start, &end, &flags) != 3 || !end)
			continue;
		/* IORESOURCE_MEM_64 | IORESOURCE_PREFETCH */
		if ((flags & 0x102000) == 0x102000 && end - start + 1 > len)
			len = end - start + 1;
	}
	fclose(f);
	ASSERT_GT(len, 0);
	EXPECT_EQ((long long)len, self->size);
	EXPECT_EQ(0, p2p_attr(&self->p, "published"));
}

/* offset=, size= and publish= take effect. */
TEST_F_TIMEOUT(bar, offset_size_publish, TIMEOUT)
{
	ASSERT_EQ(0, reload_and_bind(self->ko, "offset=2097152 size=4194304 publish=1",
				     self->p.bdf));
	ASSERT_EQ(0, wait_p2pmem(&self->p, 10000));
	EXPECT_EQ(4 * P2P_MIB, p2p_attr(&self->p, "size"));
	EXPECT_EQ(1, p2p_attr(&self->p, "published"));
}

/* Bad parameters: probe fails with a clear errno, the device has no p2pmem. */
TEST_F_TIMEOUT(bar, bad_parameters, TIMEOUT)
{
	static const struct {
		const char *params;
		int err;
	} cases[] = {
		{ "bar=7", -EINVAL },			/* not a standard BAR */
		{ "bar=-2", -EINVAL },
		{ "bar=1", -ENXIO },			/* ivshmem-plain has no BAR 1 */
		{ "bar=0", -EINVAL },			/* 256-byte register BAR */
		{ "offset=4096", -EINVAL },		/* not 2 MiB aligned */
		{ "size=1048576", -EINVAL },
		{ "size=17179869184", -EINVAL },	/* larger than the BAR */
		{ "offset=17179869184", -EINVAL },
	};
	char path[P2P_PATH];
	unsigned int i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ret = reload_and_bind(self->ko, cases[i].params, self->p.bdf);

		EXPECT_EQ(cases[i].err, ret)
			TH_LOG("%s: bind gave %s", cases[i].params, strerror(-ret));
		EXPECT_FALSE(bound(self->p.bdf)) TH_LOG("%s: bound anyway", cases[i].params);
		snprintf(path, sizeof(path), "%s/allocate", self->p.p2pmem);
		EXPECT_NE(0, access(path, F_OK)) TH_LOG("%s: half registered", cases[i].params);
	}
}

/*
 * driver_override binds any device; one with only I/O BARs is refused by default
 * (no 64-bit prefetchable memory BAR: ENODEV) and with bar= (an I/O BAR: EINVAL).
 */
TEST_F_TIMEOUT(bar, driver_override_refused, TIMEOUT)
{
	char bdf[64], path[P2P_PATH];
	int ret;

	if (!find_unclaimed(bdf, sizeof(bdf)))
		SKIP(return, "no unclaimed SMBus controller to bind by driver_override");
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver_override", bdf);
	ASSERT_EQ(0, p2p_write_file(path, MOD));
	EXPECT_EQ(-ENODEV, reload_and_bind(self->ko, "", bdf));
	EXPECT_FALSE(bound(bdf));
	EXPECT_EQ(-EINVAL, reload_and_bind(self->ko, "bar=4", bdf));
	EXPECT_FALSE(bound(bdf));
	ret = p2p_write_file(path, "\n");
	EXPECT_EQ(0, ret);
}

/*
 * Module unload with a live, touched mapping: the mapping SIGBUSes afterwards,
 * reload gives the whole BAR back, and new mappings work.
 */
TEST_F_TIMEOUT(bar, unload_with_live_mapping, TIMEOUT)
{
	uint64_t seed = p2p_seed(), v = 0;
	void *p, *q;
	int sig;

	p = p2p_map(&self->p, 4 * P2P_MIB);
	ASSERT_NE(MAP_FAILED, p);
	p2p_fill(p, 4 * P2P_MIB, seed);
	ASSERT_EQ(0, unload());
	EXPECT_FALSE(bound(self->p.bdf));
	sig = p2p_probe(p, false, &v);
	EXPECT_EQ(SIGBUS, sig) TH_LOG("read after unload: %s", p2p_sig_name(sig));
	sig = p2p_probe(p, true, &v);
	EXPECT_EQ(SIGBUS, sig) TH_LOG("write after unload: %s", p2p_sig_name(sig));
	EXPECT_EQ(0, munmap(p, 4 * P2P_MIB));

	ASSERT_EQ(0, reload_and_bind(self->ko, "", self->p.bdf));
	ASSERT_EQ(0, wait_p2pmem(&self->p, 10000));
	EXPECT_EQ(self->size, p2p_attr(&self->p, "size"));
	q = p2p_map(&self->p, 4 * P2P_MIB);
	ASSERT_NE(MAP_FAILED, q);
	p2p_fill(q, 4 * P2P_MIB, seed + 1);
	EXPECT_EQ(-1, p2p_check(q, 4 * P2P_MIB, seed + 1));
	EXPECT_EQ(0, munmap(q, 4 * P2P_MIB));
}

struct binder {
	const char *bdf;
	const char *file;
	volatile bool stop;
	unsigned long ok, refused;
};

static void *bind_loop(void *arg)
{
	struct binder *b = arg;

	while (!b->stop) {
		if (p2p_write_file(b->file, b->bdf))
			b->refused++;
		else
			b->ok++;
	}
	return NULL;
}

/*
 * bind and unbind from two threads while a third maps and touches p2pmem: every
 * write ends in success or a clean errno, and the device ends up bound and whole.
 */
TEST_F_TIMEOUT(bar, bind_races_unbind, TIMEOUT)
{
	struct binder bi = { .bdf = self->p.bdf, .file = DRV "/bind" };
	struct binder un = { .bdf = self->p.bdf, .file = DRV "/unbind" };
	pthread_t tb, tu;
	uint64_t t0 = p2p_now_ns(), v = 1;
	unsigned long maps = 0;

	ASSERT_EQ(0, pthread_create(&tb, NULL, bind_loop, &bi));
	ASSERT_EQ(0, pthread_create(&tu, NULL, bind_loop, &un));
	while (p2p_now_ns() - t0 < 5000000000ULL) {
		void *p = p2p_map(&self->p, P2P_MIB);

		if (p == MAP_FAILED)
			continue;
		maps++;
		p2p_probe(p, true, &v);	/* SIGBUS if unbound meanwhile */
		munmap(p, P2P_MIB);
	}
	bi.stop = un.stop = true;
	pthread_join(tb, NULL);
	pthread_join(tu, NULL);
	TH_LOG("bind %lu ok / %lu refused, unbind %lu ok / %lu refused, %lu maps",
	       bi.ok, bi.refused, un.ok, un.refused, maps);
	EXPECT_LT(0, bi.ok);
	EXPECT_LT(0, un.ok);
	if (!bound(self->p.bdf))
		ASSERT_EQ(0, p2p_write_file(DRV "/bind", self->p.bdf));
	ASSERT_EQ(0, wait_p2pmem(&self->p, 10000));
}

TEST_HARNESS_MAIN
