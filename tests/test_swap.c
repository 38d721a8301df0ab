/*
 * test_swap.c - a checkpoint stays exact while the heap is pushed to swap
 * mid-checkpoint (zram swap + MADV_PAGEOUT from another thread): the
 * write-protect mark of a swapped-out shmem page lives in its swap pte and
 * the next write still traps (kernel/ pins the kernel side of this).
 *
 * The parent owns the machine state: it takes the machine lock, sets up
 * zram swap, runs the scenario in a child, and tears swap down whatever
 * the child did (crash, assertion, timeout) before asserting.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "uffd_compat.h"
#include "util/memsink.h"
#include "util/testutil.h"

#define HEAP_SIZE (64u << 20)
#define NPAGES 4096u

static int sh(const char *cmd)
{
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static bool zram_swap_on(void)
{
	return sh("grep -q '^/dev/zram0' /proc/swaps") == 0;
}

struct pager {
	uint8_t *base;
	size_t len;
	_Atomic int stop;
	_Atomic uint64_t rounds;
	_Atomic uint64_t seen_swapped_wp;
};

static void *pager_main(void *arg)
{
	struct pager *p = arg;
	while (!atomic_load(&p->stop)) {
		madvise(p->base, p->len, MADV_PAGEOUT);
		uint64_t n = 0;
		for (size_t off = 0; off < p->len; off += 4096 * 16) {
			uint64_t e = ckpt_test_pagemap(p->base + off);
			if ((e & CKPT_PM_SWAP) && (e & CKPT_PM_UFFD_WP))
				n++;
		}
		if (n > atomic_load(&p->seen_swapped_wp))
			atomic_store(&p->seen_swapped_wp, n);
		atomic_fetch_add(&p->rounds, 1);
		usleep(2000);
	}
	return NULL;
}

/* Exit codes of the child: 0 ok, 2 image mismatch, 3 nothing swapped
 * while protected, 4 setup failure. */
static void scribble(uint8_t *d, uint64_t *rs, int n)
{
	for (int i = 0; i < n; i++) {
		size_t p = (size_t)(ckpt_test_rand(rs) % NPAGES);
		d[p * 4096 + (ckpt_test_rand(rs) % 4096)] ^= 0x5a;
		if (i % 100 == 0)
			usleep(1000);
	}
}

/* @prepared: ckpt_prepare() with pages pushed to swap and written through
 * the protection passes, then ckpt_cut(): the image is the heap at the cut. */
static int scenario(enum ckpt_backend be, bool prepared)
{
	struct ckpt_heap_opts o;
	ckpt_heap *h = NULL;
	struct memsink ms;
	struct ckpt_dest dest = {.kind = CKPT_DEST_SINK, .sink = &ms.sink};
	uint64_t rs = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull; /* no criterion calls in the child */

	ckpt_heap_opts_init(&o);
	o.size = HEAP_SIZE;
	o.backend = be;
	o.fault_around = 4;
	if (ckpt_heap_create(&o, &h) != 0)
		return 4;
	uint8_t *d = ckpt_alloc(h, NPAGES * 4096);
	if (!d || memsink_init(&ms, HEAP_SIZE, 4096) != 0)
		return 4;
	for (size_t p = 0; p < NPAGES; p++)
		memset(d + p * 4096, (int)(p + 1), 4096);
	size_t used = ckpt_heap_used(h);
	uint8_t *ref = malloc(used);

	struct pager pg = {.base = d, .len = NPAGES * 4096};
	madvise(d, NPAGES * 4096, MADV_PAGEOUT); /* some already out at begin */
	ms.delay_us = 400;                      /* a slow sink: pages wait PENDING */
	pthread_t t;
	if (prepared) {
		pthread_create(&t, NULL, pager_main, &pg);
		if (ckpt_prepare(h, &dest, NULL, NULL) != 0)
			return 4;
		for (int i = 0; i < 200 && ckpt_ready(h) != 1; i++)
			scribble(d, &rs, 100); /* written and swapped through the passes */
		scribble(d, &rs, 300);
		memcpy(ref, ckpt_heap_base(h), used);
		if (ckpt_cut(h) != 0)
			return 4;
	} else {
		memcpy(ref, ckpt_heap_base(h), used);
		if (ckpt_begin(h, &dest, NULL) != 0)
			return 4;
		pthread_create(&t, NULL, pager_main, &pg);
	}
	scribble(d, &rs, 3000);
	int rc = ckpt_wait(h);
	atomic_store(&pg.stop, 1);
	pthread_join(t, NULL);
	if (rc != 0)
		return 4;
	fprintf(stderr, "swap: pageout rounds %llu, max swapped+wp sampled %llu\n",
		(unsigned long long)pg.rounds, (unsigned long long)pg.seen_swapped_wp);
	if (memcmp(ms.image, ref, used) != 0)
		return 2;
	if (pg.seen_swapped_wp == 0)
		return 3;
	ckpt_heap_destroy(h);
	return 0;
}

static void swap_test(enum ckpt_backend be, bool prepared)
{
	CKPT_TEST_NEED_ROOT("zram swap");
	if (access("/sys/block/zram0", F_OK) != 0)
		CKPT_TEST_SKIP("no /dev/zram0 (CONFIG_ZRAM)");
	int lock = ckpt_test_machine_lock();
	bool had_swap = zram_swap_on();
	if (!had_swap) {
		sh("swapoff /dev/zram0 2>/dev/null; echo 1 > /sys/block/zram0/reset");
		if (sh("echo 512M > /sys/block/zram0/disksize && mkswap /dev/zram0 >/dev/null 2>&1 && "
		       "swapon /dev/zram0") != 0) {
			sh("echo 1 > /sys/block/zram0/reset");
			ckpt_test_machine_unlock(lock);
			CKPT_TEST_SKIP("cannot set up zram swap");
		}
	}
	pid_t pid = fork();
	if (pid == 0) {
		alarm(45);
		_exit(scenario(be, prepared));
	}
	int status = 0;
	waitpid(pid, &status, 0);
	if (!had_swap)
		sh("swapoff /dev/zram0; echo 1 > /sys/block/zram0/reset");
	ckpt_test_machine_unlock(lock);
	cr_assert(WIFEXITED(status), "scenario died (signal %d)", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	int code = WEXITSTATUS(status);
	cr_assert(code != 2, "image differs from the heap at ckpt_begin / ckpt_cut after swap-out");
	cr_assert(code != 3, "no page was ever seen swapped out while protected: the test did not test");
	cr_assert(code == 0, "scenario failed to set up (%d)", code);
}

Test(swap, pushed_to_swap_mid_checkpoint_thread_mode, .timeout = 150)
{
	swap_test(CKPT_TRAP_THREAD, false);
}

Test(swap, pushed_to_swap_mid_checkpoint_sigbus_mode, .timeout = 150)
{
	swap_test(CKPT_TRAP_SIGBUS, false);
}

/* Preparation's passes protect pages that the pager then pushes out (the
 * mark lives on in a PTE marker / swap entry) and the application writes
 * again; the cut must still see every page written after its pass. */
Test(swap, pushed_to_swap_during_preparation_thread_mode, .timeout = 150)
{
	swap_test(CKPT_TRAP_THREAD, true);
}

Test(swap, pushed_to_swap_during_preparation_sigbus_mode, .timeout = 150)
{
	swap_test(CKPT_TRAP_SIGBUS, true);
}
