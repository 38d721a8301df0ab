/*
 * fi_test_no_io_uring.c - io_uring set-up failing (injected at
 * CKPT_FAULT_URING_SETUP on every call) costs nothing but speed: the image
 * writer and reader fall back to pwrite(2)/pread(2).
 */
#include <sys/wait.h>

#include "faultinject.h"
#include "no_uring_work.h"
#include "util/testutil.h"

Test(fi_no_io_uring, checkpoint_chain_restore_and_fork_work_without_io_uring, .timeout = 180)
{
	char dir[] = "/tmp/ckpt-fi-nu.XXXXXX";
	cr_assert(mkdtemp(dir));
	ckpt__fault_reset();
	ckpt__fault_arm(CKPT_FAULT_URING_SETUP, -EPERM, 0, 0);
	const char *m = nu_run(dir);
	unsigned long hits = ckpt__fault_hits(CKPT_FAULT_URING_SETUP);
	ckpt__fault_reset();
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
	cr_assert(m == NULL, "%s", m);
	cr_assert(hits >= 8, "io_uring set-up was asked only %lu times", hits);
}
