/*
 * test_no_io_uring.c - with `sysctl kernel.io_uring_disabled=2` (what
 * hardened hosts set; container seccomp profiles have the same effect)
 * checkpoints, incremental chains, restore and the fork backend still work:
 * the image writer and reader fall back to pwrite(2)/pread(2).
 *
 * The sysctl is machine state: the test holds the machine lock, runs the
 * work in a child process (bounded by alarm()), and puts the old value back
 * when the child ends, on a failed assertion (.fini) and on SIGTERM /
 * SIGINT / SIGHUP / SIGALRM (a handler that writes it back and re-raises).
 * Only SIGKILL of this process could leave it set.  The window is kept to
 * the few seconds the work takes, since other processes on the machine
 * cannot set up io_uring meanwhile either.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "no_uring_work.h"
#include "util/testutil.h"

#define KNOB "/proc/sys/kernel/io_uring_disabled"

static char old_val[16];
static _Atomic int knob_changed;
static int lock_fd = -1;

/* async-signal-safe: open/write/close */
static void knob_restore(void)
{
	if (!atomic_exchange(&knob_changed, 0))
		return;
	int fd = open(KNOB, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)!write(fd, old_val, strlen(old_val));
		close(fd);
	}
}

static void on_fatal(int sig)
{
	knob_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void fini(void)
{
	knob_restore();
	ckpt_test_machine_unlock(lock_fd);
	lock_fd = -1;
}

static bool knob_set(const char *v)
{
	int fd = open(KNOB, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool ok = write(fd, v, strlen(v)) == (ssize_t)strlen(v);
	close(fd);
	return ok;
}

Test(no_io_uring, checkpoint_chain_restore_and_fork_work_with_io_uring_disabled, .timeout = 240,
     .fini = fini)
{
	CKPT_TEST_NEED_ROOT("sysctl kernel.io_uring_disabled");
	int fd = open(KNOB, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		CKPT_TEST_SKIP("this kernel has no %s", KNOB);
	close(fd);
	char dir[] = "/tmp/ckpt-nu.XXXXXX";
	cr_assert(mkdtemp(dir));

	lock_fd = ckpt_test_machine_lock();
	fd = open(KNOB, O_RDONLY | O_CLOEXEC);
	ssize_t n = read(fd, old_val, sizeof(old_val) - 1);
	close(fd);
	cr_assert(n > 0, "cannot read %s", KNOB);
	old_val[n] = 0;
	struct sigaction sa = {.sa_handler = on_fatal};
	sigemptyset(&sa.sa_mask);
	int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGALRM};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	atomic_store(&knob_changed, 1);
	cr_assert(knob_set("2"), "cannot write %s", KNOB);

	int pfd[2];
	cr_assert(pipe2(pfd, O_CLOEXEC) == 0);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		alarm(150);
		const char *m = NULL;
		if (syscall(__NR_io_uring_setup, 2, &(char[120]){0}) >= 0)
			m = "io_uring_setup still works: the sysctl had no effect";
		else
			m = nu_run(dir);
		if (m)
			(void)!write(pfd[1], m, strlen(m));
		_exit(m ? 1 : 0);
	}
	close(pfd[1]);
	char msg[400] = "";
	ssize_t k = read(pfd[0], msg, sizeof(msg) - 1);
	close(pfd[0]);
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	knob_restore();
	ckpt_test_machine_unlock(lock_fd);
	lock_fd = -1;
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
	cr_assert(k <= 0, "%s", msg);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker ended with status %#x", st);
}
