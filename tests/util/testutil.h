/*
 * testutil.h - helpers shared by libckpt's criterion tests.
 */
#ifndef CKPT_TESTUTIL_H
#define CKPT_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <criterion/criterion.h>

#include "ckpt.h"

/* True when skipping is not allowed: CI=true or CKPT_REQUIRE_KERNEL=1.  A
 * test that cannot run its case then fails instead of skipping. */
bool ckpt_test_strict(void);

/* Skip with a reason outside CI; fail with the same reason under CI=true. */
#define CKPT_TEST_SKIP(...)                                                    \
	do {                                                                   \
		if (ckpt_test_strict())                                        \
			cr_assert_fail("required case cannot run (CI=true): " __VA_ARGS__); \
		cr_skip_test(__VA_ARGS__);                                     \
	} while (0)

/* Skip (or fail under CI) unless running as root. */
#define CKPT_TEST_NEED_ROOT(what)                                              \
	do {                                                                   \
		if (geteuid() != 0)                                            \
			CKPT_TEST_SKIP("needs root: %s", what);                \
	} while (0)

/* Assert that a libckpt call returned 0, printing the expression, the
 * value and ckpt_strerror(). */
#define CKPT_ASSERT_OK(expr)                                                   \
	do {                                                                   \
		int rc__ = (expr);                                             \
		cr_assert(rc__ == 0, "%s returned %d (%s: %s)", #expr, rc__,   \
			  ckpt_err_name(rc__), ckpt_strerror(rc__));           \
	} while (0)

#define CKPT_ASSERT_ERR(expr, want)                                            \
	do {                                                                   \
		int rc__ = (expr), want__ = (want);                            \
		cr_assert(rc__ == want__, "%s returned %d (%s), want %d (%s)", \
			  #expr, rc__, ckpt_err_name(rc__), want__,            \
			  ckpt_err_name(want__));                              \
	} while (0)

/*
 * The machine lock: tests that change machine state (zram swap, sysfs knobs,
 * memory cgroups, hugetlb reservations, drop_caches / compaction) hold it so
 * that criterion's parallel workers - and other test binaries - never change
 * the same state at once.  flock() on /run/lock/libckpt-machine.lock;
 * released on close and therefore on process death.
 */
int ckpt_test_machine_lock(void);          /* returns the lock fd, blocks */
void ckpt_test_machine_unlock(int fd);

/*
 * hugetlb reservation for tests that need 2 MiB pages: takes the machine
 * lock, raises vm.nr_hugepages by @n and returns true if the pages are
 * there.  ckpt_test_hugetlb_release() (call it from the test's .fini, which
 * criterion runs after a failed assertion too) puts the old count back and
 * drops the lock.  One reservation per test process.
 */
bool ckpt_test_hugetlb_reserve(long n);
void ckpt_test_hugetlb_release(void);

/* A number from a /proc or /sys file: the first one, or the one after @key
 * on the line that starts with it (e.g. "HugePages_Free:").  -1 on error. */
long ckpt_test_read_long(const char *path, const char *key);

/* /proc/self/pagemap entry of the page holding @addr (0 on error). */
uint64_t ckpt_test_pagemap(const void *addr);

/* Random numbers: a seed from CKPT_SEED or the clock, printed once. */
uint64_t ckpt_test_seed(const char *test_name);
uint64_t ckpt_test_rand(uint64_t *state); /* splitmix64 */

/* Count of open fds in /proc/self/fd and of threads in /proc/self/task. */
int ckpt_test_count_fds(void);
int ckpt_test_count_threads(void);

#endif
