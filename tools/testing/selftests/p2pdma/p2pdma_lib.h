/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the p2pdma selftests: find the NVMe devices of the test
 * topology, map p2pmem, random patterns, unbind/rebind, fault probing.
 *
 * The devices are found by NVMe serial number (P2PDMA_SERIAL_A, _B, _LONE in the
 * environment, "p2p-a", "p2p-b", "p2p-lone" by default): A and B sit behind one
 * PCIe switch, LONE on its own root port.
 *
 * The provider under test, whose p2pmem the tests map, is NVMe A's CMB by default;
 * P2PDMA_PROVIDER=<BDF> selects any other device with p2pmem/allocate. An NVMe
 * provider does I/O with its own namespace; any other provider (a BAR published by
 * p2pmem_bar, say) with NVMe A's namespace.
 */
#ifndef P2PDMA_LIB_H
#define P2PDMA_LIB_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define P2P_MIB (1UL << 20)
#define P2P_PATH 512

struct p2p_dev {
	char serial[64];	/* NVMe serial; "" for a provider that is no NVMe */
	char ctrl[256];		/* nvmeX; "" for a provider that is no NVMe */
	char bdf[256];		/* 0000:02:00.0 */
	char blk[272];		/* /dev/nvmeXn1: own namespace, or NVMe A's */
	char p2pmem[320];	/* /sys/bus/pci/devices/<bdf>/p2pmem */
	char driver[64];	/* driver bound when found (for a rebind) */
};

/* The last component of the symlink at path into out; 0 or -errno. */
static inline int p2p_link_name(const char *path, char *out, size_t len)
{
	char link[P2P_PATH];
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	char *s;

	if (n < 0)
		return -errno;
	link[n] = '\0';
	s = strrchr(link, '/');
	snprintf(out, len, "%.63s", s ? s + 1 : link);
	return 0;
}

/* Records the name of the driver bound to d->bdf (if any) in d->driver. */
static inline void p2p_read_driver(struct p2p_dev *d)
{
	char path[P2P_PATH];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", d->bdf);
	p2p_link_name(path, d->driver, sizeof(d->driver));
}

static inline long p2p_page_size(void)
{
	return sysconf(_SC_PAGESIZE);
}

static inline uint64_t p2p_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* Reads a whole small sysfs file into buf; returns 0 or -errno. */
static inline int p2p_read_file(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return 0;
}

static inline int p2p_write_file(const char *path, const char *val)
{
	ssize_t n;
	int fd = open(path, O_WRONLY);

	if (fd < 0)
		return -errno;
	n = write(fd, val, strlen(val));
	close(fd);
	return n < 0 ? -errno : 0;
}

static inline const char *p2p_serial(char which)
{
	const char *env = which == 'A' ? "P2PDMA_SERIAL_A" :
			  which == 'B' ? "P2PDMA_SERIAL_B" : "P2PDMA_SERIAL_LONE";
	const char *def = which == 'A' ? "p2p-a" : which == 'B' ? "p2p-b" : "p2p-lone";
	const char *v = getenv(env);

	return v && *v ? v : def;
}

/* Finds the NVMe controller with the given serial; returns 0 or -ENODEV. */
static inline int p2p_find(const char *serial, struct p2p_dev *d)
{
	char path[P2P_PATH], buf[256], bdf[64], want[64];
	struct dirent *e;
	DIR *dir;
	int ret = -ENODEV;

	/* d may be the struct serial points into: keep a copy. */
	snprintf(want, sizeof(want), "%s", serial);
	serial = want;
	dir = opendir("/sys/class/nvme");
	if (!dir)
		return -ENODEV;
	while ((e = readdir(dir))) {
		if (strncmp(e->d_name, "nvme", 4))
			continue;
		snprintf(path, sizeof(path), "/sys/class/nvme/%s/serial", e->d_name);
		if (p2p_read_file(path, buf, sizeof(buf)) || strcmp(buf, serial))
			continue;
		snprintf(path, sizeof(path), "/sys/class/nvme/%s/device", e->d_name);
		if (p2p_link_name(path, bdf, sizeof(bdf)))
			continue;
		memset(d, 0, sizeof(*d));
		snprintf(d->serial, sizeof(d->serial), "%s", serial);
		snprintf(d->ctrl, sizeof(d->ctrl), "%s", e->d_name);
		snprintf(d->bdf, sizeof(d->bdf), "%s", bdf);
		snprintf(d->blk, sizeof(d->blk), "/dev/%sn1", e->d_name);
		snprintf(d->p2pmem, sizeof(d->p2pmem),
			 "/sys/bus/pci/devices/%s/p2pmem", d->bdf);
		p2p_read_driver(d);
		ret = 0;
		break;
	}
	closedir(dir);
	return ret;
}

/*
 * Waits (bounded) until the device with that serial has a namespace block device
 * and registered p2pmem. Returns 0 or -ETIMEDOUT.
 */
static inline int p2p_find_ready(const char *serial, struct p2p_dev *d, int timeout_ms)
{
	char path[P2P_PATH];
	struct stat st;
	int waited;

	for (waited = 0; waited <= timeout_ms; waited += 50) {
		if (!p2p_find(serial, d)) {
			snprintf(path, sizeof(path), "%s/available", d->p2pmem);
			if (!stat(path, &st) && !stat(d->blk, &st))
				return 0;
		}
		usleep(50 * 1000);
	}
	return -ETIMEDOUT;
}

/* The NVMe serial of the controller at bdf, copied to out; 0 or -ENODEV. */
static inline int p2p_nvme_serial_of(const char *bdf, char *out, size_t len)
{
	char path[P2P_PATH];
	struct dirent *e;
	DIR *dir;
	int ret = -ENODEV;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/nvme", bdf);
	dir = opendir(path);
	if (!dir)
		return -ENODEV;
	while ((e = readdir(dir))) {
		if (strncmp(e->d_name, "nvme", 4))
			continue;
		snprintf(path, sizeof(path), "/sys/class/nvme/%s/serial", e->d_name);
		if (!p2p_read_file(path, out, len)) {
			ret = 0;
			break;
		}
	}
	closedir(dir);
	return ret;
}

/* Whether any PCI device has p2pmem at all (tests skip at once when none has). */
static inline bool p2p_any_p2pmem(void)
{
	char path[P2P_PATH];
	struct dirent *e;
	struct stat st;
	bool found = false;
	DIR *dir = opendir("/sys/bus/pci/devices");

	if (!dir)
		return false;
	while (!found && (e = readdir(dir))) {
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%.64s/p2pmem", e->d_name);
		found = e->d_name[0] != '.' && !stat(path, &st);
	}
	closedir(dir);
	return found;
}

/* P2PDMA_PROVIDER, or NULL when the provider is NVMe A. */
static inline const char *p2p_provider_bdf(void)
{
	const char *v = getenv("P2PDMA_PROVIDER");

	return v && *v ? v : NULL;
}

/*
 * Finds the provider under test and waits (bounded) until it has p2pmem and its
 * I/O namespace exists. Returns 0 or -ETIMEDOUT.
 */
static inline int p2p_provider_ready(struct p2p_dev *d, int timeout_ms)
{
	const char *bdf = p2p_provider_bdf();
	char path[P2P_PATH], serial[64];
	struct stat st;
	int waited;

	if (!p2p_any_p2pmem())
		return -ENODEV;
	if (!bdf)
		return p2p_find_ready(p2p_serial('A'), d, timeout_ms);
	for (waited = 0; waited <= timeout_ms; waited += 50) {
		/* An NVMe provider: by its serial, as it may come back as another nvmeX. */
		if (!p2p_nvme_serial_of(bdf, serial, sizeof(serial)))
			return p2p_find_ready(serial, d, timeout_ms - waited);
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/p2pmem/available", bdf);
		if (!stat(path, &st) && !p2p_find(p2p_serial('A'), d) && !stat(d->blk, &st)) {
			/* d holds NVMe A: keep its namespace, take the rest from bdf. */
			d->serial[0] = '\0';
			d->ctrl[0] = '\0';
			snprintf(d->bdf, sizeof(d->bdf), "%.64s", bdf);
			snprintf(d->p2pmem, sizeof(d->p2pmem),
				 "/sys/bus/pci/devices/%s/p2pmem", d->bdf);
			d->driver[0] = '\0';
			p2p_read_driver(d);
			return 0;
		}
		usleep(50 * 1000);
	}
	return -ETIMEDOUT;
}

/* A name for the provider in messages: its NVMe serial or its BDF. */
static inline const char *p2p_name(const struct p2p_dev *d)
{
	return d->serial[0] ? d->serial : d->bdf;
}

/* p2pmem/<attr> as a number; -1 when it cannot be read. */
static inline long long p2p_attr(const struct p2p_dev *d, const char *attr)
{
	char path[P2P_PATH], buf[64];

	snprintf(path, sizeof(path), "%s/%s", d->p2pmem, attr);
	if (p2p_read_file(path, buf, sizeof(buf)))
		return -1;
	return strtoll(buf, NULL, 0);
}

/*
 * Waits (bounded) until p2pmem/available equals want. Pages can come back a little
 * after munmap or exit (deferred fput, RCU-deferred release). Returns the last
 * value read and stores the time waited in *waited_ms.
 */
static inline long long p2p_wait_available(const struct p2p_dev *d, long long want,
					   int timeout_ms, int *waited_ms)
{
	long long v = -1;
	int waited;

	for (waited = 0; waited <= timeout_ms; waited += 10) {
		v = p2p_attr(d, "available");
		if (v == want)
			break;
		usleep(10 * 1000);
	}
	if (waited_ms)
		*waited_ms = waited;
	return v;
}

static inline int p2p_open_alloc(const struct p2p_dev *d)
{
	char path[P2P_PATH];

	snprintf(path, sizeof(path), "%s/allocate", d->p2pmem);
	return open(path, O_RDWR);
}

/* mmap()s len bytes of p2pmem of d; returns MAP_FAILED with errno set on failure. */
static inline void *p2p_map_flags(const struct p2p_dev *d, size_t len, int flags, off_t off)
{
	int fd = p2p_open_alloc(d), err;
	void *p;

	if (fd < 0)
		return MAP_FAILED;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, off);
	err = errno;
	close(fd);
	errno = err;
	return p;
}

static inline void *p2p_map(const struct p2p_dev *d, size_t len)
{
	return p2p_map_flags(d, len, MAP_SHARED, 0);
}

#define P2P_PMD_SIZE (2UL << 20)

/*
 * mmap()s len bytes of p2pmem of d at an address aligned to align (a power of two),
 * so that faults can map whole PMDs. When the Rust implementation serves allocate,
 * mmap(NULL, len) of 2 MiB or more gets a 2 MiB-aligned address already; this is how
 * a program gets one anyway (the C implementation, an older kernel): reserve len +
 * align bytes of address space, map the file over the aligned part of it
 * (MAP_FIXED), then give the rest back. Returns MAP_FAILED with errno set on failure.
 */
static inline void *p2p_map_aligned(const struct p2p_dev *d, size_t len, size_t align)
{
	char *area, *p;
	int fd, err;
	size_t lead;

	area = mmap(NULL, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		return MAP_FAILED;
	lead = (align - ((uintptr_t)area & (align - 1))) & (align - 1);
	fd = p2p_open_alloc(d);
	if (fd < 0) {
		err = errno;
		munmap(area, len + align);
		errno = err;
		return MAP_FAILED;
	}
	p = mmap(area + lead, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	err = errno;
	close(fd);
	if (p == MAP_FAILED) {
		munmap(area, len + align);
		errno = err;
		return MAP_FAILED;
	}
	if (lead)
		munmap(area, lead);
	munmap(p + len, align - lead);
	return p;
}

/*
 * mmap()s len bytes of p2pmem of d that faults map 4 KiB at a time (MADV_NOHUGEPAGE):
 * for tests of page-granular behaviour. Returns MAP_FAILED with errno set on failure.
 */
static inline void *p2p_map_4k(const struct p2p_dev *d, size_t len)
{
	void *p = p2p_map(d, len);
	int err;

	if (p != MAP_FAILED && madvise(p, len, MADV_NOHUGEPAGE)) {
		err = errno;
		munmap(p, len);
		errno = err;
		return MAP_FAILED;
	}
	return p;
}

/* A fresh random seed for every run: a stale pattern can never match by chance. */
static inline uint64_t p2p_seed(void)
{
	uint64_t s = 0;

	if (getrandom(&s, sizeof(s), 0) != sizeof(s))
		s = p2p_now_ns() ^ ((uint64_t)getpid() << 32);
	return s | 1;
}

static inline uint64_t p2p_next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static inline void p2p_fill(void *buf, size_t len, uint64_t seed)
{
	uint64_t *p = buf, x = seed;
	size_t i;

	for (i = 0; i < len / 8; i++)
		p[i] = p2p_next(&x);
}

/* Returns the byte offset of the first mismatch, or -1 if buf holds the pattern. */
static inline long p2p_check(const void *buf, size_t len, uint64_t seed)
{
	const uint64_t *p = buf;
	uint64_t x = seed;
	size_t i;

	for (i = 0; i < len / 8; i++)
		if (p[i] != p2p_next(&x))
			return i * 8;
	return -1;
}

/* Per-page patterns, so that any subrange of a buffer can be checked. */
static inline void p2p_fill_pages(void *buf, size_t npages, uint64_t seed)
{
	long ps = p2p_page_size();
	size_t i;

	for (i = 0; i < npages; i++)
		p2p_fill((char *)buf + i * ps, ps, seed + i * 0x9e3779b97f4a7c15ULL);
}

/* Checks pages [first, first + n) of a buffer filled by p2p_fill_pages(). */
static inline bool p2p_check_pages(const void *buf, size_t first, size_t n, uint64_t seed)
{
	long ps = p2p_page_size();
	size_t i;

	for (i = first; i < first + n; i++)
		if (p2p_check((const char *)buf + i * ps, ps, seed + i * 0x9e3779b97f4a7c15ULL) != -1)
			return false;
	return true;
}

/* Probing an access that may fault: returns 0, SIGBUS or SIGSEGV. */
static sigjmp_buf p2p_probe_env;

static inline void p2p_probe_handler(int sig)
{
	siglongjmp(p2p_probe_env, sig);
}

static inline int p2p_probe(volatile uint64_t *addr, bool write, uint64_t *val)
{
	struct sigaction sa = { .sa_handler = p2p_probe_handler }, obus, osegv;
	int sig;

	sigaction(SIGBUS, &sa, &obus);
	sigaction(SIGSEGV, &sa, &osegv);
	sig = sigsetjmp(p2p_probe_env, 1);
	if (!sig) {
		if (write)
			*addr = *val;
		else
			*val = *addr;
	}
	sigaction(SIGBUS, &obus, NULL);
	sigaction(SIGSEGV, &osegv, NULL);
	return sig;
}

static inline const char *p2p_sig_name(int sig)
{
	return sig == 0 ? "no fault" : sig == SIGBUS ? "SIGBUS" :
	       sig == SIGSEGV ? "SIGSEGV" : "another signal";
}

/* Unbinds the device from its driver; returns 0 or -errno. */
static inline int p2p_unbind(const struct p2p_dev *d)
{
	char path[P2P_PATH];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver/unbind", d->bdf);
	return p2p_write_file(path, d->bdf);
}

/* Binds the device again to the driver it had when it was found (nvme by default). */
static inline int p2p_rebind(const struct p2p_dev *d)
{
	char path[P2P_PATH];

	snprintf(path, sizeof(path), "/sys/bus/pci/drivers/%s/bind",
		 d->driver[0] ? d->driver : "nvme");
	return p2p_write_file(path, d->bdf);
}

/* Which implementation serves p2pmem/allocate: "c" or "rust". */
static inline const char *p2p_impl(void)
{
	static char buf[16];

	if (p2p_read_file("/sys/module/p2pdma/parameters/impl", buf, sizeof(buf)))
		return "c";
	return buf;
}

/*
 * Finds the /proc/self/smaps entry of the mapping that starts at addr and copies
 * the rest of its line starting with "field" (e.g. "Rss:", "VmFlags:") into out.
 * Returns 0 or -ENOENT.
 */
static inline int p2p_smaps(void *addr, const char *field, char *out, size_t len)
{
	unsigned long start, end;
	char line[512];
	bool in = false;
	FILE *f = fopen("/proc/self/smaps", "r");
	int ret = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2) {
			in = start == (unsigned long)addr;
			continue;
		}
		if (in && !strncmp(line, field, strlen(field))) {
			const char *v = line + strlen(field);
			size_t n = strcspn(v, "\n");

			if (n >= len)
				n = len - 1;
			memcpy(out, v, n);
			out[n] = '\0';
			ret = 0;
			break;
		}
	}
	fclose(f);
	return ret;
}

/* Rss of the mapping at addr, in kB; -1 if not found. */
static inline long p2p_rss_kb(void *addr)
{
	char buf[128];

	if (p2p_smaps(addr, "Rss:", buf, sizeof(buf)))
		return -1;
	return strtol(buf, NULL, 10);
}

/* Whether the VmFlags of the mapping at addr contain the two-letter flag. */
static inline bool p2p_has_vmflag(void *addr, const char *flag)
{
	char buf[256], *tok, *save;

	if (p2p_smaps(addr, "VmFlags:", buf, sizeof(buf)))
		return false;
	for (tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
		if (!strcmp(tok, flag))
			return true;
	return false;
}

/*
 * Touches the first byte of each 2 MiB of [p, p + len) (2 MiB-aligned, untouched) and
 * returns the Rss of the mapping at p in kB afterwards: len / 1024 when every touch
 * mapped its whole 2 MiB, which only a PMD does (smaps counts no FilePmdMapped for
 * device memory); one page per touch when faults map single pages.
 */
static inline long p2p_touch_pmds(volatile char *p, size_t len)
{
	size_t off;

	for (off = 0; off < len; off += P2P_PMD_SIZE)
		p[off] = p[off];
	return p2p_rss_kb((void *)p);
}

static inline bool p2p_is_rust(void)
{
	return !strcmp(p2p_impl(), "rust");
}

#endif /* P2PDMA_LIB_H */
