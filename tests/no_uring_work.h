/*
 * no_uring_work.h - what must keep working when io_uring cannot be set up
 * (shared by test_no_io_uring.c, which disables it with the sysctl, and
 * fi_test_no_io_uring.c, which injects the set-up failure).
 *
 * nu_run() runs in a child process and returns a message naming the first
 * thing that failed, or NULL: a full checkpoint, an incremental one on top
 * (a chain of two files), restore of the chain, restore from a pipe, and
 * the fork backend's checkpoint and restore; the heap's log callback says
 * "io_uring unavailable" exactly once per heap, and the restore's once.
 */
#ifndef NO_URING_WORK_H
#define NO_URING_WORK_H

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"

#define NU_HEAP (32u << 20)
#define NU_DATA (6u << 20)

static _Atomic int nu_said;

static void nu_log(void *arg, int level, const char *msg)
{
	(void)arg;
	(void)level;
	if (strstr(msg, "io_uring unavailable"))
		atomic_fetch_add(&nu_said, 1);
}

static char nu_msg[300];

#define NU_CHECK(cond, ...)                                                    \
	do {                                                                   \
		if (!(cond)) {                                                 \
			snprintf(nu_msg, sizeof(nu_msg), __VA_ARGS__);         \
			return nu_msg;                                         \
		}                                                              \
	} while (0)

static void nu_fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i += 512)
		memset(p + i, (int)(seed * 7 + i / 512), 512);
}

/* Checkpoints a heap of @be to @path (twice, the second incremental unless
 * fork), restores it, compares. */
static const char *nu_round(enum ckpt_backend be, const char *path, int zstd)
{
	struct ckpt_heap_opts o;
	ckpt_heap *h = NULL;
	ckpt_heap_opts_init(&o);
	o.size = NU_HEAP;
	o.backend = be;
	o.log = nu_log;
	if (be != CKPT_BACKEND_FORK)
		o.flags = CKPT_HEAP_INCREMENTAL;
	int rc = ckpt_heap_create(&o, &h);
	NU_CHECK(rc == 0, "heap_create: %s", ckpt_strerror(rc));
	uint8_t *d = ckpt_alloc(h, NU_DATA);
	NU_CHECK(d, "alloc");
	ckpt_root_set(h, d);
	nu_fill(d, NU_DATA, 1);
	struct ckpt_dest dest = {.kind = CKPT_DEST_PATH, .path = path};
	struct ckpt_begin_opts bo;
	ckpt_begin_opts_init(&bo);
	bo.flags = CKPT_BEGIN_NO_FSYNC;
	bo.zstd_level = zstd;
	uint8_t *want = malloc(NU_DATA);
	NU_CHECK(want, "malloc");
	atomic_store(&nu_said, 0);
	for (unsigned round = 0; round < 2; round++) {
		rc = ckpt_begin(h, &dest, &bo);
		NU_CHECK(rc == 0, "ckpt_begin %u: %s", round, ckpt_strerror(rc));
		memcpy(want, d, NU_DATA); /* the heap at the cut */
		nu_fill(d + round * 4096 * 16, 4096 * 8, 9); /* after the cut: not in this image */
		rc = ckpt_wait(h);
		NU_CHECK(rc == 0, "checkpoint %u: %s", round, ckpt_strerror(rc));
		nu_fill(d, 4096 * 4, 20 + round);    /* a few pages for the next one */
	}
	NU_CHECK(atomic_load(&nu_said) == 1, "the fallback was logged %d times for one heap",
		 atomic_load(&nu_said));
	ckpt_heap_destroy(h);

	struct ckpt_image_info ii;
	char err[256] = "";
	rc = ckpt_image_info(path, &ii, err, sizeof(err));
	NU_CHECK(rc == 0, "image_info: %s", err);
	NU_CHECK(be == CKPT_BACKEND_FORK || (ii.flags & CKPT_SINK_INCREMENTAL), "the second image is not incremental");

	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.heap = &o;
	ro.errbuf = err;
	ro.errbuf_size = sizeof(err);
	atomic_store(&nu_said, 0);
	rc = ckpt_restore(path, &ro, &h);
	NU_CHECK(rc == 0, "restore: %s", err);
	NU_CHECK(atomic_load(&nu_said) == 1, "restore logged the fallback %d times", atomic_load(&nu_said));
	int same = memcmp(ckpt_root_get(h), want, NU_DATA) == 0;
	ckpt_heap_destroy(h);
	free(want);
	NU_CHECK(same, "restored contents differ");
	return NULL;
}

/* A full image written to a pipe and restored from the other end. */
static const char *nu_pipe(void)
{
	struct ckpt_heap_opts o;
	ckpt_heap *h = NULL;
	ckpt_heap_opts_init(&o);
	o.size = NU_HEAP;
	o.log = nu_log;
	int rc = ckpt_heap_create(&o, &h);
	NU_CHECK(rc == 0, "heap_create: %s", ckpt_strerror(rc));
	uint8_t *d = ckpt_alloc(h, 1u << 20);
	nu_fill(d, 1u << 20, 3);
	ckpt_root_set(h, d);
	char tmpl[] = "/tmp/ckpt-nu-pipe.XXXXXX";
	int fd = mkstemp(tmpl);
	NU_CHECK(fd >= 0, "mkstemp");
	unlink(tmpl);
	struct ckpt_dest dest = {.kind = CKPT_DEST_FD, .fd = fd};
	rc = ckpt_begin(h, &dest, NULL);
	if (rc == 0)
		rc = ckpt_wait(h);
	NU_CHECK(rc == 0, "checkpoint to an fd: %s", ckpt_strerror(rc));
	uint8_t *want = malloc(1u << 20);
	memcpy(want, d, 1u << 20);
	ckpt_heap_destroy(h);
	lseek(fd, 0, SEEK_SET);
	rc = ckpt_restore_fd(fd, NULL, &h);
	close(fd);
	NU_CHECK(rc == 0, "restore_fd: %s", ckpt_strerror(rc));
	int same = memcmp(ckpt_root_get(h), want, 1u << 20) == 0;
	ckpt_heap_destroy(h);
	free(want);
	NU_CHECK(same, "restored (fd) contents differ");
	return NULL;
}

static const char *nu_run(const char *dir)
{
	char path[512];
	const char *m;
	snprintf(path, sizeof(path), "%s/thread.ckpt", dir);
	if ((m = nu_round(CKPT_TRAP_THREAD, path, 0)))
		return m;
	snprintf(path, sizeof(path), "%s/zstd.ckpt", dir);
	if ((m = nu_round(CKPT_TRAP_THREAD, path, 1)))
		return m;
	snprintf(path, sizeof(path), "%s/fork.ckpt", dir);
	if ((m = nu_round(CKPT_BACKEND_FORK, path, 0)))
		return m;
	return nu_pipe();
}

#endif /* NO_URING_WORK_H */
