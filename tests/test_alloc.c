/*
 * test_alloc.c - the in-heap allocator (alloc.c).
 *
 * Most tests run on a "bare" heap: a struct ckpt_heap filled in by hand
 * over an anonymous mapping, formatted with ckpt__alloc_format().  That
 * tests the allocator alone, with no userfaultfd, and lets the tests see
 * which pages the allocator touched (pagemap present bit); a bare heap has
 * no discard hook, so freed runs are kept.  The last
 * tests go through ckpt_heap_create(), where freed runs really are given
 * back.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image_util.h"
#include "internal.h"
#include "util/memsink.h"
#include "util/testutil.h"

/* -------------------------------------------------------------- bare heaps */

#define BARE_BASE ((uint8_t *)0x3a0000000000ull)

static ckpt_heap *bare_heap(size_t size, size_t page_size)
{
	ckpt_heap *h = calloc(1, sizeof(*h));
	cr_assert(h);
	void *p = mmap(BARE_BASE, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	cr_assert(p == BARE_BASE, "mmap %zu bytes at %p: %s", size, (void *)BARE_BASE,
		  strerror(errno));
	h->base = p;
	h->size = size;
	h->page_size = page_size;
	h->page_shift = (unsigned)__builtin_ctzll(page_size);
	h->npages = size / page_size;
	h->memfd = -1;
	h->uffd = -1;
	pthread_mutex_init(&h->alloc_lock, NULL);
	CKPT_ASSERT_OK(ckpt__alloc_format(h));
	return h;
}

static void bare_destroy(ckpt_heap *h)
{
	munmap(h->base, h->size);
	pthread_mutex_destroy(&h->alloc_lock);
	free(h);
}

static size_t extent_bytes(ckpt_heap *h)
{
	pthread_mutex_lock(&h->alloc_lock);
	size_t n = ckpt__alloc_extent_pages(h);
	pthread_mutex_unlock(&h->alloc_lock);
	return n << h->page_shift;
}

/*
 * CHECK: an assertion for loops and hot helpers.  Criterion reports every
 * passing cr_assert to its runner under --full-stats (tests/run.sh uses
 * it), which for millions of per-byte checks takes minutes; CHECK only
 * involves criterion when it fails.
 */
#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			cr_assert_fail("CHECK(" #cond ") failed: " __VA_ARGS__); \
	} while (0)

/* ------------------------------------------------------- the reference model */

struct blk {
	uint8_t *p;
	size_t size;   /* requested */
	uint8_t fill;  /* every byte of [p, p+size) holds fill */
};

struct model {
	ckpt_heap *h;
	struct blk *b;
	size_t n, cap;
	size_t last_extent;
	uint64_t rng;
};

static size_t rand_size(uint64_t *rng, size_t max_large)
{
	uint64_t r = ckpt_test_rand(rng) % 1000;
	uint64_t x = ckpt_test_rand(rng);
	if (r < 700)
		return x % 257;               /* 0..256 */
	if (r < 900)
		return 257 + x % (16384 - 256); /* up to the largest class */
	if (r < 980)
		return 16385 + x % (256 << 10);
	return 16385 + x % max_large;
}

static void check_fill(const struct blk *b, const char *when)
{
	for (size_t i = 0; i < b->size; i++)
		if (b->p[i] != b->fill)
			cr_assert_fail("%s: block %p (%zu bytes) byte %zu is 0x%02x, want 0x%02x "
				 "(overlap or lost contents)", when, (void *)b->p, b->size, i,
				 b->p[i], b->fill);
}

/* What every block handed out must satisfy. */
static void check_new_block(struct model *m, void *p, size_t size)
{
	ckpt_heap *h = m->h;
	CHECK(p, "allocation of %zu bytes failed: %s", size, strerror(errno));
	CHECK(((uintptr_t)p & 15) == 0, "%p not 16-byte aligned", p);
	CHECK(ckpt__in_heap(h, p), "%p outside the heap", p);
	size_t us = ckpt_usable_size(h, p);
	CHECK(us >= size, "usable_size %zu < requested %zu", us, size);
	size_t ext = extent_bytes(h);
	CHECK(ext >= m->last_extent, "extent shrank from %zu to %zu", m->last_extent, ext);
	m->last_extent = ext;
	CHECK((uint8_t *)p + us <= h->base + ext,
		  "block [%p, +%zu) not covered by the extent (%zu bytes)", p, us, ext);
}

static int cmp_blk(const void *a, const void *b)
{
	const struct blk *x = a, *y = b;
	return x->p < y->p ? -1 : x->p > y->p;
}

static void check_no_overlap(struct model *m)
{
	struct blk *s = malloc((m->n + 1) * sizeof(*s));
	CHECK(s);
	memcpy(s, m->b, m->n * sizeof(*s));
	qsort(s, m->n, sizeof(*s), cmp_blk);
	for (size_t i = 0; i + 1 < m->n; i++) {
		size_t us = ckpt_usable_size(m->h, s[i].p);
		CHECK(s[i].p + us <= s[i + 1].p, "blocks %p (+%zu) and %p overlap",
			  (void *)s[i].p, us, (void *)s[i + 1].p);
	}
	free(s);
}

static void model_add(struct model *m, uint8_t *p, size_t size)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 1024;
		m->b = realloc(m->b, m->cap * sizeof(*m->b));
		CHECK(m->b);
	}
	uint8_t f = (uint8_t)(ckpt_test_rand(&m->rng) | 1); /* never 0: calloc'd bytes */
	memset(p, f, size);
	m->b[m->n++] = (struct blk){p, size, f};
}

static void model_drop(struct model *m, size_t i)
{
	m->b[i] = m->b[--m->n];
}

/* One random operation; returns false when the heap was full. */
static bool model_step(struct model *m, size_t max_live, size_t max_large)
{
	ckpt_heap *h = m->h;
	uint64_t r = ckpt_test_rand(&m->rng) % 100;
	if (m->n && (r < 35 || m->n >= max_live)) { /* free */
		size_t i = ckpt_test_rand(&m->rng) % m->n;
		check_fill(&m->b[i], "before free");
		ckpt_free(h, m->b[i].p);
		model_drop(m, i);
		return true;
	}
	if (m->n && r < 55) { /* realloc */
		size_t i = ckpt_test_rand(&m->rng) % m->n;
		struct blk old = m->b[i];
		size_t size = rand_size(&m->rng, max_large);
		if (size == 0)
			size = 1; /* realloc(p, 0) frees: covered elsewhere */
		check_fill(&old, "before realloc");
		uint8_t *q = ckpt_realloc(h, old.p, size);
		if (!q) {
			CHECK(errno == ENOMEM, "realloc failed with errno %d", errno);
			check_fill(&old, "after failed realloc");
			return false;
		}
		check_new_block(m, q, size);
		struct blk kept = {q, old.size < size ? old.size : size, old.fill};
		check_fill(&kept, "contents after realloc");
		model_drop(m, i);
		model_add(m, q, size);
		return true;
	}
	size_t size = rand_size(&m->rng, max_large);
	uint8_t *p;
	if (r < 65) {
		p = ckpt_calloc(h, 1, size);
		if (p)
			for (size_t k = 0; k < size; k++)
				CHECK(p[k] == 0, "calloc'd byte %zu of %zu is 0x%02x", k, size, p[k]);
	} else {
		p = ckpt_alloc(h, size);
	}
	if (!p) {
		CHECK(errno == ENOMEM, "alloc failed with errno %d", errno);
		return false;
	}
	check_new_block(m, p, size);
	model_add(m, p, size);
	return true;
}

/* The allocator's own invariants (runs tile the heap, bitmap and tree
 * match the free runs, span counts and class lists agree). */
static void check_invariants(ckpt_heap *h, const char *when)
{
	char why[200] = "";
	int rc = ckpt__alloc_check(h, why, sizeof(why));
	CHECK(rc == 0, "%s: allocator state broken: %s (%s)", when, why, ckpt_err_name(rc));
}

/* The model holds every live block of the heap: the allocator's counters
 * must add up to exactly its blocks. */
static void model_check_all(struct model *m, const char *when)
{
	check_invariants(m->h, when);
	uint64_t bytes = 0;
	for (size_t i = 0; i < m->n; i++) {
		check_fill(&m->b[i], when);
		size_t us = ckpt_usable_size(m->h, m->b[i].p);
		CHECK(us >= m->b[i].size, "%s: usable_size %zu < %zu", when, us, m->b[i].size);
		bytes += us;
	}
	check_no_overlap(m);
	struct ckpt_alloc_stats st = {.struct_size = sizeof(st)};
	CHECK(ckpt_alloc_stats(m->h, &st) == 0, "%s: ckpt_alloc_stats", when);
	CHECK(st.live_blocks == m->n, "%s: live_blocks %llu, the model holds %zu", when,
	      (unsigned long long)st.live_blocks, m->n);
	CHECK(st.live_bytes == bytes, "%s: live_bytes %llu, usable sizes add up to %llu", when,
	      (unsigned long long)st.live_bytes, (unsigned long long)bytes);
	CHECK(st.extent_bytes == extent_bytes(m->h), "%s: extent_bytes %llu", when,
	      (unsigned long long)st.extent_bytes);
	CHECK(st.heap_size == m->h->size, "%s: heap_size %llu", when,
	      (unsigned long long)st.heap_size);
}

/* Pages at or past the extent were never written: they still read as zero. */
static void check_zero_past_extent(ckpt_heap *h)
{
	size_t ext = extent_bytes(h);
	static const uint8_t zero[4096];
	for (size_t off = ext; off < h->size; off += sizeof(zero))
		if (memcmp(h->base + off, zero, sizeof(zero)) != 0)
			cr_assert_fail("heap offset %zu, past the extent %zu, is not zero", off, ext);
}

/* CKPT_SOAK=N multiplies the randomized tests' operation counts (soak runs). */
static int soak(void)
{
	const char *e = getenv("CKPT_SOAK");
	int n = e ? atoi(e) : 1;
	return n >= 1 ? n : 1;
}

/* ------------------------------------------------------------------ tests */

Test(alloc, random_ops_match_reference_model)
{
	ckpt_heap *h = bare_heap(256u << 20, 4096);
	struct model m = {.h = h, .rng = ckpt_test_seed("random_ops_match_reference_model")};
	for (int op = 0; op < 60000 * soak(); op++) {
		bool ok = model_step(&m, 3000, 2u << 20);
		CHECK(ok, "op %d: heap full with %zu live blocks (256 MiB heap)", op, m.n);
		if (op % 5000 == 4999)
			model_check_all(&m, "periodic check");
	}
	model_check_all(&m, "end");
	check_zero_past_extent(h);
	while (m.n) {
		ckpt_free(h, m.b[m.n - 1].p);
		m.n--;
	}
	check_invariants(h, "everything freed");
	free(m.b);
	bare_destroy(h);
}

Test(alloc, full_heap_returns_null_with_enomem_and_no_damage)
{
	ckpt_heap *h = bare_heap(4u << 20, 4096);
	struct model m = {.h = h, .rng = ckpt_test_seed("full_heap_returns_null")};
	int fails = 0;
	for (int op = 0; op < 20000 && fails < 200; op++)
		if (!model_step(&m, 100000, 512u << 10))
			fails++;
	cr_assert(fails >= 200, "a 4 MiB heap never filled up (%d failures)", fails);
	model_check_all(&m, "after filling");

	/* Fill every last slot: small requests until even they fail. */
	while (1) {
		void *p = ckpt_alloc(h, 16);
		if (!p) {
			cr_assert(errno == ENOMEM);
			break;
		}
		check_new_block(&m, p, 16);
		model_add(&m, p, 16);
	}
	errno = 0;
	cr_assert_null(ckpt_alloc(h, 1u << 20));
	cr_assert_eq(errno, ENOMEM);
	cr_assert_null(ckpt_alloc(h, SIZE_MAX));
	cr_assert_null(ckpt_calloc(h, SIZE_MAX / 2, 4), "calloc overflow must fail");
	cr_assert_eq(errno, ENOMEM);
	cr_assert_eq(extent_bytes(h), h->size, "a full heap's extent is the whole heap");
	model_check_all(&m, "after failures");

	/* Freeing makes room again, and the heap still works. */
	for (size_t i = 0; i < m.n; i += 2) {
		check_fill(&m.b[i], "before free");
		ckpt_free(h, m.b[i].p);
		model_drop(&m, i);
	}
	for (int op = 0; op < 2000; op++)
		model_step(&m, 100000, 64u << 10);
	model_check_all(&m, "after refilling");
	free(m.b);
	bare_destroy(h);
}

Test(alloc, failed_realloc_leaves_block_untouched)
{
	ckpt_heap *h = bare_heap(1u << 20, 4096);
	uint8_t *p = ckpt_alloc(h, 100);
	cr_assert(p);
	memset(p, 7, 100);
	errno = 0;
	cr_assert_null(ckpt_realloc(h, p, 2u << 20));
	cr_assert_eq(errno, ENOMEM);
	cr_assert_geq(ckpt_usable_size(h, p), 100);
	for (int i = 0; i < 100; i++)
		CHECK(p[i] == 7, "byte %d", i);
	uint8_t *big = ckpt_alloc(h, 64u << 10);
	cr_assert(big);
	memset(big, 9, 64u << 10);
	for (size_t huge = SIZE_MAX; huge > (1u << 20); huge >>= 7) {
		errno = 0;
		cr_assert_null(ckpt_realloc(h, big, huge), "realloc to %zu bytes", huge);
		cr_assert_eq(errno, ENOMEM);
		cr_assert_null(ckpt_realloc(h, p, huge));
	}
	cr_assert_eq(ckpt_usable_size(h, big), 64u << 10);
	for (size_t i = 0; i < (64u << 10); i++)
		CHECK(big[i] == 9, "byte %zu", i);
	cr_assert_null(ckpt_realloc(h, p, 0), "realloc(p, 0) frees like glibc");
	cr_assert_eq(ckpt_usable_size(h, p), 0, "block freed by realloc(p, 0)");
	bare_destroy(h);
}

/*
 * ckpt_alloc_stats() counts every path that creates or ends a block (alloc,
 * calloc, realloc in place and moving, free, realloc to 0, a failed
 * realloc, an ignored double free) exactly, and honours struct_size: a
 * caller built against a shorter struct gets only the fields it knows.
 */
Test(alloc, stats_count_live_blocks_and_bytes_exactly)
{
	ckpt_heap *h = bare_heap(256u << 20, 4096);
	struct ckpt_alloc_stats st = {.struct_size = sizeof(st)};
	CKPT_ASSERT_OK(ckpt_alloc_stats(h, &st));
	cr_assert_eq(st.struct_size, sizeof(st));
	cr_assert_eq(st.live_blocks, 0);
	cr_assert_eq(st.live_bytes, 0);
	cr_assert_eq(st.extent_bytes, ckpt_heap_used(h));
	cr_assert_eq(st.heap_size, 256u << 20);

	struct model m = {.h = h, .rng = ckpt_test_seed("stats_count_live_blocks")};
	for (int op = 0; op < 20000; op++) {
		CHECK(model_step(&m, 1500, 1u << 20), "op %d: heap full", op);
		if (op % 2000 == 1999)
			model_check_all(&m, "periodic");
	}
	/* the paths the model does not take */
	void *p = ckpt_alloc(h, 100);
	cr_assert(p);
	CKPT_ASSERT_OK(ckpt_alloc_stats(h, &st));
	uint64_t with_p = st.live_blocks;
	cr_assert_null(ckpt_realloc(h, p, 0), "realloc(p, 0) frees");
	ckpt_free(h, p); /* a double free is ignored, and not counted */
	cr_assert_null(ckpt_realloc(h, m.b[0].p, (size_t)1 << 40), "too large");
	CKPT_ASSERT_OK(ckpt_alloc_stats(h, &st));
	cr_assert_eq(st.live_blocks, with_p - 1);
	model_check_all(&m, "end");

	/* an older, shorter struct: fields past it are left alone */
	struct ckpt_alloc_stats old;
	memset(&old, 0xa5, sizeof(old));
	old.struct_size = offsetof(struct ckpt_alloc_stats, live_blocks);
	CKPT_ASSERT_OK(ckpt_alloc_stats(h, &old));
	cr_assert_eq(old.struct_size, offsetof(struct ckpt_alloc_stats, live_blocks));
	cr_assert_eq(old.live_bytes, st.live_bytes);
	cr_assert_eq(old.live_blocks, 0xa5a5a5a5a5a5a5a5ull, "written past struct_size");
	st.struct_size = 0;
	CKPT_ASSERT_ERR(ckpt_alloc_stats(h, &st), -EINVAL);
	CKPT_ASSERT_ERR(ckpt_alloc_stats(NULL, &st), -EINVAL);
	CKPT_ASSERT_ERR(ckpt_alloc_stats(h, NULL), -EINVAL);
	free(m.b);
	bare_destroy(h);
}

Test(alloc, root_pointer_set_and_get)
{
	ckpt_heap *h = bare_heap(1u << 20, 4096);
	cr_assert_null(ckpt_root_get(h));
	void *p = ckpt_alloc(h, 64);
	CKPT_ASSERT_OK(ckpt_root_set(h, p));
	cr_assert_eq(ckpt_root_get(h), p);
	int local;
	CKPT_ASSERT_ERR(ckpt_root_set(h, &local), -EINVAL);
	cr_assert_eq(ckpt_root_get(h), p, "a rejected root_set changes nothing");
	CKPT_ASSERT_OK(ckpt_root_set(h, NULL));
	cr_assert_null(ckpt_root_get(h));
	CKPT_ASSERT_OK(ckpt_root_set(h, p));
	bare_destroy(h);
}

/* The state lives only in the heap's bytes: copy them out, unmap, map fresh
 * memory at the same address, copy back, open: same blocks, same contents,
 * same root, and allocation continues without overlapping them. */
Test(alloc, reopen_of_copied_heap_keeps_live_state)
{
	size_t size = 64u << 20;
	ckpt_heap *h = bare_heap(size, 4096);
	struct model m = {.h = h, .rng = ckpt_test_seed("reopen_of_copied_heap")};
	for (int op = 0; op < 20000; op++)
		CHECK(model_step(&m, 1500, 1u << 20), "op %d: heap full", op);
	CKPT_ASSERT_OK(ckpt_root_set(h, m.b[0].p));
	size_t ext = extent_bytes(h);
	uint8_t *copy = malloc(ext);
	cr_assert(copy);
	memcpy(copy, h->base, ext);
	cr_assert(munmap(h->base, size) == 0);
	void *p = mmap(h->base, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	cr_assert(p == h->base);
	memcpy(h->base, copy, ext); /* pages past the extent: zero, as in an image */
	free(copy);

	CKPT_ASSERT_OK(ckpt__alloc_open(h));
	cr_assert_eq(extent_bytes(h), ext);
	cr_assert_eq(ckpt_root_get(h), (void *)m.b[0].p);
	model_check_all(&m, "after reopen");
	for (int op = 0; op < 20000; op++)
		CHECK(model_step(&m, 1500, 1u << 20), "op %d: heap full", op);
	model_check_all(&m, "after more ops");
	free(m.b);
	bare_destroy(h);
}

Test(alloc, open_rejects_foreign_or_mismatched_header)
{
	ckpt_heap *h = bare_heap(8u << 20, 4096);
	void *p = ckpt_alloc(h, 1000);
	cr_assert(p);
	CKPT_ASSERT_OK(ckpt__alloc_open(h));

	uint64_t *magic = (uint64_t *)(void *)h->base;
	uint64_t saved = *magic;
	*magic ^= 1;
	CKPT_ASSERT_ERR(ckpt__alloc_open(h), CKPT_E_CORRUPT);
	*magic = saved;

	/* another library's in-heap format is refused as such, not as damage */
	uint32_t *version = (uint32_t *)(void *)(h->base + 8);
	uint32_t saved_version = *version;
	*version = saved_version - 1;
	CKPT_ASSERT_ERR(ckpt__alloc_open(h), CKPT_E_VERSION);
	*version = saved_version;

	h->page_size = 2u << 20;
	h->page_shift = 21;
	CKPT_ASSERT_ERR(ckpt__alloc_open(h), CKPT_E_CORRUPT);
	h->page_size = 4096;
	h->page_shift = 12;

	h->size -= 4096;
	CKPT_ASSERT_ERR(ckpt__alloc_open(h), CKPT_E_CORRUPT);
	h->size += 4096;

	uint8_t *base = h->base;
	h->base = base + 4096; /* same bytes seen at another address */
	CKPT_ASSERT_ERR(ckpt__alloc_open(h), CKPT_E_CORRUPT);
	h->base = base;

	/* an all-zero heap (never formatted) */
	ckpt_heap z = *h;
	z.base = mmap(NULL, z.size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(z.base != MAP_FAILED);
	CKPT_ASSERT_ERR(ckpt__alloc_open(&z), CKPT_E_CORRUPT);
	munmap(z.base, z.size);

	CKPT_ASSERT_OK(ckpt__alloc_open(h));
	bare_destroy(h);
}

Test(alloc, foreign_interior_and_double_frees_are_ignored)
{
	ckpt_heap *h = bare_heap(16u << 20, 4096);
	struct model m = {.h = h, .rng = ckpt_test_seed("foreign_frees")};
	for (int op = 0; op < 3000; op++)
		model_step(&m, 500, 256u << 10);
	uint8_t *small = ckpt_alloc(h, 48), *large = ckpt_alloc(h, 300u << 10);
	cr_assert(small && large);
	model_add(&m, small, 48);
	model_add(&m, large, 300u << 10);
	int local;
	ckpt_free(h, &local);                 /* not in the heap */
	ckpt_free(h, h->base);                /* the allocator header */
	ckpt_free(h, h->base + 8192);         /* the map */
	ckpt_free(h, h->base + h->size - 16); /* past top */
	ckpt_free(h, small + 16);             /* interior of a small block's span */
	ckpt_free(h, small + 1);              /* misaligned */
	ckpt_free(h, large + 4096);           /* interior of a large block */
	ckpt_free(h, large + 16);
	ckpt_free(h, NULL);
	cr_assert_eq(ckpt_usable_size(h, small + 16), 0);
	cr_assert_eq(ckpt_usable_size(h, large + 4096), 0);
	cr_assert_eq(ckpt_usable_size(h, &local), 0);
	cr_assert_geq(ckpt_usable_size(h, small), 48);
	cr_assert_geq(ckpt_usable_size(h, large), 300u << 10);
	errno = 0;
	cr_assert_null(ckpt_realloc(h, large + 4096, 10), "realloc of a non-block fails");
	cr_assert_eq(errno, EINVAL);
	model_check_all(&m, "after wild frees");

	m.n -= 2; /* small and large, the last two added */
	ckpt_free(h, small);
	ckpt_free(h, large);
	ckpt_free(h, small); /* double frees */
	ckpt_free(h, large);
	cr_assert_eq(ckpt_usable_size(h, small), 0);
	cr_assert_eq(ckpt_usable_size(h, large), 0);
	for (int op = 0; op < 5000; op++)
		model_step(&m, 500, 256u << 10);
	model_check_all(&m, "after double frees");
	free(m.b);
	bare_destroy(h);
}

/*
 * A freed small block waits in its cache's magazine (a stack of free slots
 * the next allocations pop) and is marked there in its span: freeing it
 * again, asking its usable size or reallocating it sees a free block, so
 * the second free does not push it twice and two allocations never get
 * the same block.  Every class with a magazine, and one without (2 KiB).
 */
Test(alloc, a_block_freed_twice_while_in_a_magazine_is_handed_out_once)
{
	ckpt_heap *h = bare_heap(16u << 20, 4096);
	static const size_t sizes[] = {16, 40, 100, 200, 500, 1024, 2048};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t *keep = ckpt_alloc(h, sizes[i]), *p = ckpt_alloc(h, sizes[i]);
		cr_assert(keep && p);
		ckpt_free(h, p);
		cr_assert_eq(ckpt_usable_size(h, p), 0, "%zu bytes: a freed block has a size", sizes[i]);
		errno = 0;
		cr_assert_null(ckpt_realloc(h, p, sizes[i] + 1), "%zu bytes: realloc of a freed block",
			       sizes[i]);
		cr_assert_eq(errno, EINVAL);
		ckpt_free(h, p); /* the double free */
		check_invariants(h, "after a double free");
		uint8_t *q1 = ckpt_alloc(h, sizes[i]), *q2 = ckpt_alloc(h, sizes[i]);
		cr_assert(q1 && q2);
		cr_assert_neq(q1, q2, "%zu bytes: the block freed twice was handed out twice (%p)",
			      sizes[i], (void *)q1);
		ckpt_free(h, q1);
		ckpt_free(h, q2);
		ckpt_free(h, keep);
	}
	check_invariants(h, "all freed");
	struct ckpt_alloc_stats st = {.struct_size = sizeof(st)};
	CKPT_ASSERT_OK(ckpt_alloc_stats(h, &st));
	cr_assert_eq(st.live_blocks, 0);
	bare_destroy(h);
}

/* Memory reused after free is found lowest-address first: allocating the
 * same pattern again after freeing everything does not grow the extent
 * (beyond 2%). */
Test(alloc, reuse_after_free_does_not_grow_extent)
{
	ckpt_heap *h = bare_heap(512u << 20, 4096);
	uint64_t seed = ckpt_test_seed("reuse_after_free");
	enum { N = 4000 };
	static void *p[N];
	for (int round = 0; round < 3; round++) {
		uint64_t rng = seed;
		for (int i = 0; i < N; i++) {
			p[i] = ckpt_alloc(h, rand_size(&rng, 1u << 20));
			CHECK(p[i], "allocation %d", i);
		}
		size_t ext = extent_bytes(h);
		static size_t first_ext;
		if (round == 0)
			first_ext = ext;
		/* Not exactly equal: one empty span per size class is kept
		 * where it was, and the blocks around it can land differently. */
		cr_assert_leq(ext, first_ext + first_ext / 50,
			      "round %d: extent %zu, first round %zu", round, ext, first_ext);
		for (int i = 0; i < N; i++)
			ckpt_free(h, p[i]);
	}
	/* a fresh block after freeing everything comes from the bottom: below
	 * the spans each per-CPU cache keeps (one empty span per size class
	 * per cache; a thread that migrated between the two CPUs here used
	 * two caches: one CI=true run put the block at 4.8 MiB) */
	uint8_t *q = ckpt_alloc(h, 1u << 20);
	cr_assert(q < h->base + (8u << 20), "1 MiB block at offset %td after freeing all",
		  q - h->base);
	bare_destroy(h);
}

Test(alloc, realloc_grows_and_shrinks_large_blocks_in_place)
{
	ckpt_heap *h = bare_heap(16u << 20, 4096);
	uint8_t *a = ckpt_alloc(h, 100u << 10);
	cr_assert(a);
	memset(a, 1, 100u << 10);
	/* next to top: grows in place */
	uint8_t *b = ckpt_realloc(h, a, 1u << 20);
	cr_assert_eq(b, a, "growth at top moved the block");
	cr_assert_geq(ckpt_usable_size(h, b), 1u << 20);
	for (size_t i = 0; i < (100u << 10); i++)
		CHECK(b[i] == 1, "byte %zu", i);
	/* blocked by a neighbour: shrink, put a block after it, grow into the
	 * freed gap up to the neighbour in place, past it by moving */
	b = ckpt_realloc(h, b, 200u << 10);
	cr_assert_eq(b, a);
	uint8_t *c = ckpt_alloc(h, 512u << 10);
	cr_assert(c);
	cr_assert(c >= b + (200u << 10) && c < b + (1u << 20),
		  "the shrunk tail (lowest free run) is reused");
	size_t gap = (size_t)(c - b);
	uint8_t *d = ckpt_realloc(h, b, gap);
	cr_assert_eq(d, b, "growth into a free neighbour moved the block");
	cr_assert_eq(ckpt_usable_size(h, d), gap);
	uint8_t *e = ckpt_realloc(h, d, gap + 4096);
	cr_assert_neq(e, d, "growth over a live neighbour must move");
	for (size_t i = 0; i < (100u << 10); i++)
		CHECK(e[i] == 1, "byte %zu", i);
	/* small blocks: shrinking a little stays in place */
	uint8_t *s = ckpt_alloc(h, 200);
	cr_assert_eq(ckpt_realloc(h, s, 180), s);
	bare_destroy(h);
}

/* calloc of memory past the old top must not write it: those pages are
 * known zero, and writing them would cost page faults (and checkpoint traps)
 * for nothing.  The pagemap shows whether a page was ever touched. */
Test(alloc, calloc_of_fresh_memory_touches_no_pages)
{
	ckpt_heap *h = bare_heap(64u << 20, 4096);
	size_t before = extent_bytes(h);
	uint8_t *p = ckpt_calloc(h, 1, 8u << 20);
	cr_assert(p);
	cr_assert(p + 4096 >= h->base + before, "fresh memory expected");
	size_t touched = 0;
	for (size_t off = 0; off < (8u << 20); off += 4096)
		if (ckpt_test_pagemap(p + off) & (1ull << 63))
			touched++;
	cr_assert_leq(touched, 1, "calloc of fresh memory touched %zu pages", touched);
	for (size_t off = 0; off < (8u << 20); off += 4096)
		CHECK(p[off] == 0, "offset %zu", off);
	bare_destroy(h);
}

/* With 2 MiB heap pages the extent counts whole 2 MiB pages. */
Test(alloc, hugepage_heap_counts_extent_in_2mib_pages)
{
	ckpt_heap *h = bare_heap(64u << 20, 2u << 20);
	cr_assert_eq(extent_bytes(h), 2u << 20, "metadata rounds up to one 2 MiB page");
	uint8_t *p = ckpt_alloc(h, 5u << 20);
	cr_assert(p);
	size_t ext = extent_bytes(h);
	cr_assert_eq(ext % (2u << 20), 0);
	cr_assert_geq(h->base + ext, p + (5u << 20));
	bare_destroy(h);
}

/* Four threads allocate, write, check and free concurrently; at the end
 * all their live blocks are disjoint and intact. */
struct thr {
	struct model m;
	pthread_barrier_t *bar;
};

static void *thread_body(void *arg)
{
	struct thr *t = arg;
	pthread_barrier_wait(t->bar);
	for (int op = 0; op < 20000 * soak(); op++)
		CHECK(model_step(&t->m, 400, 128u << 10), "op %d: heap full", op);
	return NULL;
}

Test(alloc, four_threads_alloc_and_free_without_overlap)
{
	ckpt_heap *h = bare_heap(256u << 20, 4096);
	uint64_t seed = ckpt_test_seed("four_threads");
	struct thr t[4];
	pthread_t tid[4];
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, 4);
	for (int i = 0; i < 4; i++) {
		t[i] = (struct thr){.m = {.h = h, .rng = seed + (uint64_t)i * 7919}, .bar = &bar};
		cr_assert(pthread_create(&tid[i], NULL, thread_body, &t[i]) == 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(tid[i], NULL);
	struct model all = {.h = h};
	for (int i = 0; i < 4; i++) {
		for (size_t k = 0; k < t[i].m.n; k++) {
			if (all.n == all.cap) {
				all.cap = all.cap ? 2 * all.cap : 1024;
				all.b = realloc(all.b, all.cap * sizeof(*all.b));
			}
			all.b[all.n++] = t[i].m.b[k];
		}
		free(t[i].m.b);
	}
	model_check_all(&all, "after threads");
	free(all.b);
	pthread_barrier_destroy(&bar);
	bare_destroy(h);
}

/* ------------------------------------------------- through ckpt_heap_create */

static ckpt_heap *real_heap(size_t size)
{
	struct ckpt_heap_opts o;
	ckpt_heap *h = NULL;
	ckpt_heap_opts_init(&o);
	o.size = size;
	o.name = "test_alloc";
	int rc = ckpt_heap_create(&o, &h);
	if (rc == CKPT_E_KERNEL || rc == -EPERM)
		CKPT_TEST_SKIP("ckpt_heap_create: %s", ckpt_strerror(rc));
	CKPT_ASSERT_OK(rc);
	return h;
}

/* The model on a real heap: freed large runs really are given back by the
 * engine (MADV_REMOVE, the pages then read as zero). */
Test(alloc_heap, random_ops_on_a_created_heap_match_reference_model)
{
	ckpt_heap *h = real_heap(256u << 20);
	struct model m = {.h = h, .rng = ckpt_test_seed("random_ops_on_a_created_heap")};
	cr_assert_eq(ckpt_heap_used(h), extent_bytes(h));
	for (int op = 0; op < 50000 * soak(); op++) {
		CHECK(model_step(&m, 2000, 1u << 20), "op %d: heap full", op);
		if (op % 10000 == 9999)
			model_check_all(&m, "periodic check");
	}
	model_check_all(&m, "end");
	cr_assert_eq(ckpt_heap_used(h), extent_bytes(h));
	check_zero_past_extent(h);
	free(m.b);
	ckpt_heap_destroy(h);
}

/* The image a memsink holds, mapped at the heap's address as a restore
 * would and opened by the allocator (a bare heap: no engine). */
static ckpt_heap *open_image(uint8_t *base, size_t size, size_t psz, const uint8_t *image,
			     size_t ext)
{
	ckpt_heap *r = calloc(1, sizeof(*r));
	cr_assert(r);
	void *p = mmap(base, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	cr_assert(p == base, "mmap at the heap's base: %s", strerror(errno));
	memcpy(base, image, ext);
	r->base = base;
	r->size = size;
	r->page_size = psz;
	r->page_shift = (unsigned)__builtin_ctzll(psz);
	r->npages = size / psz;
	r->memfd = r->uffd = -1;
	pthread_mutex_init(&r->alloc_lock, NULL);
	CKPT_ASSERT_OK(ckpt__alloc_open(r));
	return r;
}

/*
 * A checkpoint taken while the allocator keeps working holds a consistent
 * allocator: the image, mapped at the heap's address and opened, has
 * exactly the blocks that were live at ckpt_begin(), with their contents,
 * and allocates on without overlapping them.
 */
Test(alloc_heap, checkpoint_taken_while_allocating_reopens_with_state_at_begin)
{
	size_t size = 64u << 20;
	ckpt_heap *h = real_heap(size);
	size_t psz = ckpt_heap_page_size(h);
	uint8_t *base = ckpt_heap_base(h);
	struct model m = {.h = h, .rng = ckpt_test_seed("checkpoint_taken_while_allocating")};
	for (int op = 0; op < 10000; op++)
		CHECK(model_step(&m, 1000, 512u << 10), "op %d: heap full", op);
	CKPT_ASSERT_OK(ckpt_root_set(h, m.b[0].p));

	struct memsink ms;
	cr_assert(memsink_init(&ms, size, psz) == 0);
	ms.delay_us = 20; /* stretch the checkpoint so the allocator races it */
	struct ckpt_dest dest = {.kind = CKPT_DEST_SINK, .sink = &ms.sink};
	struct model at_begin = m;
	at_begin.b = malloc(m.n * sizeof(*m.b));
	memcpy(at_begin.b, m.b, m.n * sizeof(*m.b));
	at_begin.cap = m.n;
	size_t ext_at_begin = ckpt_heap_used(h);
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, NULL));
	int ops = 0;
	while (ckpt_poll(h, NULL, NULL) == 1 || ops < 5000) {
		CHECK(model_step(&m, 1000, 512u << 10), "op %d: heap full", ops);
		ops++;
	}
	CKPT_ASSERT_OK(ckpt_wait(h));
	cr_log_info("%d allocator operations ran during the checkpoint", ops);
	cr_assert_eq(ms.info.npages * psz, ext_at_begin, "image extent vs ckpt_heap_used at begin");
	ckpt_heap_destroy(h);
	free(m.b);

	/* the image at the heap's address, as a restore would map it */
	ckpt_heap *r = open_image(base, size, psz, ms.image, ext_at_begin);
	cr_assert_eq(extent_bytes(r), ext_at_begin);
	cr_assert_eq(ckpt_root_get(r), (void *)at_begin.b[0].p);
	at_begin.h = r;
	at_begin.last_extent = ext_at_begin;
	model_check_all(&at_begin, "image at begin");
	for (int op = 0; op < 10000; op++)
		CHECK(model_step(&at_begin, 1000, 512u << 10), "op %d: heap full", op);
	model_check_all(&at_begin, "image, allocating on");
	free(at_begin.b);
	memsink_fini(&ms);
	bare_destroy(r);
}

static size_t present_pages(const uint8_t *p, size_t len)
{
	size_t n = 0;
	for (size_t off = 0; off < len; off += 4096)
		if (ckpt_test_pagemap(p + off) & (1ull << 63))
			n++;
	return n;
}

/*
 * Freeing a run of at least 64 KiB gives its pages back (the engine punches
 * them out of the memfd: no longer mapped), a smaller one keeps them.  While
 * a checkpoint runs the engine keeps them instead, with their old bytes.
 * Either way calloc of the same memory returns zeroes.
 */
Test(alloc_heap, large_free_gives_pages_back_and_calloc_zeroes_either_way)
{
	size_t mib = 1u << 20;
	ckpt_heap *h = real_heap(64u << 20);
	if (ckpt_heap_page_size(h) != 4096)
		CKPT_TEST_SKIP("needs 4 KiB pages");
	uint8_t *big = ckpt_alloc(h, mib), *small = ckpt_alloc(h, 32u << 10);
	cr_assert(big && small);
	memset(big, 0x5c, mib);
	memset(small, 0x5c, 32u << 10);
	ckpt_free(h, small);
	cr_assert_eq(present_pages(small, 32u << 10), 8, "a 32 KiB run is kept mapped");
	ckpt_free(h, big);
	cr_assert_eq(present_pages(big, mib), 0, "a freed 1 MiB run is given back");
	uint8_t *again = ckpt_calloc(h, 1, mib);
	cr_assert_eq(again, big, "the lowest fitting run is reused");
	for (size_t i = 0; i < mib; i++)
		CHECK(again[i] == 0, "byte %zu", i);
	memset(again, 0x5c, mib);

	struct memsink ms;
	cr_assert(memsink_init(&ms, ckpt_heap_size(h), 4096) == 0);
	ms.delay_us = 200; /* keep the checkpoint running through the frees */
	struct ckpt_dest dest = {.kind = CKPT_DEST_SINK, .sink = &ms.sink};
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, NULL));
	ckpt_free(h, again);
	int running = ckpt_poll(h, NULL, NULL) == 1;
	uint8_t *third = ckpt_calloc(h, 1, mib);
	cr_assert_eq(third, big);
	for (size_t i = 0; i < mib; i++)
		CHECK(third[i] == 0, "byte %zu of a calloc'd block reused during a checkpoint", i);
	CKPT_ASSERT_OK(ckpt_wait(h));
	cr_assert(running, "the checkpoint ended before the free: nothing tested");
	for (size_t i = 0; i < mib; i += 4096)
		CHECK(ms.image[(size_t)(big - (uint8_t *)ckpt_heap_base(h)) + i] == 0x5c,
			     "the image holds the block as it was at ckpt_begin");
	memsink_fini(&ms);
	ckpt_heap_destroy(h);
}

/* The deep check notices damaged metadata (so the tests above that rely on
 * it would notice an allocator bug that leaves the same damage). */
Test(alloc, deep_check_detects_damaged_metadata)
{
	ckpt_heap *h = bare_heap(16u << 20, 4096);
	uint8_t *s1 = ckpt_alloc(h, 40), *s2 = ckpt_alloc(h, 40);
	uint8_t *big = ckpt_alloc(h, 100u << 10), *big2 = ckpt_alloc(h, 100u << 10);
	cr_assert(s1 && s2 && big && big2);
	ckpt_free(h, big);
	check_invariants(h, "before damage");
	uint8_t *base = h->base;
	uint32_t *map = (uint32_t *)(void *)(base + 4096);
	size_t gs = (size_t)(s1 - base) >> 12, gb = (size_t)(big - base) >> 12;
	char why[200];

	uint64_t *word = (uint64_t *)(void *)(base + (gs << 12) + 32); /* span free bits */
	*word ^= 1ull << 63;
	CKPT_ASSERT_ERR(ckpt__alloc_check(h, why, sizeof(why)), CKPT_E_CORRUPT);
	cr_log_info("flipped span bit: %s", why);
	*word ^= 1ull << 63;

	uint32_t saved = map[gb];
	map[gb] = 0; /* a free run's head entry lost */
	CKPT_ASSERT_ERR(ckpt__alloc_check(h, why, sizeof(why)), CKPT_E_CORRUPT);
	cr_log_info("lost run head: %s", why);
	map[gb] = saved;

	map[gb + 3] = saved; /* a stale head inside a free run */
	CKPT_ASSERT_ERR(ckpt__alloc_check(h, why, sizeof(why)), CKPT_E_CORRUPT);
	map[gb + 3] = 0;

	/* s2 freed waits in its cache's magazine of the 48-byte class (class
	 * 2): the header's mag_off (byte 104) locates the magazines, 20
	 * classes of 256 bytes (30 entries) per cache, the entry count first */
	ckpt_free(h, s2);
	uint64_t mag_off;
	memcpy(&mag_off, base + 104, 8);
	uint32_t *n = NULL;
	for (unsigned k = 0; k < 16 && !n; k++) {
		uint32_t *nk = (uint32_t *)(void *)(base + mag_off + (k * 20 + 2) * 256);
		if (*nk)
			n = nk;
	}
	cr_assert(n, "no magazine holds the freed block");
	(*n)--; /* an entry lost: its slot is neither free nor live */
	CKPT_ASSERT_ERR(ckpt__alloc_check(h, why, sizeof(why)), CKPT_E_CORRUPT);
	cr_log_info("lost magazine entry: %s", why);
	(*n)++;
	*n += 30; /* past the capacity: an image with it must not open */
	CKPT_ASSERT_ERR(ckpt__alloc_check(h, why, sizeof(why)), CKPT_E_CORRUPT);
	CKPT_ASSERT_ERR(ckpt__alloc_open(h), CKPT_E_CORRUPT);
	*n -= 30;
	check_invariants(h, "after repair");
	bare_destroy(h);
}

/*
 * Write tracking for a bare heap, standing in for a checkpoint's write
 * protection: the heap is made read-only, and the first write to each page
 * is recorded by a SIGSEGV handler that makes that page writable again.
 * During a checkpoint each such first write is a trap (microseconds), so
 * the allocator must write few pages, and never the blocks it hands out or
 * takes back.
 */
static void pin_to_cpu(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	cr_assert(sched_setaffinity(0, sizeof(set), &set) == 0, "pin to CPU %d: %s", cpu,
		  strerror(errno));
	cr_assert_eq(sched_getcpu(), cpu);
}

#define WP_MAX_PAGES 32768
static uint8_t *wp_base;
static uint8_t wp_dirty[WP_MAX_PAGES];
static volatile size_t wp_count;
static struct sigaction wp_old;

static void wp_handler(int sig, siginfo_t *si, void *uc)
{
	uint8_t *a = si->si_addr;
	if (wp_base && a >= wp_base && a < wp_base + (size_t)WP_MAX_PAGES * 4096) {
		size_t pg = (size_t)(a - wp_base) >> 12;
		mprotect(wp_base + (pg << 12), 4096, PROT_READ | PROT_WRITE);
		wp_dirty[pg] = 1;
		wp_count++;
		return;
	}
	sigaction(SIGSEGV, &wp_old, NULL); /* not ours: fault again, for real */
}

static void wp_arm(ckpt_heap *h)
{
	cr_assert_leq(h->size >> 12, WP_MAX_PAGES);
	struct sigaction sa = {.sa_sigaction = wp_handler, .sa_flags = SA_SIGINFO};
	sigemptyset(&sa.sa_mask);
	cr_assert(sigaction(SIGSEGV, &sa, &wp_old) == 0);
	memset(wp_dirty, 0, sizeof(wp_dirty));
	wp_count = 0;
	wp_base = h->base;
	cr_assert(mprotect(h->base, h->size, PROT_READ) == 0);
}

static size_t wp_disarm(ckpt_heap *h)
{
	cr_assert(mprotect(h->base, h->size, PROT_READ | PROT_WRITE) == 0);
	wp_base = NULL;
	sigaction(SIGSEGV, &wp_old, NULL);
	return wp_count;
}

static bool wp_any_dirty(ckpt_heap *h, const uint8_t *p, size_t len)
{
	for (size_t pg = (size_t)(p - h->base) >> 12; pg <= (size_t)(p + len - 1 - h->base) >> 12; pg++)
		if (wp_dirty[pg])
			return true;
	return false;
}

Test(alloc, operations_write_only_a_few_metadata_pages)
{
	/* One CPU throughout: the page counts below are for one cache.  A
	 * thread that migrates between two allocations takes a span over
	 * from the other CPU's cache (its map entry, the other cache's list)
	 * or makes one, which is more pages and correct. */
	cpu_set_t old;
	cr_assert(sched_getaffinity(0, sizeof(old), &old) == 0);
	pin_to_cpu(sched_getcpu());
	ckpt_heap *h = bare_heap(128u << 20, 4096);
	struct model m = {.h = h, .rng = ckpt_test_seed("operations_write_few_pages")};
	for (int op = 0; op < 5000; op++)
		CHECK(model_step(&m, 800, 256u << 10), "op %d: heap full", op);
	uint8_t *big = ckpt_alloc(h, 1u << 20);
	uint8_t *small = ckpt_alloc(h, 100);
	cr_assert(big && small);

	/* freeing a large block writes none of its pages */
	wp_arm(h);
	ckpt_free(h, big);
	size_t n_free_large = wp_disarm(h);
	cr_assert(!wp_any_dirty(h, big, 1u << 20), "free wrote inside the freed 1 MiB block");
	/* map head and tail, heads bitmap, tree, and the header's counters */
	cr_assert_leq(n_free_large, 5, "freeing a large block wrote %zu pages", n_free_large);

	/* allocating one writes none of its pages either */
	wp_arm(h);
	uint8_t *big2 = ckpt_alloc(h, 1u << 20);
	size_t n_alloc_large = wp_disarm(h);
	cr_assert(big2);
	cr_assert(!wp_any_dirty(h, big2, 1u << 20), "alloc wrote inside the new 1 MiB block");
	cr_assert_leq(n_alloc_large, 5, "allocating a large block wrote %zu pages", n_alloc_large);

	/* a small alloc + free: only the page of the cache's magazine of the
	 * class (which holds its live counter too) and the block's span
	 * header (its slot's cached bit): one trap each per checkpoint at
	 * most, however many operations follow.  One pair first, unmeasured:
	 * the magazine may be empty, and then the pair below would measure
	 * refilling it (the class's list heads, spans, maybe a new span). */
	ckpt_free(h, ckpt_alloc(h, 100));
	wp_arm(h);
	uint8_t *s2 = ckpt_alloc(h, 100);
	ckpt_free(h, s2);
	size_t n_small = wp_disarm(h);
	cr_assert(s2);
	uint8_t *hdr_page = (uint8_t *)((uintptr_t)s2 & ~(uintptr_t)4095);
	cr_assert_leq(n_small, 2, "a small alloc+free wrote %zu pages", n_small);

	/* a random mix: report pages per operation, and the blocks themselves
	 * are never written (spans' first pages hold their headers) */
	wp_arm(h);
	enum { K = 2000 };
	static void *p[K];
	static size_t sz[K];
	uint64_t rng = m.rng;
	for (int i = 0; i < K; i++) {
		sz[i] = rand_size(&rng, 256u << 10);
		p[i] = ckpt_alloc(h, sz[i]);
		CHECK(p[i], "allocation %d", i);
	}
	for (int i = 0; i < K; i += 2)
		ckpt_free(h, p[i]);
	size_t n_mix = wp_disarm(h);
	size_t inside = 0;
	const uint32_t *map = (const uint32_t *)(const void *)(h->base + 4096);
	for (int i = 1; i < K; i += 2) {
		uint8_t *q = p[i];
		size_t first = (size_t)(q - h->base) >> 12;
		size_t last = (size_t)(q + (sz[i] ? sz[i] : 1) - 1 - h->base) >> 12;
		/* a span's first page holds its header, written legitimately
		 * (map entry: tag 5 "span", granule 0 of the span in the low
		 * 5 bits, the owning cache above them) */
		for (size_t pg = first; pg <= last; pg++)
			if (wp_dirty[pg] && (map[pg] >> 29 != 5 || (map[pg] & 31) != 0))
				inside++;
	}
	cr_log_info("pages written: free large %zu, alloc large %zu, small pair %zu, "
		    "%d allocs + %d frees %zu (%.2f per op); span page %p",
		    n_free_large, n_alloc_large, n_small, K, K / 2, n_mix,
		    (double)n_mix / (K + K / 2), (void *)hdr_page);
	cr_assert_eq(inside, 0, "%zu pages of live blocks were written by the allocator", inside);
	ckpt_free(h, small);
	ckpt_free(h, big2);
	check_invariants(h, "after write tracking");
	free(m.b);
	bare_destroy(h);
	sched_setaffinity(0, sizeof(old), &old);
}

/* ------------------------------------------------------------ hugetlb heap */

/*
 * On a hugetlb heap (2 MiB pages) the allocator works the same, its extent
 * counts 2 MiB pages, and freeing a large block gives back exactly the
 * whole 2 MiB pages inside it (HugePages_Free rises by that many).
 * Reserves huge pages under the machine lock and restores the count.
 */
Test(alloc_heap, hugetlb_heap_allocates_and_gives_back_whole_huge_pages, .fini = ckpt_test_hugetlb_release,
     .timeout = 120)
{
	CKPT_TEST_NEED_ROOT("hugetlb reservation");
	if (!ckpt_test_hugetlb_reserve(24))
		CKPT_TEST_SKIP("cannot reserve 24 hugetlb pages");
	struct ckpt_heap_opts o;
	ckpt_heap *h;
	ckpt_heap_opts_init(&o);
	o.size = 40u << 20;
	o.flags = CKPT_HEAP_HUGETLB;
	o.name = "test_alloc_huge";
	CKPT_ASSERT_OK(ckpt_heap_create(&o, &h));
	cr_assert_eq(ckpt_heap_page_size(h), 2u << 20);
	cr_assert_eq(ckpt_heap_used(h), 2u << 20, "fresh heap: the metadata's one huge page");

	struct model m = {.h = h, .rng = ckpt_test_seed("hugetlb_heap")};
	for (int op = 0; op < 5000; op++)
		CHECK(model_step(&m, 300, 64u << 10), "op %d: heap full", op);
	model_check_all(&m, "hugetlb heap");
	cr_assert_eq(ckpt_heap_used(h) % (2u << 20), 0);

	/* 7 MiB at a 4 KiB-granular address holds at least 2 whole 2 MiB
	 * pages; we expect exactly the whole pages inside it back */
	uint8_t *big = ckpt_alloc(h, 7u << 20);
	cr_assert(big);
	memset(big, 0x77, 7u << 20);
	size_t off = (size_t)(big - (uint8_t *)ckpt_heap_base(h));
	size_t first = (off + (2u << 20) - 1) >> 21, end = (off + (7u << 20)) >> 21;
	long free_before = ckpt_test_read_long("/proc/meminfo", "HugePages_Free:");
	ckpt_free(h, big);
	long free_after = ckpt_test_read_long("/proc/meminfo", "HugePages_Free:");
	cr_assert_eq(free_after - free_before, (long)(end - first),
		     "freeing 7 MiB gave back %ld huge pages, want the %zu whole ones inside it",
		     free_after - free_before, end - first);
	uint8_t *again = ckpt_calloc(h, 1, 7u << 20);
	cr_assert_eq(again, big);
	for (size_t i = 0; i < (7u << 20); i += 4096)
		CHECK(again[i] == 0, "offset %zu", i);
	ckpt_free(h, again);
	model_check_all(&m, "after giving pages back");
	free(m.b);
	ckpt_heap_destroy(h);
}

/* ------------------------------------------------------- aligned allocation */

/*
 * ckpt_aligned_alloc() gives every power-of-two alignment from 1 byte to
 * 2 MiB (past the 4 KiB granule, so the run is trimmed to fit), for empty,
 * small, class-sized and large requests; the blocks are ordinary live
 * blocks (usable size, free, no overlap, counted); a non-power-of-two
 * alignment is EINVAL and one larger than the heap ENOMEM.
 */
Test(alloc, aligned_alloc_honours_every_power_of_two_alignment)
{
	ckpt_heap *h = bare_heap(256u << 20, 4096);
	struct model m = {.h = h, .rng = ckpt_test_seed("aligned_alloc")};
	static const size_t sizes[] = {0, 1, 24, 48, 100, 5000, 16384, 20000, 300000};
	for (size_t al = 1; al <= (2u << 20); al <<= 1) {
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			uint8_t *p = ckpt_aligned_alloc(h, al, sizes[i]);
			cr_assert(p, "alignment %zu size %zu: %s", al, sizes[i], strerror(errno));
			cr_assert_eq((uintptr_t)p % al, 0, "alignment %zu size %zu: %p", al,
				     sizes[i], (void *)p);
			cr_assert_geq(ckpt_usable_size(h, p), sizes[i]);
			model_add(&m, p, sizes[i]);
		}
		/* mixed with ordinary traffic, so aligned runs land between others */
		for (int op = 0; op < 200; op++)
			CHECK(model_step(&m, 600, 256u << 10), "op %d: heap full", op);
	}
	model_check_all(&m, "aligned blocks live");
	for (size_t i = 0; i < m.n; i++)
		ckpt_free(h, m.b[i].p);
	m.n = 0;
	model_check_all(&m, "all freed");

	static const size_t bad[] = {0, 3, 24, 48, 4097, ((size_t)1 << 20) + 16};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		cr_assert_null(ckpt_aligned_alloc(h, bad[i], 64), "alignment %zu", bad[i]);
		cr_assert_eq(errno, EINVAL, "alignment %zu: errno %d", bad[i], errno);
	}
	errno = 0;
	cr_assert_null(ckpt_aligned_alloc(h, (size_t)1 << 40, 64));
	cr_assert_eq(errno, ENOMEM);
	errno = 0;
	cr_assert_null(ckpt_aligned_alloc(NULL, 64, 64));
	cr_assert_eq(errno, EINVAL);
	check_invariants(h, "end");
	free(m.b);
	bare_destroy(h);
}

/* ------------------------------------------------------- per-CPU caches */

/*
 * A cache whose own list is empty takes over a span with room from another
 * cache instead of growing the heap: blocks freed into a cache no CPU
 * allocates from any more (another CPU's, or one that a heap restored on a
 * smaller machine no longer maps to) are used again.
 */
Test(alloc, a_cache_reuses_room_in_spans_another_cache_owns)
{
	cpu_set_t old;
	cr_assert(sched_getaffinity(0, sizeof(old), &old) == 0);
	if (CPU_COUNT(&old) < 2 || !CPU_ISSET(0, &old) || !CPU_ISSET(1, &old))
		CKPT_TEST_SKIP("needs CPUs 0 and 1");
	ckpt_heap *h = bare_heap(16u << 20, 4096);
	enum { N = 200 };
	void *p[N];
	pin_to_cpu(0);
	for (int i = 0; i < N; i++)
		cr_assert((p[i] = ckpt_alloc(h, 200)) != NULL);
	for (int i = 0; i < N; i += 2)
		ckpt_free(h, p[i]); /* room in cache 0's spans of the class */
	size_t ext = extent_bytes(h);
	pin_to_cpu(1);
	for (int i = 0; i < N; i += 2)
		cr_assert((p[i] = ckpt_alloc(h, 200)) != NULL);
	cr_assert_eq(extent_bytes(h), ext, "cache 1 grew the heap instead of using the room");
	check_invariants(h, "after stealing");
	for (int i = 0; i < N; i++)
		ckpt_free(h, p[i]);
	check_invariants(h, "all freed");
	sched_setaffinity(0, sizeof(old), &old);
	bare_destroy(h);
}

/* ----------------------------------------- the fast path under concurrency */

/*
 * Blocks for the ownership test carry a stamp: word 0 the owner's stamp,
 * word 1 the requested size, every later byte a byte of the stamp.  A block
 * handed out twice, or written by the allocator, loses its stamp.
 */
static void stamp_block(uint8_t *p, size_t n, uint64_t stamp)
{
	memcpy(p, &stamp, 8);
	uint64_t n64 = n;
	memcpy(p + 8, &n64, 8);
	memset(p + 16, (int)(stamp >> 56 ^ stamp), n - 16);
}

static size_t stamp_verify(const uint8_t *p, uint64_t *stamp_out)
{
	uint64_t stamp, n;
	memcpy(&stamp, p, 8);
	memcpy(&n, p + 8, 8);
	CHECK(n >= 16 && n <= (64u << 10), "block %p: size word %llu (stamp %#llx): overwritten",
	      (const void *)p, (unsigned long long)n, (unsigned long long)stamp);
	uint8_t b = (uint8_t)(stamp >> 56 ^ stamp);
	for (size_t i = 16; i < n; i++)
		CHECK(p[i] == b, "block %p (%llu bytes, stamp %#llx): byte %zu is 0x%02x, want 0x%02x: "
		      "another owner wrote it", (const void *)p, (unsigned long long)n,
		      (unsigned long long)stamp, i, p[i], b);
	*stamp_out = stamp;
	return (size_t)n;
}

enum { OWN_SLOTS = 256, OWN_MAIL = 64 };

struct owner {
	ckpt_heap *h;
	unsigned id;
	uint64_t rng, serial, ops, sent;
	_Atomic(uint8_t *) *mail; /* shared: blocks handed between threads */
	_Atomic int *stop;
	uint8_t *slot[OWN_SLOTS];
	uint64_t stamp[OWN_SLOTS];
};

/* Odd threads only allocate small blocks: they hardly ever need the global
 * lock, so they keep going while a cut holds it. */
static size_t owner_size(const struct owner *o, uint64_t r)
{
	unsigned k = (unsigned)(r % 64);
	if (k == 0 && o->id % 2 == 0)
		return 20000 + (size_t)(r >> 8) % 40000; /* a large block: the global lock */
	if (k < 8 && o->id % 2 == 0)
		return 16 + (size_t)(r >> 8) % 4096;
	return 16 + (size_t)(r >> 8) % 496;
}

/* Sends the block in slot i to the mailbox and takes whatever was there:
 * frees of blocks that another thread's cache owns, while it allocates. */
static void owner_swap(struct owner *o, unsigned i, uint64_t r)
{
	uint8_t *got = atomic_exchange(&o->mail[(r >> 16) % OWN_MAIL], o->slot[i]);
	o->sent++;
	o->slot[i] = got;
	if (got) {
		uint64_t st;
		size_t n = stamp_verify(got, &st);
		o->stamp[i] = ((uint64_t)o->id << 56) | ++o->serial;
		stamp_block(got, n, o->stamp[i]);
	}
}

static void *owner_body(void *arg)
{
	struct owner *o = arg;
	while (!atomic_load_explicit(o->stop, memory_order_relaxed)) {
		uint64_t r = ckpt_test_rand(&o->rng), st;
		unsigned i = (unsigned)(r % OWN_SLOTS);
		o->ops++;
		if (o->slot[i] && (r >> 40) % 8 == 0) {
			owner_swap(o, i, r);
		} else if (o->slot[i]) {
			stamp_verify(o->slot[i], &st);
			CHECK(st == o->stamp[i], "slot %u: stamp %#llx, mine %#llx", i,
			      (unsigned long long)st, (unsigned long long)o->stamp[i]);
			ckpt_free(o->h, o->slot[i]);
			o->slot[i] = NULL;
		} else {
			size_t n = owner_size(o, r >> 8);
			uint8_t *p = ckpt_alloc(o->h, n);
			CHECK(p, "allocation of %zu bytes failed", n);
			o->stamp[i] = ((uint64_t)o->id << 56) | ++o->serial;
			stamp_block(p, n, o->stamp[i]);
			o->slot[i] = p;
		}
	}
	return NULL;
}

/* A checkpoint's cut as the engine makes it: quiesce, copy the extent
 * (slowly, yielding the CPU: the copy must not depend on the threads being
 * descheduled meanwhile), resume.  Returns the copy and its length. */
static uint8_t *cut_copy(ckpt_heap *h, size_t *len)
{
	ckpt__alloc_quiesce(h);
	size_t ext = ckpt__alloc_extent_pages(h) * h->page_size;
	uint8_t *copy = malloc(ext);
	cr_assert(copy);
	for (size_t off = 0; off < ext; off += 16384) {
		memcpy(copy + off, h->base + off, ext - off < 16384 ? ext - off : 16384);
		sched_yield();
	}
	ckpt__alloc_resume(h);
	*len = ext;
	return copy;
}

/* Verifies and frees every block the owners and the mailbox still hold;
 * then nothing is live. */
static void owners_release(ckpt_heap *h, struct owner *o, int n, _Atomic(uint8_t *) *mail)
{
	uint64_t st;
	for (int i = 0; i < n; i++)
		for (int k = 0; k < OWN_SLOTS; k++)
			if (o[i].slot[k]) {
				stamp_verify(o[i].slot[k], &st);
				ckpt_free(h, o[i].slot[k]);
			}
	for (int i = 0; i < OWN_MAIL; i++) {
		uint8_t *p = atomic_load(&mail[i]);
		if (p) {
			stamp_verify(p, &st);
			ckpt_free(h, p);
		}
	}
	check_invariants(h, "every block freed");
	struct ckpt_alloc_stats stats = {.struct_size = sizeof(stats)};
	CKPT_ASSERT_OK(ckpt_alloc_stats(h, &stats));
	cr_assert_eq(stats.live_blocks, 0, "%llu blocks live after all were freed",
		     (unsigned long long)stats.live_blocks);
	cr_assert_eq(stats.live_bytes, 0);
}

/*
 * The small-object fast path (a cache per CPU, taken with one
 * compare-and-swap and dropped with a plain store) keeps every block with
 * one owner and the metadata whole, however the threads interleave: six
 * threads on (typically) fewer CPUs allocate, stamp, verify and free,
 * hand blocks to each other (so frees land in caches other threads are
 * allocating from) and fall over to a neighbour's cache when their own is
 * held, while the main thread makes checkpoint cuts (ckpt__alloc_quiesce:
 * after it returns no thread is inside a cache operation) and copies the
 * allocator's extent, as the engine's cut would, and runs the deep check
 * (which takes every lock) in between.  Every copy, opened where the heap
 * was, passes the deep check and allocates on.  A lock that two threads
 * can hold at once shows as a stamp overwritten or broken metadata; a cut
 * that misses a cache shows as a copy that fails the deep check.  The
 * blocks handed between threads are freed into magazines of caches other
 * threads allocate from, and steals move spans between caches: a steal
 * that left slots of the moved span in the old owner's magazine (two
 * locks writing one span's bits) fails here (checked by removing the
 * steal's flush once), as does a magazine entry the deep check cannot
 * match to a cached slot.
 */
Test(alloc, threads_keep_stamped_blocks_and_every_cut_copy_deep_checks, .timeout = 240)
{
	enum { T = 6, CUTS = 12 };
	size_t size = 64u << 20;
	ckpt_heap *h = bare_heap(size, 4096);
	uint64_t seed = ckpt_test_seed("threads_keep_stamped_blocks");
	static _Atomic(uint8_t *) mail[OWN_MAIL];
	_Atomic int stop = 0;
	static struct owner o[T];
	pthread_t tid[T];
	for (int i = 0; i < OWN_MAIL; i++)
		atomic_store(&mail[i], NULL);
	for (int i = 0; i < T; i++) {
		o[i] = (struct owner){.h = h, .id = (unsigned)i + 1, .rng = seed + (uint64_t)i * 7919,
				      .mail = mail, .stop = &stop};
		cr_assert(pthread_create(&tid[i], NULL, owner_body, &o[i]) == 0);
	}
	uint8_t *copy[CUTS];
	size_t ext[CUTS];
	for (int c = 0; c < CUTS; c++) {
		usleep(c % 2 ? 20000 : 120000);
		copy[c] = cut_copy(h, &ext[c]);
		if (c % 3 == 2)
			check_invariants(h, "deep check amid the threads");
	}
	atomic_store(&stop, 1);
	uint64_t ops = 0, sent = 0;
	for (int i = 0; i < T; i++) {
		pthread_join(tid[i], NULL);
		ops += o[i].ops;
		sent += o[i].sent;
	}
	cr_log_info("%llu operations, %llu blocks handed between threads, %d cuts",
		    (unsigned long long)ops, (unsigned long long)sent, CUTS);
	owners_release(h, o, T, mail);
	uint8_t *base = h->base;
	bare_destroy(h);

	for (int c = 0; c < CUTS; c++) {
		ckpt_heap *r = open_image(base, size, 4096, copy[c], ext[c]);
		free(copy[c]);
		check_invariants(r, "a cut's copy, opened");
		struct model m = {.h = r, .rng = seed + 31 + (uint64_t)c};
		for (int op = 0; op < 2000; op++)
			CHECK(model_step(&m, 200, 64u << 10), "op %d on a cut's copy: heap full", op);
		check_invariants(r, "a cut's copy after allocating on");
		free(m.b);
		bare_destroy(r);
	}
}

/* ------------------------------------------- checkpoints and the allocator */

struct churn {
	struct model m;
	_Atomic int *stop;
	int ops;
};

static void *churn_body(void *arg)
{
	struct churn *t = arg;
	while (!atomic_load(t->stop) && t->ops < 2000000) {
		CHECK(model_step(&t->m, 300, 256u << 10), "op %d: heap full", t->ops);
		t->ops++;
	}
	return NULL;
}

/* Small blocks only, in a tight loop: a thread that is almost always inside
 * an allocator critical section, so that a cut which does not exclude every
 * cache catches one half-done. */
static void *churn_small_body(void *arg)
{
	struct churn *t = arg;
	enum { SLOTS = 512 };
	void *slot[SLOTS] = {0};
	uint64_t rng = t->m.rng;
	while (!atomic_load(t->stop) && t->ops < 50000000) {
		uint64_t r = ckpt_test_rand(&rng);
		void **p = &slot[r % SLOTS];
		if (*p) {
			ckpt_free(t->m.h, *p);
			*p = NULL;
		} else {
			*p = ckpt_alloc(t->m.h, 16 + (r >> 32) % 500);
			CHECK(*p, "small allocation failed");
		}
		t->ops++;
	}
	for (int i = 0; i < SLOTS; i++)
		ckpt_free(t->m.h, slot[i]);
	return NULL;
}

/*
 * Four threads allocate, reallocate and free without pause (two through
 * the reference model with large blocks and reallocs, two with small blocks
 * in a tight loop) while the main thread takes checkpoints: every image,
 * opened as a restore would, passes
 * the deep check (per-CPU caches, their lists, in-flight reallocs and the
 * live counters are consistent at each cut, so nothing is lost or leaked),
 * and four threads then allocate on from the restored heap, reusing its
 * cached spans, and it passes again.
 */
Test(alloc_heap, threads_churn_through_checkpoints_and_every_image_reopens_consistent,
     .timeout = 240)
{
	enum { T = 4, CK = 8 };
	size_t size = 128u << 20;
	ckpt_heap *h = real_heap(size);
	size_t psz = ckpt_heap_page_size(h);
	uint8_t *base = ckpt_heap_base(h);
	uint64_t seed = ckpt_test_seed("threads_churn_through_checkpoints");
	_Atomic int stop = 0;
	struct churn t[T];
	pthread_t tid[T];
	for (int i = 0; i < T; i++) {
		t[i] = (struct churn){.m = {.h = h, .rng = seed + (uint64_t)i * 7919}, .stop = &stop};
		cr_assert(pthread_create(&tid[i], NULL, i < 2 ? churn_body : churn_small_body,
					 &t[i]) == 0);
	}
	static struct memsink ms[CK];
	size_t ext[CK];
	for (int c = 0; c < CK; c++) {
		usleep(20000);
		cr_assert(memsink_init(&ms[c], size, psz) == 0);
		struct ckpt_dest dest = {.kind = CKPT_DEST_SINK, .sink = &ms[c].sink};
		CKPT_ASSERT_OK(ckpt_begin(h, &dest, NULL));
		CKPT_ASSERT_OK(ckpt_wait(h));
		ext[c] = ms[c].info.npages * psz;
	}
	atomic_store(&stop, 1);
	int ops = 0;
	for (int i = 0; i < T; i++) {
		pthread_join(tid[i], NULL);
		ops += t[i].ops;
		free(t[i].m.b);
	}
	cr_log_info("%d operations by %d threads across %d checkpoints", ops, T, CK);
	ckpt_heap_destroy(h);

	for (int c = 0; c < CK; c++) {
		ckpt_heap *r = open_image(base, size, psz, ms[c].image, ext[c]);
		memsink_fini(&ms[c]);
		check_invariants(r, "image opened");
		struct ckpt_alloc_stats st = {.struct_size = sizeof(st)};
		CKPT_ASSERT_OK(ckpt_alloc_stats(r, &st));
		cr_assert_gt(st.live_blocks, 0);
		if (c == CK - 1) {
			pthread_barrier_t bar;
			struct thr u[T];
			pthread_barrier_init(&bar, NULL, T);
			for (int i = 0; i < T; i++) {
				u[i] = (struct thr){.m = {.h = r, .rng = seed + 17 + (uint64_t)i},
						   .bar = &bar};
				cr_assert(pthread_create(&tid[i], NULL, thread_body, &u[i]) == 0);
			}
			for (int i = 0; i < T; i++) {
				pthread_join(tid[i], NULL);
				free(u[i].m.b);
			}
			pthread_barrier_destroy(&bar);
			check_invariants(r, "restored heap after four threads allocated on");
		}
		bare_destroy(r);
	}
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * The same through the real restore path: a checkpoint written to a file
 * while four threads allocate, then ckpt_restore() in place of the heap.
 * The restored heap passes the deep check, reports the counters its
 * blocks add up to, and four threads allocate on from it (taking over
 * spans the caches had at the cut) and it passes again.
 */
Test(alloc_heap, heap_restored_from_a_checkpoint_amid_threads_passes_the_deep_check,
     .timeout = 240)
{
	enum { T = 4 };
	size_t size = 128u << 20;
	ckpt_heap *h = real_heap(size);
	uint64_t seed = ckpt_test_seed("heap_restored_amid_threads");
	_Atomic int stop = 0;
	struct churn t[T];
	pthread_t tid[T];
	for (int i = 0; i < T; i++) {
		t[i] = (struct churn){.m = {.h = h, .rng = seed + (uint64_t)i * 7919}, .stop = &stop};
		cr_assert(pthread_create(&tid[i], NULL, i < 2 ? churn_body : churn_small_body,
					 &t[i]) == 0);
	}
	char *dir = iu_tmpdir("alloc");
	char path[300];
	snprintf(path, sizeof(path), "%s/img", dir);
	usleep(50000);
	struct ckpt_dest dest = {.kind = CKPT_DEST_PATH, .path = path};
	struct ckpt_begin_opts bo;
	ckpt_begin_opts_init(&bo);
	bo.flags = CKPT_BEGIN_NO_FSYNC;
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, &bo));
	CKPT_ASSERT_OK(ckpt_wait(h));
	atomic_store(&stop, 1);
	for (int i = 0; i < T; i++) {
		pthread_join(tid[i], NULL);
		free(t[i].m.b);
	}
	ckpt_heap_destroy(h);

	ckpt_heap *r = NULL;
	CKPT_ASSERT_OK(ckpt_restore(path, NULL, &r));
	check_invariants(r, "restored");
	struct ckpt_alloc_stats st = {.struct_size = sizeof(st)};
	CKPT_ASSERT_OK(ckpt_alloc_stats(r, &st));
	cr_assert_gt(st.live_blocks, 0);
	cr_assert_eq(st.extent_bytes, ckpt_heap_used(r));
	pthread_barrier_t bar;
	struct thr u[T];
	pthread_barrier_init(&bar, NULL, T);
	for (int i = 0; i < T; i++) {
		u[i] = (struct thr){.m = {.h = r, .rng = seed + 17 + (uint64_t)i}, .bar = &bar};
		cr_assert(pthread_create(&tid[i], NULL, thread_body, &u[i]) == 0);
	}
	for (int i = 0; i < T; i++) {
		pthread_join(tid[i], NULL);
		free(u[i].m.b);
	}
	pthread_barrier_destroy(&bar);
	check_invariants(r, "restored heap after four threads allocated on");
	ckpt_heap_destroy(r);
	iu_rmtree(dir);
	free(dir);
}

struct mover {
	ckpt_heap *h;
	uint8_t *blk;
	size_t from, to;
	uint8_t *moved;
	_Atomic int done;
};

static void *mover_body(void *arg)
{
	struct mover *mv = arg;
	mv->moved = ckpt_realloc(mv->h, mv->blk, mv->to);
	atomic_store(&mv->done, 1);
	return NULL;
}

/*
 * A checkpoint cut while ckpt_realloc() copies a block to its new place
 * (both blocks allocated, the application holding only the old one) opens
 * with only the old block live: the new one, which the application never
 * saw, is not leaked.  The copy of a 48 MiB block into fresh memory takes
 * tens of milliseconds; the cut is known to be inside it when the live
 * block count has risen and the realloc had not returned when ckpt_cut()
 * did.
 */
Test(alloc_heap, checkpoint_cut_during_realloc_copy_reopens_without_the_new_block,
     .timeout = 120)
{
	size_t size = 256u << 20, from = 48u << 20, to = 50u << 20;
	int in_window = 0;
	for (int attempt = 0; attempt < 5 && !in_window; attempt++) {
		ckpt_heap *h = real_heap(size);
		size_t psz = ckpt_heap_page_size(h);
		uint8_t *base = ckpt_heap_base(h);
		uint8_t *blk = ckpt_alloc(h, from), *fence = ckpt_alloc(h, 100);
		cr_assert(blk && fence, "the fence keeps the block from growing in place");
		memset(blk, 0x3c, from);
		struct ckpt_alloc_stats st = {.struct_size = sizeof(st)};
		CKPT_ASSERT_OK(ckpt_alloc_stats(h, &st));
		uint64_t blocks = st.live_blocks;
		struct memsink ms;
		cr_assert(memsink_init(&ms, size, psz) == 0);
		struct ckpt_dest dest = {.kind = CKPT_DEST_SINK, .sink = &ms.sink};
		/* prepared first, so that the cut itself is quick */
		CKPT_ASSERT_OK(ckpt_prepare(h, &dest, NULL, NULL));
		uint64_t t0 = now_ns();
		while (ckpt_ready(h) == 0 && now_ns() - t0 < 10000000000ull)
			usleep(1000);
		cr_assert_eq(ckpt_ready(h), 1, "the checkpoint never became ready to cut");
		struct mover mv = {.h = h, .blk = blk, .from = from, .to = to};
		pthread_t tid;
		cr_assert(pthread_create(&tid, NULL, mover_body, &mv) == 0);
		t0 = now_ns();
		do
			CKPT_ASSERT_OK(ckpt_alloc_stats(h, &st));
		while (st.live_blocks == blocks && !atomic_load(&mv.done) &&
		       now_ns() - t0 < 10000000000ull);
		CKPT_ASSERT_OK(ckpt_cut(h));
		in_window = st.live_blocks == blocks + 1 && !atomic_load(&mv.done);
		pthread_join(tid, NULL);
		CKPT_ASSERT_OK(ckpt_wait(h));
		cr_assert(mv.moved && mv.moved != blk, "the realloc moved the block");
		size_t ext = ms.info.npages * psz;
		ckpt_heap_destroy(h);
		if (!in_window) {
			cr_log_info("attempt %d: the cut missed the copy", attempt);
			memsink_fini(&ms);
			continue;
		}
		ckpt_heap *r = open_image(base, size, psz, ms.image, ext);
		memsink_fini(&ms);
		check_invariants(r, "image cut during the copy");
		CKPT_ASSERT_OK(ckpt_alloc_stats(r, &st));
		cr_assert_eq(st.live_blocks, blocks,
			     "%llu live blocks in the image, %llu held by the application",
			     (unsigned long long)st.live_blocks, (unsigned long long)blocks);
		cr_assert_eq(ckpt_usable_size(r, blk), from, "the old block is live and whole");
		cr_assert_eq(ckpt_usable_size(r, mv.moved), 0, "the new block was leaked");
		for (size_t i = 0; i < from; i += 4096)
			CHECK(blk[i] == 0x3c, "offset %zu of the old block", i);
		bare_destroy(r);
	}
	cr_assert(in_window, "no cut landed inside the copy in 5 attempts: nothing tested");
}

static long memfd_kib(const ckpt_heap *h)
{
	struct stat sb;
	cr_assert(fstat(h->memfd, &sb) == 0);
	return (long)(sb.st_blocks / 2);
}

/*
 * A large block freed while a checkpoint runs keeps its memory until the
 * checkpoint ends (a hole punch would lose its pre-image) and is given back
 * then: no longer mapped, and the memfd shrinks by it.  A block freed and
 * allocated again before the end is not given back (it holds data).
 */
Test(alloc_heap, runs_freed_during_a_checkpoint_are_given_back_when_it_ends)
{
	size_t mib = 1u << 20;
	ckpt_heap *h = real_heap(128u << 20);
	if (ckpt_heap_page_size(h) != 4096 || h->backend == CKPT_BACKEND_FORK)
		CKPT_TEST_SKIP("needs 4 KiB pages and a userfaultfd backend");
	/* again below big: the lowest fitting run is the one handed out */
	uint8_t *again = ckpt_alloc(h, 2 * mib), *fence2 = ckpt_alloc(h, 100);
	uint8_t *big = ckpt_alloc(h, 8 * mib), *fence = ckpt_alloc(h, 100);
	cr_assert(big && fence && again && fence2);
	memset(big, 0x5c, 8 * mib);
	memset(again, 0x5c, 2 * mib);
	long kib_full = memfd_kib(h);

	struct memsink ms;
	cr_assert(memsink_init(&ms, ckpt_heap_size(h), 4096) == 0);
	ms.delay_us = 300; /* keep the checkpoint running through the frees */
	struct ckpt_dest dest = {.kind = CKPT_DEST_SINK, .sink = &ms.sink};
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, NULL));
	ckpt_free(h, big);
	ckpt_free(h, again);
	uint8_t *back = ckpt_alloc(h, 2 * mib);
	cr_assert_eq(back, again, "the freed 2 MiB run is handed out again");
	memset(back, 0x6d, 2 * mib);
	int running = ckpt_poll(h, NULL, NULL) == 1;
	size_t kept = present_pages(big, 8 * mib);
	CKPT_ASSERT_OK(ckpt_wait(h));
	cr_assert(running, "the checkpoint ended before the frees: nothing tested");
	cr_assert_eq(kept, 2048, "while the checkpoint ran the freed pages stay");
	cr_assert_eq(present_pages(big, 8 * mib), 0, "after it ended they are given back");
	long kib_after = memfd_kib(h);
	cr_assert_leq(kib_after, kib_full - 7 * 1024, "memfd %ld KiB before, %ld after", kib_full,
		      kib_after);
	for (size_t i = 0; i < 2 * mib; i += 4096)
		CHECK(back[i] == 0x6d, "the reused block lost its data at %zu", i);
	check_invariants(h, "after giving back");
	memsink_fini(&ms);
	ckpt_heap_destroy(h);
}
