/*
 * cases_basic.c - cases a, b, c, l, m: the write-protect mark on shmem
 * through the ordinary life of a pte (present, empty, zapped), removal of
 * the mark, and a write-protect over a range that is only partly
 * registered.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kt.h"

#define WP_FEATURES UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define PM_WP CKPT_PM_UFFD_WP
#define PM_PRESENT CKPT_PM_PRESENT
#define PM_SWAP CKPT_PM_SWAP

/* Common set-up: a region of n pages, a uffd with the region registered
 * for WP.  Returns KT_PASS or the failure/skip. */
static int setup(struct kt_region *r, size_t n, int *uffd)
{
	int rc = kt_region_new(r, n, 0);

	KT_CHECK(rc == 0, "shmem region of %zu pages: %s", n, strerror(-rc));
	rc = kt_uffd_or_skip(WP_FEATURES, uffd);
	if (rc != KT_PASS)
		return rc;
	rc = kt_register(*uffd, r->base, r->len, UFFDIO_REGISTER_MODE_WP);
	KT_CHECK(rc == 0, "UFFDIO_REGISTER(WP) on a shmem mapping: %s", strerror(-rc));
	return KT_PASS;
}

/*
 * a. A write to a write-protected, populated shmem page traps: the handler
 * receives a WP fault for exactly that page while the page still holds its
 * old contents (pagemap: present, bit 57 set); after UFFDIO_WRITEPROTECT
 * mode 0 the write lands, bit 57 is clear and a second write does not
 * trap.  This is the basic mechanism of every checkpoint.
 */
int kt_case_a(const struct kt_env *env)
{
	enum { N = 16 };
	struct kt_region r;
	struct kt_handler h;
	uint8_t expect[N];
	int uffd, rc;
	size_t n;

	(void)env;
	rc = setup(&r, N, &uffd);
	if (rc != KT_PASS)
		return rc;
	kt_fill(&r, 0xa);
	memset(expect, KT_EXPECT_PATTERN, sizeof(expect));
	rc = kt_wp(uffd, r.base, r.len, 1);
	KT_CHECK(rc == 0, "UFFDIO_WRITEPROTECT: %s", strerror(-rc));
	n = kt_pagemap_count(r.base, N, PM_PRESENT | PM_WP, 0);
	KT_CHECK(n == N, "pagemap: %zu of %d protected pages are present with bit 57 set", n, N);
	rc = kt_handler_start(&h, uffd, &r, r.base, 0xa, expect);
	KT_CHECK(rc == 0, "handler thread: %s", strerror(-rc));
	rc = kt_write_pages(&h, 0, N, 1, "write to protected page");
	if (rc != KT_PASS)
		return rc;
	n = kt_pagemap_count(r.base, N, 0, PM_WP);
	KT_CHECK(n == N, "pagemap: bit 57 still set on %zu pages after unprotect", N - n);
	rc = kt_write_pages(&h, 0, N, 1, "second write after unprotect");
	if (rc != KT_PASS)
		return rc;
	kt_handler_stop(&h);
	return KT_PASS;
}

/*
 * b. Write-protecting shmem pages whose ptes are empty puts a PTE marker in
 * them, so the first write traps although nothing was ever mapped there:
 * pages present in the memfd but never touched through this mapping, a
 * never-written part of the memfd, and a part made a hole by
 * fallocate(PUNCH_HOLE).  The handler sees the old contents (pattern or
 * zeros); pagemap shows bit 57 on non-present ptes.  libckpt protects the
 * whole heap, most of which it has never touched.
 */
int kt_case_b(const struct kt_env *env)
{
	enum { N = 32 };
	struct kt_region r;
	struct kt_handler h;
	uint8_t expect[N];
	int uffd, rc;
	size_t n;

	(void)env;
	rc = setup(&r, N, &uffd);
	if (rc != KT_PASS)
		return rc;
	/* 0..15 in the page cache, written through the alias only */
	for (size_t i = 0; i < N; i++) {
		expect[i] = i < 16 ? KT_EXPECT_PATTERN : KT_EXPECT_ZERO;
		if (i < 16 || i >= 24)
			kt_fill_page(r.alias + i * kt_ps, i, 0xb);
	}
	/* 16..23 never written; 24..31 written then punched out */
	KT_CHECK(fallocate(r.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 24 * (off_t)kt_ps,
			   8 * (off_t)kt_ps) == 0,
		 "fallocate(PUNCH_HOLE): %s", strerror(errno));
	n = kt_pagemap_count(r.base, N, 0, PM_PRESENT);
	KT_CHECK(n == N, "%zu pages of the registered mapping were present before protecting", N - n);
	rc = kt_wp(uffd, r.base, r.len, 1);
	KT_CHECK(rc == 0, "UFFDIO_WRITEPROTECT: %s", strerror(-rc));
	n = kt_pagemap_count(r.base, N, PM_WP, PM_PRESENT);
	KT_CHECK(n == N, "pagemap: only %zu of %d empty ptes carry the mark (bit 57) after protecting",
		 n, N);
	rc = kt_handler_start(&h, uffd, &r, r.base, 0xb, expect);
	KT_CHECK(rc == 0, "handler thread: %s", strerror(-rc));
	rc = kt_write_pages(&h, 0, 16, 1, "first write, page in memfd, empty pte");
	if (rc != KT_PASS)
		return rc;
	rc = kt_write_pages(&h, 16, 8, 1, "first write, never-written memfd page");
	if (rc != KT_PASS)
		return rc;
	rc = kt_write_pages(&h, 24, 8, 1, "first write, punched-hole page");
	if (rc != KT_PASS)
		return rc;
	kt_handler_stop(&h);
	return KT_PASS;
}

/*
 * c. MADV_DONTNEED on a write-protected shmem page zaps its pte but leaves
 * a PTE marker: pagemap shows the page not present with bit 57 set, the
 * next write traps, and the contents (still in the page cache) are intact.
 * Without the marker the mark would vanish with the pte and the write
 * would land unseen.
 */
int kt_case_c(const struct kt_env *env)
{
	enum { N = 16 };
	struct kt_region r;
	struct kt_handler h;
	uint8_t expect[N];
	int uffd, rc;
	size_t n;

	(void)env;
	rc = setup(&r, N, &uffd);
	if (rc != KT_PASS)
		return rc;
	kt_fill(&r, 0xc);
	memset(expect, KT_EXPECT_PATTERN, sizeof(expect));
	rc = kt_wp(uffd, r.base, r.len, 1);
	KT_CHECK(rc == 0, "UFFDIO_WRITEPROTECT: %s", strerror(-rc));
	KT_CHECK(madvise(r.base, r.len, MADV_DONTNEED) == 0, "MADV_DONTNEED: %s", strerror(errno));
	n = kt_pagemap_count(r.base, N, PM_WP, PM_PRESENT);
	KT_CHECK(n == N, "pagemap: %zu of %d zapped pages show the marker (not present, bit 57)", n, N);
	kt_note("after MADV_DONTNEED: %zu/%d pages also report bit 62 (a marker is a swap-format pte)",
		kt_pagemap_count(r.base, N, PM_SWAP, 0), N);
	rc = kt_handler_start(&h, uffd, &r, r.base, 0xc, expect);
	KT_CHECK(rc == 0, "handler thread: %s", strerror(-rc));
	rc = kt_write_pages(&h, 0, N, 1, "write after MADV_DONTNEED");
	if (rc != KT_PASS)
		return rc;
	kt_handler_stop(&h);
	return KT_PASS;
}

/*
 * l. Unprotecting (UFFDIO_WRITEPROTECT mode 0) and UFFDIO_UNREGISTER leave
 * no stale mark, whether the pte was present or a marker: pagemap bit 57
 * is clear, writes do not trap, and a later WP registration of the same
 * range (without protecting) does not trap either.  libckpt unprotects
 * every page at the end of a checkpoint and unregisters at destroy; a
 * stale marker would trap a write when no checkpoint is running.
 */
int kt_case_l(const struct kt_env *env)
{
	enum { N = 24 };
	struct kt_region r;
	struct kt_handler h;
	uint8_t expect[N];
	int uffd, rc;
	size_t n;

	(void)env;
	rc = setup(&r, N, &uffd);
	if (rc != KT_PASS)
		return rc;
	kt_fill(&r, 0x1);
	memset(expect, KT_EXPECT_PATTERN, sizeof(expect));
	rc = kt_wp(uffd, r.base, r.len, 1);
	KT_CHECK(rc == 0, "UFFDIO_WRITEPROTECT: %s", strerror(-rc));
	/* 4..7, 12..15 and 20..23 become markers */
	for (size_t i = 4; i < N; i += 8)
		KT_CHECK(madvise(r.base + i * kt_ps, 4 * kt_ps, MADV_DONTNEED) == 0, "MADV_DONTNEED: %s",
			 strerror(errno));
	n = kt_pagemap_count(r.base, N, PM_WP, 0);
	KT_CHECK(n == N, "pagemap: %zu of %d pages marked before the test", n, N);

	/* 0..15: unprotect (present and marker ptes) */
	rc = kt_wp(uffd, r.base, 16 * kt_ps, 0);
	KT_CHECK(rc == 0, "UFFDIO_WRITEPROTECT mode 0: %s", strerror(-rc));
	/* 16..23: unregister while still protected */
	rc = kt_unregister(uffd, r.base + 16 * kt_ps, 8 * kt_ps);
	KT_CHECK(rc == 0, "UFFDIO_UNREGISTER: %s", strerror(-rc));
	n = kt_pagemap_count(r.base, N, PM_WP, 0);
	KT_CHECK(n == 0, "pagemap: %zu pages keep bit 57 after unprotect/unregister (stale marks)", n);

	rc = kt_handler_start(&h, uffd, &r, r.base, 0x1, expect);
	KT_CHECK(rc == 0, "handler thread: %s", strerror(-rc));
	rc = kt_write_pages(&h, 0, 16, 0, "write after unprotect");
	if (rc != KT_PASS)
		return rc;
	/* register the unregistered part again, WP mode, not protected */
	rc = kt_register(uffd, r.base + 16 * kt_ps, 8 * kt_ps, UFFDIO_REGISTER_MODE_WP);
	KT_CHECK(rc == 0, "UFFDIO_REGISTER again: %s", strerror(-rc));
	rc = kt_write_pages(&h, 16, 8, 0, "write after unregister + register again");
	if (rc != KT_PASS)
		return rc;
	n = kt_pagemap_count(r.base, N, PM_WP, 0);
	KT_CHECK(n == 0, "pagemap: %zu pages marked after the writes", n);
	kt_handler_stop(&h);
	return KT_PASS;
}

/*
 * m. UFFDIO_WRITEPROTECT over a range that is only partly registered
 * (registered | not registered | registered) fails.  Pinned here: the call
 * returns an error, and exactly the registered part before the gap ends
 * up protected (its pages marked and trapping), the gap and the part after
 * it not.  So a failed UFFDIO_WRITEPROTECT leaves the range half done:
 * libckpt treats any error from it as "state unknown" and unprotects the
 * whole heap before reporting.
 */
int kt_case_m(const struct kt_env *env)
{
	enum { N = 24 };
	struct kt_region r;
	struct kt_handler h;
	uint8_t expect[N];
	int uffd, rc, err;
	size_t before, gap, after;

	(void)env;
	rc = kt_region_new(&r, N, 0);
	KT_CHECK(rc == 0, "shmem region: %s", strerror(-rc));
	rc = kt_uffd_or_skip(WP_FEATURES, &uffd);
	if (rc != KT_PASS)
		return rc;
	kt_fill(&r, 0x3);
	memset(expect, KT_EXPECT_PATTERN, sizeof(expect));
	rc = kt_register(uffd, r.base, 8 * kt_ps, UFFDIO_REGISTER_MODE_WP);
	KT_CHECK(rc == 0, "UFFDIO_REGISTER 0..7: %s", strerror(-rc));
	rc = kt_register(uffd, r.base + 16 * kt_ps, 8 * kt_ps, UFFDIO_REGISTER_MODE_WP);
	KT_CHECK(rc == 0, "UFFDIO_REGISTER 16..23: %s", strerror(-rc));

	err = kt_wp(uffd, r.base, r.len, 1);
	KT_CHECK(err < 0, "UFFDIO_WRITEPROTECT over a partly registered range succeeded");
	before = kt_pagemap_count(r.base, 8, CKPT_PM_UFFD_WP, 0);
	gap = kt_pagemap_count(r.base + 8 * kt_ps, 8, CKPT_PM_UFFD_WP, 0);
	after = kt_pagemap_count(r.base + 16 * kt_ps, 8, CKPT_PM_UFFD_WP, 0);
	kt_note("UFFDIO_WRITEPROTECT failed with %s; protected: %zu/8 before the gap, %zu/8 in it, "
		"%zu/8 after it", strerror(-err), before, gap, after);
	KT_CHECK(gap == 0 && after == 0,
		 "pages in or after the gap were protected (%zu in the gap, %zu after)", gap, after);
	KT_CHECK(before == 8, "only %zu of the 8 registered pages before the gap were protected "
			      "(pinned: the part before the gap is protected)", before);

	rc = kt_handler_start(&h, uffd, &r, r.base, 0x3, expect);
	KT_CHECK(rc == 0, "handler thread: %s", strerror(-rc));
	rc = kt_write_pages(&h, 0, 8, 1, "write before the gap");
	if (rc != KT_PASS)
		return rc;
	rc = kt_write_pages(&h, 8, 16, 0, "write in and after the gap");
	if (rc != KT_PASS)
		return rc;
	kt_handler_stop(&h);
	return KT_PASS;
}
