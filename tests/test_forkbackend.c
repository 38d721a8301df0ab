/*
 * test_forkbackend.c - the fork backend's child handling.
 *
 * The test binary links libckpt statically, so its own waitpid() and kill()
 * below take the library's calls: waitpid() can stretch the moment right
 * after a reap, and kill() records any signal aimed at a pid that has
 * already been reaped (and is therefore free for reuse by an unrelated
 * process) instead of sending it.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/testutil.h"

static _Atomic int slow_reap;      /* armed: hold on for a while after a reap */
static _Atomic pid_t reaped_pid;   /* the last pid waitpid() reaped while armed */
static _Atomic int kills_of_reaped;

pid_t waitpid(pid_t pid, int *status, int options)
{
	pid_t r = (pid_t)syscall(SYS_wait4, pid, status, options, NULL);
	if (r > 0 && atomic_load(&slow_reap)) {
		atomic_store(&reaped_pid, r);
		usleep(200 * 1000); /* the window between the reap and forgetting the pid */
	}
	return r;
}

int kill(pid_t pid, int sig)
{
	if (pid > 0 && pid == atomic_load(&reaped_pid)) {
		/* never send it: the pid may belong to someone else by now */
		atomic_fetch_add(&kills_of_reaped, 1);
		return 0;
	}
	return (int)syscall(SYS_kill, pid, sig);
}

/* A ckpt_cancel() that arrives while the writer thread is reaping the
 * fork child must not signal the reaped pid: the reap and the clearing of
 * the child's pid happen under the lock cancel and destroy kill under. */
Test(fork_backend, cancel_during_reap_never_signals_a_reaped_pid, .timeout = 60)
{
	struct ckpt_heap_opts o;
	ckpt_heap *h = NULL;
	ckpt_heap_opts_init(&o);
	o.size = 8u << 20;
	o.backend = CKPT_BACKEND_FORK;
	CKPT_ASSERT_OK(ckpt_heap_create(&o, &h));
	uint8_t *d = ckpt_alloc(h, 1u << 20);
	cr_assert(d);
	memset(d, 7, 1u << 20);

	char dir[] = "/tmp/ckpt-fork.XXXXXX", path[64];
	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/img", dir);
	struct ckpt_dest dest = {.kind = CKPT_DEST_PATH, .path = path};
	struct ckpt_begin_opts bo;
	ckpt_begin_opts_init(&bo);
	bo.flags = CKPT_BEGIN_NO_FSYNC;

	atomic_store(&slow_reap, 1);
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, &bo));
	/* wait (bounded) for the writer thread to reap the child */
	for (int i = 0; i < 1000 && !atomic_load(&reaped_pid); i++)
		usleep(5000);
	cr_assert(atomic_load(&reaped_pid) > 0, "the fork child was never reaped");
	int crc = ckpt_cancel(h);
	cr_assert(crc == 0 || crc == -ENOENT, "ckpt_cancel: %s", ckpt_strerror(crc));
	int wrc = ckpt_wait(h);
	cr_assert(wrc == 0 || wrc == CKPT_E_CANCELED, "ckpt_wait: %s", ckpt_strerror(wrc));
	atomic_store(&slow_reap, 0);
	cr_assert(atomic_load(&kills_of_reaped) == 0,
		  "%d SIGKILL(s) aimed at the reaped child pid %d", atomic_load(&kills_of_reaped),
		  (int)atomic_load(&reaped_pid));
	ckpt_heap_destroy(h);
	unlink(path);
	rmdir(dir);
}
