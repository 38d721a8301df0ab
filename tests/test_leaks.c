/*
 * test_leaks.c - heaps come and go without leaving anything behind: after
 * many create / allocate / checkpoint (to a path, an fd and a sink) /
 * restore / destroy cycles in every trap mode, the process has the same
 * open fds and the same threads as before.  Memory leaks are LeakSanitizer's
 * part: `make asan` runs this binary with detect_leaks=1.
 *
 * Threads are counted without io_uring's kernel workers (iou-wrk-*,
 * iou-sqp-*): the kernel creates and reaps those on its own schedule.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/memsink.h"
#include "util/testutil.h"

#define BASE ((void *)0x5f0000000000ull)


static void one_cycle(enum ckpt_backend be, unsigned flags, const char *dir, int k)
{
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = 8u << 20;
	ho.base = BASE;
	ho.backend = be;
	ho.flags = flags;
	ckpt_heap *h = NULL;
	int rc = ckpt_heap_create(&ho, &h);
	if (rc == -EPERM || rc == CKPT_E_KERNEL)
		CKPT_TEST_SKIP("heap needs userfaultfd: %s", ckpt_strerror(rc));
	CKPT_ASSERT_OK(rc);
	uint8_t *p = ckpt_alloc(h, 64 * 4096);
	cr_assert(p);
	memset(p, k, 64 * 4096);
	char path[300];
	snprintf(path, sizeof(path), "%s/img", dir);

	/* to a path, twice (the second may be incremental) */
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	struct ckpt_begin_opts bo;
	ckpt_begin_opts_init(&bo);
	bo.flags = CKPT_BEGIN_NO_FSYNC;
	bo.zstd_level = k % 2;
	for (int i = 0; i < 2; i++) {
		CKPT_ASSERT_OK(ckpt_begin(h, &d, &bo));
		p[i * 4096] ^= 1; /* a trap during the checkpoint */
		CKPT_ASSERT_OK(ckpt_wait(h));
	}
	/* to an fd */
	char fpath[300];
	snprintf(fpath, sizeof(fpath), "%s/fd.img", dir);
	int fd = open(fpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert(fd >= 0);
	struct ckpt_dest df = { .kind = CKPT_DEST_FD, .fd = fd };
	CKPT_ASSERT_OK(ckpt_begin(h, &df, &bo));
	CKPT_ASSERT_OK(ckpt_wait(h));
	close(fd);
	/* to a sink, cancelled half the time */
	struct memsink ms;
	CKPT_ASSERT_OK(memsink_init(&ms, ckpt_heap_size(h), ckpt_heap_page_size(h)));
	struct ckpt_dest ds = { .kind = CKPT_DEST_SINK, .sink = &ms.sink };
	CKPT_ASSERT_OK(ckpt_begin(h, &ds, NULL));
	if (k % 2)
		ckpt_cancel(h);
	rc = ckpt_wait(h);
	cr_assert(rc == 0 || rc == CKPT_E_CANCELED, "sink checkpoint: %s", ckpt_err_name(rc));
	memsink_fini(&ms);
	/* destroyed while a checkpoint runs, every third cycle */
	if (k % 3 == 0)
		CKPT_ASSERT_OK(ckpt_begin(h, &d, &bo));
	ckpt_heap_destroy(h);

	/* restore the path image and the fd image, then destroy */
	if (be != CKPT_BACKEND_FORK || k % 3 != 0) {
		ckpt_heap *r = NULL;
		rc = ckpt_restore(path, NULL, &r);
		cr_assert(rc == 0, "restore: %s", ckpt_err_name(rc));
		ckpt_heap_destroy(r);
		/* lazily too, destroyed while its loaders may still run */
		struct ckpt_restore_opts lro;
		ckpt_restore_opts_init(&lro);
		lro.flags = CKPT_RESTORE_LAZY;
		rc = ckpt_restore(path, &lro, &r);
		cr_assert(rc == 0, "lazy restore: %s", ckpt_err_name(rc));
		ckpt_heap_destroy(r);
	}
	fd = open(fpath, O_RDONLY | O_CLOEXEC);
	ckpt_heap *r = NULL;
	CKPT_ASSERT_OK(ckpt_restore_fd(fd, NULL, &r));
	close(fd);
	ckpt_heap_destroy(r);
	unlink(fpath);
}

static void cycles(enum ckpt_backend be, unsigned flags)
{
	CKPT_TEST_NEED_ROOT("userfaultfd heaps");
	char dir[] = "/tmp/ckpt-leaks.XXXXXX";
	cr_assert(mkdtemp(dir));
	/* one cycle first: once-per-process state (the kernel probe, the
	 * SIGBUS handler) is not a leak */
	one_cycle(be, flags, dir, 1);
	int fds0 = ckpt_test_count_fds(), th0 = ckpt_test_count_threads();
	for (int k = 2; k < 14; k++) {
		one_cycle(be, flags, dir, k);
		int fds = ckpt_test_count_fds(), th = ckpt_test_count_threads();
		cr_assert(fds == fds0, "cycle %d: %d fds open, %d before", k, fds, fds0);
		cr_assert(th == th0, "cycle %d: %d threads, %d before", k, th, th0);
		/* the fork backend's children are all reaped */
		pid_t z = waitpid(-1, NULL, WNOHANG);
		cr_assert(z <= 0, "cycle %d: child %d was left for us to reap", k, (int)z);
	}
	char cmd[100];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert(system(cmd) == 0);
}

Test(leaks, thread_mode_cycles_leave_no_fd_or_thread)
{
	cycles(CKPT_TRAP_THREAD, 0);
}

Test(leaks, sigbus_mode_cycles_leave_no_fd_or_thread)
{
	cycles(CKPT_TRAP_SIGBUS, 0);
}

Test(leaks, incremental_cycles_leave_no_fd_or_thread)
{
	cycles(CKPT_TRAP_THREAD, CKPT_HEAP_INCREMENTAL);
}

Test(leaks, fork_backend_cycles_leave_no_fd_thread_or_child)
{
	cycles(CKPT_BACKEND_FORK, 0);
}
