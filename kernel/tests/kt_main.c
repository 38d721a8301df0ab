/*
 * kt_main.c - the runner of libckpt's kernel conformance suite.
 *
 *   kt [-l] [CASE...]     run all cases, or those whose name starts with CASE
 *
 * Prints one line per case: "PASS name", "FAIL name: why" or
 * "SKIP name: reason", observations indented under it, and a summary.
 * Exit status 0 when nothing failed; under CI=true or CKPT_REQUIRE_KERNEL=1
 * a skip counts as a failure (CI runs as root on a kernel that must prove
 * every case).
 *
 * Each case runs in a forked child in its own process group, so a hang is
 * ended by killing the group, and a crash is reported rather than taking
 * the suite down.  Machine state is changed only here, in the parent, and
 * restored after every case, at exit and on SIGINT/SIGTERM/SIGHUP/SIGALRM.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kt.h"

size_t kt_ps;

static char reason_buf[512];
static int in_child;
static int note_fd = -1;             /* child: the pipe to the parent */
static char parent_notes[4096];      /* parent: notes from setup */
static volatile pid_t running_child; /* process group of the running case */
/* KT_TIMEOUT_SCALE=N stretches every timeout: the qemu guest of the matrix
 * runs under TCG, 10-50 times slower than the host. */
static unsigned timeout_scale = 1;

/* The whole suite's guard: far above its normal ~30 s run. */
#define KT_SUITE_TIMEOUT_S 280 /* x KT_TIMEOUT_SCALE */

static const struct kt_case cases[] = {
	{ "a_wp_populated_write_traps", 0, 0, NULL, kt_case_a, 20 },
	{ "b_wp_empty_pte_and_hole_trap", 0, 0, NULL, kt_case_b, 20 },
	{ "c_dontneed_keeps_marker", 0, 0, NULL, kt_case_c, 20 },
	{ "d_swapout_keeps_marker", 1, 1, kt_setup_swap, kt_case_d, 40 },
	{ "e_memcg_eviction_keeps_marker", 1, 1, kt_setup_memcg, kt_case_e, 120 },
	{ "f_shmem_thp_split_per_page_traps", 1, 1, kt_setup_thp_advise, kt_case_f, 30 },
	{ "g_migration_mprotect_keep_mark", 1, 1, kt_setup_compaction, kt_case_g, 150 },
	{ "h_mremap_with_without_event_remap", 0, 0, NULL, kt_case_h, 20 },
	{ "i_fork_with_without_event_fork", 0, 0, NULL, kt_case_i, 20 },
	{ "j_punch_hole_and_madv_remove", 0, 0, NULL, kt_case_j, 20 },
	{ "k_kernel_write_thread_vs_sigbus", 0, 0, NULL, kt_case_k, 20 },
	{ "l_unprotect_unregister_no_stale_marks", 0, 0, NULL, kt_case_l, 20 },
	{ "m_wp_partly_registered_range", 0, 0, NULL, kt_case_m, 20 },
	{ "n_missing_shmem_copy_zeropage_eexist", 0, 0, NULL, kt_case_n, 20 },
	{ "o_pwrite_page_no_missing_fault_minor_hole_no_fault", 0, 0, NULL, kt_case_o, 20 },
	{ "q_one_uffd_per_range_missing_then_wp", 0, 0, NULL, kt_case_q, 20 },
	{ "r_sigbus_interrupts_parked_missing_fault", 0, 0, NULL, kt_case_r, 20 },
	{ "s_poison_sigbus_and_efault", 0, 0, NULL, kt_case_s, 20 },
	{ "p_probe_canary", 0, 0, NULL, kt_case_probe, 20 },
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

static void vset_reason(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static void vset_reason(const char *fmt, va_list ap)
{
	vsnprintf(reason_buf, sizeof(reason_buf), fmt, ap);
}

int kt_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset_reason(fmt, ap);
	va_end(ap);
	return KT_FAIL;
}

int kt_skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset_reason(fmt, ap);
	va_end(ap);
	return KT_SKIP;
}

const char *kt_reason(void)
{
	return reason_buf;
}

void kt_note(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line + 1, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	if (in_child) {
		line[0] = 'N';
		line[n + 1] = '\n';
		if (write(note_fd, line, (size_t)n + 2) < 0) {
			/* the parent is gone: nothing to report to */
		}
	} else {
		size_t used = strlen(parent_notes);

		snprintf(parent_notes + used, sizeof(parent_notes) - used, "      %s\n", line + 1);
	}
}

uint64_t kt_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int kt_is_root(void)
{
	return geteuid() == 0;
}

static void on_fatal_signal(int sig)
{
	static const char msg[] = "kt: interrupted: restoring machine state\n";
	pid_t c = running_child;

	if (c > 0) {
		kill(-c, SIGKILL);
		waitpid(c, NULL, 0);
	}
	kt_restore_all();
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* stderr gone: exit anyway */
	}
	_exit(128 + sig);
}

static void install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fatal_signal;
	sigfillset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
}

static void child_main(const struct kt_case *c, const struct kt_env *env, int wfd)
{
	char line[600];
	int rc, n;

	in_child = 1;
	note_fd = wfd;
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGALRM, SIG_DFL);
	signal(SIGQUIT, SIG_DFL);
	setpgid(0, 0);
	reason_buf[0] = '\0';
	rc = c->run(env);
	n = snprintf(line, sizeof(line), "R%d%s\n", rc, rc == KT_PASS ? "" : reason_buf);
	if (n > 0 && write(wfd, line, (size_t)(n < (int)sizeof(line) ? n : (int)sizeof(line) - 1)) < 0)
		_exit(3);
	_exit(0);
}

/* Runs one case in a child; fills *why; returns the result. */
static int run_child(const struct kt_case *c, const struct kt_env *env, char *why, size_t whylen,
		     char *notes, size_t noteslen)
{
	int pfd[2], status = 0, result = -1;
	char buf[8192];
	size_t used = 0;
	uint64_t deadline = kt_now_ns() + (uint64_t)c->timeout_s * timeout_scale * 1000000000ull;
	pid_t pid;
	int timed_out = 0;

	if (pipe2(pfd, O_CLOEXEC) < 0) {
		snprintf(why, whylen, "pipe: %s", strerror(errno));
		return KT_FAIL;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		snprintf(why, whylen, "fork: %s", strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		return KT_FAIL;
	}
	if (pid == 0) {
		close(pfd[0]);
		child_main(c, env, pfd[1]);
	}
	setpgid(pid, pid); /* as the child does: whichever runs first */
	running_child = pid;
	close(pfd[1]);
	for (;;) {
		int64_t left = (int64_t)(deadline - kt_now_ns()) / 1000000;
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		ssize_t r;
		int n;

		if (left <= 0) {
			timed_out = 1;
			break;
		}
		n = poll(&p, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			timed_out = n == 0;
			break;
		}
		if (used >= sizeof(buf) - 1)
			used = 0; /* a runaway child: keep the tail */
		r = read(pfd[0], buf + used, sizeof(buf) - 1 - used);
		if (r <= 0)
			break;
		used += (size_t)r;
	}
	close(pfd[0]);
	/* the case's own children (fork cases) are in its group */
	kill(-pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	running_child = 0;
	buf[used] = '\0';

	for (char *line = buf, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (!nl)
			break;
		*nl = '\0';
		if (line[0] == 'N') {
			size_t k = strlen(notes);

			snprintf(notes + k, noteslen - k, "      %s\n", line + 1);
		} else if (line[0] == 'R') {
			result = line[1] - '0';
			snprintf(why, whylen, "%s", line + 2);
		}
	}
	if (result >= 0)
		return result;
	if (timed_out)
		snprintf(why, whylen, "timed out after %u s (case killed)", c->timeout_s * timeout_scale);
	else if (WIFSIGNALED(status))
		snprintf(why, whylen, "case process died of signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(why, whylen, "case process exited with %d without a result",
			 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	return KT_FAIL;
}

static int selected(const char *name, int argc, char **argv, int first)
{
	if (first >= argc)
		return 1;
	for (int i = first; i < argc; i++)
		if (!strncmp(name, argv[i], strlen(argv[i])))
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	const char *ci = getenv("CI"), *req = getenv("CKPT_REQUIRE_KERNEL");
	int strict = (ci && !strcmp(ci, "true")) || (req && !strcmp(req, "1"));
	int first = 1, npass = 0, nfail = 0, nskip = 0;
	struct utsname u;
	uint64_t t_all = kt_now_ns();

	kt_ps = (size_t)sysconf(_SC_PAGESIZE);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && !strcmp(argv[1], "-l")) {
		for (size_t i = 0; i < NCASES; i++)
			printf("%s\n", cases[i].name);
		return 0;
	}
	if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		printf("usage: kt [-l] [CASE-PREFIX...]\n");
		return 0;
	}
	uname(&u);
	printf("# libckpt kernel suite: Linux %s, %s%s\n", u.release,
	       kt_is_root() ? "root" : "not root", strict ? ", strict (a skip is a failure)" : "");
	if (getenv("KT_TIMEOUT_SCALE") && atoi(getenv("KT_TIMEOUT_SCALE")) > 0)
		timeout_scale = (unsigned)atoi(getenv("KT_TIMEOUT_SCALE"));
	install_signals();
	alarm(KT_SUITE_TIMEOUT_S * timeout_scale);

	for (size_t i = 0; i < NCASES; i++) {
		const struct kt_case *c = &cases[i];
		struct kt_env env;
		char why[512] = "", notes[4096] = "";
		int res, lock = -1;
		uint64_t t0 = kt_now_ns();

		if (!selected(c->name, argc, argv, first))
			continue;
		memset(&env, 0, sizeof(env));
		parent_notes[0] = '\0';
		reason_buf[0] = '\0';
		if (c->need_root && !kt_is_root()) {
			res = KT_SKIP;
			snprintf(why, sizeof(why), "needs root (machine state / pagemap PFNs)");
			goto report;
		}
		if (c->machine) {
			lock = kt_machine_lock();
			if (lock < 0) {
				res = KT_FAIL;
				snprintf(why, sizeof(why), "machine lock: %s", strerror(-lock));
				goto report;
			}
		}
		res = c->setup ? c->setup(&env) : KT_PASS;
		if (res != KT_PASS) {
			snprintf(why, sizeof(why), "setup: %s", reason_buf);
		} else {
			res = run_child(c, &env, why, sizeof(why), notes, sizeof(notes));
		}
		kt_restore_all();
		if (lock >= 0)
			kt_machine_unlock(lock);
report:
		switch (res) {
		case KT_PASS:
			npass++;
			printf("PASS %s (%.2f s)\n", c->name, (double)(kt_now_ns() - t0) / 1e9);
			break;
		case KT_SKIP:
			nskip++;
			printf("SKIP %s: %s%s\n", c->name, why, strict ? " [strict: counts as failure]" : "");
			break;
		default:
			nfail++;
			printf("FAIL %s: %s\n", c->name, why);
			break;
		}
		fputs(parent_notes, stdout);
		fputs(notes, stdout);
	}
	printf("# Linux %s: %d passed, %d failed, %d skipped in %.1f s\n", u.release, npass, nfail,
	       nskip, (double)(kt_now_ns() - t_all) / 1e9);
	kt_restore_all();
	if (nfail || (strict && nskip))
		return 1;
	return 0;
}
