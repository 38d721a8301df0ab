/*
 * test_engine.c - the checkpoint engine's behaviour at its edges: the pool
 * cap, failure and cancel leaving the heap unprotected and usable, destroy
 * during a checkpoint, one checkpoint at a time, no leaks.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uffd_compat.h"
#include "util/memsink.h"
#include "util/testutil.h"

#define HEAP_SIZE (32u << 20)

static ckpt_heap *make_heap(enum ckpt_backend be, size_t pool, unsigned fa, unsigned flags)
{
	struct ckpt_heap_opts o;
	ckpt_heap *h = NULL;
	ckpt_heap_opts_init(&o);
	o.size = HEAP_SIZE;
	o.backend = be;
	o.pool_bytes = pool;
	o.fault_around = fa;
	o.flags = flags;
	CKPT_ASSERT_OK(ckpt_heap_create(&o, &h));
	return h;
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i += 4096)
		memset(p + i, (int)(seed + i / 4096), 4096);
}

/* Pages [0, used) of the heap carry no uffd-wp bit in pagemap. */
static size_t count_wp_pages(ckpt_heap *h)
{
	size_t used = ckpt_heap_used(h), n = 0;
	uint8_t *b = ckpt_heap_base(h);
	for (size_t off = 0; off < used; off += 4096)
		if (ckpt_test_pagemap(b + off) & CKPT_PM_UFFD_WP)
			n++;
	return n;
}

/* With a pool of 8 pages and every page written during the checkpoint,
 * the pool never holds more than 8 pages and the image is still exact. */
static void pool_cap(enum ckpt_backend be)
{
	const size_t pool = 8 * 4096, npages = 1024;
	ckpt_heap *h = make_heap(be, pool, 4, 0);
	uint8_t *d = ckpt_alloc(h, npages * 4096);
	struct memsink ms;
	struct ckpt_dest dest = {.kind = CKPT_DEST_SINK, .sink = &ms.sink};
	struct ckpt_stats st = {.struct_size = sizeof(st)};

	cr_assert_not_null(d);
	fill(d, npages * 4096, 3);
	size_t used = ckpt_heap_used(h);
	uint8_t *ref = malloc(used);
	memcpy(ref, ckpt_heap_base(h), used);
	cr_assert(memsink_init(&ms, HEAP_SIZE, 4096) == 0);
	ms.delay_us = 200;
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, NULL));
	for (size_t p = 0; p < npages; p++)
		d[p * 4096 + 17] ^= 0xff; /* every page, faster than the writer */
	CKPT_ASSERT_OK(ckpt_wait(h));
	CKPT_ASSERT_OK(ckpt_stats(h, &st));
	cr_assert(st.pool_peak_bytes <= pool, "pool peak %llu > cap %zu",
		  (unsigned long long)st.pool_peak_bytes, pool);
	cr_assert(st.pages_saved_by_traps > 0, "no page went through the pool");
	cr_assert(memcmp(ms.image, ref, used) == 0, "image differs from the heap at ckpt_begin");
	cr_assert(!ms.dup);
	for (size_t p = 0; p < npages; p++)
	{
		uint8_t now = d[p * 4096 + 17];
		uint8_t before = ref[(size_t)(d - (uint8_t *)ckpt_heap_base(h)) + p * 4096 + 17];
		unsigned want = (unsigned)(before ^ 0xffu) & 0xffu;
		if ((unsigned)now != want)
			cr_assert_fail("page %zu: the write during the checkpoint was lost", p);
	}
	free(ref);
	memsink_fini(&ms);
	ckpt_heap_destroy(h);
}

Test(pool, tiny_pool_caps_memory_thread_mode, .timeout = 60)
{
	pool_cap(CKPT_TRAP_THREAD);
}

Test(pool, tiny_pool_caps_memory_sigbus_mode, .timeout = 60)
{
	pool_cap(CKPT_TRAP_SIGBUS);
}

/* A sink that fails mid-way: ckpt_wait() returns its error, no page keeps
 * its uffd-wp bit, the heap takes writes, and the next checkpoint works. */
static void sink_failure(enum ckpt_backend be, unsigned flags)
{
	ckpt_heap *h = make_heap(be, 1 << 20, 1, flags);
	uint8_t *d = ckpt_alloc(h, 512 * 4096);
	struct memsink ms;
	struct ckpt_dest dest = {.kind = CKPT_DEST_SINK, .sink = &ms.sink};

	cr_assert_not_null(d);
	fill(d, 512 * 4096, 9);
	cr_assert(memsink_init(&ms, HEAP_SIZE, 4096) == 0);
	ms.fail_after = 3;
	ms.fail_rc = -EIO;
	ms.delay_us = 100;
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, NULL));
	for (size_t p = 0; p < 512; p += 7)
		d[p * 4096] = 1; /* some traps while it fails */
	CKPT_ASSERT_ERR(ckpt_wait(h), -EIO);
	cr_assert(ms.ended == 1 && ms.end_status == -EIO, "sink end() got %d", ms.end_status);
	if (be != CKPT_BACKEND_FORK) {
		size_t wp = count_wp_pages(h);
		cr_assert(wp == 0, "%zu pages still write-protected after a failed checkpoint", wp);
	}
	memset(d, 0x5a, 512 * 4096); /* writable, no trap can hang */
	ms.fail_after = 0;
	size_t used = ckpt_heap_used(h);
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, NULL));
	CKPT_ASSERT_OK(ckpt_wait(h));
	cr_assert(memcmp(ms.image, ckpt_heap_base(h), used) == 0, "next checkpoint is not exact");
	cr_assert(!(ms.info.flags & CKPT_SINK_INCREMENTAL), "after a failure the next image must be full");
	memsink_fini(&ms);
	ckpt_heap_destroy(h);
}

Test(errors, sink_failure_unprotects_thread_mode, .timeout = 60)
{
	sink_failure(CKPT_TRAP_THREAD, 0);
}

Test(errors, sink_failure_unprotects_sigbus_incremental, .timeout = 60)
{
	sink_failure(CKPT_TRAP_SIGBUS, CKPT_HEAP_INCREMENTAL);
}

Test(errors, sink_failure_fork_backend, .timeout = 60)
{
	sink_failure(CKPT_BACKEND_FORK, 0);
}

static void cancel_midway(enum ckpt_backend be)
{
	ckpt_heap *h = make_heap(be, 1 << 20, 1, 0);
	uint8_t *d = ckpt_alloc(h, 1024 * 4096);
	struct memsink ms;
	struct ckpt_dest dest = {.kind = CKPT_DEST_SINK, .sink = &ms.sink};
	uint64_t done = 0, total = 0;

	cr_assert_not_null(d);
	fill(d, 1024 * 4096, 1);
	cr_assert(memsink_init(&ms, HEAP_SIZE, 4096) == 0);
	ms.delay_us = 2000;
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, NULL));
	CKPT_ASSERT_ERR(ckpt_begin(h, &dest, NULL), -EBUSY);
	cr_assert(ckpt_poll(h, &done, &total) == 1, "poll says not running");
	cr_assert(total >= 1024 * 4096ull, "total %llu", (unsigned long long)total);
	usleep(5000);
	CKPT_ASSERT_OK(ckpt_cancel(h));
	CKPT_ASSERT_ERR(ckpt_wait(h), CKPT_E_CANCELED);
	cr_assert(ckpt_poll(h, &done, &total) == 0);
	CKPT_ASSERT_ERR(ckpt_cancel(h), -ENOENT);
	if (be != CKPT_BACKEND_FORK)
		cr_assert(count_wp_pages(h) == 0, "pages still protected after cancel");
	memset(d, 1, 1024 * 4096);
	ms.delay_us = 0;
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, NULL));
	CKPT_ASSERT_OK(ckpt_wait(h));
	cr_assert(memcmp(ms.image, ckpt_heap_base(h), ckpt_heap_used(h)) == 0);
	memsink_fini(&ms);
	ckpt_heap_destroy(h);
}

Test(errors, cancel_midway_thread_mode, .timeout = 60)
{
	cancel_midway(CKPT_TRAP_THREAD);
}

Test(errors, cancel_midway_sigbus_mode, .timeout = 60)
{
	cancel_midway(CKPT_TRAP_SIGBUS);
}

Test(errors, cancel_midway_fork_backend, .timeout = 60)
{
	cancel_midway(CKPT_BACKEND_FORK);
}

/* Destroying a heap mid-checkpoint cancels it and leaks nothing: fds and
 * threads come back to what they were, across many cycles. */
Test(errors, destroy_midway_leaks_nothing, .timeout = 120)
{
	struct memsink ms;
	struct ckpt_dest dest = {.kind = CKPT_DEST_SINK, .sink = &ms.sink};
	enum ckpt_backend modes[] = {CKPT_TRAP_THREAD, CKPT_TRAP_SIGBUS, CKPT_BACKEND_FORK};

	cr_assert(memsink_init(&ms, HEAP_SIZE, 4096) == 0);
	/* the first heap of the process runs the probe and installs the
	 * SIGBUS handler once: count after that */
	ckpt_heap_destroy(make_heap(CKPT_TRAP_SIGBUS, 1 << 20, 1, 0));
	int fds = ckpt_test_count_fds(), thr = ckpt_test_count_threads();
	for (int i = 0; i < 30; i++) {
		ckpt_heap *h = make_heap(modes[i % 3], 1 << 20, 1, 0);
		uint8_t *d = ckpt_alloc(h, 256 * 4096);
		cr_assert_not_null(d);
		fill(d, 256 * 4096, (uint8_t)i);
		ms.delay_us = 500;
		CKPT_ASSERT_OK(ckpt_begin(h, &dest, NULL));
		d[4096 * 100] = 7;
		if (i % 2)
			usleep(1000);
		ckpt_heap_destroy(h);
	}
	ckpt_heap_destroy(NULL);
	usleep(10000);
	cr_assert(ckpt_test_count_fds() == fds, "fds: %d before, %d after", fds, ckpt_test_count_fds());
	cr_assert(ckpt_test_count_threads() == thr, "threads: %d before, %d after", thr,
		  ckpt_test_count_threads());
	memsink_fini(&ms);
}

/* UFFDIO_WRITEPROTECT failing part-way: see test_engine_fi.c (fault
 * injection build).  Here: a heap whose base range is taken is refused. */
Test(errors, base_in_use_is_refused, .timeout = 30)
{
	ckpt_heap *a = make_heap(CKPT_TRAP_THREAD, 1 << 20, 1, 0), *b = NULL;
	struct ckpt_heap_opts o;
	ckpt_heap_opts_init(&o);
	o.size = HEAP_SIZE;
	CKPT_ASSERT_ERR(ckpt_heap_create(&o, &b), CKPT_E_ADDRINUSE);
	cr_assert_null(b);
	ckpt_heap_destroy(a);
	CKPT_ASSERT_OK(ckpt_heap_create(&o, &b));
	ckpt_heap_destroy(b);
}

Test(errors, bad_options_are_rejected, .timeout = 30)
{
	struct ckpt_heap_opts o;
	ckpt_heap *h = NULL;
	ckpt_heap_opts_init(&o);
	o.fault_around = 3;
	CKPT_ASSERT_ERR(ckpt_heap_create(&o, &h), -EINVAL);
	ckpt_heap_opts_init(&o);
	o.backend = 7;
	CKPT_ASSERT_ERR(ckpt_heap_create(&o, &h), -EINVAL);
	ckpt_heap_opts_init(&o);
	o.base = (void *)0x1234;
	CKPT_ASSERT_ERR(ckpt_heap_create(&o, &h), -EINVAL);
	ckpt_heap_opts_init(&o);
	o.base = (void *)(1ull << 50);
	CKPT_ASSERT_ERR(ckpt_heap_create(&o, &h), CKPT_E_RANGE);
	cr_assert_null(h);
	CKPT_ASSERT_ERR(ckpt_wait(NULL), -EINVAL);
	cr_assert_str_eq(ckpt_err_name(CKPT_E_CORRUPT), "CKPT_E_CORRUPT");
	cr_assert_str_neq(ckpt_strerror(-ENOSPC), "unknown error");
}

Test(errors, wait_and_poll_without_checkpoint, .timeout = 30)
{
	ckpt_heap *h = make_heap(CKPT_TRAP_THREAD, 1 << 20, 1, 0);
	CKPT_ASSERT_ERR(ckpt_wait(h), -ENOENT);
	CKPT_ASSERT_ERR(ckpt_poll(h, NULL, NULL), -ENOENT);
	CKPT_ASSERT_ERR(ckpt_cancel(h), -ENOENT);
	struct ckpt_dest bad = {.kind = CKPT_DEST_FD, .fd = -1};
	CKPT_ASSERT_ERR(ckpt_begin(h, &bad, NULL), -EBADF);
	ckpt_heap_destroy(h);
}

/* An incremental checkpoint carries only what changed: after a full one,
 * writing 3 pages gives an image of those 3 (plus fault-around). */
Test(incremental, carries_only_dirty_pages, .timeout = 60)
{
	ckpt_heap *h = make_heap(CKPT_TRAP_THREAD, 1 << 20, 1, CKPT_HEAP_INCREMENTAL);
	uint8_t *d = ckpt_alloc(h, 2048 * 4096);
	struct memsink ms;
	struct ckpt_dest dest = {.kind = CKPT_DEST_SINK, .sink = &ms.sink};
	struct ckpt_stats st = {.struct_size = sizeof(st)};

	fill(d, 2048 * 4096, 5);
	cr_assert(memsink_init(&ms, HEAP_SIZE, 4096) == 0);
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, NULL));
	CKPT_ASSERT_OK(ckpt_wait(h));
	cr_assert(!(ms.info.flags & CKPT_SINK_INCREMENTAL));
	d[10 * 4096] = 1;
	d[700 * 4096 + 5] = 2;
	d[2047 * 4096 + 4095] = 3;
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, NULL));
	CKPT_ASSERT_OK(ckpt_wait(h));
	CKPT_ASSERT_OK(ckpt_stats(h, &st));
	cr_assert(ms.info.flags & CKPT_SINK_INCREMENTAL, "second checkpoint not incremental");
	cr_assert(st.incremental == 1);
	cr_assert(ms.pages == 3, "incremental carried %llu pages, want 3", (unsigned long long)ms.pages);
	cr_assert(memcmp(ms.image, ckpt_heap_base(h), ckpt_heap_used(h)) == 0);
	struct ckpt_begin_opts bo;
	ckpt_begin_opts_init(&bo);
	bo.flags = CKPT_BEGIN_FULL;
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, &bo));
	CKPT_ASSERT_OK(ckpt_wait(h));
	cr_assert(!(ms.info.flags & CKPT_SINK_INCREMENTAL), "CKPT_BEGIN_FULL ignored");
	/* clean pages stay protected between checkpoints; written ones not */
	d[11 * 4096] = 1;
	cr_assert(ckpt_test_pagemap(d + 12 * 4096) & CKPT_PM_UFFD_WP, "clean page lost its protection");
	cr_assert(!(ckpt_test_pagemap(d + 11 * 4096) & CKPT_PM_UFFD_WP), "written page still protected");
	memsink_fini(&ms);
	ckpt_heap_destroy(h);
}

/* ------------------------------------------------------ what the pool costs */

static long rss_anon_kb(void)
{
	return ckpt_test_read_long("/proc/self/status", "RssAnon:");
}

struct sampler {
	_Atomic int stop;
	_Atomic long peak_kb;
};

static void *sample_main(void *arg)
{
	struct sampler *s = arg;
	while (!atomic_load(&s->stop)) {
		long kb = rss_anon_kb();
		if (kb > atomic_load(&s->peak_kb))
			atomic_store(&s->peak_kb, kb);
		usleep(500);
	}
	return NULL;
}

/* Issue 11: every checkpoint used to fault the whole pool in (64 MiB of
 * RssAnon for the default cap, +70 MiB seen from outside even when nothing
 * was written).  Slots are now faulted in ahead of need: a checkpoint of a
 * 48 MiB heap that nobody writes costs the warm margin (1/16 of the cap)
 * plus the writer's buffers, as an RssAnon sampler sees it, and a
 * checkpoint whose every page is written still stays under the cap plus
 * those buffers. */
Test(pool, costs_what_it_says_seen_from_outside, .timeout = 120)
{
	struct ckpt_heap_opts o;
	ckpt_heap *h = NULL;
	char dir[] = "/tmp/ckpt-rss.XXXXXX", path[64];
	ckpt_heap_opts_init(&o);
	o.size = 256u << 20;
	o.fault_around = 1;
	CKPT_ASSERT_OK(ckpt_heap_create(&o, &h));
	const size_t n = 48u << 20;
	uint8_t *d = ckpt_alloc(h, n);
	cr_assert_not_null(d);
	fill(d, n, 3);
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/img", dir);
	struct ckpt_dest dest = {.kind = CKPT_DEST_PATH, .path = path};
	struct ckpt_begin_opts bo;
	ckpt_begin_opts_init(&bo);
	bo.flags = CKPT_BEGIN_NO_FSYNC;

	for (int written = 0; written < 2; written++) {
		struct sampler s = {0};
		long base = rss_anon_kb();
		atomic_store(&s.peak_kb, base);
		pthread_t t;
		pthread_create(&t, NULL, sample_main, &s);
		CKPT_ASSERT_OK(ckpt_begin(h, &dest, &bo));
		for (size_t off = 0; written && off < n; off += 4096)
			d[off] ^= 1;
		CKPT_ASSERT_OK(ckpt_wait(h));
		atomic_store(&s.stop, 1);
		pthread_join(t, NULL);
		long extra = atomic_load(&s.peak_kb) - base;
		cr_log_info("checkpoint, %s: RssAnon +%ld KiB", written ? "every page written" : "nothing written",
			    extra);
		if (!written)
			cr_assert(extra < 16 * 1024, "a checkpoint nobody writes to cost +%ld KiB of RssAnon "
				  "(want < 16 MiB: 4 MiB warm margin + buffers)", extra);
		else
			cr_assert(extra < (64 + 16) * 1024, "+%ld KiB of RssAnon with a 64 MiB pool cap", extra);
	}
	ckpt_heap_destroy(h);
	unlink(path);
	rmdir(dir);
}
