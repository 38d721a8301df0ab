/*
 * alloc.c - the in-heap allocator.
 *
 * Everything the allocator knows lives inside the heap, as granule numbers
 * or absolute addresses (the heap's base never moves), so a restored heap is
 * usable at once.  Its one lock (h->alloc_lock) lives in process memory: a
 * lock word inside the heap could be captured "held" by a checkpoint.
 *
 * Layout (granule = 4 KiB, whatever the heap's page size):
 *
 *   granule 0        struct alloc_hdr: identity, root, top, class lists
 *   map              one uint32 per granule of the heap (see T_* below)
 *   heads            bitmap, one bit per granule: "a free run starts here"
 *   tree             max-tree over 64-granule blocks: the longest free run
 *                    that starts in the block (implicit binary heap)
 *   data_start ...   runs: free runs, large blocks, spans of small objects
 *   top ...          never handed out: zero, and never written by us
 *
 * Why this shape:
 *  - The checkpoint engine write-protects only [0, extent) and a write to a
 *    protected page costs a trap, so metadata is compact and kept away from
 *    the memory it describes: freeing or allocating never writes the block
 *    itself (small free slots are bits in their span's header, free runs are
 *    described by two map entries and a bit), and free runs may be given
 *    back to the kernel (ckpt__track_discard) without losing anything.
 *  - Hand out low addresses first, so the extent (the high-water mark, which
 *    is what a checkpoint covers) stays small: runs are found first-fit by
 *    address through the max-tree, O(log n) however fragmented the heap is,
 *    and memory past top is only used when nothing below fits.
 *  - Memory past top is known to be zero: it is never memset (calloc of a
 *    fresh run writes nothing), and pages past top are never touched.
 *
 * Map entries (3-bit tag, 29-bit value):
 *   T_FREE_HEAD|len, T_FREE_TAIL|len   first / last granule of a free run
 *   T_LARGE_HEAD|len, T_LARGE_TAIL|len first / last granule of a large block
 *   T_SPAN|k                           granule k of a span (k = 0: its header)
 *   0                                  interior of a run, metadata, or >= top
 * A one-granule run has only its head entry.  Interior entries of free runs
 * and large blocks are always 0, so a stale head can never be mistaken for a
 * live block (that is what makes double frees and wild pointers harmless).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define A_MAGIC 0x636f6c6c61706b63ull /* "ckpalloc" little-endian */
#define A_VERSION 2u /* 2: live_bytes / live_blocks counters */

#define GSHIFT 12
#define GSIZE ((size_t)1 << GSHIFT)

#define T_NONE 0u
#define T_FREE_HEAD 1u
#define T_FREE_TAIL 2u
#define T_LARGE_HEAD 3u
#define T_LARGE_TAIL 4u
#define T_SPAN 5u
#define VAL_MAX ((1u << 29) - 1)
#define ENT(tag, val) (((uint32_t)(tag) << 29) | (uint32_t)(val))
#define ETAG(e) ((uint32_t)(e) >> 29)
#define EVAL(e) ((uint32_t)(e) & VAL_MAX)

/* Freed runs of at least this size are offered to the engine to give back. */
#define DISCARD_MIN ((size_t)64 << 10)

/* ------------------------------------------------------------ classes */

#define NCLASS 36
#define SMALL_MAX 16384u
#define SPAN_HDR 96u
#define SPAN_MAGIC 0x5350414eu /* "SPAN", xor'ed with the span's granule */

/*
 * 16-byte steps up to 128, then four classes per doubling.  Span sizes are
 * the smallest number of granules k for which slots = min(512, (k * 4096 -
 * SPAN_HDR) / size) loses at most 1/16 of the span to rounding and holds at
 * least 8 slots (or k >= 16); 512 is the span bitmap's capacity.  The
 * slot counts follow from that formula; changing any of it changes the
 * in-heap format (A_VERSION).
 */
static const struct {
	uint16_t size;
	uint8_t gran;   /* granules per span */
	uint16_t slots; /* objects per span */
} cls[NCLASS] = {
	{16, 1, 250},   {32, 1, 125},   {48, 1, 83},    {64, 1, 62},
	{80, 1, 50},    {96, 1, 41},    {112, 1, 35},   {128, 1, 31},
	{160, 1, 25},   {192, 1, 20},   {224, 1, 17},   {256, 1, 15},
	{320, 1, 12},   {384, 1, 10},   {448, 2, 18},   {512, 2, 15},
	{640, 2, 12},   {768, 2, 10},   {896, 2, 9},    {1024, 4, 15},
	{1280, 3, 9},   {1536, 4, 10},  {1792, 4, 9},   {2048, 8, 15},
	{2560, 6, 9},   {3072, 7, 9},   {3584, 8, 9},   {4096, 16, 15},
	{5120, 12, 9},  {6144, 14, 9},  {7168, 16, 9},  {8192, 17, 8},
	{10240, 16, 6}, {12288, 16, 5}, {14336, 18, 5}, {16384, 17, 4},
};

static inline unsigned size_class(size_t size)
{
	if (size <= 128)
		return size ? (unsigned)((size + 15) >> 4) - 1 : 0;
	unsigned b = 63u - (unsigned)__builtin_clzll((unsigned long long)(size - 1));
	size_t step = (size_t)1 << (b - 2);
	unsigned i = (unsigned)((size - ((size_t)1 << b) + step - 1) >> (b - 2));
	return 8 + (b - 7) * 4 + (i - 1);
}

/* ---------------------------------------------------------- in-heap state */

struct alloc_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t hdr_size;   /* sizeof(struct alloc_hdr) */
	uint64_t page_size;  /* the heap's page size (4 KiB or 2 MiB) */
	uint64_t heap_size;
	uint64_t base;
	uint64_t root;       /* the application's root pointer (absolute) */
	uint64_t ngran;      /* granules in the heap */
	uint64_t top;        /* first granule never handed out */
	uint64_t data_start; /* first granule after the metadata */
	uint64_t map_off, heads_off, tree_off; /* byte offsets from base */
	uint64_t tree_p;     /* leaves in the tree (power of two) */
	uint32_t nclass;
	uint32_t partial[NCLASS]; /* per class: first span with free slots */
	/* Exact counters of live blocks (usable bytes), updated with the
	 * structures they describe under the same lock, so the image a
	 * checkpoint takes holds them consistent with its blocks and a
	 * restored heap needs no O(extent) recount. */
	uint64_t live_bytes;
	uint64_t live_blocks;
};

struct span {
	uint32_t magic; /* SPAN_MAGIC ^ granule */
	uint16_t cls;
	uint16_t nslots;
	uint16_t nfree;
	uint16_t hint;  /* lowest word of free[] that may have a bit set */
	uint32_t next;  /* partial list of the class (granules, 0 = none) */
	uint32_t prev;
	uint32_t pad[3];
	uint64_t free[8]; /* bit set: slot free */
};
_Static_assert(sizeof(struct span) == SPAN_HDR, "span header size");
_Static_assert(sizeof(struct alloc_hdr) <= GSIZE, "allocator header fits a granule");

/* Pointers into one heap's metadata, rebuilt on each call (cheap loads from
 * the header's cache line). */
struct actx {
	ckpt_heap *h;
	struct alloc_hdr *hd;
	uint32_t *map;
	uint64_t *heads;
	uint32_t *tree;
	uint64_t p;
};

static inline void ctx_init(struct actx *a, ckpt_heap *h)
{
	struct alloc_hdr *hd = (struct alloc_hdr *)(void *)h->base;
	a->h = h;
	a->hd = hd;
	a->map = (uint32_t *)(void *)(h->base + hd->map_off);
	a->heads = (uint64_t *)(void *)(h->base + hd->heads_off);
	a->tree = (uint32_t *)(void *)(h->base + hd->tree_off);
	a->p = hd->tree_p;
}

static inline uint8_t *gran_ptr(const struct actx *a, uint64_t g)
{
	return a->h->base + (g << GSHIFT);
}

static inline struct span *span_at(const struct actx *a, uint64_t g)
{
	return (struct span *)(void *)gran_ptr(a, g);
}

/* The layout every heap of this size has; format writes it, open checks it. */
struct layout {
	uint64_t ngran, map_off, heads_off, tree_off, tree_p, data_start;
};

static inline uint64_t round_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) / a * a;
}

static void layout_of(uint64_t heap_size, struct layout *l)
{
	uint64_t n = heap_size >> GSHIFT;
	uint64_t leaves = (n + 63) / 64;
	uint64_t p = 1;
	while (p < leaves)
		p <<= 1;
	l->ngran = n;
	l->map_off = GSIZE;
	l->heads_off = l->map_off + round_up(n * 4, 64);
	l->tree_off = l->heads_off + round_up(leaves * 8, 64);
	l->tree_p = p;
	l->data_start = round_up(l->tree_off + 2 * p * 4, GSIZE) >> GSHIFT;
}

/* ---------------------------------------------------- the run max-tree */

/* Writes only when a value changes: every store may cost a write-protect
 * trap during a checkpoint. */
static void leaf_set(struct actx *a, uint64_t leaf, uint32_t v)
{
	uint64_t i = a->p + leaf;
	if (a->tree[i] == v)
		return;
	a->tree[i] = v;
	for (i >>= 1; i >= 1; i >>= 1) {
		uint32_t l = a->tree[2 * i], r = a->tree[2 * i + 1];
		uint32_t m = l > r ? l : r;
		if (a->tree[i] == m)
			break;
		a->tree[i] = m;
	}
}

static uint32_t leaf_compute(const struct actx *a, uint64_t leaf)
{
	uint64_t w = a->heads[leaf];
	uint32_t m = 0;
	while (w) {
		uint32_t len = EVAL(a->map[leaf * 64 + (uint64_t)__builtin_ctzll(w)]);
		if (len > m)
			m = len;
		w &= w - 1;
	}
	return m;
}

static void freerun_insert(struct actx *a, uint64_t g, uint64_t n)
{
	a->map[g] = ENT(T_FREE_HEAD, n);
	if (n > 1)
		a->map[g + n - 1] = ENT(T_FREE_TAIL, n);
	a->heads[g >> 6] |= 1ull << (g & 63);
	if (n > a->tree[a->p + (g >> 6)])
		leaf_set(a, g >> 6, (uint32_t)n);
}

static void freerun_remove(struct actx *a, uint64_t g, uint64_t n)
{
	a->map[g] = 0;
	if (n > 1)
		a->map[g + n - 1] = 0;
	a->heads[g >> 6] &= ~(1ull << (g & 63));
	if (n == a->tree[a->p + (g >> 6)])
		leaf_set(a, g >> 6, leaf_compute(a, g >> 6));
}

/* Lowest-addressed free run of at least n granules, or 0 (granule 0 is the
 * header, never free). */
static uint64_t freerun_find(const struct actx *a, uint64_t n)
{
	if (a->tree[1] < n)
		return 0;
	uint64_t i = 1;
	while (i < a->p)
		i = a->tree[2 * i] >= n ? 2 * i : 2 * i + 1;
	uint64_t leaf = i - a->p, w = a->heads[leaf];
	while (w) {
		uint64_t g = leaf * 64 + (uint64_t)__builtin_ctzll(w);
		if (EVAL(a->map[g]) >= n)
			return g;
		w &= w - 1;
	}
	return 0; /* unreachable while the tree is consistent */
}

/* Length of the free run whose last granule is g, or 0. */
static inline uint64_t freerun_ending_at(const struct actx *a, uint64_t g)
{
	uint32_t e = a->map[g];
	if (ETAG(e) == T_FREE_TAIL || (ETAG(e) == T_FREE_HEAD && EVAL(e) == 1))
		return EVAL(e);
	return 0;
}

/*
 * Takes n granules: the lowest free run that fits, else the free run that
 * ends at top extended past top, else fresh granules at top.  Granules at or
 * past *zero_from are known to be zero (never handed out).  Returns the
 * first granule, or 0 when the heap is full (then nothing has changed).
 */
static uint64_t run_alloc(struct actx *a, uint64_t n, uint64_t *zero_from)
{
	struct alloc_hdr *hd = a->hd;
	if (n == 0 || n > VAL_MAX)
		return 0;
	uint64_t g = freerun_find(a, n);
	if (g) {
		uint64_t len = EVAL(a->map[g]);
		freerun_remove(a, g, len);
		if (len > n)
			freerun_insert(a, g + n, len - n);
		*zero_from = g + n;
		return g;
	}
	uint64_t top = hd->top, start = top, tail = 0;
	if (top > hd->data_start) {
		tail = freerun_ending_at(a, top - 1);
		start = top - tail;
	}
	if (start + n > hd->ngran)
		return 0;
	if (tail)
		freerun_remove(a, start, tail);
	hd->top = start + n;
	*zero_from = top;
	return start;
}

/* Returns [g, g+n) to the free runs, merging with free neighbours.  The
 * caller has cleared the map entries of [g, g+n). */
static void run_free(struct actx *a, uint64_t g, uint64_t n)
{
	uint64_t start = g, len = n;
	if (g > a->hd->data_start) {
		uint64_t l = freerun_ending_at(a, g - 1);
		if (l) {
			start = g - l;
			freerun_remove(a, start, l);
			len += l;
		}
	}
	if (g + n < a->hd->top) {
		uint32_t e = a->map[g + n];
		if (ETAG(e) == T_FREE_HEAD) {
			freerun_remove(a, g + n, EVAL(e));
			len += EVAL(e);
		}
	}
	freerun_insert(a, start, len);
}

/* Offers the whole heap pages inside a freed run to the engine. */
static void run_discard(struct actx *a, uint64_t g, uint64_t n)
{
	ckpt_heap *h = a->h;
	if ((n << GSHIFT) < DISCARD_MIN)
		return;
	size_t first = (size_t)((((g << GSHIFT) + h->page_size - 1)) >> h->page_shift);
	size_t end = (size_t)(((g + n) << GSHIFT) >> h->page_shift);
	if (end > first)
		ckpt__track_discard(h, first, end - first);
}

static inline void large_mark(struct actx *a, uint64_t g, uint64_t n)
{
	a->map[g] = ENT(T_LARGE_HEAD, n);
	if (n > 1)
		a->map[g + n - 1] = ENT(T_LARGE_TAIL, n);
}

static inline void large_unmark(struct actx *a, uint64_t g, uint64_t n)
{
	a->map[g] = 0;
	if (n > 1)
		a->map[g + n - 1] = 0;
}

/* ------------------------------------------------------------------ spans */

static void partial_push(struct actx *a, unsigned c, uint64_t g)
{
	struct span *s = span_at(a, g);
	uint32_t head = a->hd->partial[c];
	s->prev = 0;
	s->next = head;
	if (head)
		span_at(a, head)->prev = (uint32_t)g;
	a->hd->partial[c] = (uint32_t)g;
}

static void partial_unlink(struct actx *a, unsigned c, uint64_t g)
{
	struct span *s = span_at(a, g);
	if (s->prev)
		span_at(a, s->prev)->next = s->next;
	else
		a->hd->partial[c] = s->next;
	if (s->next)
		span_at(a, s->next)->prev = s->prev;
	s->next = s->prev = 0;
}

static uint64_t span_new(struct actx *a, unsigned c)
{
	uint64_t zero_from, k = cls[c].gran;
	uint64_t g = run_alloc(a, k, &zero_from);
	if (!g)
		return 0;
	for (uint64_t i = 0; i < k; i++)
		a->map[g + i] = ENT(T_SPAN, i);
	struct span *s = span_at(a, g);
	unsigned n = cls[c].slots;
	s->magic = SPAN_MAGIC ^ (uint32_t)g;
	s->cls = (uint16_t)c;
	s->nslots = (uint16_t)n;
	s->nfree = (uint16_t)n;
	s->hint = 0;
	for (unsigned w = 0; w < 8; w++) {
		unsigned lo = w * 64;
		s->free[w] = n >= lo + 64 ? ~0ull : n > lo ? (1ull << (n - lo)) - 1 : 0;
	}
	partial_push(a, c, g);
	return g;
}

static void span_release(struct actx *a, unsigned c, uint64_t g)
{
	uint64_t k = cls[c].gran;
	partial_unlink(a, c, g);
	span_at(a, g)->magic = 0;
	for (uint64_t i = 0; i < k; i++)
		a->map[g + i] = 0;
	run_free(a, g, k);
	run_discard(a, g, k);
}

static void *small_alloc(struct actx *a, unsigned c)
{
	uint64_t g = a->hd->partial[c];
	if (!g) {
		g = span_new(a, c);
		if (!g)
			return NULL;
	}
	struct span *s = span_at(a, g);
	unsigned w = s->hint;
	while (w < 7 && !s->free[w])
		w++;
	unsigned b = (unsigned)__builtin_ctzll(s->free[w]);
	s->free[w] &= ~(1ull << b);
	s->hint = (uint16_t)w;
	if (--s->nfree == 0)
		partial_unlink(a, c, g);
	a->hd->live_bytes += cls[c].size;
	a->hd->live_blocks++;
	return gran_ptr(a, g) + SPAN_HDR + (size_t)(w * 64 + b) * cls[c].size;
}

/* ----------------------------------------------------------- block lookup */

struct block {
	int kind;     /* 0 invalid, 1 small, 2 large */
	uint64_t g;   /* span or run granule */
	uint64_t n;   /* run granules (large) */
	unsigned c;   /* class (small) */
	unsigned idx; /* slot (small) */
	size_t usable;
};

/* Identifies a live block from a pointer the application gave us; anything
 * else (foreign pointer, interior pointer, freed block) gives kind 0. */
static void block_of(const struct actx *a, const void *ptr, struct block *b)
{
	const uint8_t *p = ptr;
	b->kind = 0;
	if (!ckpt__in_heap(a->h, p) || ((uintptr_t)p & 15))
		return;
	uint64_t off = (uint64_t)(p - a->h->base), g = off >> GSHIFT;
	if (g < a->hd->data_start || g >= a->hd->top)
		return;
	uint32_t e = a->map[g];
	if (ETAG(e) == T_LARGE_HEAD) {
		if (off & (GSIZE - 1))
			return;
		b->kind = 2;
		b->g = g;
		b->n = EVAL(e);
		b->usable = (size_t)b->n << GSHIFT;
		return;
	}
	if (ETAG(e) != T_SPAN || EVAL(e) > g)
		return;
	uint64_t sg = g - EVAL(e);
	const struct span *s = span_at(a, sg);
	if (s->magic != (SPAN_MAGIC ^ (uint32_t)sg) || s->cls >= NCLASS)
		return;
	uint64_t rel = off - (sg << GSHIFT);
	if (rel < SPAN_HDR)
		return;
	rel -= SPAN_HDR;
	uint32_t size = cls[s->cls].size;
	/* rel / size by a multiply: exact while rel * size < 2^32 (rel is
	 * below a span's 72 KiB, size at most 16 KiB), and a division costs
	 * as much as the rest of ckpt_free. */
	if (rel >= ((uint64_t)cls[s->cls].gran << GSHIFT))
		return;
	uint64_t idx = (rel * (((uint64_t)1 << 32) / size + 1)) >> 32;
	if (idx * size != rel || idx >= s->nslots)
		return;
	if (s->free[idx >> 6] & (1ull << (idx & 63)))
		return; /* already free */
	b->kind = 1;
	b->g = sg;
	b->c = s->cls;
	b->idx = (unsigned)idx;
	b->usable = size;
}

static void block_free(struct actx *a, const struct block *b)
{
	a->hd->live_bytes -= b->usable;
	a->hd->live_blocks--;
	if (b->kind == 2) {
		large_unmark(a, b->g, b->n);
		run_free(a, b->g, b->n);
		run_discard(a, b->g, b->n);
		return;
	}
	struct span *s = span_at(a, b->g);
	unsigned w = b->idx >> 6;
	s->free[w] |= 1ull << (b->idx & 63);
	if (w < s->hint)
		s->hint = (uint16_t)w;
	if (s->nfree++ == 0) {
		partial_push(a, b->c, b->g);
	} else if (s->nfree == s->nslots &&
		   !(a->hd->partial[b->c] == b->g && s->next == 0)) {
		/* Empty, and not the class's only span with room: keeping one
		 * avoids creating and releasing a span on alternating calls. */
		span_release(a, b->c, b->g);
	}
}

/* ------------------------------------------------------------ allocation */

/* Allocates with the lock held.  *zero_from: from this address on, the
 * block is known to be zero. */
static void *alloc_locked(struct actx *a, size_t size, uint8_t **zero_from)
{
	if (size <= SMALL_MAX) {
		void *p = small_alloc(a, size_class(size));
		*zero_from = NULL;
		return p;
	}
	if (size > a->h->size)
		return NULL;
	uint64_t n = (size + GSIZE - 1) >> GSHIFT, zg;
	uint64_t g = run_alloc(a, n, &zg);
	if (!g)
		return NULL;
	large_mark(a, g, n);
	a->hd->live_bytes += n << GSHIFT;
	a->hd->live_blocks++;
	*zero_from = gran_ptr(a, zg);
	return gran_ptr(a, g);
}

static inline void lock(ckpt_heap *h)
{
	/* A short spin first: allocator critical sections are tens of
	 * nanoseconds, far less than a futex sleep and wake-up. */
	for (int i = 0; i < 64; i++) {
		if (pthread_mutex_trylock(&h->alloc_lock) == 0)
			return;
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
	}
	pthread_mutex_lock(&h->alloc_lock);
}

static inline void unlock(ckpt_heap *h)
{
	pthread_mutex_unlock(&h->alloc_lock);
}

CKPT_API void *ckpt_alloc(ckpt_heap *heap, size_t size)
{
	struct actx a;
	uint8_t *zf;
	if (!heap) {
		errno = EINVAL;
		return NULL;
	}
	lock(heap);
	ctx_init(&a, heap);
	void *p = alloc_locked(&a, size, &zf);
	unlock(heap);
	if (!p)
		errno = ENOMEM;
	return p;
}

CKPT_API void *ckpt_calloc(ckpt_heap *heap, size_t n, size_t size)
{
	struct actx a;
	uint8_t *zf;
	size_t total;
	if (!heap) {
		errno = EINVAL;
		return NULL;
	}
	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	lock(heap);
	ctx_init(&a, heap);
	uint8_t *p = alloc_locked(&a, total, &zf);
	unlock(heap);
	if (!p) {
		errno = ENOMEM;
		return NULL;
	}
	/* Only what may hold old data: fresh memory past the old top is zero,
	 * and writing it would dirty (and, in a checkpoint, trap on) pages for
	 * nothing. */
	if (!zf || zf > p + total)
		zf = p + total;
	if (zf > p)
		memset(p, 0, (size_t)(zf - p));
	return p;
}

CKPT_API void ckpt_free(ckpt_heap *heap, void *ptr)
{
	struct actx a;
	struct block b;
	if (!heap || !ptr)
		return;
	lock(heap);
	ctx_init(&a, heap);
	block_of(&a, ptr, &b);
	if (b.kind)
		block_free(&a, &b);
	unlock(heap);
}

CKPT_API size_t ckpt_usable_size(ckpt_heap *heap, const void *ptr)
{
	struct actx a;
	struct block b;
	if (!heap || !ptr)
		return 0;
	lock(heap);
	ctx_init(&a, heap);
	block_of(&a, ptr, &b);
	unlock(heap);
	return b.kind ? b.usable : 0;
}

/* Resizes a large block in place; 0 on success, -1 when it cannot. */
static int large_resize(struct actx *a, const struct block *b, size_t size)
{
	uint64_t g = b->g, n = b->n;
	uint64_t nn = (size + GSIZE - 1) >> GSHIFT;
	if (nn == 0)
		nn = 1;
	if (nn == n)
		return 0;
	if (nn < n) {
		large_unmark(a, g, n);
		large_mark(a, g, nn);
		a->hd->live_bytes -= (n - nn) << GSHIFT;
		run_free(a, g + nn, n - nn);
		run_discard(a, g + nn, n - nn);
		return 0;
	}
	if (nn > VAL_MAX)
		return -1;
	uint64_t need = nn - n, next = g + n, top = a->hd->top;
	if (next == top) {
		if (g + nn > a->hd->ngran)
			return -1;
		a->hd->top = g + nn;
	} else {
		uint32_t e = a->map[next];
		if (ETAG(e) != T_FREE_HEAD)
			return -1;
		uint64_t l = EVAL(e);
		if (l >= need) {
			freerun_remove(a, next, l);
			if (l > need)
				freerun_insert(a, next + need, l - need);
		} else if (next + l == top && g + nn <= a->hd->ngran) {
			freerun_remove(a, next, l);
			a->hd->top = g + nn;
		} else {
			return -1;
		}
	}
	large_unmark(a, g, n);
	large_mark(a, g, nn);
	a->hd->live_bytes += (nn - n) << GSHIFT;
	return 0;
}

CKPT_API void *ckpt_realloc(ckpt_heap *heap, void *ptr, size_t size)
{
	struct actx a;
	struct block b;
	uint8_t *zf;
	if (!heap) {
		errno = EINVAL;
		return NULL;
	}
	if (!ptr)
		return ckpt_alloc(heap, size);
	if (size == 0) {
		/* glibc's realloc(p, 0): frees and returns NULL */
		ckpt_free(heap, ptr);
		return NULL;
	}
	lock(heap);
	ctx_init(&a, heap);
	block_of(&a, ptr, &b);
	if (!b.kind) {
		unlock(heap);
		errno = EINVAL;
		return NULL;
	}
	if (size > heap->size) {
		unlock(heap);
		errno = ENOMEM;
		return NULL;
	}
	if (b.kind == 1 && size <= b.usable && (size > b.usable / 2 || b.c == 0)) {
		unlock(heap);
		return ptr;
	}
	if (b.kind == 2 && size > SMALL_MAX && large_resize(&a, &b, size) == 0) {
		unlock(heap);
		return ptr;
	}
	void *q = alloc_locked(&a, size, &zf);
	if (!q) {
		unlock(heap);
		errno = ENOMEM;
		return NULL;
	}
	/* Copy without the lock (a large block could hold other threads up for
	 * milliseconds): both blocks stay allocated meanwhile, and b stays
	 * valid because only the caller may free or resize ptr. */
	unlock(heap);
	memcpy(q, ptr, size < b.usable ? size : b.usable);
	lock(heap);
	block_free(&a, &b);
	unlock(heap);
	return q;
}

CKPT_API int ckpt_root_set(ckpt_heap *heap, void *ptr)
{
	if (!heap || (ptr && !ckpt__in_heap(heap, ptr)))
		return -EINVAL;
	lock(heap);
	((struct alloc_hdr *)(void *)heap->base)->root = (uint64_t)(uintptr_t)ptr;
	unlock(heap);
	return 0;
}

CKPT_API void *ckpt_root_get(ckpt_heap *heap)
{
	if (!heap)
		return NULL;
	lock(heap);
	void *p = (void *)(uintptr_t)((struct alloc_hdr *)(void *)heap->base)->root;
	unlock(heap);
	return p;
}

size_t ckpt__alloc_extent_pages(ckpt_heap *h)
{
	const struct alloc_hdr *hd = (const struct alloc_hdr *)(void *)h->base;
	uint64_t bytes = hd->top << GSHIFT;
	return (size_t)((bytes + h->page_size - 1) >> h->page_shift);
}

CKPT_API int ckpt_alloc_stats(ckpt_heap *heap, struct ckpt_alloc_stats *st)
{
	struct ckpt_alloc_stats out;
	if (!heap || !st || st->struct_size == 0)
		return -EINVAL;
	memset(&out, 0, sizeof(out));
	out.struct_size = sizeof(out);
	lock(heap);
	const struct alloc_hdr *hd = (const struct alloc_hdr *)(void *)heap->base;
	out.live_bytes = hd->live_bytes;
	out.live_blocks = hd->live_blocks;
	out.extent_bytes = (uint64_t)ckpt__alloc_extent_pages(heap) << heap->page_shift;
	unlock(heap);
	out.heap_size = heap->size;
	size_t n = st->struct_size < sizeof(out) ? st->struct_size : sizeof(out);
	memcpy(st, &out, n);
	st->struct_size = n;
	return 0;
}

CKPT_API size_t ckpt_heap_used(const ckpt_heap *heap)
{
	if (!heap)
		return 0;
	ckpt_heap *h = (ckpt_heap *)(uintptr_t)heap; /* the lock is not const */
	lock(h);
	size_t pages = ckpt__alloc_extent_pages(h);
	unlock(h);
	return pages << h->page_shift;
}

/* ---------------------------------------------------------- format / open */

int ckpt__alloc_format(ckpt_heap *h)
{
	struct layout l;
	if (!h || !h->base || h->page_size < GSIZE || (h->size & (GSIZE - 1)))
		return -EINVAL;
	layout_of(h->size, &l);
	if (l.ngran - 1 > VAL_MAX || l.data_start + 1 > l.ngran)
		return -EINVAL; /* too large for 29-bit run lengths, or too small */
	struct alloc_hdr *hd = (struct alloc_hdr *)(void *)h->base;
	/* The heap is fresh and all zero: only the header is written; the
	 * map, the bitmap and the tree start out correct as zeroes. */
	hd->version = A_VERSION;
	hd->hdr_size = sizeof(*hd);
	hd->page_size = h->page_size;
	hd->heap_size = h->size;
	hd->base = (uint64_t)(uintptr_t)h->base;
	hd->root = 0;
	hd->ngran = l.ngran;
	hd->top = l.data_start;
	hd->data_start = l.data_start;
	hd->map_off = l.map_off;
	hd->heads_off = l.heads_off;
	hd->tree_off = l.tree_off;
	hd->tree_p = l.tree_p;
	hd->nclass = NCLASS;
	for (unsigned c = 0; c < NCLASS; c++)
		hd->partial[c] = 0;
	hd->live_bytes = hd->live_blocks = 0;
	/* magic last: a header with the magic is a complete header */
	__atomic_store_n(&hd->magic, A_MAGIC, __ATOMIC_RELEASE);
	return 0;
}

int ckpt__alloc_open(ckpt_heap *h)
{
	struct layout l;
	if (!h || !h->base || h->size < GSIZE)
		return CKPT_E_CORRUPT;
	const struct alloc_hdr *hd = (const struct alloc_hdr *)(void *)h->base;
	if (hd->magic != A_MAGIC || hd->version != A_VERSION || hd->hdr_size != sizeof(*hd) ||
	    hd->page_size != h->page_size || hd->heap_size != h->size ||
	    hd->base != (uint64_t)(uintptr_t)h->base || hd->nclass != NCLASS)
		return CKPT_E_CORRUPT;
	layout_of(h->size, &l);
	if (hd->ngran != l.ngran || hd->map_off != l.map_off || hd->heads_off != l.heads_off ||
	    hd->tree_off != l.tree_off || hd->tree_p != l.tree_p ||
	    hd->data_start != l.data_start || hd->top < l.data_start || hd->top > l.ngran)
		return CKPT_E_CORRUPT;
	if (hd->root && !ckpt__in_heap(h, (const void *)(uintptr_t)hd->root))
		return CKPT_E_CORRUPT;
	/* The class lists are followed on the next allocation: check their
	 * heads now, so a damaged image fails here and not in the allocator. */
	const uint32_t *map = (const uint32_t *)(const void *)(h->base + hd->map_off);
	for (unsigned c = 0; c < NCLASS; c++) {
		uint64_t g = hd->partial[c];
		if (!g)
			continue;
		const struct span *s = (const struct span *)(const void *)(h->base + (g << GSHIFT));
		if (g < hd->data_start || g >= hd->top || map[g] != ENT(T_SPAN, 0) ||
		    s->magic != (SPAN_MAGIC ^ (uint32_t)g) || s->cls != c ||
		    s->nslots != cls[c].slots || s->nfree == 0 || s->nfree > s->nslots)
			return CKPT_E_CORRUPT;
	}
	return 0;
}

/* ------------------------------------------------------------ deep check */

__attribute__((format(printf, 3, 4)))
static int check_fail(char *why, size_t why_len, const char *fmt, ...)
{
	if (why && why_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, why_len, fmt, ap);
		va_end(ap);
	}
	return CKPT_E_CORRUPT;
}

/*
 * Walks every run and span below top and checks every invariant the
 * allocator relies on: runs tile [data_start, top) exactly, head and tail
 * entries agree, interiors are zero, no two free runs touch, the heads
 * bitmap and the max-tree match the free runs, span headers match the map,
 * their bitmaps match their counts, and the class lists hold exactly the
 * spans with free slots.  O(top) time: for tests and offline checks, not
 * for every restore.
 */
int ckpt__alloc_check(ckpt_heap *h, char *why, size_t why_len)
{
	struct actx a;
	int rc = ckpt__alloc_open(h);
	if (rc)
		return check_fail(why, why_len, "header check failed");
	lock(h);
	ctx_init(&a, h);
	const struct alloc_hdr *hd = a.hd;
	uint64_t g = hd->data_start, nfree_runs = 0, nspans_partial = 0;
	uint64_t live_bytes = 0, live_blocks = 0;
	bool prev_free = false;
	rc = 0;
	while (g < hd->top) {
		uint32_t e = a.map[g];
		uint64_t len;
		switch (ETAG(e)) {
		case T_FREE_HEAD:
		case T_LARGE_HEAD: {
			bool fr = ETAG(e) == T_FREE_HEAD;
			len = EVAL(e);
			if (len == 0 || g + len > hd->top) {
				rc = check_fail(why, why_len, "granule %llu: run of %llu past top %llu",
						(unsigned long long)g, (unsigned long long)len,
						(unsigned long long)hd->top);
				goto out;
			}
			if (len > 1 && a.map[g + len - 1] != ENT(fr ? T_FREE_TAIL : T_LARGE_TAIL, len)) {
				rc = check_fail(why, why_len, "granule %llu: run tail entry 0x%x",
						(unsigned long long)g, a.map[g + len - 1]);
				goto out;
			}
			for (uint64_t i = 1; i + 1 < len; i++)
				if (a.map[g + i]) {
					rc = check_fail(why, why_len, "granule %llu: interior entry 0x%x",
							(unsigned long long)(g + i), a.map[g + i]);
					goto out;
				}
			bool bit = a.heads[g >> 6] & (1ull << (g & 63));
			if (bit != fr) {
				rc = check_fail(why, why_len, "granule %llu: heads bit %d for a %s run",
						(unsigned long long)g, bit, fr ? "free" : "used");
				goto out;
			}
			if (fr && prev_free) {
				rc = check_fail(why, why_len, "granule %llu: two free runs touch",
						(unsigned long long)g);
				goto out;
			}
			prev_free = fr;
			nfree_runs += fr;
			if (!fr) {
				live_bytes += len << GSHIFT;
				live_blocks++;
			}
			break;
		}
		case T_SPAN: {
			const struct span *sp = span_at(&a, g);
			unsigned c = sp->cls;
			if (EVAL(e) != 0 || sp->magic != (SPAN_MAGIC ^ (uint32_t)g) || c >= NCLASS ||
			    sp->nslots != cls[c].slots || sp->nfree > sp->nslots) {
				rc = check_fail(why, why_len, "granule %llu: bad span header",
						(unsigned long long)g);
				goto out;
			}
			len = cls[c].gran;
			if (g + len > hd->top) {
				rc = check_fail(why, why_len, "granule %llu: span past top",
						(unsigned long long)g);
				goto out;
			}
			for (uint64_t i = 0; i < len; i++)
				if (a.map[g + i] != ENT(T_SPAN, i)) {
					rc = check_fail(why, why_len, "granule %llu: span entry 0x%x",
							(unsigned long long)(g + i), a.map[g + i]);
					goto out;
				}
			unsigned bits = 0;
			for (unsigned w = 0; w < 8; w++) {
				uint64_t word = sp->free[w];
				uint64_t valid = sp->nslots >= w * 64 + 64 ? ~0ull
						 : sp->nslots > w * 64 ? (1ull << (sp->nslots - w * 64)) - 1
						 : 0;
				if (word & ~valid) {
					rc = check_fail(why, why_len,
							"granule %llu: free bit past the last slot",
							(unsigned long long)g);
					goto out;
				}
				if (w < sp->hint && word) {
					rc = check_fail(why, why_len, "granule %llu: free slot below hint",
							(unsigned long long)g);
					goto out;
				}
				bits += (unsigned)__builtin_popcountll(word);
			}
			if (bits != sp->nfree) {
				rc = check_fail(why, why_len, "granule %llu: %u free bits, nfree %u",
						(unsigned long long)g, bits, sp->nfree);
				goto out;
			}
			if (a.heads[g >> 6] & (1ull << (g & 63))) {
				rc = check_fail(why, why_len, "granule %llu: heads bit on a span",
						(unsigned long long)g);
				goto out;
			}
			nspans_partial += sp->nfree > 0;
			live_blocks += (uint64_t)(sp->nslots - sp->nfree);
			live_bytes += (uint64_t)(sp->nslots - sp->nfree) * cls[c].size;
			prev_free = false;
			break;
		}
		default:
			rc = check_fail(why, why_len, "granule %llu: entry 0x%x where a run starts",
					(unsigned long long)g, e);
			goto out;
		}
		g += len;
	}
	for (g = hd->top; g < hd->ngran; g++)
		if (a.map[g]) {
			rc = check_fail(why, why_len, "granule %llu at or past top has entry 0x%x",
					(unsigned long long)g, a.map[g]);
			goto out;
		}
	uint64_t heads = 0;
	for (uint64_t l = 0; l < (hd->ngran + 63) / 64; l++)
		heads += (uint64_t)__builtin_popcountll(a.heads[l]);
	if (heads != nfree_runs) {
		rc = check_fail(why, why_len, "%llu heads bits, %llu free runs",
				(unsigned long long)heads, (unsigned long long)nfree_runs);
		goto out;
	}
	for (uint64_t i = a.p - 1 + a.p; i >= 1; i--) {
		uint32_t want;
		if (i >= a.p) {
			uint64_t leaf = i - a.p;
			want = leaf < (hd->ngran + 63) / 64 ? leaf_compute(&a, leaf) : 0;
		} else {
			uint32_t l = a.tree[2 * i], r = a.tree[2 * i + 1];
			want = l > r ? l : r;
		}
		if (a.tree[i] != want) {
			rc = check_fail(why, why_len, "tree node %llu is %u, want %u",
					(unsigned long long)i, a.tree[i], want);
			goto out;
		}
	}
	uint64_t listed = 0;
	for (unsigned c = 0; c < NCLASS; c++) {
		uint64_t prev = 0;
		for (uint64_t sg = hd->partial[c]; sg; sg = span_at(&a, sg)->next) {
			const struct span *sp;
			if (sg < hd->data_start || sg >= hd->top || a.map[sg] != ENT(T_SPAN, 0) ||
			    (sp = span_at(&a, sg))->cls != c || sp->nfree == 0 || sp->prev != prev ||
			    ++listed > nspans_partial) {
				rc = check_fail(why, why_len, "class %u: bad partial list at granule %llu",
						c, (unsigned long long)sg);
				goto out;
			}
			prev = sg;
		}
	}
	if (listed != nspans_partial) {
		rc = check_fail(why, why_len, "%llu spans with free slots, %llu listed",
				(unsigned long long)nspans_partial, (unsigned long long)listed);
		goto out;
	}
	if (live_bytes != hd->live_bytes || live_blocks != hd->live_blocks)
		rc = check_fail(why, why_len,
				"%llu live blocks of %llu bytes, counters say %llu of %llu",
				(unsigned long long)live_blocks, (unsigned long long)live_bytes,
				(unsigned long long)hd->live_blocks,
				(unsigned long long)hd->live_bytes);
out:
	unlock(h);
	return rc;
}
