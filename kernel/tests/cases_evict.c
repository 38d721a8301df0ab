/*
 * cases_evict.c - cases d, e, f, g: the write-protect mark survives the
 * kernel taking the page away or changing its mapping behind libckpt's
 * back: swap-out, memory-cgroup reclaim, THP split, migration by
 * compaction, and an mprotect round trip.  The parent (kt_machine.c) sets
 * up and restores the machine state these need.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kt.h"

#define WP_FEATURES UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define PM_WP CKPT_PM_UFFD_WP
#define PM_PRESENT CKPT_PM_PRESENT
#define PM_SWAP CKPT_PM_SWAP

static int setup_protected(struct kt_region *r, size_t n, size_t align, uint32_t seed, int *uffd)
{
	int rc = kt_region_new(r, n, align);

	KT_CHECK(rc == 0, "shmem region of %zu pages: %s", n, strerror(-rc));
	rc = kt_uffd_or_skip(WP_FEATURES, uffd);
	if (rc != KT_PASS)
		return rc;
	kt_fill(r, seed);
	rc = kt_register(*uffd, r->base, r->len, UFFDIO_REGISTER_MODE_WP);
	KT_CHECK(rc == 0, "UFFDIO_REGISTER(WP): %s", strerror(-rc));
	rc = kt_wp(*uffd, r->base, r->len, 1);
	KT_CHECK(rc == 0, "UFFDIO_WRITEPROTECT: %s", strerror(-rc));
	return KT_PASS;
}

/* KiB of swap in use on all devices per /proc/swaps (an already active
 * swap may be one of several), or -1. */
static long swap_used_kib(void)
{
	char line[256], name[200];
	long size, used = -1, u;
	FILE *f = fopen("/proc/swaps", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%199s %*s %ld %ld", name, &size, &u) == 3)
			used = (used < 0 ? 0 : used) + u;
	fclose(f);
	return used;
}

/*
 * d. Swap-out keeps the mark.  With zram swap active, MADV_PAGEOUT of a
 * write-protected shmem range evicts the pages to swap (mincore: not
 * resident; /proc/swaps: used grows; pagemap: not present, bit 62, bit 57
 * set), and every page's next write traps with the contents intact (the
 * handler reads each page back from swap before the write is let through).
 * The uffd-wp bit cannot live in the page or the swap slot of a shared
 * page: only the PTE marker keeps it.
 */
int kt_case_d(const struct kt_env *env)
{
	enum { N = 4096 }; /* 16 MiB */
	struct kt_region r;
	struct kt_handler h;
	uint8_t *expect = malloc(N);
	int uffd, rc;
	long used0, used1;
	size_t resident, marked;

	KT_CHECK(expect, "out of memory");
	memset(expect, KT_EXPECT_PATTERN, N);
	rc = setup_protected(&r, N, 0, 0xd, &uffd);
	if (rc != KT_PASS)
		return rc;
	used0 = swap_used_kib();
	KT_CHECK(madvise(r.base, r.len, MADV_PAGEOUT) == 0, "MADV_PAGEOUT: %s", strerror(errno));
	used1 = swap_used_kib();
	resident = kt_resident(r.base, N);
	marked = kt_pagemap_count(r.base, N, PM_WP | PM_SWAP, PM_PRESENT);
	kt_note("MADV_PAGEOUT: %zu/%d pages evicted (mincore), %zu show not-present + bit 62 + "
		"bit 57; swap used (%s) %ld -> %ld KiB",
		(size_t)N - resident, N, marked, env->swap_dev, used0, used1);
	KT_CHECK(resident <= N / 10, "MADV_PAGEOUT evicted only %zu of %d pages", N - resident, N);
	KT_CHECK(used1 - used0 >= (long)((N - resident) * (kt_ps / 1024)) * 9 / 10,
		 "swap use grew by %ld KiB only, for %zu evicted pages", used1 - used0, N - resident);
	KT_CHECK(marked >= N - resident,
		 "pagemap: %zu evicted pages but only %zu show the mark (not present, 62, 57)",
		 N - resident, marked);
	rc = kt_handler_start(&h, uffd, &r, r.base, 0xd, expect);
	KT_CHECK(rc == 0, "handler thread: %s", strerror(-rc));
	rc = kt_write_pages(&h, 0, N, 1, "write after swap-out");
	if (rc != KT_PASS)
		return rc;
	kt_handler_stop(&h);
	return KT_PASS;
}

/*
 * e. Eviction by memory pressure keeps the mark.  A process in a memory
 * cgroup whose limit is below what it uses write-protects a 16 MiB shmem
 * heap, then writes 64 MiB elsewhere until reclaim has pushed most of the
 * heap to (zram) swap.  Every heap page, evicted or not, still traps on
 * its next write and holds its contents.  This is the path a loaded
 * database meets during a long checkpoint, without any madvise.
 */
int kt_case_e(const struct kt_env *env)
{
	enum { N = 4096 };                 /* 16 MiB heap */
	const size_t other = 64ull << 20;  /* written "elsewhere" */
	struct kt_region r;
	struct kt_handler h;
	uint8_t *expect = malloc(N), *buf;
	char path[320], pid[32];
	int uffd, rc;
	size_t resident, marked, absent;

	KT_CHECK(expect, "out of memory");
	memset(expect, KT_EXPECT_PATTERN, N);
	snprintf(path, sizeof(path), "%s/cgroup.procs", env->cgroup);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	rc = kt_write_file(path, pid);
	KT_CHECK(rc == 0, "joining %s: %s", env->cgroup, strerror(-rc));

	rc = setup_protected(&r, N, 0, 0xe, &uffd);
	if (rc != KT_PASS)
		return rc;
	buf = mmap(NULL, other, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	KT_CHECK(buf != MAP_FAILED, "mmap: %s", strerror(errno));
	for (int pass = 0; pass < 2; pass++)
		for (size_t off = 0; off < other; off += kt_ps)
			buf[off] = (uint8_t)(off >> 12) + (uint8_t)pass + 1;
	resident = kt_resident(r.base, N);
	absent = kt_pagemap_count(r.base, N, 0, PM_PRESENT);
	marked = kt_pagemap_count(r.base, N, PM_WP, PM_PRESENT);
	kt_note("cgroup limit %zu MiB: %zu/%d heap pages evicted (mincore), %zu ptes not present, "
		"%zu of them marked (bit 57)", env->cg_limit >> 20, (size_t)N - resident, N, absent,
		marked);
	KT_CHECK(resident <= N / 2, "memory pressure evicted only %zu of %d heap pages",
		 N - resident, N);
	KT_CHECK(marked == absent, "pagemap: %zu heap ptes not present but only %zu marked", absent,
		 marked);
	KT_CHECK(kt_pagemap_count(r.base, N, PM_WP, 0) == N,
		 "pagemap: some present heap pages lost bit 57");
	rc = kt_handler_start(&h, uffd, &r, r.base, 0xe, expect);
	KT_CHECK(rc == 0, "handler thread: %s", strerror(-rc));
	rc = kt_write_pages(&h, 0, N, 1, "write after eviction by memcg pressure");
	if (rc != KT_PASS)
		return rc;
	kt_handler_stop(&h);
	munmap(buf, other);
	return KT_PASS;
}

/* The value in kB of an smaps field for the mapping that contains addr. */
static long smaps_kb(const void *addr, const char *field)
{
	char line[256];
	unsigned long lo, hi;
	int in = 0;
	long v = -1;
	size_t flen = strlen(field);
	FILE *f = fopen("/proc/self/smaps", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
			continue;
		}
		if (in && !strncmp(line, field, flen)) {
			v = strtol(line + flen, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

/*
 * f. Shmem transparent huge pages: with shmem_enabled=advise and
 * MADV_HUGEPAGE a 2 MiB shmem range is mapped by one PMD.  Write-protecting
 * it splits the PMD mapping into 512 ptes, each carrying the mark, so each
 * 4 KiB page traps on its own: unprotecting one page leaves its neighbours
 * protected.  libckpt copies out 4 KiB pages; a huge mapping trapping as a
 * whole would still be correct but a split that dropped marks would not.
 */
int kt_case_f(const struct kt_env *env)
{
	enum { N = 512 };
	struct kt_region r;
	struct kt_handler h;
	uint8_t expect[N];
	int uffd, rc;
	long pmd_before, pmd_after;
	size_t n;

	(void)env;
	memset(expect, KT_EXPECT_PATTERN, sizeof(expect));
	rc = kt_region_new(&r, N, 2u << 20);
	KT_CHECK(rc == 0, "shmem region: %s", strerror(-rc));
	KT_CHECK(madvise(r.base, r.len, MADV_HUGEPAGE) == 0, "MADV_HUGEPAGE: %s", strerror(errno));
	rc = kt_uffd_or_skip(WP_FEATURES, &uffd);
	if (rc != KT_PASS)
		return rc;
	kt_fill(&r, 0xf);
	pmd_before = smaps_kb(r.base, "ShmemPmdMapped:");
	KT_CHECK(pmd_before == 2048, "no huge page: ShmemPmdMapped is %ld kB after filling 2 MiB "
				     "with shmem_enabled=advise + MADV_HUGEPAGE", pmd_before);
	rc = kt_register(uffd, r.base, r.len, UFFDIO_REGISTER_MODE_WP);
	KT_CHECK(rc == 0, "UFFDIO_REGISTER(WP): %s", strerror(-rc));
	rc = kt_wp(uffd, r.base, r.len, 1);
	KT_CHECK(rc == 0, "UFFDIO_WRITEPROTECT: %s", strerror(-rc));
	pmd_after = smaps_kb(r.base, "ShmemPmdMapped:");
	n = kt_pagemap_count(r.base, N, PM_WP, 0);
	kt_note("ShmemPmdMapped %ld kB -> %ld kB after UFFDIO_WRITEPROTECT; %zu/%d ptes marked "
		"(bit 57), %zu present", pmd_before, pmd_after, n, N,
		kt_pagemap_count(r.base, N, PM_PRESENT, 0));
	KT_CHECK(pmd_after == 0, "the PMD mapping was not split by write-protect (%ld kB)", pmd_after);
	KT_CHECK(n == N, "pagemap: only %zu of %d ptes carry bit 57 after the split", n, N);
	rc = kt_handler_start(&h, uffd, &r, r.base, 0xf, expect);
	KT_CHECK(rc == 0, "handler thread: %s", strerror(-rc));
	/* odd pages first: each unprotect must leave its even neighbours marked */
	for (size_t i = 1; i < N; i += 2) {
		rc = kt_write_pages(&h, i, 1, 1, "write to one 4 KiB page of the huge page");
		if (rc != KT_PASS)
			return rc;
	}
	n = kt_pagemap_count(r.base, N, PM_WP, 0);
	KT_CHECK(n == N / 2, "after writing the odd pages %zu pages are still marked, want %d", n,
		 N / 2);
	for (size_t i = 0; i < N; i += 2) {
		rc = kt_write_pages(&h, i, 1, 1, "write to an even 4 KiB page");
		if (rc != KT_PASS)
			return rc;
	}
	kt_handler_stop(&h);
	return KT_PASS;
}

/*
 * One attempt at getting shmem pages migrated: a fresh protected region
 * whose pages were allocated interleaved with anonymous pages, the
 * anonymous pages freed, then compaction.  Returns the number of pages
 * whose PFN changed (low half / high half), or -1 with kt_fail() set.
 *
 * Compaction moves pages from the low end of the used memory into free
 * pages at its high end until its two scanners meet, so the more holes
 * the freed anonymous pages leave, the larger the share of shmem pages
 * below the meeting point (measured here: 1 anon page per shmem page:
 * 10-30% moved; 15: 40-90%, depending on what else uses memory).
 */
enum { G_N = 4096, G_K = 15 };

static const char *const vmstat_keys[] = { "compact_migrate_scanned", "compact_free_scanned",
					   "compact_isolated", "pgmigrate_success", "pgmigrate_fail" };

static void vmstat_snap(long long *v)
{
	char line[128], key[64];
	long long x;
	FILE *f = fopen("/proc/vmstat", "re");

	memset(v, 0, 5 * sizeof(*v));
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%63s %lld", key, &x) == 2)
			for (int i = 0; i < 5; i++)
				if (!strcmp(key, vmstat_keys[i]))
					v[i] = x;
	fclose(f);
}

static size_t count_moved(const struct kt_region *r, const uint64_t *pfn, size_t *lo, size_t *hi)
{
	*lo = *hi = 0;
	for (size_t i = 0; i < G_N; i++) {
		uint64_t e = kt_pagemap(r->base + i * kt_ps);

		if ((e & PM_PRESENT) && (e & CKPT_PM_PFN_MASK) != pfn[i])
			*(i < G_N / 2 ? lo : hi) += 1;
	}
	return *lo + *hi;
}

/* Enough migrated pages to mean something, in both halves (the second
 * half of every region also goes through the mprotect round trip). */
static bool good_share(size_t lo, size_t hi)
{
	return lo + hi >= G_N / 4 && lo >= G_N / 16 && hi >= G_N / 16;
}

#define G_MAX_REGIONS 6

/* pfn[] receives each page's PFN before compaction. */
static int migrate_attempt(struct kt_region *r, int uffd, uint64_t *pfn, size_t *moved_lo,
			   size_t *moved_hi)
{
	long long before[5], after[5];
	uint8_t *anon;
	int rc;

	rc = kt_region_new(r, G_N, 0);
	KT_CHECK(rc == 0, "shmem region: %s", strerror(-rc));
	anon = mmap(NULL, r->len * G_K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	KT_CHECK(anon != MAP_FAILED, "mmap: %s", strerror(errno));
	/* interleave: each shmem page's physical neighbours are anon pages */
	for (size_t i = 0; i < G_N; i++) {
		kt_fill_page(r->base + i * kt_ps, i, 0x9);
		for (size_t j = 0; j < G_K; j++)
			anon[(i * G_K + j) * kt_ps] = 1;
	}
	rc = kt_register(uffd, r->base, r->len, UFFDIO_REGISTER_MODE_WP);
	KT_CHECK(rc == 0, "UFFDIO_REGISTER(WP): %s", strerror(-rc));
	rc = kt_wp(uffd, r->base, r->len, 1);
	KT_CHECK(rc == 0, "UFFDIO_WRITEPROTECT: %s", strerror(-rc));
	for (size_t i = 0; i < G_N; i++) {
		pfn[i] = kt_pagemap(r->base + i * kt_ps) & CKPT_PM_PFN_MASK;
		KT_CHECK(pfn[i] != 0, "pagemap shows no PFN (needs CAP_SYS_ADMIN)");
	}
	munmap(anon, r->len * G_K);
	vmstat_snap(before);
	rc = kt_write_file("/proc/sys/vm/compact_memory", "1");
	KT_CHECK(rc == 0, "writing /proc/sys/vm/compact_memory: %s", strerror(-rc));
	vmstat_snap(after);
	kt_note("vmstat deltas: compact_migrate_scanned %lld, compact_free_scanned %lld, "
		"compact_isolated %lld, pgmigrate_success %lld, pgmigrate_fail %lld",
		after[0] - before[0], after[1] - before[1], after[2] - before[2],
		after[3] - before[3], after[4] - before[4]);
	count_moved(r, pfn, moved_lo, moved_hi);
	return KT_PASS;
}

static void on_alarm(int sig)
{
	(void)sig;
}

/* Offlining a block whose pages cannot all be migrated (an unmovable
 * kernel page in it) retries until a signal arrives: offline_pages()
 * checks signal_pending().  A CI run on 6.18 hung there until the case's
 * 150 s limit killed it; an alarm (no SA_RESTART) bounds each attempt. */
static int offline_bounded(const char *path, unsigned secs)
{
	struct sigaction sa = {.sa_handler = on_alarm}, old;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, &old);
	alarm(secs);
	int rc = kt_write_file(path, "offline");
	alarm(0);
	sigaction(SIGALRM, &old, NULL);
	return rc;
}

/*
 * The second way to migrate: offline and re-online the memory blocks that
 * hold most of the region's pages (memory hot-remove migrates every page
 * out of a block through the same migrate_pages() path compaction uses).
 * The parent puts every block back online whatever happens (kt_machine.c).
 */
static int migrate_by_offline(struct kt_region *rs, uint64_t **pfns, int nr, size_t *lo,
			      size_t *hi)
{
	char val[64], path[96];
	uint64_t block_pages;
	int *count, nblocks = 4096, tried = 0;

	if (kt_read_file("/sys/devices/system/memory/block_size_bytes", val, sizeof(val)) < 0)
		return kt_fail("compaction moved too little and there is no memory hotplug to fall back on");
	block_pages = strtoull(val, NULL, 16) / kt_ps;
	count = calloc((size_t)nblocks, sizeof(int));
	KT_CHECK(count && block_pages, "out of memory");
	for (int k = 0; k < nr; k++)
		for (size_t i = 0; i < G_N; i++) {
			uint64_t b = (kt_pagemap(rs[k].base + i * kt_ps) & CKPT_PM_PFN_MASK) / block_pages;

			if (b < (uint64_t)nblocks)
				count[b]++;
		}
	while (tried < 8 && !good_share(*lo, *hi)) {
		int best = -1, rc;

		for (int b = 0; b < nblocks; b++)
			if (count[b] && (best < 0 || count[b] > count[best]))
				best = b;
		if (best < 0)
			break;
		snprintf(path, sizeof(path), "/sys/devices/system/memory/memory%d/state", best);
		rc = offline_bounded(path, 8);
		if (rc == 0) {
			rc = kt_write_file(path, "online");
			KT_CHECK(rc == 0, "memory block %d offlined but not back online: %s", best,
				 strerror(-rc));
		}
		*lo = *hi = 0;
		for (int k = 0; k < nr; k++) {
			size_t l, h;

			count_moved(&rs[k], pfns[k], &l, &h);
			*lo += l;
			*hi += h;
		}
		kt_note("memory block %d (%d of the pages): offline+online %s; moved so far %zu + %zu",
			best, count[best], rc == 0 ? "done" : strerror(-rc), *lo, *hi);
		count[best] = 0;
		tried++;
	}
	free(count);
	return KT_PASS;
}

/*
 * g. Page migration and an mprotect round trip keep the mark.  Shmem pages
 * are allocated interleaved with anonymous pages, write-protected, the
 * anonymous pages freed, and /proc/sys/vm/compact_memory moves shmem
 * pages; pagemap PFNs must have changed for a good share of them (at least
 * 1024 pages, 256 in each half) before anything is asserted.  Compaction
 * moves pages only up to where its two scanners meet, which depends on
 * everything else in memory (on a busy machine it can move almost none of
 * ours), so fresh regions are added until enough have moved (at most 6,
 * within 50 s); when two compactions in a row move (almost) nothing, or
 * at the end, the memory blocks holding the pages are offlined (each
 * attempt bounded to 8 s, at most 8 blocks) and onlined again once
 * (memory hot-remove migrates through the same
 * migrate_pages() path; the 6.1 guest of the matrix often needs this).  Then the
 * second half of every region goes through mprotect(PROT_READ) and
 * mprotect(PROT_READ|PROT_WRITE).  Every page, moved or not, must still
 * trap with its contents intact.  Before the 6.2 fix "mm/userfaultfd:
 * enable writenotify while userfaultfd-wp is enabled for a VMA" (also in
 * later 6.1 stable kernels) both rebuilt the pte from vm_page_prot,
 * writable, and the write went through unseen.
 */
int kt_case_g(const struct kt_env *env)
{
	struct kt_region rs[G_MAX_REGIONS];
	uint64_t *pfns[G_MAX_REGIONS];
	uint8_t *expect = malloc(G_N);
	size_t moved_lo = 0, moved_hi = 0, n;
	uint64_t t0 = kt_now_ns();
	int uffd, rc, nr = 0, stalled = 0, offlined = 0;

	(void)env;
	KT_CHECK(expect, "out of memory");
	memset(expect, KT_EXPECT_PATTERN, G_N);
	rc = kt_uffd_or_skip(WP_FEATURES, &uffd);
	if (rc != KT_PASS)
		return rc;
	while (nr < G_MAX_REGIONS && !good_share(moved_lo, moved_hi) &&
	       (nr < 2 || kt_now_ns() - t0 < 50ull * 1000000000ull)) {
		size_t lo, hi, before = moved_lo + moved_hi;

		pfns[nr] = malloc(G_N * sizeof(uint64_t));
		KT_CHECK(pfns[nr], "out of memory");
		rc = migrate_attempt(&rs[nr], uffd, pfns[nr], &lo, &hi);
		if (rc != KT_PASS)
			return rc;
		nr++;
		/* a later compaction may move pages of earlier regions too */
		moved_lo = moved_hi = 0;
		for (int k = 0; k < nr; k++) {
			count_moved(&rs[k], pfns[k], &lo, &hi);
			moved_lo += lo;
			moved_hi += hi;
		}
		kt_note("region %d: compaction has moved %zu + %zu pages of %d regions of %d", nr,
			moved_lo, moved_hi, nr, G_N);
		stalled = moved_lo + moved_hi - before < G_N / 64 ? stalled + 1 : 0;
		/* two fruitless compactions in a row: try the other way now
		 * (once); if that cannot offline anything, go on compacting */
		if (stalled >= 2 && !offlined && !good_share(moved_lo, moved_hi)) {
			offlined = 1;
			rc = migrate_by_offline(rs, pfns, nr, &moved_lo, &moved_hi);
			if (rc != KT_PASS)
				return rc;
		}
	}
	if (!good_share(moved_lo, moved_hi) && !offlined) {
		rc = migrate_by_offline(rs, pfns, nr, &moved_lo, &moved_hi);
		if (rc != KT_PASS)
			return rc;
	}
	KT_CHECK(good_share(moved_lo, moved_hi), "neither compaction nor memory offlining migrated a "
						 "good share of the pages (%zu + %zu of %d x %d): nothing to test",
		 moved_lo, moved_hi, nr, G_N);
	for (int k = 0; k < nr; k++) {
		struct kt_region *r = &rs[k];
		struct kt_handler h;

		n = kt_pagemap_count(r->base, G_N, PM_WP, 0);
		KT_CHECK(n == G_N, "pagemap: %zu pages lost bit 57 in migration", (size_t)G_N - n);
		/* second half: mprotect round trip on top of the migration */
		KT_CHECK(mprotect(r->base + r->len / 2, r->len / 2, PROT_READ) == 0 &&
				 mprotect(r->base + r->len / 2, r->len / 2, PROT_READ | PROT_WRITE) == 0,
			 "mprotect: %s", strerror(errno));
		n = kt_pagemap_count(r->base, G_N, PM_WP, 0);
		KT_CHECK(n == G_N, "pagemap: %zu pages lost bit 57 in the mprotect round trip",
			 (size_t)G_N - n);
		rc = kt_handler_start(&h, uffd, r, r->base, 0x9, expect);
		KT_CHECK(rc == 0, "handler thread: %s", strerror(-rc));
		rc = kt_write_pages(&h, 0, G_N / 2, 1, "write after migration");
		if (rc != KT_PASS)
			return rc;
		rc = kt_write_pages(&h, G_N / 2, G_N / 2, 1,
				    "write after migration + mprotect round trip");
		if (rc != KT_PASS)
			return rc;
		kt_handler_stop(&h);
	}
	return KT_PASS;
}
