/*
 * test_app_tag.c - the application tag (ckpt_heap_opts.app_tag): recorded
 * in every image of a tagged heap, refused on a mismatch with
 * CKPT_E_APPTAG, kept by restore and merge; an untagged image carries an
 * empty tag (every image is format version 4 since the trailer carries the
 * block table with chunk hashes: image.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/testutil.h"

#define HEAP (16u << 20)

static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/ckpt-tag.XXXXXX");
	cr_assert(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
}

static void opts(struct ckpt_heap_opts *o, const char *tag, unsigned flags)
{
	ckpt_heap_opts_init(o);
	o->size = HEAP;
	o->app_tag = tag;
	o->flags = flags;
}

/* A heap with @tag, some data in it, checkpointed to dir/NAME. */
static ckpt_heap *tagged_image(const char *tag, const char *name, unsigned flags, char *path)
{
	struct ckpt_heap_opts o;
	ckpt_heap *h = NULL;
	char buf[64];
	/* the heap keeps its own copy: the caller's string may go away */
	snprintf(buf, sizeof(buf), "%s", tag ? tag : "");
	opts(&o, tag ? buf : NULL, flags);
	CKPT_ASSERT_OK(ckpt_heap_create(&o, &h));
	memset(buf, 'x', sizeof(buf) - 1);
	uint8_t *d = ckpt_alloc(h, 1u << 20);
	cr_assert(d);
	memset(d, 0x5a, 1u << 20);
	ckpt_root_set(h, d);
	sprintf(path, "%s/%s", dir, name);
	struct ckpt_dest dest = {.kind = CKPT_DEST_PATH, .path = path};
	struct ckpt_begin_opts bo;
	ckpt_begin_opts_init(&bo);
	bo.flags = CKPT_BEGIN_NO_FSYNC;
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, &bo));
	CKPT_ASSERT_OK(ckpt_wait(h));
	return h;
}

static int restore_with(const char *path, const char *tag, ckpt_heap **out, char *err, size_t errsz)
{
	struct ckpt_heap_opts o;
	opts(&o, tag, 0);
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.heap = &o;
	ro.errbuf = err;
	ro.errbuf_size = errsz;
	return ckpt_restore(path, &ro, out);
}

Test(app_tag, a_tagged_image_restores_only_with_the_same_tag, .init = setup, .fini = teardown)
{
	char path[128], err[256] = "";
	ckpt_heap *h = tagged_image("app build 1.2.3", "img", 0, path);
	ckpt_heap_destroy(h);

	struct ckpt_image_info ii;
	CKPT_ASSERT_OK(ckpt_image_info(path, &ii, err, sizeof(err)));
	cr_assert_str_eq(ii.app_tag, "app build 1.2.3");
	cr_assert_eq(ii.version, 4u);

	ckpt_heap *r = NULL;
	CKPT_ASSERT_ERR(restore_with(path, "app build 1.2.4", &r, err, sizeof(err)), CKPT_E_APPTAG);
	cr_assert_null(r);
	cr_assert(strstr(err, "app build 1.2.3") && strstr(err, "app build 1.2.4"), "errbuf: %s", err);
	CKPT_ASSERT_ERR(restore_with(path, NULL, &r, err, sizeof(err)), CKPT_E_APPTAG);
	CKPT_ASSERT_ERR(restore_with(path, "", &r, err, sizeof(err)), CKPT_E_APPTAG);
	cr_assert_null(r);

	/* nothing was left mapped by the refusals: the right tag restores */
	CKPT_ASSERT_OK(restore_with(path, "app build 1.2.3", &r, err, sizeof(err)));
	uint8_t *d = ckpt_root_get(r);
	cr_assert(d && d[0] == 0x5a && d[(1u << 20) - 1] == 0x5a);
	ckpt_heap_destroy(r);
}

Test(app_tag, an_untagged_image_has_an_empty_tag_and_a_tagged_program_refuses_it, .init = setup,
     .fini = teardown)
{
	char path[128], err[256] = "";
	ckpt_heap *h = tagged_image(NULL, "img", 0, path);
	ckpt_heap_destroy(h);
	struct ckpt_image_info ii;
	CKPT_ASSERT_OK(ckpt_image_info(path, &ii, err, sizeof(err)));
	cr_assert_eq(ii.version, 4u);
	cr_assert_str_eq(ii.app_tag, "");
	ckpt_heap *r = NULL;
	CKPT_ASSERT_ERR(restore_with(path, "v2", &r, err, sizeof(err)), CKPT_E_APPTAG);
	CKPT_ASSERT_OK(restore_with(path, NULL, &r, err, sizeof(err)));
	ckpt_heap_destroy(r);
}

/* The restored heap, its incremental images and a merge of the chain all
 * carry the tag on. */
Test(app_tag, restore_incrementals_and_merge_keep_the_tag, .init = setup, .fini = teardown)
{
	char path[128], merged[160], err[256] = "";
	ckpt_heap *h = tagged_image("schema-7", "img", CKPT_HEAP_INCREMENTAL, path);
	uint8_t *d = ckpt_root_get(h);
	d[4096] = 1;
	struct ckpt_dest dest = {.kind = CKPT_DEST_PATH, .path = path};
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, NULL));
	CKPT_ASSERT_OK(ckpt_wait(h));
	ckpt_heap_destroy(h);
	struct ckpt_image_info ii;
	CKPT_ASSERT_OK(ckpt_image_info(path, &ii, err, sizeof(err)));
	cr_assert(ii.flags & CKPT_SINK_INCREMENTAL);
	cr_assert_str_eq(ii.app_tag, "schema-7");

	snprintf(merged, sizeof(merged), "%s/merged", dir);
	CKPT_ASSERT_OK(ckpt_image_merge(merged, path, 0, err, sizeof(err)));
	CKPT_ASSERT_OK(ckpt_image_info(merged, &ii, err, sizeof(err)));
	cr_assert_str_eq(ii.app_tag, "schema-7");

	ckpt_heap *r = NULL;
	CKPT_ASSERT_OK(restore_with(merged, "schema-7", &r, err, sizeof(err)));
	CKPT_ASSERT_OK(ckpt_begin(r, &dest, NULL));
	CKPT_ASSERT_OK(ckpt_wait(r));
	ckpt_heap_destroy(r);
	CKPT_ASSERT_OK(ckpt_image_info(path, &ii, err, sizeof(err)));
	cr_assert_str_eq(ii.app_tag, "schema-7", "the restored heap's image lost the tag");
}

Test(app_tag, a_tag_too_long_is_refused_and_the_error_has_a_name)
{
	char tag[CKPT_APP_TAG_MAX + 1];
	memset(tag, 'a', sizeof(tag) - 1);
	tag[sizeof(tag) - 1] = 0;
	struct ckpt_heap_opts o;
	ckpt_heap *h = NULL;
	opts(&o, tag, 0);
	CKPT_ASSERT_ERR(ckpt_heap_create(&o, &h), -EINVAL);
	tag[CKPT_APP_TAG_MAX - 1] = 0; /* 63 bytes: the longest tag */
	CKPT_ASSERT_OK(ckpt_heap_create(&o, &h));
	ckpt_heap_destroy(h);
	cr_assert_str_eq(ckpt_err_name(CKPT_E_APPTAG), "CKPT_E_APPTAG");
	cr_assert(strstr(ckpt_strerror(CKPT_E_APPTAG), "application tag"), "%s",
		  ckpt_strerror(CKPT_E_APPTAG));
}
