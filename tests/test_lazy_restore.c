/*
 * test_lazy_restore.c - ckpt_restore() with CKPT_RESTORE_LAZY: the heap is
 * the eager restore's byte for byte however its pages are first touched,
 * chains serve each page's newest contents, damage is rejected up front or,
 * once the heap is in use, never served (SIGBUS, log, CKPT_E_CORRUPT), both
 * trap modes checkpoint the lazily restored heap correctly, and nothing
 * leaks.
 */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>

#include "image_util.h"

/* ------------------------------------------------------------ helpers */

static struct ckpt_restore_opts lazy_opts(unsigned flags, const struct ckpt_heap_opts *ho, char *err,
					  size_t errsz)
{
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.flags = CKPT_RESTORE_LAZY | flags;
	ro.heap = ho;
	ro.errbuf = err;
	ro.errbuf_size = errsz;
	return ro;
}

static ckpt_heap *make_heap(enum ckpt_backend be, unsigned flags, size_t size)
{
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = size;
	ho.backend = be;
	ho.flags = flags;
	ckpt_heap *h = NULL;
	int rc = ckpt_heap_create(&ho, &h);
	if (rc == -EPERM || rc == CKPT_E_KERNEL)
		CKPT_TEST_SKIP("heap needs userfaultfd: %s", ckpt_strerror(rc));
	CKPT_ASSERT_OK(rc);
	return h;
}

/* ~@mib MiB in objects of mixed sizes and contents (random, text, zero),
 * all reachable from a root table. */
static void fill_heap(ckpt_heap *h, unsigned mib, uint64_t seed)
{
	uint64_t st = seed;
	void **tab = ckpt_calloc(h, 1024, sizeof(void *));
	cr_assert(tab);
	size_t per = ((size_t)mib << 20) / 1024;
	for (int i = 0; i < 1024; i++) {
		uint8_t *p = ckpt_alloc(h, per);
		cr_assert(p);
		iu_fill(p, per / 4096, 4096, iu_rand(&st));
		tab[i] = p;
	}
	CKPT_ASSERT_OK(ckpt_root_set(h, tab));
}

static void checkpoint(ckpt_heap *h, const char *path, int level)
{
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	struct ckpt_begin_opts bo;
	ckpt_begin_opts_init(&bo);
	bo.zstd_level = level;
	bo.flags |= CKPT_BEGIN_NO_FSYNC;
	CKPT_ASSERT_OK(ckpt_begin(h, &d, &bo));
	CKPT_ASSERT_OK(ckpt_wait(h));
}

static uint8_t *snapshot(ckpt_heap *h, size_t *used)
{
	*used = ckpt_heap_used(h);
	uint8_t *c = malloc(*used);
	cr_assert(c);
	memcpy(c, ckpt_heap_base(h), *used);
	return c;
}

static ckpt_heap *restore_lazy(const char *path, unsigned flags, const struct ckpt_heap_opts *ho)
{
	char err[256] = "";
	struct ckpt_restore_opts ro = lazy_opts(flags, ho, err, sizeof(err));
	ckpt_heap *r = NULL;
	int rc = ckpt_restore(path, &ro, &r);
	cr_assert(rc == 0, "lazy restore: %s (%s)", ckpt_err_name(rc), err);
	return r;
}

struct toucher {
	const uint8_t *base, *copy;
	size_t used;
	uint64_t seed;
	size_t bad;
};

/* Compares pages in a random order: each first touch is a fault the lazy
 * loader resolves while the background loaders run. */
static void *toucher_main(void *arg)
{
	struct toucher *t = arg;
	uint64_t st = t->seed;
	size_t np = t->used / 4096;
	for (size_t k = 0; k < np; k++) {
		size_t p = iu_rand(&st) % np;
		if (memcmp(t->base + p * 4096, t->copy + p * 4096, 4096) != 0)
			t->bad++;
	}
	return NULL;
}

/* ------------------------------------------------------------ consistency */

static void lazy_matches_eager(int level)
{
	char *dir = iu_tmpdir("lazy");
	char path[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	ckpt_heap *h = make_heap(CKPT_TRAP_THREAD, 0, 64u << 20);
	fill_heap(h, 24, ckpt_test_seed("lazy_matches_eager") + (uint64_t)level);
	size_t used;
	uint8_t *copy = snapshot(h, &used);
	void *root = ckpt_root_get(h);
	checkpoint(h, path, level);
	ckpt_heap_destroy(h);

	ckpt_heap *r = restore_lazy(path, 0, NULL);
	uint64_t res, tot;
	CKPT_ASSERT_OK(ckpt_restore_progress(r, &res, &tot));
	cr_assert(tot >= used / 4096 / 2, "total %llu pages for %zu bytes", (unsigned long long)tot, used);
	cr_assert_eq(ckpt_root_get(r), root);
	struct toucher t[2];
	pthread_t th[2];
	for (int i = 0; i < 2; i++) {
		t[i] = (struct toucher){ ckpt_heap_base(r), copy, used, 11 + (uint64_t)i, 0 };
		cr_assert_eq(pthread_create(&th[i], NULL, toucher_main, &t[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(t[i].bad, 0, "level %d: %zu pages differ while warming up", level, t[i].bad);
	}
	CKPT_ASSERT_OK(ckpt_restore_wait(r));
	CKPT_ASSERT_OK(ckpt_restore_progress(r, &res, &tot));
	cr_assert_eq(res, tot, "fully resident: %llu of %llu", (unsigned long long)res, (unsigned long long)tot);
	cr_assert(memcmp(ckpt_heap_base(r), copy, used) == 0, "level %d: restored heap differs", level);
	/* past the extent: zero */
	const uint8_t *past = (const uint8_t *)ckpt_heap_base(r) + ((used + 4095) & ~(size_t)4095);
	for (size_t i = 0; i < 8192; i++)
		cr_assert_eq(past[i], 0);
	ckpt_heap_destroy(r);
	free(copy);
	iu_rmtree(dir);
	free(dir);
}

Test(lazy_restore, stored_image_serves_the_eager_bytes_on_first_touch, .timeout = 120)
{
	lazy_matches_eager(0);
}

Test(lazy_restore, zstd_image_serves_the_eager_bytes_on_first_touch, .timeout = 120)
{
	lazy_matches_eager(1);
}

/* ------------------------------------------------------------ up front */

/* read(2)/pread(2) calls made by the calling thread so far (the loaders
 * and the fault thread have their own counts). */
static unsigned long long thread_read_calls(void)
{
	FILE *f = fopen("/proc/thread-self/io", "r");
	unsigned long long v = 0;
	char line[128];
	cr_assert(f, "needs /proc/thread-self/io");
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "syscr: %llu", &v) == 1)
			break;
	fclose(f);
	return v;
}

/* An image of a 24 MiB heap (about 30 blocks) at @path, its bytes in *copy. */
static ckpt_heap *image_of_many_blocks(const char *path, uint8_t **copy, size_t *used)
{
	ckpt_heap *h = make_heap(CKPT_TRAP_THREAD, 0, 64u << 20);
	fill_heap(h, 24, ckpt_test_seed("image_of_many_blocks"));
	*copy = snapshot(h, used);
	checkpoint(h, path, 0);
	return h;
}

/* The restore's own thread: how many reads ckpt_restore() made before it
 * returned (the header's, the footer's, the trailer's; the allocator's
 * first page is the fault thread's). */
static unsigned long long restore_reads(const char *path, ckpt_heap **out)
{
	unsigned long long before = thread_read_calls();
	*out = restore_lazy(path, 0, NULL);
	return thread_read_calls() - before;
}

/* From version 3 the trailer carries every block's header and runs (4:
 * and chunk hashes): the lazy restore reads a bounded amount up front,
 * however many blocks the image has.  Version 3 (no chunk hashes: faults
 * read whole blocks) restores the same; versions 1-2 (no block table)
 * still restore, reading per block. */
Test(lazy_restore, up_front_validation_reads_the_trailer_not_every_block, .timeout = 120)
{
	char *dir = iu_tmpdir("lazyupfront");
	char path[300], old[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	snprintf(old, sizeof(old), "%s/v2.ckpt", dir);
	uint8_t *copy;
	size_t used;
	ckpt_heap *h = image_of_many_blocks(path, &copy, &used);
	ckpt_heap_destroy(h);
	struct ckpt_image_info ii;
	CKPT_ASSERT_OK(ckpt_image_info(path, &ii, NULL, 0));
	cr_assert(ii.blocks >= 16, "%llu blocks: too few to tell per-block reads", (unsigned long long)ii.blocks);
	cr_assert_eq(ii.version, 4u);

	ckpt_heap *r;
	unsigned long long n4 = restore_reads(path, &r);
	cr_assert(n4 <= 8, "version 4: %llu reads up front for %llu blocks", n4, (unsigned long long)ii.blocks);
	CKPT_ASSERT_OK(ckpt_restore_wait(r));
	cr_assert(memcmp(ckpt_heap_base(r), copy, used) == 0);
	ckpt_heap_destroy(r);

	/* the previous versions: the same heap, read block by block before 3 */
	for (uint32_t v = 1; v <= 3; v++) {
		size_t len = 0;
		uint8_t *img = iu_read_file(path, &len);
		cr_assert(img);
		len = iu_downgrade(img, len, v);
		cr_assert(len, "downgrade to version %u", v);
		cr_assert_eq(iu_write_file(old, img, len), 0);
		free(img);
		CKPT_ASSERT_OK(ckpt_image_info(old, &ii, NULL, 0));
		cr_assert_eq(ii.version, v);
		CKPT_ASSERT_OK(ckpt_image_verify(old, 0, NULL, 0));
		unsigned long long n = restore_reads(old, &r);
		if (v < 3)
			cr_assert(n >= ii.blocks, "version %u: %llu reads for %llu blocks (the test would not see per-block reads)",
				  v, n, (unsigned long long)ii.blocks);
		else
			cr_assert(n <= 8, "version 3: %llu reads up front for %llu blocks", n, (unsigned long long)ii.blocks);
		CKPT_ASSERT_OK(ckpt_restore_wait(r));
		cr_assert(memcmp(ckpt_heap_base(r), copy, used) == 0, "version %u image restored lazily differs", v);
		ckpt_heap_destroy(r);
		ckpt_heap *e = NULL;
		CKPT_ASSERT_OK(ckpt_restore(old, NULL, &e));
		cr_assert(memcmp(ckpt_heap_base(e), copy, used) == 0, "version %u image restored eagerly differs", v);
		ckpt_heap_destroy(e);
	}
	free(copy);
	iu_rmtree(dir);
	free(dir);
}

/* Bytes read(2)/pread(2) so far by this process's thread named @comm. */
static unsigned long long named_thread_rchar(const char *comm)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	unsigned long long v = 0;
	cr_assert(d, "needs /proc/self/task");
	while ((de = readdir(d))) {
		char p[300], name[64] = "", line[128];
		snprintf(p, sizeof(p), "/proc/self/task/%s/comm", de->d_name);
		FILE *f = fopen(p, "r");
		if (!f)
			continue;
		if (!fgets(name, sizeof(name), f))
			name[0] = 0;
		fclose(f);
		name[strcspn(name, "\n")] = 0;
		if (strcmp(name, comm) != 0)
			continue;
		snprintf(p, sizeof(p), "/proc/self/task/%s/io", de->d_name);
		if (!(f = fopen(p, "r")))
			continue;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "rchar: %llu", &v) == 1)
				break;
		fclose(f);
	}
	closedir(d);
	return v;
}

/* Version 4: a fault on a stored block reads and checks the 64 KiB chunk
 * that holds the page, not the whole (1 MiB) block.  Pages near the end of
 * the heap are touched first, where the loaders (which go in file order)
 * have not been yet.  Fails on version 3 behaviour: one block read by a
 * fault is more than all the chunks allowed. */
Test(lazy_restore, a_fault_reads_its_chunk_not_its_block, .timeout = 120)
{
	char *dir = iu_tmpdir("lazychunk");
	char path[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	uint8_t *copy;
	size_t used;
	ckpt_heap *h = image_of_many_blocks(path, &copy, &used);
	ckpt_heap_destroy(h);
	ckpt_heap *r = restore_lazy(path, 0, NULL);
	const uint8_t *base = ckpt_heap_base(r);
	unsigned long long before = named_thread_rchar("ckpt-lazyfault");
	enum { TOUCH = 6 };
	for (int k = 1; k <= TOUCH; k++) {
		size_t off = used - (size_t)k * (1u << 20) - 8192 * (size_t)k;
		cr_assert(base[off] == copy[off], "page at %zu differs", off);
	}
	unsigned long long got = named_thread_rchar("ckpt-lazyfault") - before;
	cr_log_info("%d touches: the fault thread read %llu bytes", TOUCH, got);
	/* rchar also counts the fault messages read from the uffd (32 bytes
	 * each): a page of slack per fault, far below a block's 1 MiB */
	cr_assert(got <= TOUCH * (68u << 10), "%d faults read %llu bytes: more than a 64 KiB chunk each", TOUCH, got);
	CKPT_ASSERT_OK(ckpt_restore_wait(r));
	cr_assert(memcmp(base, copy, used) == 0);
	ckpt_heap_destroy(r);
	free(copy);
	iu_rmtree(dir);
	free(dir);
}

/* ------------------------------------------------------------ a flat index */

/*
 * Allocations made by the calling thread while counting is on: malloc,
 * calloc and realloc pass through here to glibc's own (an executable's
 * definitions take the place of libc's for every caller, the library
 * included).  Not under a sanitizer, which brings its own allocator.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define COUNT_ALLOCS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define COUNT_ALLOCS 0
#endif
#endif
#ifndef COUNT_ALLOCS
#define COUNT_ALLOCS 1
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t k);
extern void *__libc_realloc(void *p, size_t n);
static __thread bool counting;
static __thread unsigned long allocs;

void *malloc(size_t n)
{
	allocs += counting;
	return __libc_malloc(n);
}

void *calloc(size_t n, size_t k)
{
	allocs += counting;
	return __libc_calloc(n, k);
}

void *realloc(void *p, size_t n)
{
	allocs += counting;
	return __libc_realloc(p, n);
}
#endif

/* Writes the heap @mem described by @in as a stored version-4 image in
 * which every block holds one page (the file sink puts up to 256 in a
 * block): many blocks from a small heap.  Blocks in page order, or with
 * @reversed the other way round (runs out of order: the index sorts).
 * @twice > 0: the block meant for page @twice records page @twice - 1
 * instead (a page recorded twice, one missing; every checksum sealed). */
static void write_page_per_block(const char *path, const struct ckpt_sink_info *in, const uint8_t *mem,
				 bool reversed, uint64_t twice)
{
	struct ckpt__img_header h;
	memset(&h, 0, sizeof(h));
	CKPT_ASSERT_OK(ckpt__img_header_encode(&h, in, 0));
	uint64_t n = in->npages, ps = in->page_size, nchunks = 0, stored = 0, zero = 0;
	size_t cap = sizeof(h) + n * (64 + ps + 16) + 64 + n * (32 + 64 + 16 + 8) + 8 + 64, off = sizeof(h), tl = 0;
	uint8_t *img = calloc(1, cap), *table = malloc(n * (64 + 16 + 8));
	struct ckpt__trl_entry *ent = malloc(n * sizeof(*ent));
	cr_assert(img && table && ent);
	memcpy(img, &h, sizeof(h));
	for (uint64_t i = 0; i < n; i++) {
		uint64_t p = reversed ? n - 1 - i : i;
		if (twice && p == twice)
			p--;
		bool z = ckpt__page_is_zero(mem + p * ps, ps);
		struct ckpt__blk_header b = { .magic = CKPT__BLK_MAGIC, .nruns = 1, .data_pages = !z,
					      .zero_pages = z, .data_len = z ? 0 : (uint32_t)ps, .seq = i,
					      .first_page = p };
		struct ckpt__run r = { p, 1, z ? CKPT__RUN_ZERO : CKPT__RUN_DATA };
		uint8_t *d = img + off + sizeof(b);
		memcpy(d, mem + p * ps, b.data_len);
		memcpy(d + b.data_len, &r, sizeof(r));
		b.payload_hash = ckpt__hash(d, b.data_len + sizeof(r));
		ckpt__blk_header_seal(&b);
		memcpy(img + off, &b, sizeof(b));
		ent[i] = (struct ckpt__trl_entry){ off, b.checksum, (uint32_t)(sizeof(b) + b.data_len + sizeof(r)),
						   b.data_pages, b.zero_pages, 1 };
		memcpy(table + tl, &b, sizeof(b));
		memcpy(table + tl + sizeof(b), &r, sizeof(r));
		tl += sizeof(b) + sizeof(r);
		uint64_t nc = ckpt__blk_nchunks(&b, h.chunk_size);
		ckpt__chunk_hashes(d, b.data_len, h.chunk_size, (uint64_t *)(void *)(table + tl));
		tl += nc * 8;
		nchunks += nc;
		stored += b.data_pages;
		zero += b.zero_pages;
		off += sizeof(b) + b.data_len + sizeof(r);
	}
	struct ckpt__trl_header t = { .magic = CKPT__TRL_MAGIC, .nblocks = n, .pages_stored = stored,
				      .pages_zero = zero, .nruns = n, .offset = off, .nchunks = nchunks };
	ckpt__trl_header_seal(&t);
	size_t toff = off;
	memcpy(img + off, &t, sizeof(t));
	memcpy(img + off + sizeof(t), ent, n * sizeof(*ent));
	memcpy(img + off + sizeof(t) + n * sizeof(*ent), table, tl);
	off += sizeof(t) + n * sizeof(*ent) + tl;
	uint64_t tsum = ckpt__hash(img + toff, off - toff);
	memcpy(img + off, &tsum, 8);
	off += 8;
	cr_assert_eq(off - toff, ckpt__trl_size(h.version, n, n, nchunks));
	struct ckpt__footer f = { .trailer_offset = toff, .trailer_size = off - toff, .file_size = off + sizeof(f) };
	memcpy(f.id, h.id, sizeof(f.id));
	memcpy(f.magic, CKPT__IMG_FOOTER_MAGIC, sizeof(f.magic));
	f.file_hash = ckpt__img_digest(img, off);
	ckpt__footer_seal(&f);
	memcpy(img + off, &f, sizeof(f));
	cr_assert_eq(iu_write_file(path, img, off + sizeof(f)), 0);
	free(ent);
	free(table);
	free(img);
}

/* A heap of about @mib MiB written one page per block at @path, in page
 * order; its bytes in *@mem (mapped: munmap() heap_size bytes), the
 * extent's length in *@len, its description in *@in. */
static void page_per_block_image(const char *path, unsigned mib, uint8_t **mem, size_t *len,
				 struct ckpt_sink_info *in)
{
	char full[310], err[256] = "";
	snprintf(full, sizeof(full), "%s.full", path);
	ckpt_heap *h = make_heap(CKPT_TRAP_THREAD, 0, 128u << 20);
	fill_heap(h, mib, ckpt_test_seed("page_per_block_image"));
	checkpoint(h, full, 0);
	ckpt_heap_destroy(h);
	size_t size;
	int rc = iu_load(full, mem, &size, err, sizeof(err));
	cr_assert(rc == 0, "%s: %s", ckpt_strerror(rc), err);
	int fd = open(full, O_RDONLY | O_CLOEXEC);
	struct ckpt__img_header hd;
	cr_assert(fd >= 0);
	cr_assert(pread(fd, &hd, sizeof(hd), 0) == (ssize_t)sizeof(hd));
	close(fd);
	unlink(full);
	ckpt__img_header_to_sink_info(&hd, in);
	write_page_per_block(path, in, *mem, false, 0);
	*len = (size_t)in->npages * in->page_size;
}

/* Allocations ckpt_restore(CKPT_RESTORE_LAZY) of @path makes in the
 * calling thread (the index is built there); the heap is made resident
 * and compared with @mem. */
static unsigned long lazy_restore_allocs(const char *path, const uint8_t *mem, size_t len, uint64_t *blocks)
{
	struct ckpt_image_info ii;
	CKPT_ASSERT_OK(ckpt_image_info(path, &ii, NULL, 0));
	*blocks = ii.blocks;
	char err[256] = "";
	struct ckpt_restore_opts ro = lazy_opts(0, NULL, err, sizeof(err));
	ckpt_heap *r = NULL;
#if COUNT_ALLOCS
	allocs = 0;
	counting = true;
#endif
	int rc = ckpt_restore(path, &ro, &r);
#if COUNT_ALLOCS
	counting = false;
	unsigned long n = allocs;
#else
	unsigned long n = 0;
#endif
	cr_assert(rc == 0, "lazy restore: %s (%s)", ckpt_err_name(rc), err);
	CKPT_ASSERT_OK(ckpt_restore_wait(r));
	cr_assert(memcmp(ckpt_heap_base(r), mem, len) == 0, "%s restored lazily differs", path);
	ckpt_heap_destroy(r);
	return n;
}

/* The up-front index of a lazy restore allocates the same whatever the
 * number of blocks: about ten times the blocks, no more allocations (it used
 * to make two per block, for its runs and its chunk hashes).  Counted,
 * not timed (not under a sanitizer: see COUNT_ALLOCS).  Also restores an
 * image whose blocks are out of page order (the index sorts those). */
Test(lazy_restore, the_index_allocates_no_more_for_ten_times_the_blocks, .timeout = 180)
{
	char *dir = iu_tmpdir("lazyflat");
	char small[300], big[300], rev[300];
	snprintf(small, sizeof(small), "%s/small.ckpt", dir);
	snprintf(big, sizeof(big), "%s/big.ckpt", dir);
	snprintf(rev, sizeof(rev), "%s/rev.ckpt", dir);
	uint8_t *ms, *mb;
	size_t ls, lb;
	struct ckpt_sink_info is, ib;
	page_per_block_image(small, 4, &ms, &ls, &is);
	page_per_block_image(big, 45, &mb, &lb, &ib);
	uint64_t bs, bb, br;
	unsigned long as = lazy_restore_allocs(small, ms, ls, &bs);
	unsigned long ab = lazy_restore_allocs(big, mb, lb, &bb);
	cr_log_info("%llu blocks: %lu allocations; %llu blocks: %lu", (unsigned long long)bs, as,
		    (unsigned long long)bb, ab);
	cr_assert(bs >= 1000 && bb >= 9 * bs, "%llu and %llu blocks: not the sizes meant",
		  (unsigned long long)bs, (unsigned long long)bb);
	/* under a sanitizer the restores still run and are compared, but
	 * its allocator is not counted */
	cr_assert(!COUNT_ALLOCS || as > 0, "no allocation counted: the counting wrappers are not in use");
	cr_assert(ab <= as + 8, "%llu blocks: %lu allocations; %llu blocks: %lu (grows with the blocks)",
		  (unsigned long long)bs, as, (unsigned long long)bb, ab);
	/* out of order: one more allocation at most (the sort's) */
	write_page_per_block(rev, &ib, mb, true, 0);
	unsigned long ar = lazy_restore_allocs(rev, mb, lb, &br);
	cr_assert(br == bb && ar <= as + 9, "reversed, %llu blocks: %lu allocations (%lu for %llu in order)",
		  (unsigned long long)br, ar, as, (unsigned long long)bs);
	munmap(ms, is.heap_size);
	munmap(mb, ib.heap_size);
	iu_rmtree(dir);
	free(dir);
}

/* A page recorded twice in one image (by two blocks, every checksum
 * sealed) is refused up front, whether the image's runs are in page
 * order (checked in the same pass as the order, no sort) or not (sorted
 * first). */
Test(lazy_restore, a_page_recorded_twice_is_refused_in_order_or_not, .timeout = 120)
{
	char *dir = iu_tmpdir("lazytwice");
	char ok[300], bad[300];
	snprintf(ok, sizeof(ok), "%s/ok.ckpt", dir);
	snprintf(bad, sizeof(bad), "%s/bad.ckpt", dir);
	uint8_t *m;
	size_t len;
	struct ckpt_sink_info in;
	page_per_block_image(ok, 1, &m, &len, &in);
	for (int rev = 0; rev < 2; rev++) {
		write_page_per_block(bad, &in, m, rev, in.npages / 2);
		char err[256] = "";
		struct ckpt_restore_opts ro = lazy_opts(0, NULL, err, sizeof(err));
		ckpt_heap *r = NULL;
		int rc = ckpt_restore(bad, &ro, &r);
		cr_assert(rc == CKPT_E_CORRUPT && !r, "%s: %s (%s)", rev ? "out of order" : "in order",
			  ckpt_err_name(rc), err);
		cr_assert(strstr(err, "recorded twice"), "%s: %s", rev ? "out of order" : "in order", err);
	}
	munmap(m, in.heap_size);
	iu_rmtree(dir);
	free(dir);
}

/* Freeing, allocating and writing right after a lazy restore, before the
 * loaders are done, then checkpointing: the checkpoint (which first makes
 * the heap resident) holds exactly the heap as the application left it. */
static void lazy_then_checkpoint(enum ckpt_backend be)
{
	char *dir = iu_tmpdir("lazyck");
	char path[300], path2[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	snprintf(path2, sizeof(path2), "%s/again.ckpt", dir);
	ckpt_heap *h = make_heap(be, 0, 64u << 20);
	fill_heap(h, 16, ckpt_test_seed("lazy_then_checkpoint"));
	checkpoint(h, path, 1);
	ckpt_heap_destroy(h);

	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.backend = be;
	ckpt_heap *r = restore_lazy(path, 0, &ho);
	void **tab = ckpt_root_get(r);
	for (int i = 0; i < 1024; i += 3) {
		ckpt_free(r, tab[i]);
		tab[i] = ckpt_alloc(r, 5000);
		cr_assert(tab[i]);
		memset(tab[i], i & 0xff, 5000);
	}
	for (int i = 1; i < 1024; i += 7)
		((uint8_t *)tab[i])[100] ^= 0x5a;
	size_t used;
	uint8_t *copy = snapshot(r, &used);
	checkpoint(r, path2, 0);
	/* the trap mode works on the lazily restored heap: writes during a
	 * second checkpoint do not reach it */
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	CKPT_ASSERT_OK(ckpt_begin(r, &d, NULL));
	for (int i = 2; i < 1024; i += 5)
		memset(tab[i], 0xee, 64);
	CKPT_ASSERT_OK(ckpt_wait(r));
	ckpt_heap_destroy(r);

	ckpt_heap *e = NULL;
	CKPT_ASSERT_OK(ckpt_restore(path2, NULL, &e));
	cr_assert(memcmp(ckpt_heap_base(e), copy, used) == 0, "checkpoint after lazy restore differs");
	ckpt_heap_destroy(e);
	CKPT_ASSERT_OK(ckpt_restore(path, NULL, &e));
	cr_assert(memcmp(ckpt_heap_base(e), copy, used) == 0, "writes during the checkpoint reached it");
	ckpt_heap_destroy(e);
	free(copy);
	iu_rmtree(dir);
	free(dir);
}

Test(lazy_restore, checkpoint_after_lazy_restore_holds_the_heap_thread_mode, .timeout = 120)
{
	lazy_then_checkpoint(CKPT_TRAP_THREAD);
}

Test(lazy_restore, checkpoint_after_lazy_restore_holds_the_heap_sigbus_mode, .timeout = 120)
{
	lazy_then_checkpoint(CKPT_TRAP_SIGBUS);
}

/* A chain at @path (full image, then four incrementals, stored and zstd
 * in turn) of a heap freed, reallocated and written between checkpoints;
 * the tip's heap in *@copy. */
static void make_chain(const char *path, uint8_t **copy, size_t *used)
{
	ckpt_heap *h = make_heap(CKPT_TRAP_THREAD, CKPT_HEAP_INCREMENTAL, 64u << 20);
	fill_heap(h, 8, ckpt_test_seed("lazy_chain"));
	checkpoint(h, path, 1);
	void **tab = ckpt_root_get(h);
	uint64_t st = 5;
	for (int k = 0; k < 4; k++) {
		for (int i = 0; i < 60; i++) {
			int j = (int)(iu_rand(&st) % 1024);
			if (i % 5 == 0) {
				ckpt_free(h, tab[j]);
				tab[j] = ckpt_calloc(h, 1, 3 * 4096);
				cr_assert(tab[j]);
			} else {
				memset(tab[j], (int)(iu_rand(&st) & 0xff), 4096);
			}
		}
		checkpoint(h, path, k % 2);
		struct ckpt_stats s = { .struct_size = sizeof(s) };
		CKPT_ASSERT_OK(ckpt_stats(h, &s));
		cr_assert(s.incremental, "checkpoint %d is not incremental", k + 1);
	}
	*copy = snapshot(h, used);
	ckpt_heap_destroy(h);
}

/* Restores @path lazily (touching pages in a random order while the
 * loaders run) and eagerly: both must hold @copy. */
static void chain_restores_both_ways(const char *path, const uint8_t *copy, size_t used)
{
	ckpt_heap *r = restore_lazy(path, 0, NULL);
	struct toucher t = { ckpt_heap_base(r), copy, used, 3, 0 };
	toucher_main(&t);
	cr_assert_eq(t.bad, 0, "%zu pages differ from the chain's tip", t.bad);
	CKPT_ASSERT_OK(ckpt_restore_wait(r));
	cr_assert(memcmp(ckpt_heap_base(r), copy, used) == 0);
	ckpt_heap_destroy(r);
	ckpt_heap *e = NULL;
	CKPT_ASSERT_OK(ckpt_restore(path, NULL, &e));
	cr_assert(memcmp(ckpt_heap_base(e), copy, used) == 0, "eager restore of the chain differs");
	ckpt_heap_destroy(e);
}

Test(lazy_restore, incremental_chain_serves_each_pages_newest_contents, .timeout = 120)
{
	char *dir = iu_tmpdir("lazychain");
	char path[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	uint8_t *copy;
	size_t used;
	make_chain(path, &copy, &used);
	chain_restores_both_ways(path, copy, used);
	free(copy);
	iu_rmtree(dir);
	free(dir);
}

/* A library of this version restoring a chain whose parents an older one
 * wrote (format 3: no chunk hashes) under a tip of its own (format 4):
 * each block is read the way its own image allows. */
Test(lazy_restore, format_3_parents_under_a_format_4_tip_restore_both_ways, .timeout = 120)
{
	char *dir = iu_tmpdir("lazymixed");
	char path[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	uint8_t *copy;
	size_t used;
	make_chain(path, &copy, &used);
	DIR *d = opendir(dir);
	cr_assert(d);
	struct dirent *de;
	int n3 = 0;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "heap.ckpt.g", 11) != 0)
			continue;
		char p[600];
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		size_t len = 0;
		uint8_t *img = iu_read_file(p, &len);
		cr_assert(img);
		len = iu_downgrade(img, len, 3);
		cr_assert(len, "%s: downgrade to format 3", p);
		cr_assert_eq(iu_write_file(p, img, len), 0);
		free(img);
		n3++;
	}
	closedir(d);
	cr_assert(n3 >= 2, "%d parents", n3);
	struct ckpt_image_info ii;
	CKPT_ASSERT_OK(ckpt_image_info(path, &ii, NULL, 0));
	cr_assert_eq(ii.version, 4u);
	CKPT_ASSERT_OK(ckpt_image_verify(path, CKPT_VERIFY_CHAIN, NULL, 0));
	chain_restores_both_ways(path, copy, used);
	free(copy);
	iu_rmtree(dir);
	free(dir);
}

/* ------------------------------------------------------------ damage */

struct small {
	char *dir;
	char path[300], bad[300];
	uint8_t *img;
	size_t len;
	uint64_t base, size;
	uint8_t *copy;
	size_t used;
};

/* As test_image_corrupt.c: a few kilobytes holding several blocks
 * (@level 1); stored (@level 0) about 1.3 MB. */
static void small_make_level(struct small *S, int level)
{
	ckpt_heap *h = make_heap(CKPT_TRAP_THREAD, 0, 32u << 20);
	uint8_t *a = ckpt_alloc(h, 1300 * 1024);
	uint8_t *b = ckpt_alloc(h, 16 * 1024);
	cr_assert(a && b);
	for (size_t i = 0; i < 1300 * 1024; i += 4096)
		memset(a + i, (int)(i / 4096 % 7), 4096);
	for (size_t i = 0; i < 16 * 1024; i++)
		b[i] = (uint8_t)(i % 13);
	CKPT_ASSERT_OK(ckpt_root_set(h, b));
	S->dir = iu_tmpdir("lazycorrupt");
	snprintf(S->path, sizeof(S->path), "%s/img", S->dir);
	snprintf(S->bad, sizeof(S->bad), "%s/bad", S->dir);
	size_t psz = ckpt_heap_page_size(h);
	S->used = ckpt_heap_used(h);
	S->base = (uint64_t)(uintptr_t)ckpt_heap_base(h);
	S->size = ckpt_heap_size(h);
	S->copy = malloc(S->used);
	memcpy(S->copy, ckpt_heap_base(h), S->used);
	struct ckpt_sink_info in = iu_info(S->base, S->size, (uint32_t)psz, (S->used + psz - 1) / psz, 8);
	struct ckpt_begin_opts o = iu_opts(level, CKPT_BEGIN_NO_FSYNC);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = S->path };
	CKPT_ASSERT_OK(iu_write(&d, &o, &in, ckpt_heap_base(h), NULL, 0, 3));
	ckpt_heap_destroy(h);
	S->img = iu_read_file(S->path, &S->len);
	cr_assert(level == 0 || S->len < 16384, "image is %zu bytes: too big for a byte-by-byte test", S->len);
}

static void small_make(struct small *S)
{
	small_make_level(S, 1);
}

static void small_free(struct small *S)
{
	free(S->img);
	free(S->copy);
	iu_rmtree(S->dir);
	free(S->dir);
}

/* The damaged file at S->bad: the lazy restore fails with @want, or (data
 * damage, found only when the block is loaded) succeeds and then the heap
 * never becomes resident.  Returns 1 when it was found after serving. */
static int expect_lazy_reject(struct small *S, int want, const char *what, size_t at, int fds, int thr)
{
	char err[256] = "";
	struct ckpt_restore_opts ro = lazy_opts(0, NULL, err, sizeof(err));
	ckpt_heap *r = NULL;
	int rc = ckpt_restore(S->bad, &ro, &r);
	int late = 0;
	if (rc == 0) {
		late = 1;
		rc = ckpt_restore_wait(r);
		uint64_t res, tot;
		int prc = ckpt_restore_progress(r, &res, &tot);
		cr_assert_eq(prc, rc, "%s at %zu: progress says %s, wait said %s", what, at, ckpt_err_name(prc),
			     ckpt_err_name(rc));
		cr_assert(res < tot || rc == 0, "%s at %zu: a failed restore reports full residency", what, at);
		ckpt_heap_destroy(r);
		r = NULL;
	}
	cr_assert(rc == want, "%s at %zu: lazy restore gave %s (%s), want %s", what, at, ckpt_err_name(rc), err,
		  ckpt_err_name(want));
	if (!late)
		cr_assert(err[0], "%s at %zu: no sentence in errbuf", what, at);
	cr_assert(!iu_range_mapped(S->base, S->size), "%s at %zu: the heap range stayed mapped", what, at);
	cr_assert_eq(ckpt_test_count_fds(), fds, "%s at %zu: fd leaked", what, at);
	cr_assert_eq(ckpt_test_count_threads(), thr, "%s at %zu: thread leaked", what, at);
	return late;
}

Test(lazy_restore, every_flipped_byte_is_rejected_before_or_after_serving, .timeout = 300)
{
	struct small S;
	small_make(&S);
	int fds = ckpt_test_count_fds(), thr = ckpt_test_count_threads();
	uint8_t *b = malloc(S.len);
	int late = 0;
	for (size_t i = 0; i < S.len; i++) {
		memcpy(b, S.img, S.len);
		b[i] ^= 0xff;
		cr_assert_eq(iu_write_file(S.bad, b, S.len), 0);
		int want = i < 8 ? CKPT_E_NOTIMAGE : i < 12 ? CKPT_E_VERSION : CKPT_E_CORRUPT;
		late += expect_lazy_reject(&S, want, "flip", i, fds, thr);
	}
	cr_log_info("%d of %zu flips found after serving started", late, S.len);
	cr_assert(late > 0, "no damage was left for the loaders: the test proves nothing about them");
	free(b);
	small_free(&S);
}

/* Version 4, stored: every byte of the structure (header, block headers
 * and runs, trailer, footer) and, in the data, the first and last byte of
 * every 64 KiB chunk and every 4093rd byte, flipped: refused up front or,
 * in the data, found by whichever reads the chunk first (a fault: its
 * chunk hash; a loader: the block's payload hash) and never served. */
Test(lazy_restore, every_chunk_of_a_stored_image_damaged_is_rejected, .timeout = 600)
{
	struct small S;
	small_make_level(&S, 0);
	struct ckpt__img_header hh;
	memcpy(&hh, S.img, sizeof(hh));
	cr_assert_eq(hh.version, 4u);
	int fds = ckpt_test_count_fds(), thr = ckpt_test_count_threads();
	uint8_t *b = malloc(S.len);
	int late = 0, tried = 0;
	struct ckpt__footer f;
	memcpy(&f, S.img + S.len - sizeof(f), sizeof(f));
	/* which bytes to flip: all but the data, which is sampled */
	bool *pick = malloc(S.len);
	cr_assert(pick);
	for (size_t i = 0; i < S.len; i++)
		pick[i] = true;
	for (size_t at = sizeof(hh); at < f.trailer_offset;) {
		struct ckpt__blk_header bh;
		memcpy(&bh, S.img + at, sizeof(bh));
		size_t d = at + sizeof(bh), cs = hh.chunk_size;
		for (size_t k = 0; k < bh.data_len; k++)
			pick[d + k] = k % cs == 0 || k % cs == cs - 1 || k == bh.data_len - 1u || k % 4093 == 0;
		at = d + bh.data_len + bh.nruns * sizeof(struct ckpt__run);
	}
	for (size_t i = 0; i < S.len; i++) {
		bool flip = pick[i];
		if (!flip)
			continue;
		memcpy(b, S.img, S.len);
		b[i] ^= 0xff;
		cr_assert_eq(iu_write_file(S.bad, b, S.len), 0);
		int want = i < 8 ? CKPT_E_NOTIMAGE : i < 12 ? CKPT_E_VERSION : CKPT_E_CORRUPT;
		late += expect_lazy_reject(&S, want, "flip", i, fds, thr);
		tried++;
	}
	cr_log_info("%d of %d flips found after serving started", late, tried);
	cr_assert(late > 0, "no damage was left for the loaders: the test proves nothing about them");
	free(pick);
	free(b);
	small_free(&S);
}

Test(lazy_restore, every_truncation_is_rejected_up_front, .timeout = 300)
{
	struct small S;
	small_make(&S);
	int fds = ckpt_test_count_fds(), thr = ckpt_test_count_threads();
	for (size_t n = 0; n < S.len; n++) {
		cr_assert_eq(iu_write_file(S.bad, S.img, n), 0);
		int late = expect_lazy_reject(&S, CKPT_E_TRUNCATED, "truncate", n, fds, thr);
		cr_assert_eq(late, 0, "truncation at %zu was not seen before serving", n);
	}
	small_free(&S);
}

Test(lazy_restore, verify_first_rejects_data_damage_before_serving)
{
	struct small S;
	small_make(&S);
	/* the last block's data: loaded on demand, checked only then */
	struct ckpt__footer f;
	memcpy(&f, S.img + S.len - sizeof(f), sizeof(f));
	struct ckpt__trl_entry e;
	struct ckpt__trl_header t;
	memcpy(&t, S.img + f.trailer_offset, sizeof(t));
	memcpy(&e, S.img + f.trailer_offset + sizeof(t) + (t.nblocks - 1) * sizeof(e), sizeof(e));
	uint8_t *b = malloc(S.len);
	memcpy(b, S.img, S.len);
	b[e.offset + sizeof(struct ckpt__blk_header) + 1] ^= 0x01;
	cr_assert_eq(iu_write_file(S.bad, b, S.len), 0);
	char err[256] = "";
	struct ckpt_restore_opts ro = lazy_opts(0, NULL, err, sizeof(err));
	ckpt_heap *r = NULL;
	CKPT_ASSERT_OK(ckpt_restore(S.bad, &ro, &r)); /* lazily: not yet seen */
	cr_assert_eq(ckpt_restore_wait(r), CKPT_E_CORRUPT);
	ckpt_heap_destroy(r);
	ro = lazy_opts(CKPT_RESTORE_VERIFY_FIRST, NULL, err, sizeof(err));
	r = NULL;
	cr_assert_eq(ckpt_restore(S.bad, &ro, &r), CKPT_E_CORRUPT);
	cr_assert_null(r);
	cr_assert(strstr(err, "block"), "errbuf names the block: %s", err);
	free(b);
	small_free(&S);
}

/* --------------------------------- damage found after serving started */

static sigjmp_buf bus_jmp;
static volatile sig_atomic_t bus_hits;
static void *volatile bus_addr;

static void on_bus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	bus_hits++;
	bus_addr = si->si_addr;
	siglongjmp(bus_jmp, 1);
}

struct logbuf {
	pthread_mutex_t mu;
	int errors;
	char last[512];
};

static void log_cb(void *arg, int level, const char *msg)
{
	struct logbuf *lb = arg;
	pthread_mutex_lock(&lb->mu);
	if (level == CKPT_LOG_ERROR) {
		lb->errors++;
		snprintf(lb->last, sizeof(lb->last), "%s", msg);
	}
	pthread_mutex_unlock(&lb->mu);
}

/* Reads one byte at @p; 1 if that raised SIGBUS. */
static int touch_faults(const volatile uint8_t *p, uint8_t *out)
{
	if (sigsetjmp(bus_jmp, 1))
		return 1;
	*out = *p;
	return 0;
}

Test(lazy_restore, a_block_damaged_after_serving_started_is_never_served, .timeout = 120)
{
	char *dir = iu_tmpdir("lazybus");
	char path[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	ckpt_heap *h = make_heap(CKPT_TRAP_THREAD, 0, 64u << 20);
	fill_heap(h, 16, 77);
	size_t used;
	uint8_t *copy = snapshot(h, &used);
	uint8_t *base = ckpt_heap_base(h);
	checkpoint(h, path, 0); /* stored: the data is the pages */
	ckpt_heap_destroy(h);

	/* damage the data of a block in the middle: not read by the
	 * allocator while ckpt_restore() opens the heap */
	size_t len = 0;
	uint8_t *img = iu_read_file(path, &len);
	struct ckpt__footer f;
	memcpy(&f, img + len - sizeof(f), sizeof(f));
	struct ckpt__trl_header t;
	memcpy(&t, img + f.trailer_offset, sizeof(t));
	cr_assert(t.nblocks >= 8, "want several blocks, got %llu", (unsigned long long)t.nblocks);
	struct ckpt__trl_entry e;
	memcpy(&e, img + f.trailer_offset + sizeof(t) + (t.nblocks / 2) * sizeof(e), sizeof(e));
	struct ckpt__blk_header bh;
	memcpy(&bh, img + e.offset, sizeof(bh));
	struct ckpt__run run;
	memcpy(&run, img + e.offset + sizeof(bh) + bh.data_len, sizeof(run));
	cr_assert_eq(run.kind, CKPT__RUN_DATA, "the block opens with a data run");
	img[e.offset + sizeof(bh) + 100] ^= 0x40; /* inside the run's first page */
	cr_assert_eq(iu_write_file(path, img, len), 0);
	uint8_t *bad_page = base + run.first_page * 4096;

	struct logbuf lb = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.log = log_cb;
	ho.log_arg = &lb;
	ckpt_heap *r = restore_lazy(path, 0, &ho);
	struct sigaction sa = { .sa_sigaction = on_bus, .sa_flags = SA_SIGINFO }, old;
	sigaction(SIGBUS, &sa, &old);
	uint8_t v = 0;
	int faulted = touch_faults(bad_page + 100, &v);
	cr_assert(faulted, "a page of the damaged block was served (byte %#x, stored %#x)", v, copy[(size_t)(bad_page + 100 - base)]);
	cr_assert(touch_faults(bad_page + 4000, &v), "second access to the damaged page was served");
	sigaction(SIGBUS, &old, NULL);
	cr_assert(bus_addr == bad_page || bus_addr == NULL || bus_addr == bad_page + 100 || bus_addr == bad_page + 4000,
		  "si_addr %p, the page is %p", bus_addr, (void *)bad_page);
	pthread_mutex_lock(&lb.mu);
	cr_assert(lb.errors >= 1 && strstr(lb.last, "block"), "not logged: %d errors, last '%s'", lb.errors, lb.last);
	pthread_mutex_unlock(&lb.mu);
	/* the rest of the heap is served, but it can never checkpoint */
	cr_assert_eq(ckpt_restore_wait(r), CKPT_E_CORRUPT);
	size_t bad_lo = (size_t)((uint8_t *)(bad_page)-base) / 4096;
	for (size_t p = 0; p < used / 4096; p++) {
		if (p >= bad_lo - 512 && p < bad_lo + 512)
			continue; /* the damaged block's neighbourhood */
		cr_assert(memcmp(base + p * 4096, copy + p * 4096, 4096) == 0, "good page %zu differs", p);
	}
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	cr_assert_eq(ckpt_begin(r, &d, NULL), CKPT_E_CORRUPT);
	ckpt_heap_destroy(r);
	free(img);
	free(copy);
	iu_rmtree(dir);
	free(dir);
}

/* ------------------------------------------------------------ leaks */

Test(lazy_restore, destroy_while_warming_up_leaks_nothing, .timeout = 120)
{
	char *dir = iu_tmpdir("lazyleak");
	char path[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	ckpt_heap *h = make_heap(CKPT_TRAP_THREAD, 0, 64u << 20);
	fill_heap(h, 24, 5);
	uint64_t base = (uint64_t)(uintptr_t)ckpt_heap_base(h);
	checkpoint(h, path, 1);
	ckpt_heap_destroy(h);
	int fds = ckpt_test_count_fds(), thr = ckpt_test_count_threads();
	for (int k = 0; k < 20; k++) {
		ckpt_heap *r = restore_lazy(path, 0, NULL);
		void **tab = ckpt_root_get(r);
		volatile uint8_t x = ((uint8_t *)tab[k * 37])[0];
		(void)x;
		ckpt_heap_destroy(r); /* loaders are still running */
		cr_assert(!iu_range_mapped(base, 64u << 20));
		cr_assert_eq(ckpt_test_count_fds(), fds, "round %d: fd leaked", k);
		cr_assert_eq(ckpt_test_count_threads(), thr, "round %d: thread leaked", k);
	}
	/* a taken range: refused, nothing left behind */
	ckpt_heap *r = restore_lazy(path, 0, NULL);
	ckpt_heap *r2 = NULL;
	struct ckpt_restore_opts ro = lazy_opts(0, NULL, NULL, 0);
	cr_assert_eq(ckpt_restore(path, &ro, &r2), CKPT_E_ADDRINUSE);
	cr_assert_null(r2);
	ckpt_heap_destroy(r);
	cr_assert_eq(ckpt_test_count_fds(), fds);
	cr_assert_eq(ckpt_test_count_threads(), thr);
	iu_rmtree(dir);
	free(dir);
}

Test(lazy_restore, eager_and_created_heaps_report_full_residency)
{
	ckpt_heap *h = make_heap(CKPT_TRAP_THREAD, 0, 16u << 20);
	uint64_t r = 1, t = 2;
	CKPT_ASSERT_OK(ckpt_restore_progress(h, &r, &t));
	cr_assert_eq(r, t);
	CKPT_ASSERT_OK(ckpt_restore_wait(h));
	ckpt_heap_destroy(h);
	cr_assert_eq(ckpt_restore_progress(NULL, &r, &t), -EINVAL);
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.flags = 1u << 7;
	ckpt_heap *x = NULL;
	cr_assert_eq(ckpt_restore("/nonexistent", &ro, &x), -EINVAL, "unknown flags are refused");
}
