/*
 * fi_test_image.c - injected I/O failures while an image is written
 * (linked with build/libckpt-fi.a, see libckpt/src/faultinject.h): an EIO from a
 * write, a failing fsync, rename or io_uring submission is reported by
 * ckpt_wait(); the previous image at the path is intact, no temp file is
 * left, the heap is unprotected and writable, and the next checkpoint to a
 * good destination works.
 */
#include <setjmp.h>
#include <signal.h>
#include <time.h>

#include "image_util.h"
#include "faultinject.h"

#define HEAP (32u << 20)

static ckpt_heap *make_heap(enum ckpt_backend be, unsigned flags)
{
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = HEAP;
	ho.backend = be;
	ho.flags = flags;
	ckpt_heap *h = NULL;
	int rc = ckpt_heap_create(&ho, &h);
	if (rc == -EPERM || rc == CKPT_E_KERNEL)
		CKPT_TEST_SKIP("heap needs userfaultfd: %s", ckpt_strerror(rc));
	CKPT_ASSERT_OK(rc);
	return h;
}

static uint8_t *fill(ckpt_heap *h, size_t bytes, uint64_t seed)
{
	uint8_t *p = ckpt_alloc(h, bytes);
	cr_assert(p);
	uint64_t st = seed;
	for (size_t i = 0; i + 8 <= bytes; i += 8) {
		uint64_t v = (i % 4096 < 1024) ? iu_rand(&st) : i;
		memcpy(p + i, &v, 8);
	}
	return p;
}

/* Every page of the extent can be written, and none carries the uffd-wp
 * bit any more. */
static void assert_unprotected_and_writable(ckpt_heap *h)
{
	uint8_t *b = ckpt_heap_base(h);
	size_t used = ckpt_heap_used(h), psz = ckpt_heap_page_size(h);
	for (size_t off = 0; off < used; off += psz) {
		uint64_t pm = ckpt_test_pagemap(b + off);
		cr_assert(!(pm & CKPT_PM_UFFD_WP), "page %zu still write-protected after the failure",
			  off / psz);
	}
	/* writes go through (the first page is the allocator's header: leave it) */
	for (size_t off = psz; off < used; off += psz)
		b[off + 100] ^= 0x5a;
	for (size_t off = psz; off < used; off += psz)
		b[off + 100] ^= 0x5a;
}

struct site_case {
	enum ckpt__fault_site site;
	int err;
	unsigned skip;
	const char *name;
};

static void fail_one(enum ckpt_backend be, const struct site_case *c)
{
	char *dir = iu_tmpdir("fi");
	char path[300], good[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	snprintf(good, sizeof(good), "%s/good.ckpt", dir);
	ckpt__fault_reset();
	ckpt_heap *h = make_heap(be, 0);
	fill(h, 3u << 20, 1);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	struct ckpt_begin_opts o = iu_opts(1, 0);
	CKPT_ASSERT_OK(ckpt_begin(h, &d, &o));
	CKPT_ASSERT_OK(ckpt_wait(h));
	struct ckpt_image_info before;
	CKPT_ASSERT_OK(ckpt_image_info(path, &before, NULL, 0));
	size_t n0 = 0;
	uint8_t *bytes0 = iu_read_file(path, &n0);

	fill(h, 2u << 20, 2); /* the next image differs */
	ckpt__fault_arm(c->site, c->err, c->skip, 1);
	unsigned long hits0 = ckpt__fault_hits(c->site);
	int rc = ckpt_begin(h, &d, &o);
	if (rc == 0)
		rc = ckpt_wait(h);
	cr_assert(ckpt__fault_hits(c->site) > hits0, "%s: the site was never reached", c->name);
	cr_assert(rc == c->err, "%s (skip %u): got %s, want %s", c->name, c->skip, ckpt_err_name(rc),
		  ckpt_err_name(c->err));
	ckpt__fault_reset();

	/* the previous image is untouched */
	size_t n1 = 0;
	uint8_t *bytes1 = iu_read_file(path, &n1);
	cr_assert(n1 == n0 && memcmp(bytes0, bytes1, n0) == 0, "%s: previous image changed", c->name);
	free(bytes0);
	free(bytes1);
	char err[256] = "";
	CKPT_ASSERT_OK(ckpt_image_verify(path, CKPT_VERIFY_CHAIN, err, sizeof(err)));
	cr_assert_eq(iu_count_names(dir, ".tmp."), 0, "%s: temp file left", c->name);
	if (be != CKPT_BACKEND_FORK)
		assert_unprotected_and_writable(h);

	/* the next checkpoint to a good destination works */
	struct ckpt_dest g = { .kind = CKPT_DEST_PATH, .path = good };
	CKPT_ASSERT_OK(ckpt_begin(h, &g, &o));
	CKPT_ASSERT_OK(ckpt_wait(h));
	CKPT_ASSERT_OK(ckpt_image_verify(good, 0, err, sizeof(err)));
	ckpt_heap_destroy(h);
	iu_rmtree(dir);
	free(dir);
}

static const struct site_case cases[] = {
	{ CKPT_FAULT_WRITE, -EIO, 0, "EIO on the first write (header)" },
	{ CKPT_FAULT_WRITE, -EIO, 2, "EIO on a block write" },
	{ CKPT_FAULT_WRITE, -ENOSPC, 1, "ENOSPC on a block write" },
	{ CKPT_FAULT_FSYNC, -EIO, 0, "EIO from fsync of the image" },
	{ CKPT_FAULT_RENAME, -EIO, 0, "EIO from rename" },
	{ CKPT_FAULT_URING_SUBMIT, -ENOMEM, 0, "io_uring set-up failure" },
	{ CKPT_FAULT_URING_SUBMIT, -EBUSY, 3, "io_uring submission failure" },
};

Test(fi_image, injected_io_errors_are_reported_and_leave_the_previous_image)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		fail_one(CKPT_TRAP_THREAD, &cases[i]);
}

Test(fi_image, injected_eio_with_the_fork_backend)
{
	fail_one(CKPT_BACKEND_FORK, &cases[1]);
}

Test(fi_image, injected_eio_in_sigbus_mode)
{
	fail_one(CKPT_TRAP_SIGBUS, &cases[1]);
}

Test(fi_image, failed_incremental_keeps_the_chain_restorable)
{
	char *dir = iu_tmpdir("fiinc");
	char path[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	ckpt__fault_reset();
	ckpt_heap *h = make_heap(CKPT_TRAP_THREAD, CKPT_HEAP_INCREMENTAL);
	uint8_t *p = fill(h, 2u << 20, 3);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	struct ckpt_begin_opts o = iu_opts(0, CKPT_BEGIN_NO_FSYNC);
	CKPT_ASSERT_OK(ckpt_begin(h, &d, &o));
	CKPT_ASSERT_OK(ckpt_wait(h));
	p[5000] ^= 1;
	CKPT_ASSERT_OK(ckpt_begin(h, &d, &o));
	CKPT_ASSERT_OK(ckpt_wait(h));
	size_t used = ckpt_heap_used(h);
	uint8_t *snap = malloc(used);
	memcpy(snap, ckpt_heap_base(h), used);
	p[900000] ^= 1;
	ckpt__fault_arm(CKPT_FAULT_WRITE, -EIO, 1, 1);
	int rc = ckpt_begin(h, &d, &o);
	if (!rc)
		rc = ckpt_wait(h);
	CKPT_ASSERT_ERR(rc, -EIO);
	ckpt__fault_reset();
	char err[256] = "";
	rc = ckpt_image_verify(path, CKPT_VERIFY_CHAIN, err, sizeof(err));
	cr_assert(rc == 0, "chain after a failed incremental: %s (%s)", ckpt_err_name(rc), err);
	uint8_t *m;
	size_t sz = 0;
	CKPT_ASSERT_OK(iu_load(path, &m, &sz, err, sizeof(err)));
	cr_assert(memcmp(m, snap, used) == 0, "chain no longer holds the last good checkpoint");
	munmap(m, sz);
	/* after a failure the next checkpoint is full and cleans up */
	CKPT_ASSERT_OK(ckpt_begin(h, &d, &o));
	CKPT_ASSERT_OK(ckpt_wait(h));
	struct ckpt_image_info ii;
	CKPT_ASSERT_OK(ckpt_image_info(path, &ii, NULL, 0));
	cr_assert(!(ii.flags & CKPT_SINK_INCREMENTAL));
	cr_assert_eq(iu_count_names(dir, "heap.ckpt.g"), 0);
	cr_assert_eq(iu_count_names(dir, ".tmp."), 0);
	free(snap);
	ckpt_heap_destroy(h);
	iu_rmtree(dir);
	free(dir);
}

Test(fi_image, restore_memfd_and_mmap_failures_leak_nothing)
{
	char *dir = iu_tmpdir("firs");
	char path[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	ckpt__fault_reset();
	ckpt_heap *h = make_heap(CKPT_TRAP_THREAD, 0);
	fill(h, 1u << 20, 4);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	CKPT_ASSERT_OK(ckpt_begin(h, &d, NULL));
	CKPT_ASSERT_OK(ckpt_wait(h));
	uint64_t base = (uint64_t)(uintptr_t)ckpt_heap_base(h);
	ckpt_heap_destroy(h);
	int fds = ckpt_test_count_fds();
	const enum ckpt__fault_site sites[] = { CKPT_FAULT_MEMFD, CKPT_FAULT_MMAP, CKPT_FAULT_URING_SUBMIT };
	for (size_t i = 0; i < 3; i++) {
		for (unsigned skip = 0; skip < 3; skip++) {
			ckpt__fault_reset();
			ckpt__fault_arm(sites[i], -ENOMEM, skip, 1);
			ckpt_heap *r = NULL;
			int rc = ckpt_restore(path, NULL, &r);
			ckpt__fault_reset();
			if (rc == 0) { /* the site was passed fewer than skip+1 times */
				ckpt_heap_destroy(r);
				continue;
			}
			cr_assert_eq(rc, -ENOMEM, "site %zu skip %u: %s", i, skip, ckpt_err_name(rc));
			cr_assert_null(r);
			cr_assert(!iu_range_mapped(base, HEAP), "site %zu: something mapped", i);
			cr_assert_eq(ckpt_test_count_fds(), fds, "site %zu: fd leaked", i);
		}
	}
	ckpt_heap *r = NULL;
	CKPT_ASSERT_OK(ckpt_restore(path, NULL, &r));
	ckpt_heap_destroy(r);
	iu_rmtree(dir);
	free(dir);
}

/* ------------------------------------------- a fault beside a stalled loader */

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A lazy restore of @path whose loaders stall once they hold a block
 * (CKPT_FAULT_LAZY_LOADER armed until ckpt__fault_reset()). */
static ckpt_heap *restore_with_stalled_loaders(const char *path)
{
	ckpt__fault_arm(CKPT_FAULT_LAZY_LOADER, -EAGAIN, 0, 0);
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.flags = CKPT_RESTORE_LAZY;
	ckpt_heap *r = NULL;
	int rc = ckpt_restore(path, &ro, &r);
	if (rc == -EPERM || rc == CKPT_E_KERNEL) {
		ckpt__fault_reset();
		CKPT_TEST_SKIP("lazy restore needs userfaultfd: %s", ckpt_strerror(rc));
	}
	CKPT_ASSERT_OK(rc);
	return r;
}

/* Restores @path lazily with every loader stalling (10 s) on the first
 * block it takes, then touches a byte every 64 KiB of the first 4 MiB:
 * blocks the stalled loaders hold among them.  The accesses must finish
 * well before the stall would have (2 s): a fault on a block a loader is
 * loading serves itself instead of waiting for the loader (which runs
 * SCHED_IDLE and may not get a CPU).  Then ckpt_restore_wait() must not
 * wait for them either (5 s).  @what names the image. */
static void fault_beside_stalled_loaders(const char *path, const uint8_t *copy, size_t used, const char *what)
{
	ckpt__fault_reset();
	ckpt_heap *r = restore_with_stalled_loaders(path);
	for (int k = 0; k < 5000 && ckpt__fault_hits(CKPT_FAULT_LAZY_LOADER) == 0; k++)
		usleep(1000);
	cr_assert(ckpt__fault_hits(CKPT_FAULT_LAZY_LOADER) >= 1, "%s: no loader took a block", what);
	usleep(50000); /* the other loaders take theirs */
	const volatile uint8_t *base = ckpt_heap_base(r);
	size_t span = used < (4u << 20) ? used : (4u << 20), bad = 0;
	uint64_t t0 = mono_ms();
	for (size_t off = 4096; off < span; off += 64u << 10)
		bad += base[off + 17] != copy[off + 17];
	uint64_t ms = mono_ms() - t0;
	unsigned long stalls = ckpt__fault_hits(CKPT_FAULT_LAZY_LOADER);
	cr_assert_eq(bad, 0, "%s: %zu bytes served wrong", what, bad);
	cr_assert(ms < 2000, "%s: the first 4 MiB took %llu ms beside %lu stalled loaders: a fault waited for one",
		  what, (unsigned long long)ms, stalls);
	cr_log_info("%s: %llu ms for the first 4 MiB beside %lu stalled loaders", what, (unsigned long long)ms,
		    stalls);
	/* nor does ckpt_restore_wait() (a checkpoint's first step) wait for
	 * them: it loads and settles the blocks they hold itself */
	t0 = mono_ms();
	CKPT_ASSERT_OK(ckpt_restore_wait(r));
	ms = mono_ms() - t0;
	cr_assert(ms < 5000, "%s: ckpt_restore_wait() took %llu ms beside stalled loaders: it waited for one", what,
		  (unsigned long long)ms);
	cr_assert(memcmp((const void *)base, copy, used) == 0, "%s: the resident heap differs", what);
	/* the application writes; then the stalled loaders resume, late:
	 * their blocks were settled by ckpt_restore_wait() and our uffd is
	 * gone, and they must not put the image's bytes back (pwrite) */
	volatile uint8_t *w = ckpt_heap_base(r);
	for (size_t off = 4096; off < span; off += 4096)
		w[off + 33] = (uint8_t)(copy[off + 33] ^ 0xa5);
	ckpt__fault_reset(); /* releases the stalls */
	usleep(300000);
	size_t undone = 0;
	for (size_t off = 4096; off < span; off += 4096)
		undone += w[off + 33] != (uint8_t)(copy[off + 33] ^ 0xa5);
	cr_assert_eq(undone, 0, "%s: %zu of the application's writes undone by a loader that resumed late", what,
		     undone);
	ckpt_heap_destroy(r); /* wakes the stalled loaders */
}

/* zstd blocks and format-3 stored blocks (one checksum per block: a fault
 * reads the whole block) as well as format-4 stored ones (chunks).
 * Without the self-serving fault the first two wait out the stall. */
Test(fi_image, a_fault_never_waits_for_a_stalled_loader, .timeout = 120)
{
	char *dir = iu_tmpdir("fistall");
	char p4[300], pz[300], p3[300];
	snprintf(p4, sizeof(p4), "%s/stored.ckpt", dir);
	snprintf(pz, sizeof(pz), "%s/zstd.ckpt", dir);
	snprintf(p3, sizeof(p3), "%s/v3.ckpt", dir);
	ckpt__fault_reset();
	ckpt_heap *h = make_heap(CKPT_TRAP_THREAD, 0);
	fill(h, 8u << 20, 9);
	size_t used = ckpt_heap_used(h);
	uint8_t *copy = malloc(used);
	cr_assert(copy);
	memcpy(copy, ckpt_heap_base(h), used);
	const char *paths[2] = { p4, pz };
	for (int i = 0; i < 2; i++) {
		struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = paths[i] };
		struct ckpt_begin_opts bo = iu_opts(i, CKPT_BEGIN_NO_FSYNC);
		CKPT_ASSERT_OK(ckpt_begin(h, &d, &bo));
		CKPT_ASSERT_OK(ckpt_wait(h));
	}
	ckpt_heap_destroy(h);
	size_t len = 0;
	uint8_t *img = iu_read_file(p4, &len);
	cr_assert(img);
	len = iu_downgrade(img, len, 3);
	cr_assert(len, "downgrade to format 3");
	cr_assert_eq(iu_write_file(p3, img, len), 0);
	free(img);
	struct ckpt_image_info ii;
	CKPT_ASSERT_OK(ckpt_image_info(pz, &ii, NULL, 0));
	cr_assert(ii.blocks >= 4, "zstd image: %llu blocks", (unsigned long long)ii.blocks);

	fault_beside_stalled_loaders(pz, copy, used, "zstd");
	fault_beside_stalled_loaders(p3, copy, used, "format 3 stored");
	fault_beside_stalled_loaders(p4, copy, used, "format 4 stored");
	free(copy);
	iu_rmtree(dir);
	free(dir);
}

static sigjmp_buf bus_jmp;

static void on_bus(int sig)
{
	(void)sig;
	siglongjmp(bus_jmp, 1);
}

/* Reads one byte at @p; 1 if that raised SIGBUS. */
static int read_faults(const volatile uint8_t *p)
{
	if (sigsetjmp(bus_jmp, 1))
		return 1;
	(void)*p;
	return 0;
}

/* A format-3 stored image (one checksum per block) whose block 1 is damaged
 * after the up-front checks: the loader that takes block 1 stalls, and a
 * fault on it, reading and checking the block itself, must not serve it
 * (SIGBUS) and must mark the restore failed, as when it loads the block. */
Test(fi_image, a_fault_beside_a_stalled_loader_never_serves_a_damaged_block, .timeout = 120)
{
	char *dir = iu_tmpdir("fistallbad");
	char p3[300];
	snprintf(p3, sizeof(p3), "%s/v3.ckpt", dir);
	ckpt__fault_reset();
	ckpt_heap *h = make_heap(CKPT_TRAP_THREAD, 0);
	fill(h, 8u << 20, 10);
	uint64_t base = (uint64_t)(uintptr_t)ckpt_heap_base(h);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = p3 };
	struct ckpt_begin_opts bo = iu_opts(0, CKPT_BEGIN_NO_FSYNC);
	CKPT_ASSERT_OK(ckpt_begin(h, &d, &bo));
	CKPT_ASSERT_OK(ckpt_wait(h));
	ckpt_heap_destroy(h);
	size_t len = 0;
	uint8_t *img = iu_read_file(p3, &len);
	cr_assert(img);
	len = iu_downgrade(img, len, 3);
	cr_assert(len, "downgrade to format 3");
	struct ckpt__footer f;
	memcpy(&f, img + len - sizeof(f), sizeof(f));
	struct ckpt__trl_header t;
	memcpy(&t, img + f.trailer_offset, sizeof(t));
	cr_assert(t.nblocks >= 4, "%llu blocks", (unsigned long long)t.nblocks);
	struct ckpt__trl_entry e;
	memcpy(&e, img + f.trailer_offset + sizeof(t) + sizeof(e), sizeof(e)); /* block 1 */
	struct ckpt__blk_header bh;
	memcpy(&bh, img + e.offset, sizeof(bh));
	struct ckpt__run run;
	memcpy(&run, img + e.offset + sizeof(bh) + bh.data_len, sizeof(run));
	cr_assert_eq(run.kind, CKPT__RUN_DATA, "block 1 opens with a data run");
	img[e.offset + sizeof(bh) + 100] ^= 0x40; /* its first page; the payload hash no longer matches */
	cr_assert_eq(iu_write_file(p3, img, len), 0);
	free(img);

	ckpt_heap *r = restore_with_stalled_loaders(p3);
	for (int k = 0; k < 5000 && ckpt__fault_hits(CKPT_FAULT_LAZY_LOADER) < 2; k++)
		usleep(1000);
	const volatile uint8_t *bad = (const volatile uint8_t *)(uintptr_t)(base + run.first_page * 4096);
	struct sigaction sa = { .sa_handler = on_bus }, old;
	sigaction(SIGBUS, &sa, &old);
	uint64_t t0 = mono_ms();
	int faulted = read_faults(bad + 100), again = read_faults(bad + 3000);
	uint64_t ms = mono_ms() - t0;
	sigaction(SIGBUS, &old, NULL);
	unsigned long stalls = ckpt__fault_hits(CKPT_FAULT_LAZY_LOADER);
	ckpt__fault_reset();
	cr_assert(faulted && again, "a page of the damaged block was served (%d %d; %lu loaders stalled)", faulted,
		  again, stalls);
	cr_assert(ms < 2000, "the failed access took %llu ms: it waited for the loader", (unsigned long long)ms);
	cr_assert_eq(ckpt_restore_progress(r, NULL, NULL), CKPT_E_CORRUPT);
	ckpt_heap_destroy(r);
	iu_rmtree(dir);
	free(dir);
}
