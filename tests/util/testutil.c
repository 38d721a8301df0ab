/*
 * testutil.c - helpers shared by libckpt's criterion tests.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "util/testutil.h"

bool ckpt_test_strict(void)
{
	const char *ci = getenv("CI");
	const char *req = getenv("CKPT_REQUIRE_KERNEL");
	return (ci && strcmp(ci, "true") == 0) || (req && strcmp(req, "1") == 0);
}

int ckpt_test_machine_lock(void)
{
	int fd = open("/run/lock/libckpt-machine.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (fd < 0)
		fd = open("/tmp/libckpt-machine.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	cr_assert(fd >= 0, "cannot open the machine lock: %s", strerror(errno));
	while (flock(fd, LOCK_EX) != 0)
		cr_assert(errno == EINTR, "flock: %s", strerror(errno));
	return fd;
}

void ckpt_test_machine_unlock(int fd)
{
	if (fd >= 0)
		close(fd); /* drops the flock */
}

uint64_t ckpt_test_pagemap(const void *addr)
{
	long psz = sysconf(_SC_PAGESIZE);
	uint64_t ent = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	off_t off = (off_t)((uintptr_t)addr / (uintptr_t)psz) * 8;
	if (pread(fd, &ent, sizeof(ent), off) != (ssize_t)sizeof(ent))
		ent = 0;
	close(fd);
	return ent;
}

uint64_t ckpt_test_seed(const char *test_name)
{
	const char *s = getenv("CKPT_SEED");
	uint64_t seed;
	if (s && *s) {
		seed = strtoull(s, NULL, 0);
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
	}
	cr_log_info("%s: seed %llu (rerun with CKPT_SEED=%llu)", test_name,
		    (unsigned long long)seed, (unsigned long long)seed);
	fprintf(stderr, "%s: seed %llu\n", test_name, (unsigned long long)seed);
	return seed;
}

uint64_t ckpt_test_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	int n = 0;
	struct dirent *e;
	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

int ckpt_test_count_fds(void)
{
	return count_dir("/proc/self/fd") - 1; /* the DIR's own fd */
}

/* Threads of this process, io_uring's kernel workers (iou-wrk-*, iou-sqp-*)
 * not counted: the kernel starts and reaps them on its own schedule. */
static int count_threads_once(void)
{
	DIR *d = opendir("/proc/self/task");
	int n = 0;
	struct dirent *de;
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char p[300], comm[32] = "";
		snprintf(p, sizeof(p), "/proc/self/task/%s/comm", de->d_name);
		FILE *f = fopen(p, "re");
		if (f) {
			if (!fgets(comm, sizeof(comm), f))
				comm[0] = 0;
			fclose(f);
		}
		if (f && strncmp(comm, "iou-", 4) != 0)
			n++; /* a task gone before its comm could be read is not counted */
	}
	closedir(d);
	return n;
}

/*
 * A thread that was just joined can still be listed in /proc for a moment
 * while the kernel tears it down (pthread_join returns when its tid is
 * cleared, before the task is reaped): a leak check that counted then saw a
 * thread "leaked" once in a few thousand restores.  A count higher than the
 * last one returned is taken again until it stops falling (a real leak
 * stays); the common case costs one pass.
 */
int ckpt_test_count_threads(void)
{
	static int last = -1;
	int n = count_threads_once();
	for (int i = 0, stable = 0; last >= 0 && n > last && i < 100 && stable < 5; i++) {
		usleep(1000);
		int m = count_threads_once();
		if (m < n) {
			n = m;
			stable = 0;
		} else {
			stable++;
		}
	}
	last = n;
	return n;
}

long ckpt_test_read_long(const char *path, const char *key)
{
	FILE *f = fopen(path, "r");
	char line[256];
	long n = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!key) {
			n = strtol(line, NULL, 10);
			break;
		}
		if (!strncmp(line, key, strlen(key))) {
			n = strtol(line + strlen(key), NULL, 10);
			break;
		}
	}
	fclose(f);
	return n;
}

static const char nr_hugepages[] = "/proc/sys/vm/nr_hugepages";
static int huge_lock = -1;
static long huge_before = -1;

static bool write_nr_hugepages(long n)
{
	FILE *f = fopen(nr_hugepages, "w");
	if (!f)
		return false;
	bool ok = fprintf(f, "%ld\n", n) > 0;
	return fclose(f) == 0 && ok;
}

bool ckpt_test_hugetlb_reserve(long n)
{
	huge_lock = ckpt_test_machine_lock();
	huge_before = ckpt_test_read_long(nr_hugepages, NULL);
	if (huge_before < 0)
		return false;
	return write_nr_hugepages(huge_before + n) &&
	       ckpt_test_read_long(nr_hugepages, NULL) >= huge_before + n;
}

void ckpt_test_hugetlb_release(void)
{
	if (huge_before >= 0)
		write_nr_hugepages(huge_before);
	huge_before = -1;
	ckpt_test_machine_unlock(huge_lock);
	huge_lock = -1;
}
