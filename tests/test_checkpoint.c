/*
 * test_checkpoint.c - the checkpoint engine's central promise: the image is
 * the heap exactly as it was at ckpt_begin() (or at ckpt_cut() after a
 * ckpt_prepare() whose passes raced the writers), each page exactly once,
 * while any number of threads keep writing; for every backend and
 * fault-around setting, full and incremental.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "util/memsink.h"
#include "util/testutil.h"

#define HEAP_SIZE (64u << 20)
#define DATA_PAGES 2048u
#define WRITERS 4

struct world {
	ckpt_heap *h;
	uint8_t *data;
	size_t psz;
	size_t npages;
	pthread_rwlock_t lock;
	_Atomic int stop;
	_Atomic uint64_t writes;
	_Atomic uint32_t *version;
	uint64_t seed;
	pthread_t thr[WRITERS];
	int sequential; /* writers sweep sequentially (fault-around's case) */
};

/* Each write stamps the page number and a per-page version at a random
 * offset, and scribbles a random span: a lost or torn pre-image shows. */
static void *writer_main(void *arg)
{
	struct world *w = arg;
	uint64_t rs = w->seed ^ (uint64_t)(uintptr_t)pthread_self();
	size_t seq = (size_t)(ckpt_test_rand(&rs) % w->npages);

	while (!atomic_load(&w->stop)) {
		size_t p = w->sequential ? (seq++ % w->npages) : (size_t)(ckpt_test_rand(&rs) % w->npages);
		uint64_t r = ckpt_test_rand(&rs);
		pthread_rwlock_rdlock(&w->lock);
		uint32_t v = atomic_fetch_add(&w->version[p], 1) + 1;
		uint8_t *pg = w->data + p * w->psz;
		size_t off = (r % (w->psz / 16)) * 16;
		uint64_t stamp[2] = {p, v};
		memcpy(pg + off, stamp, sizeof(stamp));
		memset(pg + ((r >> 32) % (w->psz - 64)), (int)(r >> 8), 64);
		pthread_rwlock_unlock(&w->lock);
		atomic_fetch_add(&w->writes, 1);
	}
	return NULL;
}

static void world_start(struct world *w, const struct ckpt_heap_opts *o, const char *name)
{
	memset(w, 0, sizeof(*w));
	CKPT_ASSERT_OK(ckpt_heap_create(o, &w->h));
	w->psz = ckpt_heap_page_size(w->h);
	w->npages = o->flags & CKPT_HEAP_HUGETLB ? 8 : DATA_PAGES;
	w->data = ckpt_alloc(w->h, w->npages * w->psz);
	cr_assert_not_null(w->data, "ckpt_alloc of the data area failed");
	w->version = calloc(w->npages, sizeof(*w->version));
	w->seed = ckpt_test_seed(name);
	for (size_t p = 0; p < w->npages; p++)
		memset(w->data + p * w->psz, (int)(p * 7 + 1), w->psz);
	/* writer-preferring: the checkpointing thread must not starve */
	pthread_rwlockattr_t la;
	pthread_rwlockattr_init(&la);
	pthread_rwlockattr_setkind_np(&la, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&w->lock, &la);
	pthread_rwlockattr_destroy(&la);
	for (int i = 0; i < WRITERS; i++)
		pthread_create(&w->thr[i], NULL, writer_main, w);
}

static void world_stop(struct world *w)
{
	atomic_store(&w->stop, 1);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(w->thr[i], NULL);
	ckpt_heap_destroy(w->h);
	free(w->version);
	pthread_rwlock_destroy(&w->lock);
}

/* How a round takes its checkpoint: ckpt_begin(), or ckpt_prepare() with
 * the writers running through the whole preparation, then ckpt_cut() once
 * ready (or at once: a cut before the passes are done). */
enum take { TAKE_BEGIN, TAKE_PREPARE, TAKE_PREPARE_EARLY_CUT };
static enum take take_mode;

/* One checkpoint under load: the reference is taken with the writers held
 * off (the caller's guarantee during ckpt_begin / ckpt_cut), then they run on. */
static void checkpoint_round(struct world *w, struct memsink *ms, int round, unsigned flags)
{
	size_t used = ckpt_heap_used(w->h);
	uint8_t *ref = malloc(used);
	struct ckpt_dest dest = {.kind = CKPT_DEST_SINK, .sink = &ms->sink};
	struct ckpt_begin_opts bo;
	struct ckpt_stats st = {.struct_size = sizeof(st)};
	uint64_t gen = 0;
	int rc;

	ckpt_begin_opts_init(&bo);
	bo.flags = flags;
	cr_assert_not_null(ref);
	usleep(200 + (unsigned)(ckpt_test_rand(&w->seed) % 1500));
	if (take_mode != TAKE_BEGIN) {
		CKPT_ASSERT_OK(ckpt_prepare(w->h, &dest, &bo, &gen));
		for (int i = 0; take_mode == TAKE_PREPARE && (rc = ckpt_ready(w->h)) != 1; i++) {
			cr_assert(rc == 0 && i < 20000, "round %d: ckpt_ready() = %d after %d ms", round, rc, i / 10);
			usleep(100);
		}
		usleep((unsigned)(ckpt_test_rand(&w->seed) % 3000)); /* writers dirty the remainder */
	}
	pthread_rwlock_wrlock(&w->lock);
	memcpy(ref, ckpt_heap_base(w->h), used);
	rc = take_mode == TAKE_BEGIN ? ckpt_begin(w->h, &dest, &bo) : ckpt_cut(w->h);
	pthread_rwlock_unlock(&w->lock);
	CKPT_ASSERT_OK(rc);
	CKPT_ASSERT_OK(take_mode == TAKE_BEGIN ? ckpt_wait(w->h) : ckpt_wait_gen(w->h, gen));
	CKPT_ASSERT_OK(ckpt_stats(w->h, &st));

	cr_assert(ms->info.npages * w->psz == used, "round %d: extent %llu pages, heap used %zu bytes",
		  round, (unsigned long long)ms->info.npages, used);
	cr_assert(!ms->dup, "round %d: a page was emitted twice", round);
	cr_assert(ms->pages == st.pages_total, "round %d: sink got %llu pages, stats say %llu", round,
		  (unsigned long long)ms->pages, (unsigned long long)st.pages_total);
	if (!(ms->info.flags & CKPT_SINK_INCREMENTAL))
		for (size_t p = 0; p < used / w->psz; p++)
			if (ms->seen[p] != 1) /* assert only on failure: criterion counts every assert */
				cr_assert_fail("round %d: page %zu emitted %u times", round, p, ms->seen[p]);
	for (size_t off = 0; off < used; off += w->psz)
		if (memcmp(ms->image + off, ref + off, w->psz) != 0)
			cr_assert_fail("round %d: page %zu differs from the heap at ckpt_begin "
				       "(incremental %d, traps %llu, saved by traps %llu)",
				       round, off / w->psz, !!(ms->info.flags & CKPT_SINK_INCREMENTAL),
				       (unsigned long long)st.traps, (unsigned long long)st.pages_saved_by_traps);
	free(ref);
}

static unsigned full_every; /* for the incremental variants */

static void consistency(enum ckpt_backend be, unsigned fa, unsigned heap_flags, int rounds, const char *name)
{
	struct ckpt_heap_opts o;
	struct world w;
	struct memsink ms;
	uint64_t traps = 0, incrementals = 0, prep_traps = 0, passes = 0;

	ckpt_heap_opts_init(&o);
	o.size = HEAP_SIZE;
	o.backend = be;
	o.fault_around = fa;
	o.flags = heap_flags;
	o.full_every = full_every;
	if (heap_flags & CKPT_HEAP_HUGETLB)
		o.size = 32u << 20;
	world_start(&w, &o, name);
	cr_assert(memsink_init(&ms, ckpt_heap_size(w.h), w.psz) == 0);
	ms.delay_us = 30; /* stretch the checkpoint so the writers race it */
	/* soak mode: CKPT_SOAK_ROUNDS=N multiplies the rounds (tests/soak.sh
	 * has the long randomized version) */
	const char *soak = getenv("CKPT_SOAK_ROUNDS");
	if (soak && atoi(soak) > 1)
		rounds *= atoi(soak);
	for (int r = 0; r < rounds; r++) {
		checkpoint_round(&w, &ms, r, 0);
		struct ckpt_stats st = {.struct_size = sizeof(st)};
		ckpt_stats(w.h, &st);
		traps += st.traps;
		incrementals += st.incremental;
		prep_traps += st.prep_traps;
		passes += st.prep_passes;
		if (take_mode == TAKE_PREPARE && be != CKPT_BACKEND_FORK)
			cr_assert(st.prep_passes >= 1 && st.cut == 1, "round %d: %llu passes, cut %d", r,
				  (unsigned long long)st.prep_passes, st.cut);
	}
	uint64_t writes = atomic_load(&w.writes);
	world_stop(&w);
	memsink_fini(&ms);
	cr_assert(writes > 1000, "writers barely ran (%llu writes)", (unsigned long long)writes);
	if (be != CKPT_BACKEND_FORK)
		cr_assert(traps > 0, "no write ever trapped in %d rounds: the test did not race", rounds);
	if (take_mode == TAKE_PREPARE && be != CKPT_BACKEND_FORK)
		cr_assert(prep_traps > 0 && passes >= (uint64_t)rounds,
			  "writes never raced the preparation (%llu traps, %llu passes in %d rounds)",
			  (unsigned long long)prep_traps, (unsigned long long)passes, rounds);
	if ((heap_flags & CKPT_HEAP_INCREMENTAL) && full_every)
		cr_assert(incrementals == (uint64_t)(rounds - (rounds + (int)full_every - 1) / (int)full_every),
			  "full_every %u: %llu of %d checkpoints incremental", full_every,
			  (unsigned long long)incrementals, rounds);
	if ((heap_flags & CKPT_HEAP_INCREMENTAL) && !full_every)
		cr_assert(incrementals >= (uint64_t)rounds - 1, "only %llu of %d checkpoints were incremental",
			  (unsigned long long)incrementals, rounds);
}

TestSuite(consistency, .timeout = 120);

Test(consistency, thread_mode_image_equals_heap_at_begin)
{
	consistency(CKPT_TRAP_THREAD, 1, 0, 12, "thread_fa1");
}

Test(consistency, thread_mode_fault_around_16)
{
	consistency(CKPT_TRAP_THREAD, 16, 0, 10, "thread_fa16");
}

Test(consistency, thread_mode_busy_poll)
{
	consistency(CKPT_TRAP_THREAD, 4, CKPT_HEAP_BUSY_POLL, 6, "thread_busypoll");
}

Test(consistency, sigbus_mode_image_equals_heap_at_begin)
{
	consistency(CKPT_TRAP_SIGBUS, 1, 0, 12, "sigbus_fa1");
}

Test(consistency, sigbus_mode_fault_around_16)
{
	consistency(CKPT_TRAP_SIGBUS, 16, 0, 10, "sigbus_fa16");
}

Test(consistency, fork_backend_image_equals_heap_at_begin)
{
	consistency(CKPT_BACKEND_FORK, 1, 0, 6, "fork");
}

Test(consistency, incremental_chain_thread_mode)
{
	consistency(CKPT_TRAP_THREAD, 1, CKPT_HEAP_INCREMENTAL, 8, "incr_thread");
}

/* Every third image full: a full checkpoint of an incremental heap
 * protects only the pages written since the last one (the rest are still
 * protected), and must still be exact. */
Test(consistency, incremental_with_periodic_full_images)
{
	full_every = 3;
	consistency(CKPT_TRAP_THREAD, 4, CKPT_HEAP_INCREMENTAL, 9, "incr_full_every_3");
}

Test(consistency, incremental_chain_sigbus_mode_fault_around)
{
	consistency(CKPT_TRAP_SIGBUS, 16, CKPT_HEAP_INCREMENTAL, 8, "incr_sigbus");
}

/*
 * hugetlb-backed heap (2 MiB pages): the same promise with a 2 MiB copy per
 * trap.  Needs reserved huge pages: the test raises vm.nr_hugepages under
 * the machine lock and puts it back in the fini, which criterion runs after
 * a failed assertion too.
 */
Test(consistency, hugetlb_heap_image_equals_heap_at_begin, .fini = ckpt_test_hugetlb_release, .timeout = 120)
{
	CKPT_TEST_NEED_ROOT("hugetlb reservation");
	if (!ckpt_test_hugetlb_reserve(24))
		CKPT_TEST_SKIP("cannot reserve 24 hugetlb pages");
	consistency(CKPT_TRAP_SIGBUS, 1, CKPT_HEAP_HUGETLB, 6, "hugetlb_sigbus");
	consistency(CKPT_TRAP_THREAD, 1, CKPT_HEAP_HUGETLB, 6, "hugetlb_thread");
}

/* ckpt_prepare(): the writers run through the whole preparation (passes
 * protect pages they then write again, which only re-opens them) and the
 * image is the heap at ckpt_cut(). */
Test(consistency, prepare_cut_thread_mode)
{
	take_mode = TAKE_PREPARE;
	consistency(CKPT_TRAP_THREAD, 1, 0, 6, "prep_thread");
}

Test(consistency, prepare_cut_sigbus_mode_sequential_fault_around)
{
	take_mode = TAKE_PREPARE;
	consistency(CKPT_TRAP_SIGBUS, 16, 0, 6, "prep_sigbus_fa16");
}

/* An incremental chain through preparations: a page written during a
 * preparation is dirty and must be in that checkpoint (its passes clear
 * PG_UNPROT, which is the dirty mark between checkpoints). */
Test(consistency, prepare_cut_incremental_chain_thread_mode)
{
	take_mode = TAKE_PREPARE;
	consistency(CKPT_TRAP_THREAD, 1, CKPT_HEAP_INCREMENTAL, 6, "prep_incr_thread");
}

Test(consistency, prepare_cut_incremental_chain_sigbus_mode)
{
	take_mode = TAKE_PREPARE;
	full_every = 4;
	consistency(CKPT_TRAP_SIGBUS, 4, CKPT_HEAP_INCREMENTAL, 8, "prep_incr_sigbus");
}

/* A cut right after ckpt_prepare(), before the passes finished: it waits
 * for the set-up and protects whatever is left. */
Test(consistency, early_cut_during_passes)
{
	take_mode = TAKE_PREPARE_EARLY_CUT;
	consistency(CKPT_TRAP_SIGBUS, 1, 0, 5, "early_cut_sigbus");
	consistency(CKPT_TRAP_THREAD, 1, CKPT_HEAP_INCREMENTAL, 5, "early_cut_incr_thread");
}

Test(consistency, prepare_cut_fork_backend)
{
	take_mode = TAKE_PREPARE;
	consistency(CKPT_BACKEND_FORK, 1, 0, 4, "prep_fork");
}
