/*
 * fuzzfs.h - the file and address helpers the image fuzzers share
 * (fuzz_image.c, fuzz_lazy.c): a scratch directory of NFILES paths, writing
 * a file whole, and "is anything mapped at this address?".
 *
 * Static functions: each fuzzer is one translation unit with its own
 * scratch directory.  A fuzzer aborts on a set-up failure (libFuzzer then
 * reports it); nothing here is library code.
 */
#ifndef CKPT_FUZZFS_H
#define CKPT_FUZZFS_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define NFILES 4

static char g_dir[64];
static char g_path[NFILES][96];

/* The scratch directory, in /dev/shm when possible (the fuzzers write a file
 * per input), named after the fuzzer. */
static void fuzzfs_setup(const char *name)
{
	snprintf(g_dir, sizeof(g_dir), "/dev/shm/ckpt-fuzz-%s.XXXXXX", name);
	if (!mkdtemp(g_dir)) {
		snprintf(g_dir, sizeof(g_dir), "/tmp/ckpt-fuzz-%s.XXXXXX", name);
		if (!mkdtemp(g_dir))
			abort();
	}
	for (int i = 0; i < NFILES; i++)
		snprintf(g_path[i], sizeof(g_path[i]), "%s/f%d", g_dir, i);
}

static __attribute__((destructor)) void fuzzfs_cleanup(void)
{
	if (!g_dir[0])
		return;
	for (int i = 0; i < NFILES; i++)
		unlink(g_path[i]);
	rmdir(g_dir);
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		abort();
	while (n) {
		ssize_t k = write(fd, p, n);
		if (k <= 0)
			abort();
		p += k;
		n -= (size_t)k;
	}
	close(fd);
}

/* Is anything mapped at [base, base + 4096)?  (false when the address is
 * not a sane user address at all: nothing can be mapped there by us) */
static bool mapped_at(uint64_t base)
{
	if (ckpt__check_range(base, 4096, 4096) != 0)
		return false;
	void *p = mmap((void *)(uintptr_t)base, 4096, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED)
		return errno == EEXIST;
	munmap(p, 4096);
	return p != (void *)(uintptr_t)base;
}

#endif /* CKPT_FUZZFS_H */
