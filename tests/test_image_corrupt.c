/*
 * test_image_corrupt.c - a damaged image is always rejected, with the
 * right error, without crashing and without mapping anything: every byte
 * of a small multi-block image flipped in turn, and the image truncated at
 * every length.
 */
#include "image_util.h"

struct small {
	char *dir;
	char path[300], bad[300];
	uint8_t *img;
	size_t len;
	uint64_t base, size;
	uint8_t *copy;
	size_t used;
};

/* A live heap with ~1.3 MiB of compressible data, written at zstd-1: a
 * few kilobytes holding several blocks (runs of data and zero pages). */
static void small_make(struct small *S)
{
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = 32u << 20;
	ckpt_heap *h;
	int rc = ckpt_heap_create(&ho, &h);
	if (rc == -EPERM || rc == CKPT_E_KERNEL)
		CKPT_TEST_SKIP("heap needs userfaultfd: %s", ckpt_strerror(rc));
	CKPT_ASSERT_OK(rc);
	uint8_t *a = ckpt_alloc(h, 1300 * 1024);
	uint8_t *b = ckpt_alloc(h, 16 * 1024);
	cr_assert(a && b);
	for (size_t i = 0; i < 1300 * 1024; i += 4096)
		memset(a + i, (int)(i / 4096 % 7), 4096); /* 0 every 7th page */
	for (size_t i = 0; i < 16 * 1024; i++)
		b[i] = (uint8_t)(i % 13);
	CKPT_ASSERT_OK(ckpt_root_set(h, b));
	S->dir = iu_tmpdir("corrupt");
	snprintf(S->path, sizeof(S->path), "%s/img", S->dir);
	snprintf(S->bad, sizeof(S->bad), "%s/bad", S->dir);
	size_t psz = ckpt_heap_page_size(h);
	S->used = ckpt_heap_used(h);
	S->base = (uint64_t)(uintptr_t)ckpt_heap_base(h);
	S->size = ckpt_heap_size(h);
	S->copy = malloc(S->used);
	memcpy(S->copy, ckpt_heap_base(h), S->used);
	struct ckpt_sink_info in = iu_info(S->base, S->size, (uint32_t)psz, (S->used + psz - 1) / psz, 8);
	struct ckpt_begin_opts o = iu_opts(1, CKPT_BEGIN_NO_FSYNC);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = S->path };
	CKPT_ASSERT_OK(iu_write(&d, &o, &in, ckpt_heap_base(h), NULL, 0, 3));
	ckpt_heap_destroy(h);
	S->img = iu_read_file(S->path, &S->len);
	struct ckpt_image_info ii;
	CKPT_ASSERT_OK(ckpt_image_info(S->path, &ii, NULL, 0));
	cr_assert(ii.blocks >= 2, "want several blocks, got %llu", (unsigned long long)ii.blocks);
	cr_assert(S->len < 16384, "image is %zu bytes: too big for a byte-by-byte test", S->len);
	cr_log_info("image: %zu bytes, %llu blocks", S->len, (unsigned long long)ii.blocks);

	/* the pristine image restores */
	ckpt_heap *r = NULL;
	CKPT_ASSERT_OK(ckpt_restore(S->path, NULL, &r));
	cr_assert(memcmp(ckpt_heap_base(r), S->copy, S->used) == 0);
	ckpt_heap_destroy(r);
}

static void small_free(struct small *S)
{
	free(S->img);
	free(S->copy);
	iu_rmtree(S->dir);
	free(S->dir);
}

/* One damaged file: restore and verify both give @want, nothing mapped,
 * no fd left open. */
static void expect_reject(struct small *S, int want, const char *what, size_t at, int fds)
{
	char err[256] = "";
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.errbuf = err;
	ro.errbuf_size = sizeof(err);
	ckpt_heap *r = NULL;
	int rc = ckpt_restore(S->bad, &ro, &r);
	cr_assert(rc == want, "%s at %zu: restore gave %s (%s), want %s", what, at, ckpt_err_name(rc),
		  err, ckpt_err_name(want));
	cr_assert_null(r);
	cr_assert(err[0], "%s at %zu: no sentence in errbuf", what, at);
	rc = ckpt_image_verify(S->bad, CKPT_VERIFY_CHAIN, err, sizeof(err));
	cr_assert(rc == want, "%s at %zu: verify gave %s (%s), want %s", what, at, ckpt_err_name(rc),
		  err, ckpt_err_name(want));
	cr_assert(!iu_range_mapped(S->base, S->size), "%s at %zu: the heap range got mapped", what, at);
	cr_assert_eq(ckpt_test_count_fds(), fds, "%s at %zu: fd leaked", what, at);
}

Test(image_corrupt, every_flipped_byte_is_rejected_with_the_right_error, .timeout = 240)
{
	struct small S;
	small_make(&S);
	int fds = ckpt_test_count_fds();
	uint8_t *b = malloc(S.len);
	for (size_t i = 0; i < S.len; i++) {
		memcpy(b, S.img, S.len);
		b[i] ^= 0xff;
		cr_assert_eq(iu_write_file(S.bad, b, S.len), 0);
		/* the magic says "not ours"; the version says "not this
		 * version"; anything else fails a checksum */
		int want = i < 8 ? CKPT_E_NOTIMAGE : i < 12 ? CKPT_E_VERSION : CKPT_E_CORRUPT;
		expect_reject(&S, want, "flip", i, fds);
	}
	free(b);
	small_free(&S);
}

Test(image_corrupt, every_truncation_is_rejected_as_truncated, .timeout = 240)
{
	struct small S;
	small_make(&S);
	int fds = ckpt_test_count_fds();
	for (size_t n = 0; n < S.len; n++) {
		cr_assert_eq(iu_write_file(S.bad, S.img, n), 0);
		expect_reject(&S, CKPT_E_TRUNCATED, "truncate", n, fds);
	}
	small_free(&S);
}

Test(image_corrupt, appended_bytes_are_rejected)
{
	struct small S;
	small_make(&S);
	int fds = ckpt_test_count_fds();
	uint8_t *b = malloc(S.len + 1);
	memcpy(b, S.img, S.len);
	b[S.len] = 0;
	cr_assert_eq(iu_write_file(S.bad, b, S.len + 1), 0);
	expect_reject(&S, CKPT_E_CORRUPT, "append", S.len, fds);
	free(b);
	small_free(&S);
}
