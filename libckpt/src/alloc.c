/*
 * alloc.c - the in-heap allocator.
 *
 * Everything the allocator knows lives inside the heap, as granule numbers
 * or absolute addresses (the heap's base never moves), so a restored heap is
 * usable at once.  Its locks live in process memory (struct ckpt_heap): a
 * lock word inside the heap could be captured "held" by a checkpoint.
 *
 * Layout (granule = 4 KiB, whatever the heap's page size):
 *
 *   granule 0        struct alloc_hdr: identity, root, top, the caches'
 *                    class lists and counters, in-flight reallocs
 *   map              one uint32 per granule of the heap (see T_* below)
 *   heads            bitmap, one bit per granule: "a free run starts here"
 *   tree             max-tree over 64-granule blocks: the longest free run
 *                    that starts in the block (implicit binary heap)
 *   defer            bitmap, one bit per granule: freed while the engine
 *                    could not give it back (a checkpoint), so not yet
 *   mags             per cache and class up to 1 KiB, a magazine: a stack
 *                    of free slots of the cache's spans (struct mag)
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
 * Threads.  Small objects come from NCACHE caches, chosen by the CPU the
 * thread runs on (the rseq area's cpu_id: per-CPU, so no thread-local state
 * and any number of threads).  A cache is a set of spans it owns (span->owner),
 * its class lists and its magazines, all in the heap, guarded by the
 * cache's lock.  A block freed by any thread goes back to its span's owner
 * (its magazine, or the span) under the owner's lock, and a slot in a
 * magazine stays marked in its span, so nothing is held "in a cache"
 * outside the heap's own structures: a restored heap finds every block, and
 * any cache takes over (steals) a span with room from another cache's list
 * when its own is empty, so spans of caches no CPU maps to any more are
 * used again.  The global lock (h->alloc_lock) guards runs, the tree, top,
 * the root pointer and large blocks.  Lock order: at most one cache lock,
 * then the global lock; a cache only ever try-locks a second cache.
 *
 * Map entries (3-bit tag, 29-bit value):
 *   T_FREE_HEAD|len, T_FREE_TAIL|len   first / last granule of a free run
 *   T_LARGE_HEAD|len, T_LARGE_TAIL|len first / last granule of a large block
 *   T_SPAN|k                           granule k > 0 of a span
 *   T_SPAN|owner << 5                  a span's first granule (its header):
 *                                      the cache whose lock guards it, so
 *                                      that a free knows the lock to take
 *                                      (and fetches the header meanwhile)
 *   0                                  interior of a run, metadata, or >= top
 * A one-granule run has only its head entry.  Interior entries of free runs
 * and large blocks are always 0, so a stale head can never be mistaken for a
 * live block (that is what makes double frees and wild pointers harmless).
 */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* the rseq area's cpu_id (cpu_now()): glibc 2.35's __rseq_offset, on the
 * architectures where both compilers have __builtin_thread_pointer() */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35)) && \
	defined(__has_include) && (defined(__x86_64__) || defined(__aarch64__))
#if __has_include(<sys/rseq.h>)
#include <sys/rseq.h>
#define CKPT__HAVE_RSEQ 1
#endif
#endif

#define A_MAGIC 0x636f6c6c61706b63ull /* "ckpalloc" little-endian */
/* 2: live counters; 3: per-CPU caches, in-flight reallocs, defer bitmap;
 * 4: a span's first map entry names its owner; 5: per-cache magazines */
#define A_VERSION 5u

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
/* span entries: granule k of the span in the low 5 bits (spans have at most
 * 18 granules), the owner above them in the first granule's entry */
#define SPAN_K(e) (EVAL(e) & 31u)
#define SPAN_OWNER(e) (EVAL(e) >> 5)
#define SPAN_HEAD(owner) ENT(T_SPAN, (uint32_t)(owner) << 5)

/* Freed runs of at least this size are offered to the engine to give back. */
#define DISCARD_MIN ((size_t)64 << 10)

#define NCACHE CKPT__ALLOC_NCACHE
#define GLOBAL NCACHE    /* lock id of h->alloc_lock */
#define NO_LOCK (NCACHE + 1)
/* Reallocs that may be copying at once; more wait for a slot. */
#define NPENDING 32
#define PENDING_CLAIMED 1u /* a slot taken, no block recorded yet */

/* ------------------------------------------------------------ classes */

#define NCLASS 36
#define SMALL_MAX 16384u
#define SPAN_HDR 96u
#define SPAN_MAGIC 0x5350414eu /* "SPAN", xor'ed with the span's granule */
#define SLOT_WORDS 4u /* a span's slots fit 256 bits (the table's most is 250) */

/* Magazines: per cache, for each class up to 1 KiB, a stack of up to
 * MAG_CAP free slots of the cache's own spans (see "magazines" below). */
#define MAG_NCLASS 20 /* classes 0..19: 16 .. 1024 bytes */
#define MAG_CAP 30    /* slots per magazine: struct mag is four cache lines */

/*
 * 16-byte steps up to 128, then four classes per doubling.  Span sizes are
 * the smallest number of granules k for which slots = min(512, (k * 4096 -
 * SPAN_HDR) / size) loses at most 1/16 of the span to rounding and holds at
 * least 8 slots (or k >= 16); 512 is the span bitmap's capacity.  The
 * slot counts follow from that formula; changing any of it changes the
 * in-heap format (A_VERSION).  recip turns the free path's division (slot =
 * offset / size) into a multiply, exact for offsets below a span's 72 KiB:
 * a division cost as much as the rest of ckpt_free.
 */
#define CLS(size, gran, slots) {size, gran, slots, (uint32_t)((1ull << 32) / (size) + 1)}
static const struct cls {
	uint16_t size;
	uint8_t gran;   /* granules per span */
	uint16_t slots; /* objects per span */
	uint32_t recip; /* 2^32 / size + 1 */
} cls[NCLASS] = {
	CLS(16, 1, 250), CLS(32, 1, 125), CLS(48, 1, 83), CLS(64, 1, 62),
	CLS(80, 1, 50), CLS(96, 1, 41), CLS(112, 1, 35), CLS(128, 1, 31),
	CLS(160, 1, 25), CLS(192, 1, 20), CLS(224, 1, 17), CLS(256, 1, 15),
	CLS(320, 1, 12), CLS(384, 1, 10), CLS(448, 2, 18), CLS(512, 2, 15),
	CLS(640, 2, 12), CLS(768, 2, 10), CLS(896, 2, 9), CLS(1024, 4, 15),
	CLS(1280, 3, 9), CLS(1536, 4, 10), CLS(1792, 4, 9), CLS(2048, 8, 15),
	CLS(2560, 6, 9), CLS(3072, 7, 9), CLS(3584, 8, 9), CLS(4096, 16, 15),
	CLS(5120, 12, 9), CLS(6144, 14, 9), CLS(7168, 16, 9), CLS(8192, 17, 8),
	CLS(10240, 16, 6), CLS(12288, 16, 5), CLS(14336, 18, 5), CLS(16384, 17, 4),
};
#undef CLS

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

/* One per cache.  The counters are the cache's share of the live blocks,
 * modulo 2^64: a block allocated through one cache may be freed into a span
 * another owns by then, so only the sum over all caches (and the global
 * counters) means anything; that sum is exact. */
struct cache_hdr {
	/* the counters first: the same cache line as the small classes' heads */
	uint64_t live_bytes;
	uint64_t live_blocks;
	uint32_t partial[NCLASS]; /* per class: first owned span with free slots */
	uint8_t pad[192 - NCLASS * 4 - 16]; /* own cache lines */
};

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
	uint64_t map_off, heads_off, tree_off, defer_off, mag_off; /* byte offsets from base */
	uint64_t tree_p;     /* leaves in the tree (power of two) */
	uint32_t nclass;
	uint32_t ncache;
	/* Large blocks: their live counters (the caches hold the rest). */
	uint64_t live_bytes;
	uint64_t live_blocks;
	/* Reallocs between allocating the new block and freeing the old one:
	 * the new block's address (or PENDING_CLAIMED).  Written in the same
	 * critical sections as those two steps, so an image taken between
	 * them says which block the application does not know yet. */
	uint64_t pending[NPENDING];
	struct cache_hdr cache[NCACHE] __attribute__((aligned(64)));
};

struct span {
	uint32_t magic; /* SPAN_MAGIC ^ granule */
	uint16_t cls;
	uint16_t nslots;
	uint16_t nfree;
	uint16_t hint;  /* lowest w[] whose free word may have a bit set */
	uint32_t next;  /* partial list of the owner's class (granules, 0 = none) */
	uint32_t prev;
	uint32_t owner; /* the cache whose lock guards this span */
	uint32_t pad[2];
	/* per 64 slots: bit set in free: the slot is free (counted in nfree);
	 * in cached: it is in the owner's magazine.  Side by side, so that a
	 * free's check and mark of a slot below 128 (every class but 16
	 * bytes) touch only the header's first line, with magic and owner */
	struct {
		uint64_t free;
		uint64_t cached;
	} w[SLOT_WORDS];
};

/*
 * A magazine: the free slots of one class that a cache hands out and takes
 * back without touching its spans' lists, counts and hints: an allocation
 * pops the top entry, a free pushes one (the freed slot is the next one
 * handed out, while its line and its span's header are in the cache).  Only
 * when a magazine runs empty (refill: MAG_CAP / 2 slots from the class's
 * spans) or full (flush: the oldest MAG_CAP / 2 back into their spans) do
 * the spans change.  The slots stay marked in their span (cached bit), so a
 * double free, usable_size or realloc of a slot in a magazine sees a free
 * slot, and the deep check and a restored heap find every one.  A magazine
 * holds only slots of spans its cache owns, under that cache's lock: a
 * steal flushes the victim's magazine of the class first.
 */
struct mag {
	uint32_t n;     /* entries in slot[] */
	uint32_t pad;
	uint64_t live;  /* blocks of the class allocated minus freed through
			 * this cache (modulo 2^64, like cache_hdr's) */
	uint64_t slot[MAG_CAP]; /* span granule << 8 | slot index; top last */
};
_Static_assert(sizeof(struct cache_hdr) == 192, "cache header size");
_Static_assert(sizeof(struct span) == SPAN_HDR, "span header size");
_Static_assert(offsetof(struct span, w) == 32, "slot bits after the fields");
_Static_assert(sizeof(struct mag) == 256, "a magazine is four cache lines");
_Static_assert(sizeof(struct alloc_hdr) <= GSIZE, "allocator header fits a granule");
_Static_assert(offsetof(struct alloc_hdr, cache) % 64 == 0, "caches on their own lines");

/* One heap's allocator: the header and the map, which every call reads;
 * the run index's arrays (heads, tree, defer: only the global lock's paths
 * use them) are found from the header's offsets when used, so that the fast
 * paths do not pay for pointers they never follow. */
struct actx {
	ckpt_heap *h;
	uint8_t *base; /* h->base, kept here: a store into the heap could
			* alias h->base for the compiler, which would reload
			* it (two loads) for every span it looks at */
	struct alloc_hdr *hd;
	uint32_t *map;
};

static inline void ctx_init(struct actx *a, ckpt_heap *h)
{
	struct alloc_hdr *hd = (struct alloc_hdr *)(void *)h->base;
	a->h = h;
	a->base = h->base;
	a->hd = hd;
	a->map = (uint32_t *)(void *)(h->base + hd->map_off);
}

#define A_HEADS(a) ((uint64_t *)(void *)((a)->base + (a)->hd->heads_off))
#define A_TREE(a) ((uint32_t *)(void *)((a)->base + (a)->hd->tree_off))
#define A_DEFER(a) ((uint64_t *)(void *)((a)->base + (a)->hd->defer_off))
#define A_P(a) ((a)->hd->tree_p)

/* cache k's magazine of class c (< MAG_NCLASS) */
static inline struct mag *mag_at(const struct actx *a, unsigned k, unsigned c)
{
	return (struct mag *)(void *)(a->base + a->hd->mag_off) + k * MAG_NCLASS + c;
}

static inline uint8_t *gran_ptr(const struct actx *a, uint64_t g)
{
	return a->base + (g << GSHIFT);
}

static inline struct span *span_at(const struct actx *a, uint64_t g)
{
	return (struct span *)(void *)gran_ptr(a, g);
}

/* The layout every heap of this size has; format writes it, open checks it. */
struct layout {
	uint64_t ngran, map_off, heads_off, tree_off, defer_off, mag_off, tree_p, data_start;
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
	l->defer_off = l->tree_off + round_up(2 * p * 4, 64);
	/* page-aligned: a magazine never straddles two pages (one trap) */
	l->mag_off = round_up(l->defer_off + leaves * 8, GSIZE);
	l->data_start = round_up(l->mag_off + (uint64_t)NCACHE * MAG_NCLASS * sizeof(struct mag), GSIZE) >> GSHIFT;
}

/* ---------------------------------------------------- the defer bitmap */

/* Granules handed out again are no longer to be given back.  Reads first:
 * the bitmap is almost always clear, and a store could cost a trap. */
static void defer_clear(struct actx *a, uint64_t g, uint64_t n)
{
	for (uint64_t i = g; i < g + n;) {
		uint64_t w = i >> 6, lo = i & 63, cnt = 64 - lo < g + n - i ? 64 - lo : g + n - i;
		uint64_t mask = (cnt == 64 ? ~0ull : ((1ull << cnt) - 1)) << lo;
		if (A_DEFER(a)[w] & mask)
			A_DEFER(a)[w] &= ~mask;
		i += cnt;
	}
}

static void defer_set(struct actx *a, uint64_t g, uint64_t n)
{
	for (uint64_t i = g; i < g + n;) {
		uint64_t w = i >> 6, lo = i & 63, cnt = 64 - lo < g + n - i ? 64 - lo : g + n - i;
		A_DEFER(a)[w] |= (cnt == 64 ? ~0ull : ((1ull << cnt) - 1)) << lo;
		i += cnt;
	}
}

/* ---------------------------------------------------- the run max-tree */

/* Writes only when a value changes: every store may cost a write-protect
 * trap during a checkpoint. */
static void leaf_set(struct actx *a, uint64_t leaf, uint32_t v)
{
	uint64_t i = A_P(a) + leaf;
	if (A_TREE(a)[i] == v)
		return;
	A_TREE(a)[i] = v;
	for (i >>= 1; i >= 1; i >>= 1) {
		uint32_t l = A_TREE(a)[2 * i], r = A_TREE(a)[2 * i + 1];
		uint32_t m = l > r ? l : r;
		if (A_TREE(a)[i] == m)
			break;
		A_TREE(a)[i] = m;
	}
}

static uint32_t leaf_compute(const struct actx *a, uint64_t leaf)
{
	uint64_t w = A_HEADS(a)[leaf];
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
	A_HEADS(a)[g >> 6] |= 1ull << (g & 63);
	if (n > A_TREE(a)[A_P(a) + (g >> 6)])
		leaf_set(a, g >> 6, (uint32_t)n);
}

static void freerun_remove(struct actx *a, uint64_t g, uint64_t n)
{
	a->map[g] = 0;
	if (n > 1)
		a->map[g + n - 1] = 0;
	A_HEADS(a)[g >> 6] &= ~(1ull << (g & 63));
	if (n == A_TREE(a)[A_P(a) + (g >> 6)])
		leaf_set(a, g >> 6, leaf_compute(a, g >> 6));
}

/* Lowest-addressed free run of at least n granules, or 0 (granule 0 is the
 * header, never free). */
static uint64_t freerun_find(const struct actx *a, uint64_t n)
{
	if (A_TREE(a)[1] < n)
		return 0;
	uint64_t i = 1;
	while (i < A_P(a))
		i = A_TREE(a)[2 * i] >= n ? 2 * i : 2 * i + 1;
	uint64_t leaf = i - A_P(a), w = A_HEADS(a)[leaf];
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
		defer_clear(a, g, n);
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
	if (tail) {
		freerun_remove(a, start, tail);
		defer_clear(a, start, tail);
	}
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

/* Offers the whole heap pages inside [g, g+n) to the engine through the
 * heap's discard hook; false when it kept them (or, with no hook, a heap
 * without an engine, nobody takes them). */
static bool pages_discard(struct actx *a, uint64_t g, uint64_t n)
{
	ckpt_heap *h = a->h;
	size_t first = (size_t)((((g << GSHIFT) + h->page_size - 1)) >> h->page_shift);
	size_t end = (size_t)(((g + n) << GSHIFT) >> h->page_shift);
	return end <= first || (h->discard && h->discard(h, first, end - first));
}

/* A run was freed.  While a checkpoint is prepared or runs the engine keeps
 * the memory (a hole punch would lose pre-images), so the run is recorded
 * in the defer bitmap, to be given back when the checkpoint has finished
 * (ckpt__alloc_release_deferred). */
static void run_discard(struct actx *a, uint64_t g, uint64_t n)
{
	/* no hook (a bare test heap, the fork backend): memory is never given
	 * back, so nothing is deferred either */
	if ((n << GSHIFT) < DISCARD_MIN || !a->h->discard)
		return;
	if (!pages_discard(a, g, n)) {
		defer_set(a, g, n);
		a->h->alloc_deferred = true;
	}
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


/* ------------------------------------------------------------------ locks */


static inline void global_lock(ckpt_heap *h)
{
	/* A short spin first: allocator critical sections are tens of
	 * nanoseconds, far less than a futex sleep and wake-up. */
	for (int i = 0; i < 64; i++) {
		if (pthread_mutex_trylock(&h->alloc_lock) == 0)
			return;
		ckpt__cpu_relax();
	}
	pthread_mutex_lock(&h->alloc_lock);
}

static inline void global_unlock(ckpt_heap *h)
{
	pthread_mutex_unlock(&h->alloc_lock);
}

/*
 * Cache locks: a word, 0 free, 1 held.  One compare-and-swap takes it and a
 * plain release store drops it: the allocator's fast path pays for a single
 * atomic read-modify-write per call.  Nobody sleeps on the word (a futex
 * would need the unlocking store to be an exchange, to see waiters): a
 * waiter spins, then naps (ckpt__pause).  Waits are short and rare: a
 * thread takes its own CPU's cache and moves to a free one when that is
 * held (the holder may have been preempted there); only a free of a block
 * another cache owns, a steal's try-lock and the checkpoint's cut
 * (lock_all) wait on a given cache, for a critical section of tens of
 * nanoseconds.
 */
static inline bool cache_trylock(ckpt_heap *h, unsigned k)
{
	uint32_t z = 0;
	return atomic_compare_exchange_strong_explicit(&h->alloc_cache[k].word, &z, 1,
						       memory_order_acquire, memory_order_relaxed);
}

static void cache_lock_slow(ckpt_heap *h, unsigned k)
{
	_Atomic uint32_t *w = &h->alloc_cache[k].word;
	unsigned spins = 0;
	/* spins, then sleeps: a holder that was preempted gets the CPU back
	 * whatever the two threads' priorities */
	while (atomic_load_explicit(w, memory_order_relaxed) != 0 || !cache_trylock(h, k))
		ckpt__pause(&spins);
}

static inline void cache_lock(ckpt_heap *h, unsigned k)
{
	if (!cache_trylock(h, k))
		cache_lock_slow(h, k);
}

static inline void cache_unlock(ckpt_heap *h, unsigned k)
{
	atomic_store_explicit(&h->alloc_cache[k].word, 0, memory_order_release);
}

static inline void lock_id(ckpt_heap *h, unsigned id)
{
	if (id == GLOBAL)
		global_lock(h);
	else
		cache_lock(h, id);
}

static inline void unlock_id(ckpt_heap *h, unsigned id)
{
	if (id == GLOBAL)
		global_unlock(h);
	else if (id < NCACHE)
		cache_unlock(h, id);
}

/*
 * The CPU we run on, from the rseq area glibc (2.35 and later) registers for
 * every thread: one load at a fixed offset from the thread pointer, where
 * sched_getcpu() is a call into libc that reads the same field.  Without
 * rseq (glibc.pthread.rseq=0, an older libc) the field reads as a negative
 * "not registered" value and sched_getcpu() answers.  Only a hint: the
 * thread may migrate right after, the cache's lock is what makes it safe.
 */
static inline unsigned cpu_now(void)
{
#ifdef CKPT__HAVE_RSEQ
	int32_t cpu = (int32_t)__atomic_load_n(
		(const uint32_t *)(const void *)((const char *)__builtin_thread_pointer() +
						 __rseq_offset + offsetof(struct rseq, cpu_id)),
		__ATOMIC_RELAXED);
	if (CKPT__LIKELY(cpu >= 0))
		return (unsigned)cpu;
#endif
	return (unsigned)sched_getcpu();
}

static __attribute__((noinline)) unsigned cache_pick_slow(ckpt_heap *h, unsigned k)
{
	for (unsigned i = 1; i < NCACHE; i++) {
		unsigned j = (k + i) & (NCACHE - 1);
		if (cache_trylock(h, j))
			return j;
	}
	cache_lock_slow(h, k);
	return k;
}

/* The cache of the CPU we run on, or the next free one if another thread
 * holds it (it may have been preempted there). */
static inline unsigned cache_pick_lock(ckpt_heap *h)
{
	unsigned k = cpu_now() & (NCACHE - 1);
	if (CKPT__LIKELY(cache_trylock(h, k)))
		return k;
	return cache_pick_slow(h, k);
}

/* Every lock, caches in index order then the global one: nobody else ever
 * waits for a second cache lock, so this cannot deadlock. */
static void lock_all(ckpt_heap *h)
{
	for (unsigned k = 0; k < NCACHE; k++)
		cache_lock(h, k);
	global_lock(h);
}

static void unlock_all(ckpt_heap *h)
{
	global_unlock(h);
	for (unsigned k = NCACHE; k-- > 0;)
		cache_unlock(h, k);
}

/* ------------------------------------------------------------------ spans */

static void partial_push(struct actx *a, uint32_t *head, uint64_t g)
{
	struct span *s = span_at(a, g);
	s->prev = 0;
	s->next = *head;
	if (*head)
		span_at(a, *head)->prev = (uint32_t)g;
	__atomic_store_n(head, (uint32_t)g, __ATOMIC_RELAXED); /* peeked by span_steal */
}

static void partial_unlink(struct actx *a, uint32_t *head, uint64_t g)
{
	struct span *s = span_at(a, g);
	if (s->prev)
		span_at(a, s->prev)->next = s->next;
	else
		__atomic_store_n(head, s->next, __ATOMIC_RELAXED);
	if (s->next)
		span_at(a, s->next)->prev = s->prev;
	s->next = s->prev = 0;
}

/* A new span of class c for cache k, from a free run or (grow) from top
 * too.  Cache k's lock held; takes the global one for the run. */
static uint64_t span_new(struct actx *a, unsigned k, unsigned c, bool grow)
{
	uint64_t zero_from, n = cls[c].gran, g = 0;
	global_lock(a->h);
	/* the tree's root is the longest free run: without one that fits,
	 * run_alloc would take granules at top */
	if (grow || A_TREE(a)[1] >= n)
		g = run_alloc(a, n, &zero_from);
	if (g)
		for (uint64_t i = 0; i < n; i++)
			a->map[g + i] = i ? ENT(T_SPAN, i) : SPAN_HEAD(k);
	global_unlock(a->h);
	if (!g)
		return 0;
	struct span *s = span_at(a, g);
	unsigned slots = cls[c].slots;
	s->owner = k;
	s->cls = (uint16_t)c;
	s->nslots = (uint16_t)slots;
	s->nfree = (uint16_t)slots;
	s->hint = 0;
	for (unsigned w = 0; w < SLOT_WORDS; w++) {
		unsigned lo = w * 64;
		s->w[w].free = slots >= lo + 64 ? ~0ull : slots > lo ? (1ull << (slots - lo)) - 1 : 0;
		s->w[w].cached = 0; /* the run may hold old data */
	}
	/* magic last: a wild free that finds it finds a complete header */
	__atomic_store_n(&s->magic, SPAN_MAGIC ^ (uint32_t)g, __ATOMIC_RELEASE);
	partial_push(a, &a->hd->cache[k].partial[c], g);
	return g;
}

/* An empty span goes back to the runs.  Its owner's lock held. */
static void span_release(struct actx *a, unsigned k, unsigned c, uint64_t g)
{
	uint64_t n = cls[c].gran;
	struct span *s = span_at(a, g);
	partial_unlink(a, &a->hd->cache[k].partial[c], g);
	__atomic_store_n(&s->magic, 0, __ATOMIC_RELAXED);
	s->owner = UINT32_MAX;
	global_lock(a->h);
	for (uint64_t i = 0; i < n; i++)
		a->map[g + i] = 0;
	run_free(a, g, n);
	run_discard(a, g, n);
	global_unlock(a->h);
}

static uint32_t mag_flush(struct actx *a, unsigned k, unsigned c, struct mag *m, uint32_t cnt);

/* Takes over a span with room of class c from another cache (its CPU is
 * idle, or no CPU maps to it any more, e.g. after a restore on a smaller
 * machine).  Only try-locks: we hold cache k's lock. */
static uint64_t span_steal(struct actx *a, unsigned k, unsigned c)
{
	for (unsigned i = 1; i < NCACHE; i++) {
		unsigned j = (k + i) & (NCACHE - 1);
		uint32_t *head = &a->hd->cache[j].partial[c];
		struct mag *m = c < MAG_NCLASS ? mag_at(a, j, c) : NULL;
		if ((!__atomic_load_n(head, __ATOMIC_RELAXED) &&
		     !(m && __atomic_load_n(&m->n, __ATOMIC_RELAXED))) ||
		    !cache_trylock(a->h, j))
			continue;
		/* the victim's free slots of the class all go back to its
		 * spans: a magazine holds only slots of its own cache's
		 * spans, and the room they make is what we are looking for */
		if (m && m->n)
			mag_flush(a, j, c, m, m->n);
		uint64_t g = *head;
		if (g) {
			partial_unlink(a, head, g);
			/* under both owners' locks; frees read the map entry
			 * without them, and check the header under the lock */
			span_at(a, g)->owner = k;
			__atomic_store_n(&a->map[g], SPAN_HEAD(k), __ATOMIC_RELAXED);
			partial_push(a, &a->hd->cache[k].partial[c], g);
		}
		cache_unlock(a->h, j);
		if (g)
			return g;
	}
	return 0;
}

/*
 * Cache k has no span of class c with room: make one from a free run if
 * one fits (the heap does not grow), else take one over from another
 * cache, else make one at top.  0 when the heap is full.  Cache k's lock
 * held.  A free run comes before a steal because taking a span from a
 * cache in use costs both sides: its live blocks' frees then take our
 * lock from the other CPU, and its magazine of the class is flushed.  With
 * two threads running at once allocbench stole once per ~2000 operations
 * and spent ~25% more CPU time per operation than with one; a steal still
 * keeps the heap from growing while other caches have room (a cache whose
 * CPU went idle, a heap restored on a smaller machine).
 */
static __attribute__((noinline)) uint64_t span_refill(struct actx *a, unsigned k, unsigned c)
{
	uint64_t g = span_new(a, k, c, false);
	if (!g)
		g = span_steal(a, k, c);
	return g ? g : span_new(a, k, c, true);
}

/* Takes the lowest free slot of span g (which has one), on the list at
 * head; returns its index.  The owner's lock held. */
static inline unsigned span_take(struct actx *a, uint32_t *head, uint64_t g)
{
	struct span *s = span_at(a, g);
	unsigned w = s->hint;
	while (w < SLOT_WORDS - 1 && !s->w[w].free)
		w++;
	unsigned b = (unsigned)__builtin_ctzll(s->w[w].free);
	s->w[w].free &= ~(1ull << b);
	s->hint = (uint16_t)w;
	if (--s->nfree == 0)
		partial_unlink(a, head, g);
	return w * 64 + b;
}

/* Slot idx of span g (class c, owned by cache k) is free again: the span
 * goes onto its class list when this makes room in it, and back to the
 * runs when it is empty (unless it is the cache's only span of the class
 * with room: keeping one avoids creating and releasing a span on
 * alternating calls).  Cache k's lock held. */
static inline void span_put(struct actx *a, unsigned k, unsigned c, uint64_t g, unsigned idx)
{
	struct cache_hdr *ch = &a->hd->cache[k];
	struct span *s = span_at(a, g);
	unsigned w = idx >> 6;
	s->w[w].free |= 1ull << (idx & 63);
	if (w < s->hint)
		s->hint = (uint16_t)w;
	if (s->nfree++ == 0)
		partial_push(a, &ch->partial[c], g);
	else if (s->nfree == s->nslots && !(ch->partial[c] == g && s->next == 0))
		span_release(a, k, c, g);
}

/* A class without a magazine (over 1 KiB): a slot straight from a span.
 * Cache k's lock held. */
static __attribute__((noinline)) void *span_alloc(struct actx *a, unsigned k, unsigned c)
{
	struct cache_hdr *ch = &a->hd->cache[k];
	uint64_t g = ch->partial[c];
	if (!g && !(g = span_refill(a, k, c)))
		return NULL;
	unsigned idx = span_take(a, &ch->partial[c], g);
	ch->live_bytes += cls[c].size;
	ch->live_blocks++;
	return gran_ptr(a, g) + SPAN_HDR + (size_t)idx * cls[c].size;
}

/* ------------------------------------------------------------ magazines */

/* The oldest cnt entries of cache k's magazine m (class c) go back into
 * their spans (the newest stay: their lines are the likeliest in the
 * cache).  Returns the entries left.  Cache k's lock held. */
static __attribute__((noinline)) uint32_t mag_flush(struct actx *a, unsigned k, unsigned c,
						    struct mag *m, uint32_t cnt)
{
	uint32_t n = m->n;
	for (uint32_t i = 0; i < cnt; i++) {
		uint64_t g = m->slot[i] >> 8;
		unsigned idx = (unsigned)(m->slot[i] & 255);
		span_at(a, g)->w[idx >> 6].cached &= ~(1ull << (idx & 63));
		span_put(a, k, c, g, idx);
	}
	memmove(m->slot, m->slot + cnt, (n - cnt) * sizeof(m->slot[0]));
	__atomic_store_n(&m->n, n - cnt, __ATOMIC_RELAXED); /* peeked by span_steal */
	return n - cnt;
}

/* Cache k's magazine m of class c is empty: fill half of it from the
 * cache's spans, lowest slots on top (handed out first, so the extent
 * stays small).  Takes a span from elsewhere only while nothing was found
 * (so a refill never grows the heap for slots nobody asked for).  Returns
 * the entries, 0 when the heap is full.  Cache k's lock held. */
static __attribute__((noinline)) uint32_t mag_refill(struct actx *a, unsigned k, unsigned c,
						     struct mag *m)
{
	uint32_t *head = &a->hd->cache[k].partial[c];
	uint64_t got[MAG_CAP / 2];
	uint32_t n = 0;
	while (n < MAG_CAP / 2) {
		uint64_t g = *head;
		if (!g && (n || !(g = span_refill(a, k, c))))
			break;
		unsigned idx = span_take(a, head, g);
		span_at(a, g)->w[idx >> 6].cached |= 1ull << (idx & 63);
		got[n++] = g << 8 | idx;
	}
	for (uint32_t i = 0; i < n; i++)
		m->slot[i] = got[n - 1 - i];
	__atomic_store_n(&m->n, n, __ATOMIC_RELAXED);
	return n;
}

/* An allocation of class c (< MAG_NCLASS) from cache k's magazine.  Cache
 * k's lock held. */
static inline void *mag_alloc(struct actx *a, unsigned k, unsigned c)
{
	struct mag *m = mag_at(a, k, c);
	uint32_t n = m->n;
	if (CKPT__UNLIKELY(n == 0) && !(n = mag_refill(a, k, c, m)))
		return NULL;
	uint64_t e = m->slot[--n];
	__atomic_store_n(&m->n, n, __ATOMIC_RELAXED);
	m->live++;
	uint64_t g = e >> 8;
	unsigned idx = (unsigned)(e & 255);
	span_at(a, g)->w[idx >> 6].cached &= ~(1ull << (idx & 63));
	return gran_ptr(a, g) + SPAN_HDR + (size_t)idx * cls[c].size;
}

/* Cache k's lock held.  Inlined into the allocation paths, the rest not. */
static inline void *small_alloc(struct actx *a, unsigned k, unsigned c)
{
	return CKPT__LIKELY(c < MAG_NCLASS) ? mag_alloc(a, k, c) : span_alloc(a, k, c);
}

/* ----------------------------------------------------------- block lookup */

struct block {
	int kind;       /* 0 invalid, 1 small, 2 large */
	uint64_t g;     /* span or run granule */
	uint64_t n;     /* run granules (large) */
	unsigned c;     /* class (small) */
	unsigned idx;   /* slot (small) */
	unsigned owner; /* span's cache (small) */
	size_t usable;
};

/*
 * The lock that guards the block at ptr, as far as it can be told without
 * holding it: GLOBAL for a large block, the span's owner (from the map, not
 * the span's header, which is likely not in the cache) for a small one,
 * or NO_LOCK when ptr cannot be a block (outside the heap, misaligned,
 * metadata, a free run).  Only a guess: block_check() decides under the
 * lock.  Sets b->g (the block's or its span's first granule).
 */
static inline unsigned block_guard(const struct actx *a, const void *ptr, struct block *b)
{
	uint64_t off = (uint64_t)((uintptr_t)ptr - (uintptr_t)a->base);
	b->kind = 0;
	if (off >= a->h->size || (off & 15))
		return NO_LOCK;
	uint64_t g = off >> GSHIFT;
	if (g < a->hd->data_start)
		return NO_LOCK;
	uint32_t e = __atomic_load_n(&a->map[g], __ATOMIC_RELAXED);
	b->g = g;
	if (ETAG(e) == T_LARGE_HEAD)
		return GLOBAL;
	if (ETAG(e) != T_SPAN || SPAN_K(e) > g)
		return NO_LOCK;
	b->g = g - SPAN_K(e);
	uint32_t first = SPAN_K(e) ? __atomic_load_n(&a->map[b->g], __ATOMIC_RELAXED) : e;
	if (ETAG(first) != T_SPAN || SPAN_K(first) != 0 || SPAN_OWNER(first) >= NCACHE)
		return NO_LOCK;
	/* the header's line (magic, owner, the free and cached bits of the
	 * first 128 slots: all of them but in the 16-byte class) comes in
	 * while the lock is taken: a
	 * locked instruction waits for earlier loads, not for a prefetch */
	__builtin_prefetch(span_at(a, b->g), 1);
	return SPAN_OWNER(first);
}

/*
 * Whether ptr is a live block guarded by lock id (held, or every lock held),
 * filling in *b.  Everything checked here changes only under that lock: a
 * span's header (magic, owner, class, free bits) under its owner's, a large
 * block's map entry under the global one.  A freed, interior or wild
 * pointer fails (that is what makes double frees harmless).
 */
static inline __attribute__((always_inline)) bool block_check(const struct actx *a, const void *ptr,
							     unsigned id, struct block *b)
{
	uint64_t off = (uint64_t)((uintptr_t)ptr - (uintptr_t)a->base);
	if (id == GLOBAL) {
		uint32_t e = a->map[b->g];
		if (ETAG(e) != T_LARGE_HEAD || (off & (GSIZE - 1)))
			return false;
		b->kind = 2;
		b->n = EVAL(e);
		b->usable = (size_t)b->n << GSHIFT;
		return true;
	}
	const struct span *s = span_at(a, b->g);
	uint64_t rel = off - (b->g << GSHIFT) - SPAN_HDR; /* wraps when inside the header */
	unsigned c = s->cls;
	if (__atomic_load_n(&s->magic, __ATOMIC_ACQUIRE) != (SPAN_MAGIC ^ (uint32_t)b->g) ||
	    s->owner != id || c >= NCLASS || rel >= ((uint64_t)cls[c].gran << GSHIFT))
		return false;
	uint64_t idx = (rel * cls[c].recip) >> 32;
	if (idx * cls[c].size != rel || idx >= s->nslots ||
	    ((s->w[idx >> 6].free | s->w[idx >> 6].cached) & (1ull << (idx & 63))))
		return false; /* interior, or already free (in its span or a magazine) */
	b->kind = 1;
	b->c = c;
	b->idx = (unsigned)idx;
	b->owner = id;
	b->usable = cls[c].size;
	return true;
}

/* block_check() with the lock block_guard() names, for callers that hold
 * every lock (or are alone with the heap: opening it). */
static void block_of(const struct actx *a, const void *ptr, struct block *b)
{
	unsigned id = block_guard(a, ptr, b);
	if (id == NO_LOCK || !block_check(a, ptr, id, b))
		b->kind = 0;
}

/*
 * Finds the block at ptr and returns with the lock that guards it held
 * (its id), or NO_LOCK and kind 0.  The lock is guessed without holding it
 * and the block checked under it; a steal that moved the span to another
 * cache in between makes it guess again.
 */
static inline __attribute__((always_inline)) unsigned lock_block(const struct actx *a, const void *ptr, struct block *b)
{
	for (;;) {
		unsigned id = block_guard(a, ptr, b);
		if (id == NO_LOCK)
			return NO_LOCK;
		lock_id(a->h, id);
		if (block_check(a, ptr, id, b))
			return id;
		bool moved = id != GLOBAL && span_at(a, b->g)->owner != id;
		unlock_id(a->h, id);
		b->kind = 0;
		if (!moved)
			return NO_LOCK;
	}
}

/* The global lock held. */
static __attribute__((noinline)) void large_free(struct actx *a, uint64_t g, uint64_t n)
{
	a->hd->live_bytes -= n << GSHIFT;
	a->hd->live_blocks--;
	large_unmark(a, g, n);
	run_free(a, g, n);
	run_discard(a, g, n);
}

/* Frees a block found by lock_block(), with its lock held. */
static inline __attribute__((always_inline)) void block_free(struct actx *a,
							     const struct block *b)
{
	if (b->kind == 2) {
		large_free(a, b->g, b->n); /* by value: b stays in registers */
		return;
	}
	/* This slot is likely the class's next allocation (the top of the
	 * magazine), and the caller will write it: start fetching its line
	 * (a prefetch never faults nor writes, so the block stays untouched).
	 * Pays off when the block is cold, as after a cache's eviction of old
	 * entries. */
	__builtin_prefetch(gran_ptr(a, b->g) + SPAN_HDR + (size_t)b->idx * b->usable, 1);
	uint64_t bit = 1ull << (b->idx & 63);
	if (CKPT__UNLIKELY(b->c >= MAG_NCLASS)) {
		struct cache_hdr *ch = &a->hd->cache[b->owner];
		ch->live_bytes -= b->usable;
		ch->live_blocks--;
		span_put(a, b->owner, b->c, b->g, b->idx);
		return;
	}
	struct mag *m = mag_at(a, b->owner, b->c);
	uint32_t n = m->n;
	if (CKPT__UNLIKELY(n == MAG_CAP))
		n = mag_flush(a, b->owner, b->c, m, MAG_CAP / 2);
	span_at(a, b->g)->w[b->idx >> 6].cached |= bit;
	m->slot[n] = b->g << 8 | b->idx;
	__atomic_store_n(&m->n, n + 1, __ATOMIC_RELAXED);
	m->live--;
}

/* ------------------------------------------------------------ allocation */

/* A large block of n granules; the global lock held.  *zero_from: from
 * this address on, the block is known to be zero. */
static void *large_alloc(struct actx *a, uint64_t n, uint8_t **zero_from)
{
	uint64_t zg;
	uint64_t g = run_alloc(a, n, &zg);
	if (!g)
		return NULL;
	large_mark(a, g, n);
	a->hd->live_bytes += n << GSHIFT;
	a->hd->live_blocks++;
	*zero_from = gran_ptr(a, zg);
	return gran_ptr(a, g);
}

/*
 * Allocates @size bytes, taking and dropping the lock it needs.  If @slot
 * is not NULL, the block's address is stored there in the same critical
 * section (an in-flight realloc's record).  *zero_from as large_alloc's.
 */
static inline __attribute__((always_inline)) void *alloc_any(struct actx *a, size_t size,
							      uint8_t **zero_from, uint64_t *slot)
{
	ckpt_heap *h = a->h;
	void *p;
	if (CKPT__LIKELY(size <= SMALL_MAX)) {
		unsigned k = cache_pick_lock(h);
		p = small_alloc(a, k, size_class(size));
		if (p && slot)
			__atomic_store_n(slot, (uint64_t)(uintptr_t)p, __ATOMIC_RELAXED);
		cache_unlock(h, k);
		*zero_from = NULL;
		return p;
	}
	if (size > h->size)
		return NULL;
	global_lock(h);
	p = large_alloc(a, (size + GSIZE - 1) >> GSHIFT, zero_from);
	if (p && slot)
		__atomic_store_n(slot, (uint64_t)(uintptr_t)p, __ATOMIC_RELAXED);
	global_unlock(h);
	return p;
}

CKPT_API void *ckpt_alloc(ckpt_heap *heap, size_t size)
{
	struct actx a;
	uint8_t *zf;
	if (!heap) {
		errno = EINVAL;
		return NULL;
	}
	ctx_init(&a, heap);
	void *p = alloc_any(&a, size, &zf, NULL);
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
	ctx_init(&a, heap);
	uint8_t *p = alloc_any(&a, total, &zf, NULL);
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
	ctx_init(&a, heap);
	unsigned id = lock_block(&a, ptr, &b);
	if (b.kind)
		block_free(&a, &b);
	unlock_id(heap, id);
}

CKPT_API size_t ckpt_usable_size(ckpt_heap *heap, const void *ptr)
{
	struct actx a;
	struct block b;
	if (!heap || !ptr)
		return 0;
	ctx_init(&a, heap);
	unlock_id(heap, lock_block(&a, ptr, &b));
	return b.kind ? b.usable : 0;
}

/* ----------------------------------------------------- aligned allocation */

/* A run of n granules whose address is a multiple of align (> GSIZE): takes
 * n + align/GSIZE - 1 granules and gives back the head and tail around the
 * aligned part.  The global lock held. */
static void *large_alloc_aligned(struct actx *a, uint64_t n, size_t align)
{
	uint64_t ag = align >> GSHIFT, extra = ag - 1, zg;
	if (n + extra > VAL_MAX)
		return NULL;
	uint64_t g = run_alloc(a, n + extra, &zg);
	if (!g)
		return NULL;
	uint64_t abs_g = ((uint64_t)(uintptr_t)a->h->base >> GSHIFT) + g;
	uint64_t lead = (ag - (abs_g & (ag - 1))) & (ag - 1);
	uint64_t trail = extra - lead;
	if (lead)
		run_free(a, g, lead);
	if (trail && g + lead + n >= zg && g + n + extra == a->hd->top)
		a->hd->top = g + lead + n; /* never handed out: stays past top */
	else if (trail)
		run_free(a, g + lead + n, trail);
	large_mark(a, g + lead, n);
	a->hd->live_bytes += n << GSHIFT;
	a->hd->live_blocks++;
	return gran_ptr(a, g + lead);
}

/*
 * Small classes whose slots are all aligned: slot addresses are span + 96
 * + i * size, so a class serves alignment 32 when its size is a multiple
 * of 32 (96 is); 64 and more need a run (granule-aligned, 4 KiB).
 */
CKPT_API void *ckpt_aligned_alloc(ckpt_heap *heap, size_t alignment, size_t size)
{
	struct actx a;
	uint8_t *zf;
	if (!heap || alignment == 0 || (alignment & (alignment - 1))) {
		errno = EINVAL;
		return NULL;
	}
	if (alignment <= 16)
		return ckpt_alloc(heap, size);
	if (alignment > heap->size || size > heap->size) {
		errno = ENOMEM;
		return NULL;
	}
	ctx_init(&a, heap);
	void *p = NULL;
	if (alignment == 32 && size <= SMALL_MAX) {
		unsigned c = size_class(size ? size : 1);
		while (cls[c].size % 32)
			c++; /* 48 -> 64, 80 -> 96, 112 -> 128: one step at most */
		p = alloc_any(&a, cls[c].size, &zf, NULL);
	} else {
		uint64_t n = (size + GSIZE - 1) >> GSHIFT;
		if (n == 0)
			n = 1;
		global_lock(heap);
		p = alignment <= GSIZE ? large_alloc(&a, n, &zf) : large_alloc_aligned(&a, n, alignment);
		global_unlock(heap);
	}
	if (!p)
		errno = ENOMEM;
	return p;
}

/* ---------------------------------------------------------------- realloc */

/* Resizes a large block in place; 0 on success, -1 when it cannot.  The
 * global lock held. */
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
			defer_clear(a, next, need);
		} else if (next + l == top && g + nn <= a->hd->ngran) {
			freerun_remove(a, next, l);
			defer_clear(a, next, l);
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

/* Takes an in-flight realloc slot (lock-free: a slot holds 0 or an address
 * only inside critical sections, PENDING_CLAIMED outside them).  Waits
 * while NPENDING reallocs are copying. */
static uint64_t *pending_claim(struct actx *a)
{
	for (;;) {
		for (unsigned i = 0; i < NPENDING; i++) {
			uint64_t z = 0;
			if (__atomic_load_n(&a->hd->pending[i], __ATOMIC_RELAXED) == 0 &&
			    __atomic_compare_exchange_n(&a->hd->pending[i], &z, PENDING_CLAIMED, false,
							__ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
				return &a->hd->pending[i];
		}
		sched_yield();
	}
}

/*
 * Moves the block to a new one of @size.  The copy runs without any lock
 * (a large block could hold other threads, and a checkpoint's pause, up for
 * milliseconds), so a checkpoint may cut between allocating the new block
 * and freeing the old one: the new block is recorded in an in-heap slot in
 * the same critical section that allocates it, and the record is cleared in
 * the one that frees the old block.  An image cut in between holds the
 * record, and opening it frees the block the application never saw.
 */
static void *realloc_move(struct actx *a, void *ptr, size_t old_usable, size_t size)
{
	uint8_t *zf;
	struct block b;
	uint64_t *slot = pending_claim(a);
	void *q = alloc_any(a, size, &zf, slot);
	if (!q) {
		__atomic_store_n(slot, 0, __ATOMIC_RELEASE);
		errno = ENOMEM;
		return NULL;
	}
	memcpy(q, ptr, size < old_usable ? size : old_usable);
	/* ptr is still the same live block: only the caller may free or resize it */
	unsigned id = lock_block(a, ptr, &b);
	if (b.kind)
		block_free(a, &b);
	__atomic_store_n(slot, 0, __ATOMIC_RELEASE);
	unlock_id(a->h, id);
	return q;
}

CKPT_API void *ckpt_realloc(ckpt_heap *heap, void *ptr, size_t size)
{
	struct actx a;
	struct block b;
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
	ctx_init(&a, heap);
	unsigned id = lock_block(&a, ptr, &b);
	if (!b.kind) {
		errno = EINVAL;
		return NULL;
	}
	if (size > heap->size) {
		unlock_id(heap, id);
		errno = ENOMEM;
		return NULL;
	}
	bool in_place = (b.kind == 1 && size <= b.usable && (size > b.usable / 2 || b.c == 0)) ||
			(b.kind == 2 && size > SMALL_MAX && large_resize(&a, &b, size) == 0);
	unlock_id(heap, id);
	if (in_place)
		return ptr;
	return realloc_move(&a, ptr, b.usable, size);
}

CKPT_API int ckpt_root_set(ckpt_heap *heap, void *ptr)
{
	if (!heap || (ptr && !ckpt__in_heap(heap, ptr)))
		return -EINVAL;
	global_lock(heap);
	((struct alloc_hdr *)(void *)heap->base)->root = (uint64_t)(uintptr_t)ptr;
	global_unlock(heap);
	return 0;
}

CKPT_API void *ckpt_root_get(ckpt_heap *heap)
{
	if (!heap)
		return NULL;
	global_lock(heap);
	void *p = (void *)(uintptr_t)((struct alloc_hdr *)(void *)heap->base)->root;
	global_unlock(heap);
	return p;
}

/* ------------------------------------------------- the engine's interface */

size_t ckpt__alloc_extent_pages(ckpt_heap *h)
{
	const struct alloc_hdr *hd = (const struct alloc_hdr *)(void *)h->base;
	uint64_t bytes = hd->top << GSHIFT;
	return (size_t)((bytes + h->page_size - 1) >> h->page_shift);
}

/*
 * The checkpoint's cut.  Costs NCACHE + 1 uncontended lock operations when
 * no allocator call is in flight (17 compare-and-swaps, 0.3 us measured),
 * plus waiting out the calls that are: each is a short critical section (a
 * copy of realloc never runs under a lock).
 */
void ckpt__alloc_quiesce(ckpt_heap *h)
{
	lock_all(h);
}

void ckpt__alloc_resume(ckpt_heap *h)
{
	unlock_all(h);
}

/* Gives back, through the engine, the whole pages of every run the engine
 * kept that is still free.  The global lock held: no run can be handed out
 * meanwhile.  O(heap / 256 KiB) word reads when anything was deferred. */
void ckpt__alloc_release_deferred(ckpt_heap *h)
{
	struct actx a;
	global_lock(h);
	if (!h->alloc_deferred) {
		global_unlock(h);
		return;
	}
	h->alloc_deferred = false;
	ctx_init(&a, h);
	uint64_t words = (a.hd->ngran + 63) / 64, start = 0;
	bool in = false;
	for (uint64_t w = 0; w <= words; w++) {
		uint64_t bits = w < words ? A_DEFER(&a)[w] : 0;
		if (!in && bits == 0)
			continue;
		if (in && bits == ~0ull)
			continue;
		for (unsigned i = 0; i < 64; i++) {
			bool set = (bits >> i) & 1;
			if (set && !in) {
				start = w * 64 + i;
				in = true;
			} else if (!set && in) {
				pages_discard(&a, start, w * 64 + i - start);
				in = false;
			}
		}
		if (bits)
			A_DEFER(&a)[w] = 0;
	}
	global_unlock(h);
}

CKPT_API int ckpt_alloc_stats(ckpt_heap *heap, struct ckpt_alloc_stats *st)
{
	struct ckpt_alloc_stats out;
	if (!heap || !st || st->struct_size == 0)
		return -EINVAL;
	memset(&out, 0, sizeof(out));
	out.struct_size = sizeof(out);
	/* every lock: the sum is exact only with no call in flight */
	lock_all(heap);
	const struct alloc_hdr *hd = (const struct alloc_hdr *)(void *)heap->base;
	out.live_bytes = hd->live_bytes;
	out.live_blocks = hd->live_blocks;
	const struct mag *mags = (const struct mag *)(const void *)(heap->base + hd->mag_off);
	for (unsigned k = 0; k < NCACHE; k++) {
		out.live_bytes += hd->cache[k].live_bytes;
		out.live_blocks += hd->cache[k].live_blocks;
		for (unsigned c = 0; c < MAG_NCLASS; c++) {
			out.live_bytes += mags[k * MAG_NCLASS + c].live * cls[c].size;
			out.live_blocks += mags[k * MAG_NCLASS + c].live;
		}
	}
	out.extent_bytes = (uint64_t)ckpt__alloc_extent_pages(heap) << heap->page_shift;
	unlock_all(heap);
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
	global_lock(h);
	size_t pages = ckpt__alloc_extent_pages(h);
	global_unlock(h);
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
	for (unsigned c = 0; c < NCLASS; c++)
		if (cls[c].slots > SLOT_WORDS * 64)
			return -EINVAL; /* a table edited past the span bits (and the
					 * magazines' 8-bit slot index) */
	struct alloc_hdr *hd = (struct alloc_hdr *)(void *)h->base;
	/* The heap is fresh and all zero: only the header's identity is
	 * written; the caches, the map, the bitmaps and the tree start out
	 * correct as zeroes. */
	hd->version = A_VERSION;
	hd->hdr_size = sizeof(*hd);
	hd->page_size = h->page_size;
	hd->heap_size = h->size;
	hd->base = (uint64_t)(uintptr_t)h->base;
	hd->ngran = l.ngran;
	hd->top = l.data_start;
	hd->data_start = l.data_start;
	hd->map_off = l.map_off;
	hd->heads_off = l.heads_off;
	hd->tree_off = l.tree_off;
	hd->defer_off = l.defer_off;
	hd->mag_off = l.mag_off;
	hd->tree_p = l.tree_p;
	hd->nclass = NCLASS;
	hd->ncache = NCACHE;
	/* magic last: a header with the magic is a complete header */
	__atomic_store_n(&hd->magic, A_MAGIC, __ATOMIC_RELEASE);
	return 0;
}

/* Entry e of cache k's magazine of class c names a slot of a span that
 * cache owns, of that class, marked cached.  The header is valid. */
static bool mag_entry_ok(const struct actx *a, unsigned k, unsigned c, uint64_t e)
{
	uint64_t g = e >> 8;
	unsigned idx = (unsigned)(e & 255);
	if (g < a->hd->data_start || g >= a->hd->top || a->map[g] != SPAN_HEAD(k))
		return false;
	const struct span *s = span_at(a, g);
	return s->magic == (SPAN_MAGIC ^ (uint32_t)g) && s->cls == c && s->owner == k &&
	       idx < s->nslots && g + cls[c].gran <= a->hd->top &&
	       (s->w[idx >> 6].cached & (1ull << (idx & 63)));
}

/* Every magazine: a count within bounds, entries that name distinct
 * cached slots of the cache's spans of the class.  *total (if not NULL)
 * counts the entries.  Returns 0 or CKPT_E_CORRUPT (with why). */
static int mags_valid(const struct actx *a, uint64_t *total, char *why, size_t why_len)
{
	uint64_t sum = 0;
	for (unsigned k = 0; k < NCACHE; k++)
		for (unsigned c = 0; c < MAG_NCLASS; c++) {
			const struct mag *m = mag_at(a, k, c);
			if (m->n > MAG_CAP)
				return ckpt__errf(why, why_len, CKPT_E_CORRUPT, "cache %u class %u: magazine of %u",
						  k, c, m->n);
			for (uint32_t i = 0; i < m->n; i++) {
				bool dup = false;
				for (uint32_t j = 0; j < i; j++)
					dup |= m->slot[j] == m->slot[i];
				if (dup || !mag_entry_ok(a, k, c, m->slot[i]))
					return ckpt__errf(why, why_len, CKPT_E_CORRUPT,
							  "cache %u class %u: magazine entry %u (%#llx) is %s",
							  k, c, i, (unsigned long long)m->slot[i],
							  dup ? "a duplicate" : "no cached slot of the cache's");
			}
			sum += m->n;
		}
	if (total)
		*total = sum;
	return 0;
}

/* The header, the layout and every list head (followed on the next
 * allocation: a damaged image must fail here, not in the allocator). */
static int header_valid(ckpt_heap *h)
{
	struct layout l;
	if (!h || !h->base || h->size < GSIZE)
		return CKPT_E_CORRUPT;
	const struct alloc_hdr *hd = (const struct alloc_hdr *)(void *)h->base;
	/* a heap from a library with another in-heap format: not damage, and
	 * the caller must be told so (its image is intact) */
	if (hd->magic == A_MAGIC && hd->version != A_VERSION)
		return CKPT_E_VERSION;
	if (hd->magic != A_MAGIC || hd->hdr_size != sizeof(*hd) ||
	    hd->page_size != h->page_size || hd->heap_size != h->size ||
	    hd->base != (uint64_t)(uintptr_t)h->base || hd->nclass != NCLASS ||
	    hd->ncache != NCACHE)
		return CKPT_E_CORRUPT;
	layout_of(h->size, &l);
	if (hd->ngran != l.ngran || hd->map_off != l.map_off || hd->heads_off != l.heads_off ||
	    hd->tree_off != l.tree_off || hd->defer_off != l.defer_off || hd->mag_off != l.mag_off ||
	    hd->tree_p != l.tree_p || hd->data_start != l.data_start ||
	    hd->top < l.data_start || hd->top > l.ngran)
		return CKPT_E_CORRUPT;
	if (hd->root && !ckpt__in_heap(h, (const void *)(uintptr_t)hd->root))
		return CKPT_E_CORRUPT;
	const uint32_t *map = (const uint32_t *)(const void *)(h->base + hd->map_off);
	for (unsigned k = 0; k < NCACHE; k++)
		for (unsigned c = 0; c < NCLASS; c++) {
			uint64_t g = hd->cache[k].partial[c];
			if (!g)
				continue;
			const struct span *s =
				(const struct span *)(const void *)(h->base + (g << GSHIFT));
			if (g < hd->data_start || g >= hd->top || map[g] != SPAN_HEAD(k) ||
			    s->magic != (SPAN_MAGIC ^ (uint32_t)g) || s->cls != c ||
			    s->owner != k || s->nslots != cls[c].slots || s->nfree == 0 ||
			    s->nfree > s->nslots)
				return CKPT_E_CORRUPT;
		}
	return 0;
}

/*
 * A restored heap: validate, then finish what the checkpoint cut in the
 * middle of.  A realloc that had allocated its new block but not freed the
 * old one left the new block's address in a pending slot: the application
 * (as of the image) holds only the old block, so the new one is freed.
 */
int ckpt__alloc_open(ckpt_heap *h)
{
	struct actx a;
	struct block b;
	int rc = header_valid(h);
	if (rc)
		return rc;
	ctx_init(&a, h);
	/* the magazines too: the next allocations pop them */
	if (mags_valid(&a, NULL, NULL, 0))
		return CKPT_E_CORRUPT;
	for (unsigned i = 0; i < NPENDING; i++) {
		uint64_t v = a.hd->pending[i];
		if (v == 0)
			continue;
		if (v != PENDING_CLAIMED) {
			block_of(&a, (const void *)(uintptr_t)v, &b);
			if (!b.kind)
				return CKPT_E_CORRUPT;
			block_free(&a, &b);
		}
		a.hd->pending[i] = 0;
	}
	return 0;
}

/* ------------------------------------------------------------ deep check */

/* What the walk over [data_start, top) counts, for the checks after it. */
struct walk {
	uint64_t nfree_runs, nspans_partial, ncached, live_bytes, live_blocks;
	char *why;
	size_t why_len;
};

static bool defer_any(const struct actx *a, uint64_t g, uint64_t n)
{
	for (uint64_t i = g; i < g + n; i++)
		if (A_DEFER(a)[i >> 6] & (1ull << (i & 63)))
			return true;
	return false;
}

/* A free run or a large block at g: its entries, interior and heads bit. */
static int check_run(const struct actx *a, uint64_t g, struct walk *w, bool *prev_free,
		     uint64_t *len_out)
{
	uint32_t e = a->map[g];
	bool fr = ETAG(e) == T_FREE_HEAD;
	uint64_t len = EVAL(e);
	*len_out = len;
	if (len == 0 || g + len > a->hd->top)
		return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "granule %llu: run of %llu past top %llu",
				  (unsigned long long)g, (unsigned long long)len,
				  (unsigned long long)a->hd->top);
	if (len > 1 && a->map[g + len - 1] != ENT(fr ? T_FREE_TAIL : T_LARGE_TAIL, len))
		return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "granule %llu: run tail entry 0x%x",
				  (unsigned long long)g, a->map[g + len - 1]);
	for (uint64_t i = 1; i + 1 < len; i++)
		if (a->map[g + i])
			return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "granule %llu: interior entry 0x%x",
					  (unsigned long long)(g + i), a->map[g + i]);
	bool bit = A_HEADS(a)[g >> 6] & (1ull << (g & 63));
	if (bit != fr)
		return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "granule %llu: heads bit %d for a %s run",
				  (unsigned long long)g, bit, fr ? "free" : "used");
	if (fr && *prev_free)
		return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "granule %llu: two free runs touch",
				  (unsigned long long)g);
	if (!fr && defer_any(a, g, len))
		return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "granule %llu: deferred bit on a live block",
				  (unsigned long long)g);
	*prev_free = fr;
	w->nfree_runs += fr;
	if (!fr) {
		w->live_bytes += len << GSHIFT;
		w->live_blocks++;
	}
	return 0;
}

/* A span's slot bits: none past the last slot, none both free and cached,
 * no free one below the hint, cached ones only in classes with a magazine,
 * as many free ones as nfree; *ncached counts the cached ones. */
static int check_span_bits(uint64_t g, const struct span *sp, struct walk *w, unsigned *ncached)
{
	unsigned nfree = 0;
	*ncached = 0;
	for (unsigned i = 0; i < SLOT_WORDS; i++) {
		uint64_t fr = sp->w[i].free, ca = sp->w[i].cached;
		uint64_t valid = sp->nslots >= i * 64 + 64 ? ~0ull
				 : sp->nslots > i * 64 ? (1ull << (sp->nslots - i * 64)) - 1
				 : 0;
		if ((fr | ca) & ~valid)
			return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT,
					  "granule %llu: slot bit past the last slot",
					  (unsigned long long)g);
		if (fr & ca)
			return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT,
					  "granule %llu: a slot both free and in a magazine",
					  (unsigned long long)g);
		if (ca && sp->cls >= MAG_NCLASS)
			return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT,
					  "granule %llu: cached slot in a class without magazines",
					  (unsigned long long)g);
		if (i < sp->hint && fr)
			return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "granule %llu: free slot below hint",
					  (unsigned long long)g);
		nfree += (unsigned)__builtin_popcountll(fr);
		*ncached += (unsigned)__builtin_popcountll(ca);
	}
	if (nfree != sp->nfree)
		return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "granule %llu: %u free bits, nfree %u",
				  (unsigned long long)g, nfree, sp->nfree);
	return 0;
}

/* A span at g: header, map entries, bitmap against counts. */
static int check_span(const struct actx *a, uint64_t g, struct walk *w, uint64_t *len_out)
{
	const struct span *sp = span_at(a, g);
	unsigned c = sp->cls;
	if (sp->magic != (SPAN_MAGIC ^ (uint32_t)g) || c >= NCLASS || sp->owner >= NCACHE ||
	    a->map[g] != SPAN_HEAD(sp->owner) || sp->nslots != cls[c].slots ||
	    sp->nfree > sp->nslots)
		return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "granule %llu: bad span header",
				  (unsigned long long)g);
	uint64_t len = cls[c].gran;
	*len_out = len;
	if (g + len > a->hd->top)
		return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "granule %llu: span past top",
				  (unsigned long long)g);
	for (uint64_t i = 1; i < len; i++)
		if (a->map[g + i] != ENT(T_SPAN, i))
			return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "granule %llu: span entry 0x%x",
					  (unsigned long long)(g + i), a->map[g + i]);
	unsigned ncached;
	int rc = check_span_bits(g, sp, w, &ncached);
	if (rc)
		return rc;
	if (A_HEADS(a)[g >> 6] & (1ull << (g & 63)))
		return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "granule %llu: heads bit on a span",
				  (unsigned long long)g);
	if (defer_any(a, g, len))
		return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "granule %llu: deferred bit on a span",
				  (unsigned long long)g);
	w->nspans_partial += sp->nfree > 0;
	w->ncached += ncached;
	w->live_blocks += (uint64_t)(sp->nslots - sp->nfree - ncached);
	w->live_bytes += (uint64_t)(sp->nslots - sp->nfree - ncached) * cls[c].size;
	return 0;
}

/* Runs tile [data_start, top) exactly; nothing past top. */
static int check_walk(const struct actx *a, struct walk *w)
{
	const struct alloc_hdr *hd = a->hd;
	uint64_t g = hd->data_start, len = 0;
	bool prev_free = false;
	int rc;
	while (g < hd->top) {
		uint32_t e = a->map[g];
		if (ETAG(e) == T_FREE_HEAD || ETAG(e) == T_LARGE_HEAD)
			rc = check_run(a, g, w, &prev_free, &len);
		else if (ETAG(e) == T_SPAN) {
			rc = check_span(a, g, w, &len);
			prev_free = false;
		} else
			rc = ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "granule %llu: entry 0x%x where a run starts",
					(unsigned long long)g, e);
		if (rc)
			return rc;
		g += len;
	}
	for (g = hd->top; g < hd->ngran; g++)
		if (a->map[g])
			return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT,
					  "granule %llu at or past top has entry 0x%x",
					  (unsigned long long)g, a->map[g]);
	if (defer_any(a, hd->top, hd->ngran - hd->top))
		return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "deferred bit at or past top");
	return 0;
}

/* The heads bitmap and the max-tree agree with the free runs. */
static int check_index(const struct actx *a, struct walk *w)
{
	const struct alloc_hdr *hd = a->hd;
	uint64_t heads = 0;
	for (uint64_t l = 0; l < (hd->ngran + 63) / 64; l++)
		heads += (uint64_t)__builtin_popcountll(A_HEADS(a)[l]);
	if (heads != w->nfree_runs)
		return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "%llu heads bits, %llu free runs",
				  (unsigned long long)heads, (unsigned long long)w->nfree_runs);
	for (uint64_t i = A_P(a) - 1 + A_P(a); i >= 1; i--) {
		uint32_t want;
		if (i >= A_P(a)) {
			uint64_t leaf = i - A_P(a);
			want = leaf < (hd->ngran + 63) / 64 ? leaf_compute(a, leaf) : 0;
		} else {
			uint32_t l = A_TREE(a)[2 * i], r = A_TREE(a)[2 * i + 1];
			want = l > r ? l : r;
		}
		if (A_TREE(a)[i] != want)
			return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "tree node %llu is %u, want %u",
					  (unsigned long long)i, A_TREE(a)[i], want);
	}
	return 0;
}

/* The caches' class lists hold exactly the spans with free slots, each on
 * its owner's list; the magazines exactly the cached slots; pending
 * reallocs name live blocks; counters add up. */
static int check_lists(const struct actx *a, struct walk *w)
{
	const struct alloc_hdr *hd = a->hd;
	uint64_t listed = 0, cbytes = hd->live_bytes, cblocks = hd->live_blocks, entries;
	int rc = mags_valid(a, &entries, w->why, w->why_len);
	if (rc)
		return rc;
	if (entries != w->ncached)
		return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "%llu cached slots, %llu in magazines",
				  (unsigned long long)w->ncached, (unsigned long long)entries);
	for (unsigned k = 0; k < NCACHE; k++) {
		cbytes += hd->cache[k].live_bytes;
		cblocks += hd->cache[k].live_blocks;
		for (unsigned c = 0; c < MAG_NCLASS; c++) {
			cblocks += mag_at(a, k, c)->live;
			cbytes += mag_at(a, k, c)->live * cls[c].size;
		}
		for (unsigned c = 0; c < NCLASS; c++) {
			uint64_t prev = 0;
			for (uint64_t sg = hd->cache[k].partial[c]; sg; sg = span_at(a, sg)->next) {
				const struct span *sp;
				if (sg < hd->data_start || sg >= hd->top || a->map[sg] != SPAN_HEAD(k) ||
				    (sp = span_at(a, sg))->cls != c || sp->owner != k ||
				    sp->nfree == 0 || sp->prev != prev || ++listed > w->nspans_partial)
					return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT,
							  "cache %u class %u: bad list at granule %llu",
							  k, c, (unsigned long long)sg);
				prev = sg;
			}
		}
	}
	if (listed != w->nspans_partial)
		return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "%llu spans with free slots, %llu listed",
				  (unsigned long long)w->nspans_partial, (unsigned long long)listed);
	for (unsigned i = 0; i < NPENDING; i++) {
		struct block b;
		uint64_t v = hd->pending[i];
		if (v > PENDING_CLAIMED && (block_of(a, (const void *)(uintptr_t)v, &b), !b.kind))
			return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT, "pending realloc %u: %#llx is no block",
					  i, (unsigned long long)v);
	}
	if (w->live_bytes != cbytes || w->live_blocks != cblocks)
		return ckpt__errf(w->why, w->why_len, CKPT_E_CORRUPT,
				  "%llu live blocks of %llu bytes, counters say %llu of %llu",
				  (unsigned long long)w->live_blocks, (unsigned long long)w->live_bytes,
				  (unsigned long long)cblocks, (unsigned long long)cbytes);
	return 0;
}

/*
 * Walks every run and span below top and checks every invariant the
 * allocator relies on: runs tile [data_start, top) exactly, head and tail
 * entries agree, interiors are zero, no two free runs touch, the heads
 * bitmap and the max-tree match the free runs, span headers match the map,
 * their bitmaps match their counts, the caches' lists hold exactly the
 * spans with free slots, deferred bits lie only on free runs, and the live
 * counters add up.  O(top) time, all locks held: for tests and offline
 * checks, not for every restore.
 */
int ckpt__alloc_check(ckpt_heap *h, char *why, size_t why_len)
{
	struct actx a;
	struct walk w = {.why = why, .why_len = why_len};
	if (!h || !h->base)
		return ckpt__errf(why, why_len, CKPT_E_CORRUPT, "no heap");
	/* the locks first: the header check follows the caches' lists, which
	 * threads change under them */
	lock_all(h);
	if (header_valid(h)) {
		unlock_all(h);
		return ckpt__errf(why, why_len, CKPT_E_CORRUPT, "header check failed");
	}
	ctx_init(&a, h);
	int rc = check_walk(&a, &w);
	if (!rc)
		rc = check_index(&a, &w);
	if (!rc)
		rc = check_lists(&a, &w);
	unlock_all(h);
	return rc;
}
