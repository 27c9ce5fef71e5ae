// SPDX-License-Identifier: GPL-2.0
/*
 * Bad input and misuse of p2pmem/allocate: every case must end in a clean errno,
 * SIGBUS or SIGSEGV, or plain success, never in a crash, a WARN, a hang or a
 * leak (the fixture checks p2pmem/available after each case; the harness checks
 * the kernel log). What each implementation does is printed as a REPORT line.
 */
#define _GNU_SOURCE
#include <linux/io_uring.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include "p2pdma_lib.h"
#include "../kselftest_harness.h"

#define REPORT(fmt, ...) \
	printf("# REPORT: [%s] misuse.%s: " fmt "\n", p2p_impl(), _metadata->name, ##__VA_ARGS__)
#define TIMEOUT 120

/* "ok" or the errno's name, for reports. */
static const char *res(long r)
{
	return r < 0 ? strerror(errno) : "succeeded";
}

FIXTURE(misuse) {
	struct p2p_dev a;
	long long avail;
};

FIXTURE_SETUP(misuse)
{
	if (p2p_provider_ready(&self->a, 10000))
		SKIP(return, "no p2pmem provider (P2PDMA_PROVIDER, or NVMe %s with a CMB)", p2p_serial('A'));
	self->avail = p2p_attr(&self->a, "available");
	ASSERT_GT(self->avail, 0);
}

FIXTURE_TEARDOWN(misuse)
{
	struct p2p_dev d;

	if (!p2p_provider_ready(&d, 10000))
		EXPECT_EQ(self->avail, p2p_wait_available(&d, self->avail, 10000, NULL))
			TH_LOG("p2pmem leaked");
}

TEST_F_TIMEOUT(misuse, huge_offset, TIMEOUT)
{
	void *p = p2p_map_flags(&self->a, P2P_MIB, MAP_SHARED, 1LL << 40);

	ASSERT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
}

TEST_F_TIMEOUT(misuse, zero_length, TIMEOUT)
{
	void *p = p2p_map_flags(&self->a, 0, MAP_SHARED, 0);

	ASSERT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
}

TEST_F_TIMEOUT(misuse, oversize_length, TIMEOUT)
{
	long long size = p2p_attr(&self->a, "size");
	void *p = p2p_map_flags(&self->a, size * 4, MAP_SHARED, 0);

	ASSERT_EQ(MAP_FAILED, p);
	EXPECT_EQ(ENOMEM, errno);
}

TEST_F_TIMEOUT(misuse, read_write_syscalls, TIMEOUT)
{
	char buf[64] = "x";
	int fd = p2p_open_alloc(&self->a);
	ssize_t r, w;

	ASSERT_LE(0, fd);
	r = read(fd, buf, sizeof(buf));
	REPORT("read(): %s", res(r));
	w = write(fd, buf, sizeof(buf));
	REPORT("write(): %s", res(w));
	EXPECT_GT(0, r);
	EXPECT_GT(0, w);
	close(fd);
}

TEST_F_TIMEOUT(misuse, mprotect_exec, TIMEOUT)
{
	char *p = p2p_map(&self->a, P2P_MIB);
	int r;

	ASSERT_NE(MAP_FAILED, p);
	p[0] = 1;
	r = mprotect(p, P2P_MIB, PROT_READ | PROT_EXEC);
	REPORT("mprotect(PROT_EXEC): %s", res(r));
	munmap(p, P2P_MIB);
}

TEST_F_TIMEOUT(misuse, mlock, TIMEOUT)
{
	char *p = p2p_map(&self->a, P2P_MIB);
	int r;

	ASSERT_NE(MAP_FAILED, p);
	r = mlock(p, P2P_MIB);
	REPORT("mlock(): %s", res(r));
	if (!r)
		EXPECT_EQ(0, munlock(p, P2P_MIB));
	munmap(p, P2P_MIB);
}

/* io_uring fixed buffers are FOLL_LONGTERM pins, which P2PDMA memory refuses. */
TEST_F_TIMEOUT(misuse, io_uring_register_buffers, TIMEOUT)
{
	struct io_uring_params params = { 0 };
	struct iovec iov;
	char *p = p2p_map(&self->a, P2P_MIB);
	long r;
	int ring;

	ASSERT_NE(MAP_FAILED, p);
	p[0] = 1;
	ring = syscall(__NR_io_uring_setup, 4, &params);
	if (ring < 0) {
		REPORT("io_uring_setup(): %s", strerror(errno));
		munmap(p, P2P_MIB);
		SKIP(return, "io_uring unavailable: %s", strerror(errno));
	}
	iov.iov_base = p;
	iov.iov_len = P2P_MIB;
	r = syscall(__NR_io_uring_register, ring, IORING_REGISTER_BUFFERS, &iov, 1);
	REPORT("IORING_REGISTER_BUFFERS: %s", res(r));
	EXPECT_GT(0, r);
	close(ring);
	munmap(p, P2P_MIB);
}

TEST_F_TIMEOUT(misuse, proc_self_mem, TIMEOUT)
{
	char *p = p2p_map(&self->a, P2P_MIB);
	char buf[64];
	ssize_t r;
	int fd;

	ASSERT_NE(MAP_FAILED, p);
	memset(p, 0x11, 4096);
	fd = open("/proc/self/mem", O_RDWR);
	ASSERT_LE(0, fd);
	r = pread(fd, buf, sizeof(buf), (off_t)(uintptr_t)p);
	REPORT("/proc/self/mem read: %s", res(r));
	r = pwrite(fd, buf, sizeof(buf), (off_t)(uintptr_t)p);
	REPORT("/proc/self/mem write: %s", res(r));
	close(fd);
	munmap(p, P2P_MIB);
}

TEST_F_TIMEOUT(misuse, process_vm_readv, TIMEOUT)
{
	char *p = p2p_map(&self->a, P2P_MIB);
	struct iovec local, remote;
	char buf[64];
	ssize_t r;

	ASSERT_NE(MAP_FAILED, p);
	memset(p, 0x22, 4096);
	local.iov_base = buf;
	local.iov_len = sizeof(buf);
	remote.iov_base = p;
	remote.iov_len = sizeof(buf);
	r = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
	REPORT("process_vm_readv(): %s", res(r));
	munmap(p, P2P_MIB);
}

TEST_F_TIMEOUT(misuse, vmsplice, TIMEOUT)
{
	char *p = p2p_map(&self->a, P2P_MIB);
	struct iovec iov;
	int pipefd[2];
	ssize_t r;

	ASSERT_NE(MAP_FAILED, p);
	memset(p, 0x33, 4096);
	ASSERT_EQ(0, pipe(pipefd));
	iov.iov_base = p;
	iov.iov_len = 4096;
	r = vmsplice(pipefd[1], &iov, 1, 0);
	REPORT("vmsplice(): %s", res(r));
	close(pipefd[0]);
	close(pipefd[1]);
	munmap(p, P2P_MIB);
}

/* A buffered write copies with the CPU: it works and writes the right bytes. */
TEST_F_TIMEOUT(misuse, buffered_write_to_file, TIMEOUT)
{
	char path[] = "/tmp/p2pmem-misuse-XXXXXX", back[4096];
	char *p = p2p_map(&self->a, P2P_MIB);
	int fd;

	ASSERT_NE(MAP_FAILED, p);
	memset(p, 0x44, 4096);
	fd = mkstemp(path);
	ASSERT_LE(0, fd);
	unlink(path);
	EXPECT_EQ(4096, write(fd, p, 4096));
	EXPECT_EQ(4096, pread(fd, back, 4096, 0));
	EXPECT_EQ(0, memcmp(back, p, 4096));
	close(fd);
	munmap(p, P2P_MIB);
}

/* A buffered read of a tmpfs file into p2pmem (a CPU copy). */
TEST_F_TIMEOUT(misuse, read_file_into_p2pmem, TIMEOUT)
{
	char path[] = "/tmp/p2pmem-misuse-XXXXXX";
	char *p = p2p_map(&self->a, P2P_MIB);
	ssize_t r;
	int fd;

	ASSERT_NE(MAP_FAILED, p);
	fd = mkstemp(path);
	ASSERT_LE(0, fd);
	unlink(path);
	ASSERT_EQ(0, ftruncate(fd, P2P_MIB));
	r = pread(fd, p, P2P_MIB, 0);
	REPORT("read from tmpfs into p2pmem: %s", res(r));
	close(fd);
	munmap(p, P2P_MIB);
}

/* A core dump of a process holding a mapping: no crash, no hang. */
TEST_F_TIMEOUT(misuse, core_dump, TIMEOUT)
{
	int status;
	pid_t pid = fork();

	ASSERT_LE(0, pid);
	if (!pid) {
		struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
		char *p = p2p_map(&self->a, P2P_MIB);

		if (p == MAP_FAILED)
			_exit(2);
		memset(p, 0x55, 8192);
		setrlimit(RLIMIT_CORE, &rl);
		if (chdir("/tmp"))
			_exit(4);
		abort();
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFSIGNALED(status));
	REPORT("SIGABRT with a mapping: %s", WCOREDUMP(status) ? "core dumped" : "no core");
}

/* Killing a process in the middle of O_DIRECT into p2pmem. */
TEST_F_TIMEOUT(misuse, kill_during_odirect, TIMEOUT)
{
	int status;
	pid_t pid = fork();

	ASSERT_LE(0, pid);
	if (!pid) {
		char *p = p2p_map(&self->a, 4 * P2P_MIB);
		int fd = open(self->a.blk, O_RDWR | O_DIRECT);

		if (p == MAP_FAILED || fd < 0)
			_exit(2);
		for (;;)
			if (pread(fd, p, 4 * P2P_MIB, 0) < 0)
				_exit(3);
	}
	usleep(300 * 1000);
	ASSERT_EQ(0, kill(pid, SIGKILL));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFSIGNALED(status)) TH_LOG("the child exited with %d", WEXITSTATUS(status));
}

/* allocate keeps the mode of the 7.3 sysfs attribute: 0660, owned by root. */
TEST_F_TIMEOUT(misuse, allocate_permissions, TIMEOUT)
{
	char path[P2P_PATH];
	struct stat st;

	snprintf(path, sizeof(path), "%s/allocate", self->a.p2pmem);
	ASSERT_EQ(0, stat(path, &st));
	EXPECT_EQ(0660, st.st_mode & 07777);
	EXPECT_EQ(0, st.st_uid);
}

/* Nothing about p2pmem in the kernel log shows a kernel pointer unhashed. */
TEST_F_TIMEOUT(misuse, no_kernel_addresses_in_log, TIMEOUT)
{
	char line[1024];
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK), found = 0, seen = 0;
	ssize_t n;

	ASSERT_LE(0, fd);
	while ((n = read(fd, line, sizeof(line) - 1)) > 0 || (n < 0 && errno == EPIPE)) {
		char *q;

		if (n <= 0)
			continue;
		line[n] = '\0';
		if (!strstr(line, "p2p") && !strstr(line, "P2P") && !strstr(line, "peer-to-peer"))
			continue;
		seen++;
		for (q = strstr(line, "ffff"); q; q = strstr(q + 1, "ffff"))
			if (strspn(q, "0123456789abcdef") >= 16) {
				found++;
				TH_LOG("kernel address in: %s", line);
				break;
			}
	}
	close(fd);
	printf("# %d p2p log lines checked\n", seen);
	EXPECT_LT(0, seen);
	EXPECT_EQ(0, found);
}

/* A file descriptor opened before unbind: mmap afterwards fails cleanly. */
TEST_F_TIMEOUT(misuse, mmap_stale_fd_after_unbind, 300)
{
	struct p2p_dev again;
	int fd = p2p_open_alloc(&self->a);
	void *p;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, p2p_unbind(&self->a));
	p = mmap(NULL, P2P_MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REPORT("mmap of an allocate fd opened before unbind: %s",
	       p == MAP_FAILED ? strerror(errno) : "succeeded");
	EXPECT_EQ(MAP_FAILED, p);
	if (p != MAP_FAILED)
		munmap(p, P2P_MIB);
	close(fd);
	ASSERT_EQ(0, p2p_rebind(&self->a));
	ASSERT_EQ(0, p2p_provider_ready(&again, 60000));
}

TEST_HARNESS_MAIN
