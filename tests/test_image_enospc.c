/*
 * test_image_enospc.c - a checkpoint to a full filesystem (a 2 MiB tmpfs)
 * fails with -ENOSPC from ckpt_wait(); the previous image is intact, no
 * temp file is left, the heap is unprotected and writable, and the next
 * checkpoint to a good destination works.
 *
 * The tmpfs is mounted in a private mount namespace of the test process
 * (criterion runs each test in its own process): it disappears with the
 * process on every exit path, crash included; it is also unmounted at the
 * end of the test.
 */
#include <sched.h>
#include <sys/mount.h>

#include "image_util.h"

static ckpt_heap *make_heap(enum ckpt_backend be)
{
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = 32u << 20;
	ho.backend = be;
	ckpt_heap *h = NULL;
	int rc = ckpt_heap_create(&ho, &h);
	if (rc == -EPERM || rc == CKPT_E_KERNEL)
		CKPT_TEST_SKIP("heap needs userfaultfd: %s", ckpt_strerror(rc));
	CKPT_ASSERT_OK(rc);
	return h;
}

static void random_fill(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t st = seed;
	for (size_t i = 0; i + 8 <= n; i += 8) {
		uint64_t v = iu_rand(&st);
		memcpy(p + i, &v, 8);
	}
}

static void enospc_case(enum ckpt_backend be, int level, unsigned flags)
{
	CKPT_TEST_NEED_ROOT("mounting a small tmpfs");
	cr_assert(unshare(CLONE_NEWNS) == 0, "unshare(CLONE_NEWNS): %s", strerror(errno));
	cr_assert(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0, "make / private: %s",
		  strerror(errno));
	char *dir = iu_tmpdir("enospc");
	cr_assert(mount("ckpt-enospc", dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=2m,mode=0700") == 0,
		  "mount tmpfs: %s", strerror(errno));
	char path[300], good[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	snprintf(good, sizeof(good), "/tmp/ckpt-enospc-good.%d", (int)getpid());

	ckpt_heap *h = make_heap(be);
	uint8_t *small = ckpt_alloc(h, 256u << 10);
	random_fill(small, 256u << 10, 1);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	struct ckpt_begin_opts o = iu_opts(level, flags);
	CKPT_ASSERT_OK(ckpt_begin(h, &d, &o));
	CKPT_ASSERT_OK(ckpt_wait(h));
	size_t n0 = 0;
	uint8_t *bytes0 = iu_read_file(path, &n0);

	/* 3 MiB of random data cannot fit in what is left of 2 MiB */
	uint8_t *big = ckpt_alloc(h, 3u << 20);
	cr_assert(big);
	random_fill(big, 3u << 20, 2);
	int rc = ckpt_begin(h, &d, &o);
	if (rc == 0)
		rc = ckpt_wait(h);
	CKPT_ASSERT_ERR(rc, -ENOSPC);

	size_t n1 = 0;
	uint8_t *bytes1 = iu_read_file(path, &n1);
	cr_assert(n0 == n1 && memcmp(bytes0, bytes1, n0) == 0, "previous image changed");
	free(bytes0);
	free(bytes1);
	char err[256] = "";
	CKPT_ASSERT_OK(ckpt_image_verify(path, CKPT_VERIFY_CHAIN, err, sizeof(err)));
	cr_assert_eq(iu_count_names(dir, ".tmp."), 0, "temp file left on the full filesystem");
	if (be != CKPT_BACKEND_FORK) {
		uint8_t *b = ckpt_heap_base(h);
		for (size_t off = 0; off < ckpt_heap_used(h); off += 4096)
			cr_assert(!(ckpt_test_pagemap(b + off) & CKPT_PM_UFFD_WP), "page %zu still protected",
				  off / 4096);
	}
	memset(big, 0x11, 3u << 20); /* writable */

	struct ckpt_dest g = { .kind = CKPT_DEST_PATH, .path = good };
	CKPT_ASSERT_OK(ckpt_begin(h, &g, &o));
	CKPT_ASSERT_OK(ckpt_wait(h));
	CKPT_ASSERT_OK(ckpt_image_verify(good, 0, err, sizeof(err)));
	unlink(good);
	ckpt_heap_destroy(h);
	cr_assert(umount2(dir, MNT_DETACH) == 0, "umount: %s", strerror(errno));
	rmdir(dir);
	free(dir);
}

Test(image_enospc, full_filesystem_fails_cleanly_stored)
{
	enospc_case(CKPT_TRAP_THREAD, 0, 0);
}

Test(image_enospc, full_filesystem_fails_cleanly_zstd_direct)
{
	enospc_case(CKPT_TRAP_THREAD, 1, CKPT_BEGIN_DIRECT);
}

Test(image_enospc, full_filesystem_fails_cleanly_fork_backend)
{
	enospc_case(CKPT_BACKEND_FORK, 0, CKPT_BEGIN_NO_FSYNC);
}
