/*
 * test_image_engine.c - images written by the checkpoint engine
 * (ckpt_begin / ckpt_wait) to files: round trips for both trap modes and
 * the fork backend while the application keeps writing, incremental chains
 * with random writes between checkpoints, broken chains, merge.
 */
#include <sys/wait.h>

#include "image_util.h"

#define HEAP (32u << 20)

static ckpt_heap *make_heap(enum ckpt_backend be, unsigned flags)
{
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = HEAP;
	ho.backend = be;
	ho.flags = flags;
	ckpt_heap *h = NULL;
	int rc = ckpt_heap_create(&ho, &h);
	if (rc == -EPERM || rc == CKPT_E_KERNEL)
		CKPT_TEST_SKIP("heap needs userfaultfd: %s", ckpt_strerror(rc));
	CKPT_ASSERT_OK(rc);
	return h;
}

struct table {
	uint32_t n;
	uint8_t *blk[256];
	uint32_t len[256];
};

static struct table *populate(ckpt_heap *h, uint64_t *st)
{
	struct table *t = ckpt_calloc(h, 1, sizeof(*t));
	cr_assert(t);
	t->n = 256;
	for (uint32_t i = 0; i < t->n; i++) {
		t->len[i] = 64 + (uint32_t)(iu_rand(st) % 30000);
		t->blk[i] = ckpt_alloc(h, t->len[i]);
		cr_assert(t->blk[i]);
		for (uint32_t k = 0; k < t->len[i]; k += 8) {
			uint64_t v = (k % 64 == 0) ? iu_rand(st) : i;
			memcpy(t->blk[i] + k, &v, t->len[i] - k < 8 ? t->len[i] - k : 8);
		}
	}
	CKPT_ASSERT_OK(ckpt_root_set(h, t));
	return t;
}

/* Random writes, frees and allocations touching a few percent of pages. */
static void mutate(ckpt_heap *h, struct table *t, uint64_t *st, unsigned nwrites)
{
	for (unsigned w = 0; w < nwrites; w++) {
		uint32_t i = (uint32_t)(iu_rand(st) % t->n);
		switch (iu_rand(st) % 8) {
		case 0: /* replace a block */
			ckpt_free(h, t->blk[i]);
			t->len[i] = 64 + (uint32_t)(iu_rand(st) % 30000);
			t->blk[i] = ckpt_alloc(h, t->len[i]);
			cr_assert(t->blk[i]);
			memset(t->blk[i], (int)(iu_rand(st) & 0xff), t->len[i]);
			break;
		case 1: /* zero a whole block: pages that become all-zero */
			memset(t->blk[i], 0, t->len[i]);
			break;
		default: {
			uint32_t off = (uint32_t)(iu_rand(st) % t->len[i]);
			t->blk[i][off] ^= (uint8_t)(1 + iu_rand(st) % 255);
		}
		}
	}
}

static uint8_t *snapshot(ckpt_heap *h, size_t *used)
{
	*used = ckpt_heap_used(h);
	uint8_t *c = malloc(*used);
	memcpy(c, ckpt_heap_base(h), *used);
	return c;
}

static void assert_image_is(const char *path, const uint8_t *want, size_t used, const char *what)
{
	uint8_t *m;
	size_t sz = 0;
	char err[256] = "";
	int rc = iu_load(path, &m, &sz, err, sizeof(err));
	cr_assert(rc == 0, "%s: load: %s (%s)", what, ckpt_err_name(rc), err);
	for (size_t i = 0; i < used; i += 4096)
		cr_assert(memcmp(m + i, want + i, used - i < 4096 ? used - i : 4096) == 0,
			  "%s: page %zu differs from the heap at ckpt_begin", what, i / 4096);
	munmap(m, sz);
}

static void engine_round_trip(enum ckpt_backend be, int level)
{
	char *dir = iu_tmpdir("eng");
	char path[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	ckpt_heap *h = make_heap(be, 0);
	uint64_t st = 1234 + (uint64_t)be;
	struct table *t = populate(h, &st);
	size_t used;
	uint8_t *snap = snapshot(h, &used);
	void *base = ckpt_heap_base(h);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	struct ckpt_begin_opts o = iu_opts(level, 0);
	CKPT_ASSERT_OK(ckpt_begin(h, &d, &o));
	/* the application keeps writing; the image must not see it */
	for (uint32_t i = 0; i < t->n; i++)
		memset(t->blk[i], 0xee, t->len[i] < 200 ? t->len[i] : 200);
	CKPT_ASSERT_OK(ckpt_wait(h));
	struct ckpt_stats s = { .struct_size = sizeof(s) };
	CKPT_ASSERT_OK(ckpt_stats(h, &s));
	struct stat sb;
	cr_assert(stat(path, &sb) == 0);
	cr_assert_eq(s.bytes_written, (uint64_t)sb.st_size, "progress %llu bytes, file %lld",
		     (unsigned long long)s.bytes_written, (long long)sb.st_size);
	cr_assert_eq(sb.st_mode & 0777, 0600);
	char err[256] = "";
	CKPT_ASSERT_OK(ckpt_image_verify(path, CKPT_VERIFY_CHAIN, err, sizeof(err)));
	assert_image_is(path, snap, used, "engine image");
	ckpt_heap_destroy(h);

	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.backend = be;
	ro.heap = &ho;
	ro.errbuf = err;
	ro.errbuf_size = sizeof(err);
	ckpt_heap *r = NULL;
	int rc = ckpt_restore(path, &ro, &r);
	cr_assert(rc == 0, "restore: %s (%s)", ckpt_err_name(rc), err);
	cr_assert_eq(ckpt_heap_base(r), base);
	cr_assert(memcmp(ckpt_heap_base(r), snap, used) == 0);
	struct table *rt = ckpt_root_get(r);
	cr_assert_eq(rt->n, 256);
	cr_assert(ckpt_alloc(r, 5000));
	ckpt_heap_destroy(r);
	free(snap);
	iu_rmtree(dir);
	free(dir);
}

Test(image_engine, round_trip_trap_thread_while_writing)
{
	engine_round_trip(CKPT_TRAP_THREAD, 1);
}

Test(image_engine, round_trip_trap_sigbus_while_writing)
{
	engine_round_trip(CKPT_TRAP_SIGBUS, 0);
}

Test(image_engine, round_trip_fork_backend_while_writing)
{
	engine_round_trip(CKPT_BACKEND_FORK, 3);
}

struct chain {
	char *dir;
	char path[300];
	ckpt_heap *h;
	struct table *t;
};

Test(image_engine, incremental_chain_of_six_restores_byte_identical)
{
	struct chain C;
	char *dir = iu_tmpdir("chain6");
	snprintf(C.path, sizeof(C.path), "%s/heap.ckpt", dir);
	C.dir = dir;
	C.h = make_heap(CKPT_TRAP_THREAD, CKPT_HEAP_INCREMENTAL);
	uint64_t st = ckpt_test_seed("incremental_chain");
	C.t = populate(C.h, &st);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = C.path };
	uint8_t *snap = NULL;
	size_t used = 0;
	void *base = ckpt_heap_base(C.h);
	for (int k = 0; k <= 6; k++) {
		if (k)
			mutate(C.h, C.t, &st, 80);
		free(snap);
		snap = snapshot(C.h, &used);
		struct ckpt_begin_opts o = iu_opts(k % 2, CKPT_BEGIN_NO_FSYNC);
		CKPT_ASSERT_OK(ckpt_begin(C.h, &d, &o));
		mutate(C.h, C.t, &st, 20); /* during the checkpoint */
		CKPT_ASSERT_OK(ckpt_wait(C.h));
		struct ckpt_stats s = { .struct_size = sizeof(s) };
		CKPT_ASSERT_OK(ckpt_stats(C.h, &s));
		cr_assert_eq(s.incremental, k > 0, "checkpoint %d: incremental=%d", k, s.incremental);
		char what[64];
		snprintf(what, sizeof(what), "chain link %d", k);
		assert_image_is(C.path, snap, used, what);
		cr_assert_eq(iu_count_names(dir, "heap.ckpt.g"), k, "generation files after %d", k);
		cr_assert_eq(iu_count_names(dir, ".tmp."), 0);
	}
	struct ckpt_image_info ii;
	CKPT_ASSERT_OK(ckpt_image_info(C.path, &ii, NULL, 0));
	cr_assert(ii.flags & CKPT_SINK_INCREMENTAL);
	cr_assert_eq(ii.generation, 7);
	cr_assert_str_eq(ii.parent_name, "heap.ckpt.g000006");
	char err[256] = "";
	int rc = ckpt_image_verify(C.path, CKPT_VERIFY_CHAIN, err, sizeof(err));
	cr_assert(rc == 0, "verify chain: %s (%s)", ckpt_err_name(rc), err);

	ckpt_heap_destroy(C.h);
	C.h = NULL;
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.errbuf = err;
	ro.errbuf_size = sizeof(err);
	ckpt_heap *r = NULL;
	rc = ckpt_restore(C.path, &ro, &r);
	cr_assert(rc == 0, "restore chain: %s (%s)", ckpt_err_name(rc), err);
	cr_assert_eq(ckpt_heap_base(r), base);
	cr_assert(memcmp(ckpt_heap_base(r), snap, used) == 0, "restored chain differs");
	ckpt_heap_destroy(r);

	/* merge folds it into one full image; in place, generations go */
	char merged[300];
	snprintf(merged, sizeof(merged), "%s/merged.ckpt", dir);
	CKPT_ASSERT_OK(ckpt_image_merge(merged, C.path, 1, err, sizeof(err)));
	struct ckpt_image_info mi;
	CKPT_ASSERT_OK(ckpt_image_info(merged, &mi, NULL, 0));
	cr_assert(!(mi.flags & CKPT_SINK_INCREMENTAL));
	cr_assert_eq(memcmp(mi.id, ii.id, 16), 0, "merged image keeps the tip's identity");
	assert_image_is(merged, snap, used, "merged");
	CKPT_ASSERT_OK(ckpt_image_merge(C.path, C.path, 0, err, sizeof(err)));
	cr_assert_eq(iu_count_names(dir, "heap.ckpt.g"), 0, "generation files left after merging in place");
	assert_image_is(C.path, snap, used, "merged in place");
	free(snap);
	iu_rmtree(dir);
	free(dir);
}

/* Builds a chain of 3 at dir/heap.ckpt and returns its directory. */
static char *short_chain(void)
{
	char *dir = iu_tmpdir("broken");
	char path[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	ckpt_heap *h = make_heap(CKPT_TRAP_THREAD, CKPT_HEAP_INCREMENTAL);
	uint64_t st = 99;
	struct table *t = populate(h, &st);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	struct ckpt_begin_opts o = iu_opts(1, CKPT_BEGIN_NO_FSYNC);
	for (int k = 0; k < 3; k++) {
		if (k)
			mutate(h, t, &st, 30);
		CKPT_ASSERT_OK(ckpt_begin(h, &d, &o));
		CKPT_ASSERT_OK(ckpt_wait(h));
	}
	ckpt_heap_destroy(h);
	return dir;
}

Test(image_engine, missing_parent_is_detected)
{
	char *dir = short_chain();
	char path[300], g[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	snprintf(g, sizeof(g), "%s/heap.ckpt.g000001", dir);
	CKPT_ASSERT_OK(ckpt_image_verify(path, CKPT_VERIFY_CHAIN, NULL, 0));
	cr_assert(unlink(g) == 0);
	char err[256] = "";
	CKPT_ASSERT_ERR(ckpt_image_verify(path, CKPT_VERIFY_CHAIN, err, sizeof(err)), CKPT_E_PARENT);
	cr_assert(strstr(err, "g000001"), "errbuf does not name the missing file: %s", err);
	ckpt_heap *r = NULL;
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	int fds = ckpt_test_count_fds();
	CKPT_ASSERT_ERR(ckpt_restore(path, &ro, &r), CKPT_E_PARENT);
	cr_assert_eq(ckpt_test_count_fds(), fds);
	cr_assert(!iu_range_mapped((uint64_t)(uintptr_t)CKPT_DEFAULT_BASE, HEAP));
	iu_rmtree(dir);
	free(dir);
}

Test(image_engine, altered_parent_is_detected)
{
	char *dir = short_chain();
	char path[300], g1[300], g2[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	snprintf(g1, sizeof(g1), "%s/heap.ckpt.g000001", dir);
	snprintf(g2, sizeof(g2), "%s/heap.ckpt.g000002", dir);
	/* another valid image in the parent's place: a full one of another heap */
	char *other = short_chain();
	char og1[300];
	snprintf(og1, sizeof(og1), "%s/heap.ckpt.g000001", other);
	size_t n = 0;
	uint8_t *b = iu_read_file(og1, &n);
	cr_assert_eq(iu_write_file(g1, b, n), 0);
	free(b);
	char err[256] = "";
	CKPT_ASSERT_ERR(ckpt_image_verify(path, CKPT_VERIFY_CHAIN, err, sizeof(err)), CKPT_E_PARENT);
	ckpt_heap *r = NULL;
	CKPT_ASSERT_ERR(ckpt_restore(path, NULL, &r), CKPT_E_PARENT);
	/* and a damaged parent (valid header, bad block) is corrupt */
	b = iu_read_file(g2, &n);
	b[n - 200] ^= 1;
	cr_assert_eq(iu_write_file(g2, b, n), 0);
	free(b);
	CKPT_ASSERT_ERR(ckpt_image_verify(g2, 0, NULL, 0), CKPT_E_CORRUPT);
	cr_assert(!iu_range_mapped((uint64_t)(uintptr_t)CKPT_DEFAULT_BASE, HEAP));
	iu_rmtree(other);
	free(other);
	iu_rmtree(dir);
	free(dir);
}

Test(image_engine, full_image_removes_generation_files)
{
	char *dir = short_chain();
	char path[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	cr_assert_eq(iu_count_names(dir, "heap.ckpt.g"), 2);
	ckpt_heap *r = NULL;
	CKPT_ASSERT_OK(ckpt_restore(path, NULL, &r));
	/* a restored heap's first checkpoint is full */
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	CKPT_ASSERT_OK(ckpt_begin(r, &d, NULL));
	CKPT_ASSERT_OK(ckpt_wait(r));
	struct ckpt_image_info ii;
	CKPT_ASSERT_OK(ckpt_image_info(path, &ii, NULL, 0));
	cr_assert(!(ii.flags & CKPT_SINK_INCREMENTAL));
	cr_assert_eq(ii.generation, 4);
	cr_assert_eq(iu_count_names(dir, "heap.ckpt.g"), 0, "unreferenced generation files left");
	ckpt_heap_destroy(r);
	iu_rmtree(dir);
	free(dir);
}

Test(image_engine, stream_to_a_pipe_is_always_full)
{
	ckpt_heap *h = make_heap(CKPT_TRAP_THREAD, CKPT_HEAP_INCREMENTAL);
	uint64_t st = 5;
	populate(h, &st);
	size_t used;
	uint8_t *snap = snapshot(h, &used);
	char *dir = iu_tmpdir("efd");
	char path[300];
	snprintf(path, sizeof(path), "%s/stream", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	cr_assert(fd >= 0);
	struct ckpt_dest d = { .kind = CKPT_DEST_FD, .fd = fd };
	CKPT_ASSERT_OK(ckpt_begin(h, &d, NULL));
	CKPT_ASSERT_OK(ckpt_wait(h));
	close(fd);
	assert_image_is(path, snap, used, "fd image");
	free(snap);
	ckpt_heap_destroy(h);
	iu_rmtree(dir);
	free(dir);
}

Test(image_engine, restore_fd_refuses_an_incremental_and_a_cut_stream)
{
	char *dir = short_chain();
	char path[300], g1[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	snprintf(g1, sizeof(g1), "%s/heap.ckpt.g000001", dir);
	int fds = ckpt_test_count_fds();
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert(fd >= 0);
	ckpt_heap *r = NULL;
	CKPT_ASSERT_ERR(ckpt_restore_fd(fd, NULL, &r), CKPT_E_PARENT);
	close(fd);
	/* the full image, cut short, through a pipe */
	size_t n = 0;
	uint8_t *b = iu_read_file(g1, &n);
	int p[2];
	cr_assert(pipe2(p, O_CLOEXEC) == 0);
	pid_t pid = fork(); /* no criterion call in the child (see test_image_crash.c) */
	if (pid == 0) {
		close(p[0]);
		size_t want = n - 100, done = 0;
		while (done < want) {
			ssize_t k = write(p[1], b + done, want - done);
			if (k <= 0)
				_exit(1);
			done += (size_t)k;
		}
		_exit(0);
	}
	cr_assert(pid > 0, "fork: %s", strerror(errno));
	close(p[1]);
	CKPT_ASSERT_ERR(ckpt_restore_fd(p[0], NULL, &r), CKPT_E_TRUNCATED);
	close(p[0]);
	waitpid(pid, NULL, 0);
	cr_assert_null(r);
	cr_assert_eq(ckpt_test_count_fds(), fds);
	cr_assert(!iu_range_mapped((uint64_t)(uintptr_t)CKPT_DEFAULT_BASE, HEAP));
	/* and whole, it restores */
	fd = open(g1, O_RDONLY | O_CLOEXEC);
	CKPT_ASSERT_OK(ckpt_restore_fd(fd, NULL, &r));
	close(fd);
	ckpt_heap_destroy(r);
	free(b);
	iu_rmtree(dir);
	free(dir);
}
