/*
 * protect.c - write-protecting the heap for a checkpoint: the passes that
 * run during preparation while the application keeps writing, and the
 * remainder the cut protects inside the pause.
 *
 * Owns the group map (one bit per GROUP_PAGES pages: "may hold PG_UNPROT
 * pages"), the TRAPPED protocol below and ckpt__wp_range(), the one wrapper
 * of UFFDIO_WRITEPROTECT.  Calls only util.c and the page-state atomics;
 * trap.c calls in here (group bits, unprotect), never the other way.
 *
 * A pass over a chunk of pages, concurrent with traps:
 *   A  clear the chunk's group bits
 *   B  clear PG_TRAPPED on every candidate (PG_UNPROT, not PG_PINNED)
 *   C  write-protect the candidates (runs, one ioctl each)
 *   D  clear PG_UNPROT with a CAS that fails if PG_TRAPPED is set
 * A trap before the cut unprotects its page and only then marks it
 * PG_UNPROT | PG_TRAPPED and sets its group bit (trap.c).  So whatever the
 * interleaving, once both are done the page is either protected (C after
 * the trap's unprotect) or still marked and in the group map (the trap's
 * mark after B): I3 holds whenever no trap is in flight, which is what the
 * cut waits for (the gate) before it trusts the map.
 *
 * The cut never waits for a pass: passes run on threads below the
 * application's priority, and a preempted one held a cut for 320 ms under
 * load.  A pass publishes its chunk (pass_cur) before it checks prot_stop;
 * the cut sets prot_stop before it reads pass_cur, so a chunk a pass may
 * still be working on is always seen, and the cut protects it whole and
 * marks its pages PG_CUTMARK.  What such a late pass can still do is
 * harmless: protect again (a saved page traps once more and is opened), set
 * group bits; its step D, the one that could lose a page written after the
 * cut, fails on PG_CUTMARK.  PG_CUTMARK is cleared by the next preparation.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "faultinject.h"

#define CHUNK_PAGES 2048u    /* 8 MiB with 4 KiB pages: one ioctl ~0.1 ms */
#define MAX_GAP 32u          /* protect across this many clean pages rather than split */
#define PARALLEL_PAGES 32768u /* ranges this long are split over the CPUs */

/*
 * Write-protect or unprotect heap pages [first, first + n).  Unprotecting
 * also wakes threads blocked on a fault in the range (handler-thread mode).
 */
int ckpt__wp_range(ckpt_heap *h, size_t first, size_t n, bool protect)
{
	struct uffdio_writeprotect wp;

	if (n == 0)
		return 0;
	wp.range.start = (uint64_t)(uintptr_t)(h->base + (first << h->page_shift));
	wp.range.len = (uint64_t)n << h->page_shift;
	wp.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
	if (protect) {
		int frc = ckpt__fault_hit(CKPT_FAULT_UFFD_WP);
		if (frc)
			return frc;
		atomic_fetch_add_explicit(&h->eng->wp_epoch, 1, memory_order_relaxed);
	}
	for (;;) {
		if (ioctl(h->uffd, UFFDIO_WRITEPROTECT, &wp) == 0)
			return 0;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
	}
}

int ckpt__protect_init(ckpt_heap *h)
{
	struct ckpt__engine *e = h->eng;
	e->ngroups = (h->npages + GROUP_PAGES - 1) >> GROUP_SHIFT;
	e->groups = calloc((e->ngroups + 63) / 64, sizeof(*e->groups));
	e->npages = h->npages;
	for (unsigned i = 0; i < CKPT__PASS_SLOTS; i++)
		atomic_store(&e->pass_cur[i], -1L);
	return e->groups ? 0 : -ENOMEM;
}

void ckpt__protect_fini(ckpt_heap *h)
{
	free((void *)h->eng->groups);
	h->eng->groups = NULL;
}

void ckpt__groups_set(struct ckpt__engine *e, size_t page)
{
	size_t g = page >> GROUP_SHIFT;
	atomic_fetch_or(&e->groups[g / 64], 1ull << (g % 64));
}

void ckpt__groups_fill(struct ckpt__engine *e, size_t npages)
{
	size_t ng = (npages + GROUP_PAGES - 1) >> GROUP_SHIFT;
	for (size_t w = 0; w < (ng + 63) / 64; w++) {
		size_t left = ng - w * 64;
		atomic_fetch_or(&e->groups[w], left >= 64 ? ~0ull : (1ull << left) - 1);
	}
}

/* Bits of the chunk's groups: a chunk is CHUNK_PAGES / GROUP_PAGES = 32
 * groups, so it lies inside one word. */
static uint64_t chunk_mask(size_t chunk, unsigned *word)
{
	const unsigned per = CHUNK_PAGES / GROUP_PAGES;
	size_t g = chunk * per;
	*word = (unsigned)(g / 64);
	return ((1ull << per) - 1) << (g % 64);
}

static bool chunk_marked(struct ckpt__engine *e, size_t chunk)
{
	unsigned w;
	uint64_t m = chunk_mask(chunk, &w);
	return (atomic_load_explicit(&e->groups[w], memory_order_relaxed) & m) != 0;
}

static void chunk_clear(struct ckpt__engine *e, size_t chunk)
{
	unsigned w;
	uint64_t m = chunk_mask(chunk, &w);
	atomic_fetch_and(&e->groups[w], ~m);
}

/* Write-protect the runs of candidate pages of [lo, hi): a candidate has
 * all of @want and none of @skip; runs go across at most MAX_GAP other
 * pages (protecting a protected page again is harmless) but never across
 * a @skip page.  Returns 0 or the ioctl's error. */
static int protect_runs(ckpt_heap *h, size_t lo, size_t hi, uint8_t want, uint8_t skip)
{
	_Atomic uint8_t *pg = h->eng->pg;
	size_t q = lo;

	while (q < hi) {
		uint8_t s = atomic_load_explicit(&pg[q], memory_order_relaxed);
		if ((s & (want | skip)) != want) {
			q++;
			continue;
		}
		size_t first = q, last = q;
		for (size_t r = q + 1; r < hi && r - last <= MAX_GAP; r++) {
			s = atomic_load_explicit(&pg[r], memory_order_relaxed);
			if (s & skip)
				break;
			if (s & want)
				last = r;
		}
		int rc = last - first + 1 >= PARALLEL_PAGES ? ckpt__protect_parallel(h, first, last + 1)
							     : ckpt__wp_range(h, first, last - first + 1, true);
		if (rc)
			return rc;
		q = last + 1;
	}
	return 0;
}

/* One pass step over [lo, hi) during preparation (A-D above).  Adds the
 * pages still unprotected afterwards to *left. */
static int pass_chunk(ckpt_heap *h, struct ckpt__engine *e, size_t chunk, size_t npages,
		      uint64_t *left)
{
	_Atomic uint8_t *pg = e->pg;
	size_t lo = chunk * CHUNK_PAGES, hi = lo + CHUNK_PAGES < npages ? lo + CHUNK_PAGES : npages;
	size_t ncand = 0;
	int rc;

	chunk_clear(e, chunk); /* A */
	for (size_t q = lo; q < hi; q++) { /* B */
		uint8_t s = atomic_load_explicit(&pg[q], memory_order_relaxed);
		if ((s & (PG_UNPROT | PG_PINNED)) == PG_UNPROT) {
			if (s & PG_TRAPPED)
				atomic_fetch_and(&pg[q], (uint8_t)~PG_TRAPPED);
			ncand++;
		}
	}
	if (ncand == 0)
		goto recount;
	rc = protect_runs(h, lo, hi, PG_UNPROT, PG_PINNED); /* C */
	if (rc)
		return rc;
	for (size_t q = lo; q < hi; q++) { /* D */
		uint8_t s = atomic_load(&pg[q]);
		while ((s & (PG_UNPROT | PG_TRAPPED | PG_PINNED | PG_CUTMARK)) == PG_UNPROT &&
		       !atomic_compare_exchange_weak(&pg[q], &s, (uint8_t)(s & ~PG_UNPROT)))
			;
	}
recount:
	/* Pages left unprotected (trapped meanwhile, or pinned) keep their
	 * chunk in the map for the next pass and the cut. */
	for (size_t q = lo; q < hi; q++) {
		if (atomic_load_explicit(&pg[q], memory_order_relaxed) & PG_UNPROT) {
			ckpt__groups_set(e, q);
			++*left;
		}
	}
	return 0;
}

struct pass_job {
	ckpt_heap *h;
	size_t npages, nchunks;
	bool all;
	_Atomic size_t next;
	_Atomic unsigned slots;
	_Atomic uint64_t left;
	_Atomic int rc;
};

/* Takes chunks until none is left, the cut asks passes to stop, or a
 * protect fails.  Each chunk is published in the thread's pass_cur slot
 * before prot_stop is checked (both seq_cst; the cut does the reverse). */
static void *pass_worker(void *arg)
{
	struct pass_job *j = arg;
	struct ckpt__engine *e = j->h->eng;
	unsigned slot = atomic_fetch_add(&j->slots, 1);
	uint64_t left = 0;

	for (;;) {
		size_t c = atomic_fetch_add(&j->next, 1);
		if (c >= j->nchunks || atomic_load(&j->rc))
			break;
		if (!j->all && !chunk_marked(e, c))
			continue;
		atomic_store(&e->pass_cur[slot], (long)c);
		if (atomic_load(&e->prot_stop))
			break;
		int rc = pass_chunk(j->h, e, c, j->npages, &left);
		if (rc) {
			int zero = 0;
			atomic_compare_exchange_strong(&j->rc, &zero, rc);
			break;
		}
	}
	atomic_store(&e->pass_cur[slot], -1L);
	atomic_fetch_add(&j->left, left);
	return NULL;
}

static unsigned ncpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}

/*
 * ckpt__protect_pass() : one protection pass over [0, npages) during
 * preparation, concurrent with the application.  @all: every chunk (the
 * first pass); else only chunks in the group map.  The first pass runs on
 * every CPU.  *left: pages still unprotected afterwards.
 * Returns 0, or a protect error (the caller aborts: the state is unknown).
 */
int ckpt__protect_pass(ckpt_heap *h, bool all, size_t npages, uint64_t *left)
{
	struct pass_job j = {.h = h, .npages = npages, .all = all};
	pthread_t t[CKPT__PASS_SLOTS];
	unsigned nt = 0, want = all ? ncpus() : 1;

	j.nchunks = (npages + CHUNK_PAGES - 1) / CHUNK_PAGES;
	if (j.nchunks < 8)
		want = 1;
	while (nt + 1 < want && ckpt__thread_start(&t[nt], "ckpt-protect", pass_worker, &j) == 0)
		nt++;
	pass_worker(&j);
	for (unsigned i = 0; i < nt; i++)
		pthread_join(t[i], NULL);
	*left = atomic_load(&j.left);
	return atomic_load(&j.rc);
}

/*
 * ckpt__open_pages() : how many pages of [0, npages) may be open now, for
 * preparation's "converged?" test.  A pass's own count misses every page
 * written after the pass left its chunk, which is most of them: under a
 * random writer a 4 GiB heap was declared ready after one pass with 1,472
 * pages open (a 2.7 ms cut).  Reads only the chunks in the group map.
 */
uint64_t ckpt__open_pages(ckpt_heap *h, size_t npages)
{
	struct ckpt__engine *e = h->eng;
	size_t nchunks = (npages + CHUNK_PAGES - 1) / CHUNK_PAGES;
	uint64_t n = 0;

	for (size_t c = 0; c < nchunks; c++) {
		if (!chunk_marked(e, c))
			continue;
		size_t lo = c * CHUNK_PAGES, hi = lo + CHUNK_PAGES < npages ? lo + CHUNK_PAGES : npages;
		for (size_t q = lo; q < hi; q++)
			n += (atomic_load_explicit(&e->pg[q], memory_order_relaxed) & PG_UNPROT) != 0;
	}
	return n;
}

/*
 * ckpt__protect_remainder() : inside the cut (gate closed, passes stopped,
 * so nothing else changes page states): protect every page of [0, npages)
 * that may be unprotected, pinned ones included, and clear PG_UNPROT,
 * PG_TRAPPED and PG_PINNED on them.  Reads only the chunks in the group
 * map, so its cost follows the pages left, not the heap's size.
 */
int ckpt__protect_remainder(ckpt_heap *h, size_t npages, uint64_t *protected_pages)
{
	struct ckpt__engine *e = h->eng;
	_Atomic uint8_t *pg = e->pg;
	size_t nchunks = (npages + CHUNK_PAGES - 1) / CHUNK_PAGES;
	uint64_t n = 0;

	/* Chunks a pass may still be in (prot_stop was set before this
	 * read): taken over whole, whatever their group bits say, and their
	 * pages marked so that the pass's step D cannot clear PG_UNPROT. */
	for (unsigned i = 0; i < CKPT__PASS_SLOTS; i++) {
		long c = atomic_load(&e->pass_cur[i]);
		if (c < 0 || (size_t)c >= nchunks)
			continue;
		size_t lo = (size_t)c * CHUNK_PAGES, hi = lo + CHUNK_PAGES < npages ? lo + CHUNK_PAGES : npages;
		for (size_t q = lo; q < hi; q++)
			atomic_fetch_or(&pg[q], PG_CUTMARK);
		for (size_t q = lo; q < hi; q++)
			ckpt__groups_set(e, q);
		atomic_store(&e->cutmarked[i], (size_t)c + 1);
	}

	for (size_t c = 0; c < nchunks; c++) {
		if (!chunk_marked(e, c))
			continue;
		size_t lo = c * CHUNK_PAGES, hi = lo + CHUNK_PAGES < npages ? lo + CHUNK_PAGES : npages;
		int rc = protect_runs(h, lo, hi, PG_UNPROT, 0);
		if (rc)
			return rc;
		for (size_t q = lo; q < hi; q++) {
			uint8_t s = atomic_load_explicit(&pg[q], memory_order_relaxed);
			if (s & PG_UNPROT) {
				atomic_store_explicit(&pg[q], (uint8_t)(s & (PG_STATE | PG_CUTMARK)),
						      memory_order_relaxed);
				n++;
			}
		}
		chunk_clear(e, c);
	}
	*protected_pages = n;
	return 0;
}

/* At the start of a preparation (gate closed, no pass running): forget the
 * chunks the last cut took over. */
void ckpt__protect_reset(struct ckpt__engine *e)
{
	for (unsigned i = 0; i < CKPT__PASS_SLOTS; i++) {
		size_t c = atomic_exchange(&e->cutmarked[i], 0);
		atomic_store(&e->pass_cur[i], -1L);
		if (!c--)
			continue;
		for (size_t q = c * CHUNK_PAGES; q < (c + 1) * CHUNK_PAGES && q < e->npages; q++)
			atomic_fetch_and(&e->pg[q], (uint8_t)~PG_CUTMARK);
	}
}

struct par_part {
	ckpt_heap *h;
	size_t lo, hi;
	int rc;
};

static void *par_main(void *arg)
{
	struct par_part *p = arg;
	p->rc = ckpt__wp_range(p->h, p->lo, p->hi - p->lo, true);
	return NULL;
}

/* Write-protect [lo, hi), split over the CPUs: UFFDIO_WRITEPROTECT takes
 * mmap_lock for reading only, so disjoint ranges proceed at once. */
int ckpt__protect_parallel(ckpt_heap *h, size_t lo, size_t hi)
{
	struct par_part parts[64];
	pthread_t t[64];
	unsigned n = ncpus();
	uint64_t started = 0;
	size_t per = (hi - lo + n - 1) / n;
	int rc = 0;

	if (n < 2 || hi - lo < PARALLEL_PAGES)
		return ckpt__wp_range(h, lo, hi - lo, true);
	for (unsigned i = 1; i < n; i++) {
		size_t a = lo + i * per, b = a + per < hi ? a + per : hi;
		if (a >= hi)
			break;
		parts[i] = (struct par_part){h, a, b, 0};
		if (ckpt__thread_start(&t[i], "ckpt-protect", par_main, &parts[i]) != 0) {
			parts[i].rc = ckpt__wp_range(h, a, b - a, true);
			continue;
		}
		started |= 1ull << i;
	}
	rc = ckpt__wp_range(h, lo, (lo + per < hi ? per : hi - lo), true);
	for (unsigned i = 1; i < n; i++) {
		if (lo + i * per >= hi)
			break;
		if (started & (1ull << i))
			pthread_join(t[i], NULL);
		if (!rc)
			rc = parts[i].rc;
	}
	return rc;
}
