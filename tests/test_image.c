/*
 * test_image.c - the image writer and reader round trip, driven directly
 * through the file sink (no checkpoint engine involved): every compression
 * level class, zero pages, out-of-order blocks, pipes, O_DIRECT, and the
 * distinct errors of ckpt_restore().
 */
#include <pthread.h>
#include <sys/file.h>
#include <sys/wait.h>

#include "image_util.h"

#define BASE 0x5c0000000000ull
#define PSZ 4096u

static uint8_t *anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(p != MAP_FAILED);
	return p;
}

static off_t fsize(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 ? st.st_size : -1;
}

/* A synthetic heap image of @np pages at @level: written, verified,
 * inspected and loaded back byte-identical. */
static void round_trip(int level, uint64_t np, off_t *size_out)
{
	char *dir = iu_tmpdir("rt");
	char path[300];
	snprintf(path, sizeof(path), "%s/img", dir);
	uint8_t *mem = anon(np * PSZ);
	uint64_t zeros = iu_fill(mem, np, PSZ, 42 + (uint64_t)level);
	struct ckpt_sink_info in = iu_info(BASE, 64ull << 20, PSZ, np, 7);
	struct ckpt_begin_opts o = iu_opts(level, CKPT_BEGIN_NO_FSYNC);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	CKPT_ASSERT_OK(iu_write(&d, &o, &in, mem, NULL, 0, 99));

	char err[256] = "";
	int rc = ckpt_image_verify(path, CKPT_VERIFY_CHAIN, err, sizeof(err));
	cr_assert(rc == 0, "level %d: verify: %s (%s)", level, ckpt_err_name(rc), err);
	struct ckpt_image_info ii;
	CKPT_ASSERT_OK(ckpt_image_info(path, &ii, err, sizeof(err)));
	cr_assert_eq(ii.npages, np);
	cr_assert_eq(ii.pages_zero, zeros, "level %d: %llu zero pages recorded, %llu in the heap", level,
		     (unsigned long long)ii.pages_zero, (unsigned long long)zeros);
	cr_assert_eq(ii.pages_stored, np - zeros);
	cr_assert_eq(ii.base, BASE);
	cr_assert_eq(ii.zstd_level, level);
	cr_assert_eq(!!(ii.flags & CKPT_IMAGE_ZSTD), level > 0);
	cr_assert_eq(memcmp(ii.id, in.id, 16), 0);
	cr_assert_eq((uint64_t)ii.file_size, (uint64_t)fsize(path));

	uint8_t *back;
	size_t sz = 0;
	rc = iu_load(path, &back, &sz, err, sizeof(err));
	cr_assert(rc == 0, "load: %s (%s)", ckpt_err_name(rc), err);
	cr_assert_eq(sz, 64ull << 20);
	cr_assert(memcmp(back, mem, np * PSZ) == 0, "level %d: contents differ after the round trip",
		  level);
	for (size_t i = np * PSZ; i < np * PSZ + 4 * PSZ; i++)
		cr_assert_eq(back[i], 0, "page past the extent not zero");
	munmap(back, sz);
	munmap(mem, np * PSZ);
	if (size_out)
		*size_out = fsize(path);
	cr_assert_eq(iu_count_names(dir, ".tmp."), 0, "temp file left behind");
	iu_rmtree(dir);
	free(dir);
}

Test(image, round_trip_stored_is_byte_identical)
{
	off_t s;
	round_trip(0, 700, &s);
	/* 3 of 4 page kinds are stored; zero pages cost nothing */
	cr_assert(s < 700 * PSZ, "stored image of 700 pages is %lld bytes", (long long)s);
}

Test(image, round_trip_every_zstd_level_class_is_byte_identical)
{
	off_t stored, z1, z19;
	round_trip(0, 400, &stored);
	round_trip(1, 400, &z1);
	round_trip(3, 400, NULL);
	round_trip(9, 400, NULL);
	round_trip(19, 400, &z19);
	/* half the pages are text: zstd must shrink the image */
	cr_assert(z1 < stored * 3 / 4, "zstd-1 %lld vs stored %lld", (long long)z1, (long long)stored);
	cr_assert(z19 <= z1 + 4096);
}

Test(image, all_zero_pages_are_recorded_not_stored)
{
	char *dir = iu_tmpdir("zero");
	char path[300];
	snprintf(path, sizeof(path), "%s/img", dir);
	uint64_t np = 5000;
	uint8_t *mem = anon(np * PSZ);
	mem[17 * PSZ + 5] = 1;
	mem[4000 * PSZ] = 2;
	mem[4999 * PSZ + PSZ - 1] = 3;
	struct ckpt_sink_info in = iu_info(BASE, 64ull << 20, PSZ, np, 1);
	struct ckpt_begin_opts o = iu_opts(0, CKPT_BEGIN_NO_FSYNC);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	CKPT_ASSERT_OK(iu_write(&d, &o, &in, mem, NULL, 0, 5));
	struct ckpt_image_info ii;
	CKPT_ASSERT_OK(ckpt_image_info(path, &ii, NULL, 0));
	cr_assert_eq(ii.pages_stored, 3);
	cr_assert_eq(ii.pages_zero, np - 3);
	cr_assert(fsize(path) < 3 * PSZ + 64 * 1024, "image of 3 data pages is %lld bytes",
		  (long long)fsize(path));
	uint8_t *back;
	size_t sz = 0;
	CKPT_ASSERT_OK(iu_load(path, &back, &sz, NULL, 0));
	cr_assert(memcmp(back, mem, np * PSZ) == 0);
	munmap(back, sz);
	munmap(mem, np * PSZ);
	iu_rmtree(dir);
	free(dir);
}

Test(image, blocks_in_any_order_restore_the_same_heap)
{
	/* the same heap emitted in two different orders: different files,
	 * the same contents */
	char *dir = iu_tmpdir("order");
	char a[300], b[300];
	snprintf(a, sizeof(a), "%s/a", dir);
	snprintf(b, sizeof(b), "%s/b", dir);
	uint64_t np = 900;
	uint8_t *mem = anon(np * PSZ);
	iu_fill(mem, np, PSZ, 3);
	struct ckpt_sink_info in = iu_info(BASE, 64ull << 20, PSZ, np, 2);
	struct ckpt_begin_opts o = iu_opts(1, CKPT_BEGIN_NO_FSYNC);
	struct ckpt_dest da = { .kind = CKPT_DEST_PATH, .path = a };
	struct ckpt_dest db = { .kind = CKPT_DEST_PATH, .path = b };
	CKPT_ASSERT_OK(iu_write(&da, &o, &in, mem, NULL, 0, 1000));
	/* b: strictly descending single pages */
	uint64_t *desc = malloc(np * sizeof(*desc));
	for (uint64_t i = 0; i < np; i++)
		desc[i] = np - 1 - i;
	CKPT_ASSERT_OK(iu_write(&db, &o, &in, mem, desc, np, 1));
	free(desc);
	size_t la = 0, lb = 0;
	uint8_t *fa = iu_read_file(a, &la), *fb = iu_read_file(b, &lb);
	cr_assert(la != lb || memcmp(fa, fb, la) != 0, "two orders gave the same bytes");
	free(fa);
	free(fb);
	uint8_t *ma, *mb;
	size_t sa = 0, sb = 0;
	CKPT_ASSERT_OK(iu_load(a, &ma, &sa, NULL, 0));
	CKPT_ASSERT_OK(iu_load(b, &mb, &sb, NULL, 0));
	cr_assert(memcmp(ma, mem, np * PSZ) == 0);
	cr_assert(memcmp(mb, mem, np * PSZ) == 0);
	munmap(ma, sa);
	munmap(mb, sb);
	munmap(mem, np * PSZ);
	iu_rmtree(dir);
	free(dir);
}

Test(image, direct_io_writes_the_same_bytes)
{
	char *dir = iu_tmpdir("direct");
	char a[300], b[300];
	snprintf(a, sizeof(a), "%s/buffered", dir);
	snprintf(b, sizeof(b), "%s/direct", dir);
	uint64_t np = 1500; /* > 1 MiB: whole O_DIRECT chunks and a tail */
	uint8_t *mem = anon(np * PSZ);
	iu_fill(mem, np, PSZ, 11);
	struct ckpt_sink_info in = iu_info(BASE, 64ull << 20, PSZ, np, 3);
	struct ckpt_begin_opts o1 = iu_opts(0, 0), o2 = iu_opts(0, CKPT_BEGIN_DIRECT);
	struct ckpt_dest da = { .kind = CKPT_DEST_PATH, .path = a };
	struct ckpt_dest db = { .kind = CKPT_DEST_PATH, .path = b };
	CKPT_ASSERT_OK(iu_write(&da, &o1, &in, mem, NULL, 0, 77));
	CKPT_ASSERT_OK(iu_write(&db, &o2, &in, mem, NULL, 0, 77));
	size_t la = 0, lb = 0;
	uint8_t *fa = iu_read_file(a, &la), *fb = iu_read_file(b, &lb);
	cr_assert_eq(la, lb);
	cr_assert(memcmp(fa, fb, la) == 0, "O_DIRECT image differs from the buffered one");
	free(fa);
	free(fb);
	CKPT_ASSERT_OK(ckpt_image_verify(b, 0, NULL, 0));
	munmap(mem, np * PSZ);
	iu_rmtree(dir);
	free(dir);
}

/* ---------------------------------------------------- with a real heap */

struct live {
	ckpt_heap *h;
	uint8_t *copy;  /* the heap's bytes [0, used) when written */
	size_t used;
	uint64_t root;
};

static void live_make(struct live *L, uint64_t seed)
{
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = 32u << 20;
	int rc = ckpt_heap_create(&ho, &L->h);
	if (rc == -EPERM || rc == CKPT_E_KERNEL)
		CKPT_TEST_SKIP("heap needs userfaultfd: %s", ckpt_strerror(rc));
	CKPT_ASSERT_OK(rc);
	uint64_t st = seed;
	void **tab = ckpt_calloc(L->h, 200, sizeof(void *));
	cr_assert(tab);
	for (int i = 0; i < 200; i++) {
		size_t n = 16 + iu_rand(&st) % 20000;
		uint8_t *p = ckpt_alloc(L->h, n);
		cr_assert(p);
		for (size_t k = 0; k < n; k++)
			p[k] = (uint8_t)(i * 31 + k % 251);
		tab[i] = p;
	}
	CKPT_ASSERT_OK(ckpt_root_set(L->h, tab));
	L->root = (uint64_t)(uintptr_t)tab;
	L->used = ckpt_heap_used(L->h);
	L->copy = malloc(L->used);
	memcpy(L->copy, ckpt_heap_base(L->h), L->used);
}

/* Writes the live heap through the sink as a full image. */
static int live_write(struct live *L, const struct ckpt_dest *d, int level, uint64_t seed)
{
	size_t psz = ckpt_heap_page_size(L->h);
	struct ckpt_sink_info in = iu_info((uint64_t)(uintptr_t)ckpt_heap_base(L->h),
					   ckpt_heap_size(L->h), (uint32_t)psz,
					   (L->used + psz - 1) / psz, seed);
	in.root = L->root;
	struct ckpt_begin_opts o = iu_opts(level, CKPT_BEGIN_NO_FSYNC);
	return iu_write(d, &o, &in, ckpt_heap_base(L->h), NULL, 0, seed);
}

static void live_check(struct live *L, ckpt_heap *r)
{
	cr_assert_eq((uint64_t)(uintptr_t)ckpt_root_get(r), L->root);
	cr_assert(memcmp(ckpt_heap_base(r), L->copy, L->used) == 0, "restored heap differs");
	void **tab = ckpt_root_get(r);
	cr_assert_eq(((uint8_t *)tab[7])[3], (uint8_t)(7 * 31 + 3));
	/* the allocator is live */
	uint8_t *p = ckpt_alloc(r, 1000);
	cr_assert(p && ckpt__in_heap(r, p));
	memset(p, 0xab, 1000);
	for (int i = 0; i < 200; i++)
		cr_assert(!(p >= (uint8_t *)tab[i] && p < (uint8_t *)tab[i] + 16), "allocator handed out live memory");
}

Test(image, restore_maps_at_the_recorded_base_with_a_live_allocator)
{
	char *dir = iu_tmpdir("live");
	char path[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	struct live L;
	live_make(&L, 1);
	void *base = ckpt_heap_base(L.h);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	CKPT_ASSERT_OK(live_write(&L, &d, 1, 5));
	ckpt_heap_destroy(L.h);
	cr_assert(!iu_range_mapped((uint64_t)(uintptr_t)base, 32u << 20));

	char err[256] = "";
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.errbuf = err;
	ro.errbuf_size = sizeof(err);
	ckpt_heap *r = NULL;
	int rc = ckpt_restore(path, &ro, &r);
	cr_assert(rc == 0, "restore: %s (%s)", ckpt_err_name(rc), err);
	cr_assert_eq(ckpt_heap_base(r), base);
	live_check(&L, r);

	/* the restored heap checkpoints again (engine) and that restores too */
	char path2[300];
	snprintf(path2, sizeof(path2), "%s/again.ckpt", dir);
	struct ckpt_dest d2 = { .kind = CKPT_DEST_PATH, .path = path2 };
	CKPT_ASSERT_OK(ckpt_begin(r, &d2, NULL));
	CKPT_ASSERT_OK(ckpt_wait(r));
	CKPT_ASSERT_OK(ckpt_image_verify(path2, CKPT_VERIFY_CHAIN, err, sizeof(err)));
	struct ckpt_image_info i1, i2;
	CKPT_ASSERT_OK(ckpt_image_info(path, &i1, NULL, 0));
	CKPT_ASSERT_OK(ckpt_image_info(path2, &i2, NULL, 0));
	cr_assert_eq(i2.generation, i1.generation + 1, "lineage continues: %llu after %llu",
		     (unsigned long long)i2.generation, (unsigned long long)i1.generation);
	ckpt_heap_destroy(r);
	free(L.copy);
	iu_rmtree(dir);
	free(dir);
}

Test(image, restore_refuses_a_taken_range_and_leaks_nothing)
{
	char *dir = iu_tmpdir("inuse");
	char path[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	struct live L;
	live_make(&L, 2);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	CKPT_ASSERT_OK(live_write(&L, &d, 0, 6));
	int fds = ckpt_test_count_fds(), thr = ckpt_test_count_threads();
	ckpt_heap *r = NULL;
	CKPT_ASSERT_ERR(ckpt_restore(path, NULL, &r), CKPT_E_ADDRINUSE);
	cr_assert_null(r);
	cr_assert_eq(ckpt_test_count_fds(), fds, "fd leaked");
	cr_assert_eq(ckpt_test_count_threads(), thr, "thread leaked");
	cr_assert(memcmp(ckpt_heap_base(L.h), L.copy, L.used) == 0, "live heap touched");
	ckpt_heap_destroy(L.h);
	free(L.copy);
	iu_rmtree(dir);
	free(dir);
}

struct pipe_writer {
	struct live *L;
	int fd;
	int rc;
};

static void *pipe_writer_main(void *arg)
{
	struct pipe_writer *pw = arg;
	struct ckpt_dest d = { .kind = CKPT_DEST_FD, .fd = pw->fd };
	pw->rc = live_write(pw->L, &d, 1, 9);
	close(pw->fd);
	return NULL;
}

struct pipe_reader {
	int fd;
	uint8_t *buf;
	size_t len, cap;
};

static void *pipe_reader_main(void *arg)
{
	struct pipe_reader *pr = arg;
	for (;;) {
		if (pr->len == pr->cap) {
			pr->cap = pr->cap ? pr->cap * 2 : 1 << 20;
			pr->buf = realloc(pr->buf, pr->cap);
		}
		ssize_t k = read(pr->fd, pr->buf + pr->len, pr->cap - pr->len);
		if (k <= 0)
			break;
		pr->len += (size_t)k;
	}
	return NULL;
}

Test(image, pipe_stream_gets_the_file_bytes_and_restores_with_restore_fd)
{
	char *dir = iu_tmpdir("pipe");
	char path[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	struct live L;
	live_make(&L, 3);
	void *base = ckpt_heap_base(L.h);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	CKPT_ASSERT_OK(live_write(&L, &d, 1, 9));

	/* the same stream into a pipe: byte-identical to the file */
	int p[2];
	cr_assert(pipe2(p, O_CLOEXEC) == 0);
	struct pipe_writer pw = { &L, p[1], -1 };
	struct pipe_reader pr = { p[0], NULL, 0, 0 };
	pthread_t tw, tr;
	pthread_create(&tr, NULL, pipe_reader_main, &pr);
	pthread_create(&tw, NULL, pipe_writer_main, &pw);
	pthread_join(tw, NULL);
	pthread_join(tr, NULL);
	close(p[0]);
	CKPT_ASSERT_OK(pw.rc);
	size_t flen = 0;
	uint8_t *fbytes = iu_read_file(path, &flen);
	cr_assert_eq(pr.len, flen, "pipe got %zu bytes, file has %zu", pr.len, flen);
	cr_assert(memcmp(pr.buf, fbytes, flen) == 0, "pipe bytes differ from the file's");
	free(pr.buf);
	free(fbytes);

	/* and a pipe restores: writer thread -> pipe -> ckpt_restore_fd */
	ckpt_heap_destroy(L.h);
	cr_assert(pipe2(p, O_CLOEXEC) == 0);
	/* the heap is gone: stream the saved copy from the file instead */
	/* no criterion call in the child: its reporting socket does not
	 * survive fork() (an assert there, even a passing one, can hang) */
	pid_t child = fork();
	if (child == 0) {
		close(p[0]);
		size_t n = 0;
		uint8_t *b = iu_read_file(path, &n);
		size_t done = 0;
		while (done < n) {
			ssize_t k = write(p[1], b + done, n - done > 3000 ? 3000 : n - done);
			if (k <= 0)
				_exit(1);
			done += (size_t)k;
		}
		_exit(0);
	}
	cr_assert(child > 0, "fork: %s", strerror(errno));
	close(p[1]);
	char err[256] = "";
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.errbuf = err;
	ro.errbuf_size = sizeof(err);
	ckpt_heap *r = NULL;
	int rc = ckpt_restore_fd(p[0], &ro, &r);
	close(p[0]);
	int st;
	waitpid(child, &st, 0);
	cr_assert(rc == 0, "restore_fd: %s (%s)", ckpt_err_name(rc), err);
	cr_assert_eq(ckpt_heap_base(r), base);
	live_check(&L, r);
	ckpt_heap_destroy(r);
	free(L.copy);
	iu_rmtree(dir);
	free(dir);
}

/* Rewrites the header of the image at @path with @edit applied and a
 * fresh header checksum (a well-formed header with a value we reject). */
static void forge_header(const char *path, const char *out, void (*edit)(struct ckpt__img_header *))
{
	size_t n = 0;
	uint8_t *b = iu_read_file(path, &n);
	struct ckpt__img_header h;
	memcpy(&h, b, sizeof(h));
	edit(&h);
	ckpt__img_header_seal(&h);
	memcpy(b, &h, sizeof(h));
	cr_assert_eq(iu_write_file(out, b, n), 0);
	free(b);
}

static void edit_version(struct ckpt__img_header *h) { h->version = CKPT__IMG_VERSION + 1; }
static void edit_pagesize(struct ckpt__img_header *h) { h->page_size = 8192; h->heap_size = 64ull << 20; }
static void edit_base(struct ckpt__img_header *h) { h->base = 1ull << 47; }

Test(image, restore_errors_are_distinct)
{
	char *dir = iu_tmpdir("errs");
	char path[300], bad[300];
	snprintf(path, sizeof(path), "%s/good", dir);
	snprintf(bad, sizeof(bad), "%s/bad", dir);
	uint64_t np = 64;
	uint8_t *mem = anon(np * PSZ);
	iu_fill(mem, np, PSZ, 5);
	struct ckpt_sink_info in = iu_info(BASE, 64ull << 20, PSZ, np, 4);
	struct ckpt_begin_opts o = iu_opts(0, CKPT_BEGIN_NO_FSYNC);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	CKPT_ASSERT_OK(iu_write(&d, &o, &in, mem, NULL, 0, 1));
	int fds = ckpt_test_count_fds();
	ckpt_heap *r = NULL;
	char err[256];
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.errbuf = err;
	ro.errbuf_size = sizeof(err);

	forge_header(path, bad, edit_version);
	CKPT_ASSERT_ERR(ckpt_restore(bad, &ro, &r), CKPT_E_VERSION);
	forge_header(path, bad, edit_pagesize);
	CKPT_ASSERT_ERR(ckpt_restore(bad, &ro, &r), CKPT_E_PAGESIZE);
	forge_header(path, bad, edit_base);
	CKPT_ASSERT_ERR(ckpt_restore(bad, &ro, &r), CKPT_E_RANGE);
	cr_assert(strlen(err) > 0, "no sentence in errbuf");
	cr_assert_eq(iu_write_file(bad, "hello, world, this is not an image at all", 41), 0);
	CKPT_ASSERT_ERR(ckpt_restore(bad, &ro, &r), CKPT_E_NOTIMAGE);
	cr_assert_eq(iu_write_file(bad, "", 0), 0);
	CKPT_ASSERT_ERR(ckpt_restore(bad, &ro, &r), CKPT_E_TRUNCATED);
	snprintf(bad, sizeof(bad), "%s/missing", dir);
	CKPT_ASSERT_ERR(ckpt_restore(bad, &ro, &r), -ENOENT);
	cr_assert_null(r);
	cr_assert_eq(ckpt_test_count_fds(), fds, "fd leaked");
	cr_assert(!iu_range_mapped(BASE, 64ull << 20), "something was mapped at the base");
	munmap(mem, np * PSZ);
	iu_rmtree(dir);
	free(dir);
}

Test(image, append_mode_fd_gets_the_blocks_in_order)
{
	/* an O_APPEND file ignores write offsets: the writer must still put
	 * the blocks one after another */
	char *dir = iu_tmpdir("append");
	char a[300], b[300];
	snprintf(a, sizeof(a), "%s/path", dir);
	snprintf(b, sizeof(b), "%s/append", dir);
	uint64_t np = 2000;
	uint8_t *mem = anon(np * PSZ);
	iu_fill(mem, np, PSZ, 21);
	struct ckpt_sink_info in = iu_info(BASE, 64ull << 20, PSZ, np, 5);
	struct ckpt_begin_opts o = iu_opts(0, CKPT_BEGIN_NO_FSYNC);
	struct ckpt_dest da = { .kind = CKPT_DEST_PATH, .path = a };
	CKPT_ASSERT_OK(iu_write(&da, &o, &in, mem, NULL, 0, 8));
	int fd = open(b, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	cr_assert(fd >= 0);
	struct ckpt_dest db = { .kind = CKPT_DEST_FD, .fd = fd };
	CKPT_ASSERT_OK(iu_write(&db, &o, &in, mem, NULL, 0, 8));
	close(fd);
	size_t la = 0, lb = 0;
	uint8_t *fa = iu_read_file(a, &la), *fb = iu_read_file(b, &lb);
	cr_assert(la == lb && memcmp(fa, fb, la) == 0, "O_APPEND fd got different bytes");
	free(fa);
	free(fb);
	munmap(mem, np * PSZ);
	iu_rmtree(dir);
	free(dir);
}

Test(image, stale_temp_files_go_and_held_ones_stay)
{
	/* a crash leaves .NAME.tmp.*: the next checkpoint to NAME removes
	 * the ones no writer holds (flock), whatever the pid in the name */
	char *dir = iu_tmpdir("stale");
	char path[300], stale[300], held[300], other[300];
	snprintf(path, sizeof(path), "%s/img", dir);
	snprintf(stale, sizeof(stale), "%s/.img.tmp.%d.0badf00d", dir, (int)getpid());
	snprintf(held, sizeof(held), "%s/.img.tmp.1.00c0ffee", dir);
	snprintf(other, sizeof(other), "%s/.other.tmp.1.12345678", dir);
	cr_assert_eq(iu_write_file(stale, "x", 1), 0);
	cr_assert_eq(iu_write_file(held, "y", 1), 0);
	cr_assert_eq(iu_write_file(other, "z", 1), 0);
	int hfd = open(held, O_RDONLY | O_CLOEXEC);
	cr_assert(hfd >= 0 && flock(hfd, LOCK_EX) == 0);
	uint64_t np = 10;
	uint8_t *mem = anon(np * PSZ);
	iu_fill(mem, np, PSZ, 1);
	struct ckpt_sink_info in = iu_info(BASE, 64ull << 20, PSZ, np, 9);
	struct ckpt_begin_opts o = iu_opts(0, CKPT_BEGIN_NO_FSYNC);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	CKPT_ASSERT_OK(iu_write(&d, &o, &in, mem, NULL, 0, 1));
	cr_assert(access(stale, F_OK) != 0, "unheld temp file not removed");
	cr_assert(access(held, F_OK) == 0, "a temp file being written was removed");
	cr_assert(access(other, F_OK) == 0, "another destination's temp file was removed");
	close(hfd);
	munmap(mem, np * PSZ);
	iu_rmtree(dir);
	free(dir);
}

Test(image, digest_helper_matches_the_writer)
{
	char *dir = iu_tmpdir("digest");
	char path[300];
	snprintf(path, sizeof(path), "%s/img", dir);
	uint64_t np = 700;
	uint8_t *mem = anon(np * PSZ);
	iu_fill(mem, np, PSZ, 4);
	struct ckpt_sink_info in = iu_info(BASE, 64ull << 20, PSZ, np, 6);
	struct ckpt_begin_opts o = iu_opts(1, CKPT_BEGIN_NO_FSYNC);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	CKPT_ASSERT_OK(iu_write(&d, &o, &in, mem, NULL, 0, 2));
	size_t n = 0;
	uint8_t *b = iu_read_file(path, &n);
	struct ckpt__footer f;
	memcpy(&f, b + n - sizeof(f), sizeof(f));
	cr_assert_eq(ckpt__img_digest(b, n - sizeof(f)), f.file_hash);
	free(b);
	munmap(mem, np * PSZ);
	iu_rmtree(dir);
	free(dir);
}
