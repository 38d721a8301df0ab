/*
 * fi_test_walk.c - the fault-injection walk (issue 7): for every call site
 * the fault hook guards (libckpt/src/faultinject.h) and every N up to the number
 * of times a clean run reaches it, make the N-th call fail and check what
 * the caller is promised:
 *
 *  checkpoint to a path (full and incremental, handler-thread and SIGBUS
 *  trap modes), with writes racing the checkpoint:
 *   - ckpt_begin() or ckpt_wait() returns exactly the injected error;
 *   - nothing half-visible: no temporary file is left in the directory, and
 *     the image at the path is the previous one byte for byte (or, when the
 *     failure came after the atomic rename, the complete new image);
 *   - the heap ends unprotected (pagemap bit 57 clear on every page of the
 *     extent), every page can be written, and the next checkpoint succeeds,
 *     holds exactly the heap, is a full image, and is mode 0600;
 *   - no fd and no thread more than before;
 *  restore of that image, and heap creation:
 *   - the injected error comes back, *out is NULL, nothing is mapped at the
 *     heap's base, no fd or thread is left behind, and a clean retry works.
 *
 * A site the library recovers from (a fallback) may also give success, but
 * then the image must be complete and exact; such cases are counted in the
 * log.  Built only against build/libckpt-fi.a (-DCKPT_FAULT_INJECTION).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "faultinject.h"
#include "image.h"
#include "internal.h"
#include "uffd_compat.h"
#include "util/testutil.h"

#ifndef CKPT_FAULT_INJECTION
#error "fi_test_walk.c must be built with -DCKPT_FAULT_INJECTION against libckpt-fi.a"
#endif

#define HEAP_SIZE (16u << 20)
#define DATA_PAGES 300u
#define BASE ((void *)0x5d0000000000ull)

static const char *const site_name[CKPT_FAULT__COUNT] = {
	"write", "fsync", "rename", "io_uring", "memfd", "mmap", "uffd_wp",
};

/* A distinct, realistic error per site, so that a mixed-up report shows. */
static const int site_err[CKPT_FAULT__COUNT] = {
	-ENOSPC, -EIO, -EDQUOT, -ENOBUFS, -EMFILE, -ENOMEM, -ENOMEM,
};

struct walk {
	char dir[128];
	char path[160];
	ckpt_heap *h;
	uint8_t *data;      /* DATA_PAGES pages from the allocator */
	size_t used;        /* bytes of the extent */
	uint8_t *snap;      /* the heap at the last ckpt_begin() */
	uint8_t *good;      /* bytes of the image at path after the last success */
	size_t good_len;
	int fds, threads;   /* baseline */
	unsigned round;
	unsigned fired, tolerated;
};


static uint8_t *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	fstat(fd, &st);
	uint8_t *b = malloc((size_t)st.st_size + 1);
	size_t n = 0;
	while (b && n < (size_t)st.st_size) {
		ssize_t k = read(fd, b + n, (size_t)st.st_size - n);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	*len = n;
	return b;
}

/* Files in the directory that are neither the image nor a generation link
 * (NAME.gNNNNNN): temporaries and anything else a failure left. */
static int count_strays(const struct walk *W, char *first, size_t fsz)
{
	DIR *d = opendir(W->dir);
	int n = 0;
	struct dirent *de;
	cr_assert(d);
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (!strcmp(de->d_name, "img"))
			continue;
		if (!strncmp(de->d_name, "img.g", 5) && strlen(de->d_name) == 11 &&
		    strspn(de->d_name + 5, "0123456789") == 6)
			continue;
		if (n++ == 0)
			snprintf(first, fsz, "%s", de->d_name);
	}
	closedir(d);
	return n;
}

static size_t count_wp(const struct walk *W)
{
	size_t n = 0;
	for (size_t off = 0; off < W->used; off += 4096)
		if (ckpt_test_pagemap((uint8_t *)ckpt_heap_base(W->h) + off) & CKPT_PM_UFFD_WP)
			n++;
	return n;
}

/* The image chain at W->path holds exactly W->snap. */
static void assert_image_exact(const struct walk *W, const char *what)
{
	char err[256] = "";
	struct ckpt__load_opts lo = { .chain = true };
	struct ckpt__img_header hdr;
	uint8_t *mem = NULL;
	int rc = ckpt__image_load_anon(W->path, &lo, &hdr, &mem, err, sizeof(err));
	cr_assert(rc == 0, "%s: the image does not load: %s (%s)", what, ckpt_err_name(rc), err);
	cr_assert(memcmp(mem, W->snap, W->used) == 0, "%s: the image differs from the heap at ckpt_begin()",
		  what);
	munmap(mem, hdr.heap_size);
}

/* Writes during the checkpoint: every third data page, so that the fault
 * path (copy aside, pool) runs while the fault is armed. */
static void scribble(struct walk *W, unsigned salt, unsigned stride)
{
	for (unsigned p = 0; p < DATA_PAGES; p += stride)
		memset(W->data + (size_t)p * 4096 + (salt % 97), (int)(salt + p), 64);
}

/* One checkpoint; returns its result (ckpt_begin's error or ckpt_wait's). */
static int checkpoint(struct walk *W, struct ckpt_stats *st)
{
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = W->path };
	struct ckpt_begin_opts o;
	ckpt_begin_opts_init(&o);
	o.zstd_level = (W->round % 3 == 2) ? 1 : 0;
	W->used = ckpt_heap_used(W->h);
	memcpy(W->snap, ckpt_heap_base(W->h), W->used);
	int rc = ckpt_begin(W->h, &d, &o);
	if (rc == 0) {
		scribble(W, W->round * 7 + 1, 3);
		rc = ckpt_wait(W->h);
	}
	if (st) {
		memset(st, 0, sizeof(*st));
		st->struct_size = sizeof(*st);
		ckpt_stats(W->h, st);
	}
	W->round++;
	return rc;
}

/* A clean checkpoint after whatever happened: it works and is exact. */
static void clean_checkpoint(struct walk *W, bool must_be_full, const char *what)
{
	struct ckpt_stats st;
	ckpt__fault_reset();
	int rc = checkpoint(W, &st);
	cr_assert(rc == 0, "%s: the next checkpoint fails: %s (%s)", what, ckpt_err_name(rc),
		  ckpt_strerror(rc));
	if (must_be_full)
		cr_assert(!st.incremental, "%s: the checkpoint after a failure is incremental", what);
	assert_image_exact(W, what);
	/* images are private to their owner, whatever the umask */
	struct stat sb;
	cr_assert(stat(W->path, &sb) == 0);
	cr_assert((sb.st_mode & 07777) == 0600, "%s: image mode %o, want 0600", what,
		  (unsigned)(sb.st_mode & 07777));
	free(W->good);
	W->good = read_file(W->path, &W->good_len);
	cr_assert(W->good);
}

static void walk_setup(struct walk *W, enum ckpt_backend be, unsigned flags)
{
	memset(W, 0, sizeof(*W));
	snprintf(W->dir, sizeof(W->dir), "/tmp/ckpt-fiwalk.XXXXXX");
	cr_assert(mkdtemp(W->dir));
	snprintf(W->path, sizeof(W->path), "%s/img", W->dir);
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = HEAP_SIZE;
	ho.base = BASE;
	ho.backend = be;
	ho.flags = flags;
	ho.pool_bytes = 16 * 4096; /* small: traps wait for the writer sometimes */
	ho.fault_around = 4;
	umask(0); /* the image must still come out 0600 */
	ckpt__fault_reset();
	int rc = ckpt_heap_create(&ho, &W->h);
	if (rc == -EPERM || rc == CKPT_E_KERNEL)
		CKPT_TEST_SKIP("heap needs userfaultfd: %s", ckpt_strerror(rc));
	CKPT_ASSERT_OK(rc);
	W->data = ckpt_alloc(W->h, DATA_PAGES * 4096);
	cr_assert(W->data);
	for (unsigned p = 0; p < DATA_PAGES; p++) {
		if (p % 5 == 4)
			continue; /* some zero pages */
		for (unsigned i = 0; i < 4096; i += 8)
			memcpy(W->data + (size_t)p * 4096 + i, &(uint64_t){ p * 1000003ull + i }, 8);
	}
	W->snap = malloc(HEAP_SIZE);
	cr_assert(W->snap);
	clean_checkpoint(W, false, "first checkpoint");
	/* the writer thread now exists; this is the steady state */
	W->fds = ckpt_test_count_fds();
	W->threads = ckpt_test_count_threads();
}

static void walk_teardown(struct walk *W)
{
	ckpt_heap_destroy(W->h);
	ckpt__fault_reset();
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", W->dir);
	cr_assert(system(cmd) == 0);
	free(W->snap);
	free(W->good);
}

/* The checks after one armed checkpoint that failed with @rc. */
static void after_failure(struct walk *W, int rc, const char *what)
{
	char stray[256] = "";
	int ns = count_strays(W, stray, sizeof(stray));
	cr_assert(ns == 0, "%s: %d file(s) left in the image directory, e.g. %s", what, ns, stray);

	size_t len = 0;
	uint8_t *now = read_file(W->path, &len);
	cr_assert(now, "%s: the image at the path is gone", what);
	bool same = len == W->good_len && memcmp(now, W->good, len) == 0;
	free(now);
	if (!same) {
		/* allowed only when the failure came after the atomic rename:
		 * then the new image is there, complete */
		char err[256] = "";
		int vrc = ckpt_image_verify(W->path, CKPT_VERIFY_CHAIN, err, sizeof(err));
		cr_assert(vrc == 0, "%s: failed with %s and left a broken image at the path: %s (%s)", what,
			  ckpt_err_name(rc), ckpt_err_name(vrc), err);
		assert_image_exact(W, what);
	}

	size_t wp = count_wp(W);
	cr_assert(wp == 0, "%s: %zu page(s) still write-protected after the failure", what, wp);
	/* usable: every page of the extent takes a write */
	uint8_t *b = ckpt_heap_base(W->h);
	for (size_t off = 0; off < W->used; off += 4096)
		b[off + 4095] ^= 0x5a;
	void *extra = ckpt_alloc(W->h, 3 * 4096);
	cr_assert(extra, "%s: the allocator fails after the failure", what);
	memset(extra, 0x77, 3 * 4096);
	ckpt_free(W->h, extra);

	int fds = ckpt_test_count_fds(), th = ckpt_test_count_threads();
	cr_assert(fds == W->fds, "%s: %d fds open, %d before", what, fds, W->fds);
	cr_assert(th == W->threads, "%s: %d threads, %d before", what, th, W->threads);
}

/* The walk itself over the sites a checkpoint to a path reaches. */
static void walk_checkpoints(enum ckpt_backend be, unsigned flags, const char *label)
{
	struct walk W;
	walk_setup(&W, be, flags);
	bool incremental = (flags & CKPT_HEAP_INCREMENTAL) != 0;
	static const enum ckpt__fault_site sites[] = {
		CKPT_FAULT_WRITE, CKPT_FAULT_FSYNC, CKPT_FAULT_RENAME, CKPT_FAULT_URING_SUBMIT,
		CKPT_FAULT_UFFD_WP, CKPT_FAULT_MEMFD, CKPT_FAULT_MMAP,
	};
	unsigned total_cases = 0;
	for (size_t si = 0; si < sizeof(sites) / sizeof(sites[0]); si++) {
		enum ckpt__fault_site s = sites[si];
		/* how often does a clean checkpoint of this kind reach the site? */
		ckpt__fault_reset();
		struct ckpt_stats st;
		int rc = checkpoint(&W, &st);
		CKPT_ASSERT_OK(rc);
		unsigned long hits = ckpt__fault_hits(s);
		assert_image_exact(&W, "counting run");
		free(W.good);
		W.good = read_file(W.path, &W.good_len);
		cr_log_info("%s: site %s reached %lu times by a checkpoint", label, site_name[s], hits);
		for (unsigned n = 0; n <= hits; n++) {
			char what[128];
			snprintf(what, sizeof(what), "%s, %s call #%u fails", label, site_name[s], n + 1);
			ckpt__fault_reset();
			ckpt__fault_arm(s, site_err[s], n, 1);
			rc = checkpoint(&W, NULL);
			bool fired = ckpt__fault_hits(s) > n;
			ckpt__fault_reset();
			total_cases++;
			if (!fired) {
				/* fewer calls this time (timing): nothing failed */
				cr_assert(rc == 0, "%s: not reached, yet the checkpoint failed: %s", what,
					  ckpt_err_name(rc));
				assert_image_exact(&W, what);
				free(W.good);
				W.good = read_file(W.path, &W.good_len);
				continue;
			}
			W.fired++;
			if (rc == 0) {
				/* the library recovered: the image must be whole */
				W.tolerated++;
				assert_image_exact(&W, what);
				free(W.good);
				W.good = read_file(W.path, &W.good_len);
				continue;
			}
			cr_assert(rc == site_err[s], "%s: reported %d (%s: %s), want the injected %d (%s)", what,
				  rc, ckpt_err_name(rc), ckpt_strerror(rc), site_err[s],
				  ckpt_err_name(site_err[s]));
			after_failure(&W, rc, what);
			clean_checkpoint(&W, incremental, what);
		}
	}
	cr_log_info("%s: %u cases, %u faults fired, %u recovered by the library", label, total_cases,
		    W.fired, W.tolerated);
	cr_assert(W.fired > 0, "%s: no fault fired at all", label);
	walk_teardown(&W);
}

Test(fault_walk, checkpoint_thread_mode_every_failure_reported_nothing_half_visible)
{
	CKPT_TEST_NEED_ROOT("userfaultfd heaps");
	walk_checkpoints(CKPT_TRAP_THREAD, 0, "thread/full");
}

Test(fault_walk, checkpoint_sigbus_mode_every_failure_reported_nothing_half_visible)
{
	CKPT_TEST_NEED_ROOT("userfaultfd heaps");
	walk_checkpoints(CKPT_TRAP_SIGBUS, 0, "sigbus/full");
}

Test(fault_walk, incremental_checkpoint_failure_leaves_heap_unprotected_and_next_full)
{
	CKPT_TEST_NEED_ROOT("userfaultfd heaps");
	walk_checkpoints(CKPT_TRAP_THREAD, CKPT_HEAP_INCREMENTAL, "thread/incremental");
}

static bool mapped_at(const void *base)
{
	void *p = mmap((void *)base, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
		       -1, 0);
	if (p == MAP_FAILED)
		return errno == EEXIST;
	munmap(p, 4096);
	return p != base;
}

Test(fault_walk, restore_every_failure_reported_nothing_mapped_no_leak)
{
	CKPT_TEST_NEED_ROOT("userfaultfd heaps");
	struct walk W;
	walk_setup(&W, CKPT_TRAP_THREAD, 0);
	uint8_t *want = malloc(W.used);
	memcpy(want, W.snap, W.used);
	size_t used = W.used;
	ckpt_heap_destroy(W.h);
	W.h = NULL;
	int fds0 = ckpt_test_count_fds(), th0 = ckpt_test_count_threads();

	static const enum ckpt__fault_site sites[] = {
		CKPT_FAULT_URING_SUBMIT, CKPT_FAULT_MEMFD, CKPT_FAULT_MMAP, CKPT_FAULT_WRITE,
		CKPT_FAULT_FSYNC, CKPT_FAULT_RENAME, CKPT_FAULT_UFFD_WP,
	};
	unsigned fired = 0, cases = 0;
	for (size_t si = 0; si < sizeof(sites) / sizeof(sites[0]); si++) {
		enum ckpt__fault_site s = sites[si];
		ckpt__fault_reset();
		ckpt_heap *r = NULL;
		CKPT_ASSERT_OK(ckpt_restore(W.path, NULL, &r));
		unsigned long hits = ckpt__fault_hits(s);
		ckpt_heap_destroy(r);
		cr_log_info("restore: site %s reached %lu times", site_name[s], hits);
		for (unsigned n = 0; n <= hits; n++) {
			char err[256] = "";
			struct ckpt_restore_opts ro;
			ckpt_restore_opts_init(&ro);
			ro.errbuf = err;
			ro.errbuf_size = sizeof(err);
			ckpt__fault_reset();
			ckpt__fault_arm(s, site_err[s], n, 1);
			r = (ckpt_heap *)&r; /* must be overwritten */
			int rc = ckpt_restore(W.path, &ro, &r);
			bool hit = ckpt__fault_hits(s) > n;
			ckpt__fault_reset();
			cases++;
			if (rc == 0) {
				cr_assert(memcmp(ckpt_heap_base(r), want, used) == 0,
					  "restore with %s call #%u %s: wrong contents", site_name[s], n + 1,
					  hit ? "failing" : "not reached");
				ckpt_heap_destroy(r);
				if (hit)
					fired++;
			} else {
				fired++;
				cr_assert(hit, "restore failed (%s: %s) with no fault fired", ckpt_err_name(rc), err);
				cr_assert(rc == site_err[s], "restore, %s call #%u fails: reported %d (%s: %s), want %s",
					  site_name[s], n + 1, rc, ckpt_err_name(rc), err, ckpt_err_name(site_err[s]));
				cr_assert(r == NULL, "restore failed but *out is not NULL");
				cr_assert(!mapped_at(BASE), "restore, %s call #%u fails: memory left at the base",
					  site_name[s], n + 1);
			}
			int fds = ckpt_test_count_fds(), th = ckpt_test_count_threads();
			cr_assert(fds == fds0, "restore, %s call #%u: %d fds, %d before", site_name[s], n + 1, fds,
				  fds0);
			cr_assert(th == th0, "restore, %s call #%u: %d threads, %d before", site_name[s], n + 1,
				  th, th0);
		}
	}
	cr_log_info("restore: %u cases, %u faults fired", cases, fired);
	cr_assert(fired > 0);
	/* and a clean restore still works */
	ckpt__fault_reset();
	ckpt_heap *r = NULL;
	CKPT_ASSERT_OK(ckpt_restore(W.path, NULL, &r));
	cr_assert(memcmp(ckpt_heap_base(r), want, used) == 0);
	W.h = r;
	free(want);
	walk_teardown(&W);
}

Test(fault_walk, heap_create_failure_reported_nothing_mapped_no_leak)
{
	CKPT_TEST_NEED_ROOT("userfaultfd heaps");
	static const enum ckpt__fault_site sites[] = { CKPT_FAULT_MEMFD, CKPT_FAULT_MMAP };
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = HEAP_SIZE;
	ho.base = BASE;
	for (int be = 0; be < 2; be++) {
		ho.backend = be ? CKPT_TRAP_SIGBUS : CKPT_TRAP_THREAD;
		/* the probe runs once per process: get it out of the counts */
		ckpt_heap *h = NULL;
		ckpt__fault_reset();
		int rc = ckpt_heap_create(&ho, &h);
		if (rc == -EPERM || rc == CKPT_E_KERNEL)
			CKPT_TEST_SKIP("heap needs userfaultfd: %s", ckpt_strerror(rc));
		CKPT_ASSERT_OK(rc);
		ckpt_heap_destroy(h);
		int fds0 = ckpt_test_count_fds(), th0 = ckpt_test_count_threads();
		for (size_t si = 0; si < 2; si++) {
			enum ckpt__fault_site s = sites[si];
			ckpt__fault_reset();
			CKPT_ASSERT_OK(ckpt_heap_create(&ho, &h));
			unsigned long hits = ckpt__fault_hits(s);
			ckpt_heap_destroy(h);
			cr_assert(hits > 0, "heap create never reaches the %s site", site_name[s]);
			for (unsigned n = 0; n < hits; n++) {
				ckpt__fault_reset();
				ckpt__fault_arm(s, site_err[s], n, 1);
				h = NULL;
				rc = ckpt_heap_create(&ho, &h);
				ckpt__fault_reset();
				cr_assert(rc != 0 && h == NULL, "create with %s call #%u failing: rc %d", site_name[s],
					  n + 1, rc);
				/* mmap's ENOMEM on a MAP_SHARED heap is reported as ENOSPC */
				int want = site_err[s];
				cr_assert(rc == want || (s == CKPT_FAULT_MMAP && rc == -ENOSPC),
					  "create, %s call #%u fails: got %s, want %s", site_name[s], n + 1,
					  ckpt_err_name(rc), ckpt_err_name(want));
				cr_assert(!mapped_at(BASE), "create, %s call #%u fails: memory left at the base",
					  site_name[s], n + 1);
				cr_assert_eq(ckpt_test_count_fds(), fds0, "create, %s call #%u: fd leak",
					     site_name[s], n + 1);
				cr_assert_eq(ckpt_test_count_threads(), th0, "create, %s call #%u: thread leak",
					     site_name[s], n + 1);
			}
		}
	}
}
