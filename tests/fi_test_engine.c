/*
 * fi_test_engine.c - injected failures of the checkpoint engine itself
 * (linked with build/libckpt-fi.a, see libckpt/src/faultinject.h).
 *
 * The handler thread's read of the userfaultfd fails (issue 11, item 9): it
 * used to exit silently, and every later write fault then hung forever.
 * Now the heap is unprotected at once (threads blocked on a fault wake up),
 * the running checkpoint fails with CKPT_E_FAILED, and every later
 * checkpoint is refused with CKPT_E_FAILED.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "faultinject.h"
#include "uffd_compat.h"
#include "util/memsink.h"
#include "util/testutil.h"

#define HEAP (32u << 20)
#define PAGES 2048u

Test(engine_fi, handler_read_failure_unprotects_and_fails_the_heap, .timeout = 60)
{
	struct ckpt_heap_opts o;
	ckpt_heap *h = NULL;
	struct memsink ms;

	ckpt_heap_opts_init(&o);
	o.size = HEAP;
	o.backend = CKPT_TRAP_THREAD;
	o.fault_around = 1;
	CKPT_ASSERT_OK(ckpt_heap_create(&o, &h));
	uint8_t *d = ckpt_alloc(h, (size_t)PAGES * 4096);
	cr_assert_not_null(d);
	memset(d, 0x5a, (size_t)PAGES * 4096);
	cr_assert(memsink_init(&ms, HEAP, 4096) == 0);
	ms.delay_us = 2000; /* pages stay PENDING long enough to be written */
	struct ckpt_dest dest = {.kind = CKPT_DEST_SINK, .sink = &ms.sink};

	/* the handler's next read fails: it is blocked in poll() now, so the
	 * first fault wakes it into the failing read */
	ckpt__fault_arm(CKPT_FAULT_UFFD_READ, -EIO, 0, 0);
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, NULL));
	for (size_t p = PAGES / 2; p < PAGES; p++)
		d[p * 4096] = 1; /* would hang without the fix */
	CKPT_ASSERT_ERR(ckpt_wait(h), CKPT_E_FAILED);
	ckpt__fault_reset();
	size_t wp = 0;
	for (size_t p = 0; p < PAGES; p++)
		wp += (ckpt_test_pagemap(d + p * 4096) & CKPT_PM_UFFD_WP) != 0;
	cr_assert(wp == 0, "%zu pages still write-protected after the handler failed", wp);
	for (size_t p = 0; p < PAGES; p++)
		cr_assert(d[p * 4096] == (p >= PAGES / 2 ? 1 : 0x5a), "page %zu lost its write", p);
	CKPT_ASSERT_ERR(ckpt_begin(h, &dest, NULL), CKPT_E_FAILED);
	CKPT_ASSERT_ERR(ckpt_prepare(h, &dest, NULL, NULL), CKPT_E_FAILED);
	ckpt_heap_destroy(h);
	memsink_fini(&ms);
}
