/*
 * test_chain_read.c - reading an image chain while the writer of another
 * process publishes: each file is opened once and read through that fd,
 * parents are found next to the tip's real file, and a chain whose old
 * generations were cleaned up under the reader gives a retryable -EAGAIN.
 *
 * The test binary links libckpt statically, so its open()/openat() below
 * take the library's calls: a hook runs just before a chosen file is
 * opened, to play the other process's publish at exactly that moment.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/testutil.h"

#define HEAP (16u << 20)
#define DATA (1u << 20)

static char dir[64], tip[128], parent[160], other[160];

/* the hook: before the (skip+1)-th open of a name ending in hook_suffix,
 * run hook_fn once */
static const char *hook_suffix;
static int hook_skip;
static void (*hook_fn)(void);

static void maybe_hook(const char *name)
{
	size_t n = strlen(name), k = hook_suffix ? strlen(hook_suffix) : 0;
	if (!hook_fn || n < k || strcmp(name + n - k, hook_suffix) != 0)
		return;
	if (hook_skip-- > 0)
		return;
	void (*fn)(void) = hook_fn;
	hook_fn = NULL;
	fn();
}

static long open_mode(int flags, va_list ap)
{
	return (flags & (O_CREAT | O_TMPFILE)) ? (long)va_arg(ap, int) : 0;
}

int open(const char *name, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	long mode = open_mode(flags, ap);
	va_end(ap);
	maybe_hook(name);
	return (int)syscall(SYS_openat, AT_FDCWD, name, flags, mode);
}

int openat(int dfd, const char *name, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	long mode = open_mode(flags, ap);
	va_end(ap);
	maybe_hook(name);
	return (int)syscall(SYS_openat, dfd, name, flags, mode);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/ckpt-chainrd.XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(tip, sizeof(tip), "%s/img", dir);
	snprintf(parent, sizeof(parent), "%s/img.g000001", dir);
	snprintf(other, sizeof(other), "%s/other", dir);
	hook_fn = NULL;
}

static void teardown(void)
{
	hook_fn = NULL;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
}

/* Writes images of a heap filled with @seed to @path: one full, then
 * @incrementals more (each changing a page first). */
static void write_images(const char *path, uint8_t seed, int incrementals)
{
	struct ckpt_heap_opts o;
	ckpt_heap *h = NULL;
	ckpt_heap_opts_init(&o);
	o.size = HEAP;
	o.flags = incrementals ? CKPT_HEAP_INCREMENTAL : 0;
	CKPT_ASSERT_OK(ckpt_heap_create(&o, &h));
	uint8_t *d = ckpt_alloc(h, DATA);
	cr_assert(d);
	ckpt_root_set(h, d);
	memset(d, seed, DATA);
	struct ckpt_dest dest = {.kind = CKPT_DEST_PATH, .path = path};
	struct ckpt_begin_opts bo;
	ckpt_begin_opts_init(&bo);
	bo.flags = CKPT_BEGIN_NO_FSYNC;
	for (int i = 0; i <= incrementals; i++) {
		if (i)
			d[(size_t)i * 4096] = (uint8_t)(seed + i);
		CKPT_ASSERT_OK(ckpt_begin(h, &dest, &bo));
		CKPT_ASSERT_OK(ckpt_wait(h));
	}
	ckpt_heap_destroy(h);
}

/* The restored heap holds @seed's data (with the incrementals' changes). */
static void assert_restored(ckpt_heap *r, uint8_t seed, int incrementals)
{
	uint8_t *d = ckpt_root_get(r);
	cr_assert(d);
	cr_assert_eq(d[8192 * 4], seed, "restored the wrong image: %#x, want %#x", d[8192 * 4], seed);
	for (int i = 1; i <= incrementals; i++)
		cr_assert_eq(d[(size_t)i * 4096], (uint8_t)(seed + i), "incremental %d not applied", i);
}

Test(chain_read, a_symlinked_tip_finds_its_parents_next_to_its_target, .init = setup,
     .fini = teardown)
{
	write_images(tip, 0x11, 2);
	char sub[128], link[160], err[256] = "";
	snprintf(sub, sizeof(sub), "%s/elsewhere", dir);
	cr_assert(mkdir(sub, 0700) == 0);
	snprintf(link, sizeof(link), "%s/current", sub);
	cr_assert(symlink(tip, link) == 0);
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.errbuf = err;
	ro.errbuf_size = sizeof(err);
	ckpt_heap *r = NULL;
	int rc = ckpt_restore(link, &ro, &r);
	cr_assert(rc == 0, "restore through a symlink: %s (%s)", ckpt_err_name(rc), err);
	assert_restored(r, 0x11, 2);
	ckpt_heap_destroy(r);
	CKPT_ASSERT_OK(ckpt_image_verify(link, CKPT_VERIFY_CHAIN, err, sizeof(err)));
}

static void publish_other_over_tip(void)
{
	cr_assert(rename(other, tip) == 0);
}

/* Another process publishes a new image at the tip's name while the
 * restore is under way: the restore reads the file it resolved, whole. */
Test(chain_read, a_concurrent_publish_is_not_reported_as_corruption, .init = setup,
     .fini = teardown)
{
	write_images(tip, 0x22, 0);
	write_images(other, 0x33, 0);
	char err[256] = "";
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.errbuf = err;
	ro.errbuf_size = sizeof(err);
	/* publish right before any second open of the tip's name */
	hook_suffix = "/img";
	hook_skip = 1;
	hook_fn = publish_other_over_tip;
	ckpt_heap *r = NULL;
	int rc = ckpt_restore(tip, &ro, &r);
	hook_fn = NULL;
	cr_assert(rc == 0, "restore during a publish: %s (%s)", ckpt_err_name(rc), err);
	assert_restored(r, 0x22, 0);
	ckpt_heap_destroy(r);
}

static void publish_full_and_clean_generations(void)
{
	cr_assert(rename(other, tip) == 0);
	cr_assert(unlink(parent) == 0);
}

/* A full image is published and the old generations removed between the
 * reader's opening the tip and its parent: a retryable -EAGAIN that names
 * what happened, and the retry restores the new image. */
Test(chain_read, a_concurrent_generation_cleanup_gives_a_retryable_error, .init = setup,
     .fini = teardown)
{
	write_images(tip, 0x44, 1);
	write_images(other, 0x55, 0);
	struct stat st;
	cr_assert(stat(parent, &st) == 0, "no parent generation %s", parent);
	char err[256] = "";
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.errbuf = err;
	ro.errbuf_size = sizeof(err);
	hook_suffix = "img.g000001";
	hook_skip = 0;
	hook_fn = publish_full_and_clean_generations;
	ckpt_heap *r = NULL;
	int rc = ckpt_restore(tip, &ro, &r);
	cr_assert(hook_fn == NULL, "the parent was never opened");
	cr_assert(rc == -EAGAIN, "restore during clean-up: %s (%s), want EAGAIN", ckpt_err_name(rc), err);
	cr_assert_null(r);
	cr_assert(strstr(err, "retry"), "errbuf: %s", err);
	CKPT_ASSERT_OK(ckpt_restore(tip, &ro, &r));
	assert_restored(r, 0x55, 0);
	ckpt_heap_destroy(r);
}
