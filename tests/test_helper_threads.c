/*
 * test_helper_threads.c - libckpt's helper threads never run the
 * application's signal handlers: they are born with every signal blocked.
 *
 * A sender thread sends SIGUSR1 (which the application has a handler for
 * and does not block) to every thread that appears while the library works,
 * one by one with tgkill(); the handler notes any delivery.  A thread that
 * blocks the signal keeps it pending and never runs the handler.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <sys/resource.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/testutil.h"

#define HEAP_SIZE (256u << 20)
#define DATA (96u << 20)
#define MAX_KNOWN 256

static _Atomic int handler_runs;
static _Atomic int stop_sender;
static _Atomic int sender_ready;
static _Atomic long signals_sent;
static pid_t known[MAX_KNOWN];
static int nknown;

static void on_usr1(int sig)
{
	(void)sig;
	atomic_fetch_add(&handler_runs, 1);
}

static bool is_known(pid_t t)
{
	for (int i = 0; i < nknown; i++)
		if (known[i] == t)
			return true;
	return false;
}

/* Thread ids of this process other than io_uring's kernel workers (which
 * never return to user space, so never run handlers). */
static int list_tids(pid_t *out, int max)
{
	DIR *d = opendir("/proc/self/task");
	int n = 0;
	struct dirent *de;
	if (!d)
		return 0;
	while ((de = readdir(d)) && n < max) {
		if (de->d_name[0] == '.')
			continue;
		char p[300], comm[32] = "";
		snprintf(p, sizeof(p), "/proc/self/task/%s/comm", de->d_name);
		FILE *f = fopen(p, "re");
		if (f) {
			if (!fgets(comm, sizeof(comm), f))
				comm[0] = 0;
			fclose(f);
		}
		if (strncmp(comm, "iou-", 4) == 0)
			continue;
		out[n++] = (pid_t)atoi(de->d_name);
	}
	closedir(d);
	return n;
}

static void *sender_main(void *arg)
{
	(void)arg;
	pid_t tids[MAX_KNOWN];
	known[nknown++] = (pid_t)syscall(SYS_gettid); /* the sender is no library thread */
	atomic_store(&sender_ready, 1);
	while (!atomic_load(&stop_sender)) {
		int n = list_tids(tids, MAX_KNOWN);
		for (int i = 0; i < n; i++)
			if (!is_known(tids[i]) &&
			    syscall(SYS_tgkill, getpid(), tids[i], SIGUSR1) == 0)
				atomic_fetch_add(&signals_sent, 1);
		usleep(200);
	}
	return NULL;
}

static void make_image(const char *path)
{
	struct ckpt_heap_opts o;
	ckpt_heap *h = NULL;
	ckpt_heap_opts_init(&o);
	o.size = HEAP_SIZE;
	CKPT_ASSERT_OK(ckpt_heap_create(&o, &h));
	uint8_t *d = ckpt_alloc(h, DATA);
	cr_assert(d);
	for (size_t i = 0; i < DATA; i += 64)
		memset(d + i, (int)((i / 4096) * 31 + (i / 64)), 64); /* compressible, not zero */
	struct ckpt_dest dest = {.kind = CKPT_DEST_PATH, .path = path};
	struct ckpt_begin_opts bo;
	ckpt_begin_opts_init(&bo);
	bo.flags = CKPT_BEGIN_NO_FSYNC;
	bo.zstd_level = 1;
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, &bo));
	CKPT_ASSERT_OK(ckpt_wait(h));
	ckpt_heap_destroy(h);
}

/* The restore's decompression workers block every signal. */
Test(helper_threads, restore_workers_never_run_application_signal_handlers, .timeout = 120)
{
	char dir[] = "/tmp/ckpt-sig.XXXXXX", path[64];
	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/img", dir);
	make_image(path);

	struct sigaction sa = {.sa_handler = on_usr1};
	sigemptyset(&sa.sa_mask);
	cr_assert(sigaction(SIGUSR1, &sa, NULL) == 0);
	nknown = list_tids(known, MAX_KNOWN);
	pthread_t sender;
	cr_assert(pthread_create(&sender, NULL, sender_main, NULL) == 0);
	for (int i = 0; i < 5000 && !atomic_load(&sender_ready); i++)
		usleep(1000);
	cr_assert(atomic_load(&sender_ready));

	/* SIGBUS mode: no handler thread, so only the restore's own threads appear */
	struct ckpt_heap_opts o;
	ckpt_heap_opts_init(&o);
	o.size = HEAP_SIZE;
	o.backend = CKPT_TRAP_SIGBUS;
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.heap = &o;
	ckpt_heap *h = NULL;
	int rc = 0;
	long before = atomic_load(&signals_sent);
	/* a few rounds, so that the sender certainly catches the workers alive */
	for (int round = 0; round < 20 && !rc && atomic_load(&signals_sent) - before < 8; round++) {
		rc = ckpt_restore(path, &ro, &h);
		ckpt_heap_destroy(h);
		h = NULL;
	}
	atomic_store(&stop_sender, 1);
	pthread_join(sender, NULL);
	CKPT_ASSERT_OK(rc);
	cr_assert(atomic_load(&signals_sent) - before > 0, "no restore worker was ever signalled");
	cr_assert(atomic_load(&handler_runs) == 0,
		  "the application's SIGUSR1 handler ran %d time(s) on a library thread (%ld sent)",
		  atomic_load(&handler_runs), atomic_load(&signals_sent) - before);
	signal(SIGUSR1, SIG_IGN);
	unlink(path);
	rmdir(dir);
}

/* ------------------------------------------------------------------ names */

#define MAX_SEEN 512
static struct seen {
	pid_t tid;
	char comm[32];
} seen[MAX_SEEN];
static int nseen;
static _Atomic int stop_scanner;

static bool read_comm(pid_t tid, char *comm, size_t len)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/self/task/%d/comm", (int)tid);
	FILE *f = fopen(p, "re");
	if (!f)
		return false;
	bool ok = fgets(comm, (int)len, f) != NULL;
	fclose(f);
	if (ok)
		comm[strcspn(comm, "\n")] = 0;
	return ok;
}

/* Records the name of every thread that appears.  A thread can be seen in
 * the microseconds between its creation and its naming: a name that is not
 * the library's is read once more a little later (if the thread still
 * lives) before it counts. */
static void *scanner_main(void *arg)
{
	(void)arg;
	pid_t tids[MAX_KNOWN];
	known[nknown++] = (pid_t)syscall(SYS_gettid);
	while (!atomic_load(&stop_scanner)) {
		int n = list_tids(tids, MAX_KNOWN);
		for (int i = 0; i < n && nseen < MAX_SEEN; i++) {
			bool have = is_known(tids[i]);
			for (int k = 0; k < nseen && !have; k++)
				have = seen[k].tid == tids[i];
			if (have)
				continue;
			struct seen *s = &seen[nseen];
			if (!read_comm(tids[i], s->comm, sizeof(s->comm)))
				continue;
			if (strncmp(s->comm, "ckpt-", 5) != 0) {
				usleep(2000);
				if (!read_comm(tids[i], s->comm, sizeof(s->comm)))
					continue; /* gone: nothing to say about it */
			}
			s->tid = tids[i];
			nseen++;
		}
		usleep(100);
	}
	return NULL;
}

static bool seen_name(const char *name)
{
	for (int k = 0; k < nseen; k++)
		if (strcmp(seen[k].comm, name) == 0)
			return true;
	return false;
}

/* Every thread libckpt starts is named "ckpt-<role>": top -H, gdb and perf
 * then tell them from the application's.  The checkpoint's thread, the trap
 * handler, the protection passes, the zstd workers, the restore's workers
 * and a lazy restore's fault thread and loaders all appear below; none may
 * carry another name. */
Test(helper_threads, library_threads_are_named, .timeout = 120)
{
	char dir[] = "/tmp/ckpt-names.XXXXXX", path[64];
	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/img", dir);
	nknown = list_tids(known, MAX_KNOWN);
	pthread_t scanner;
	cr_assert(pthread_create(&scanner, NULL, scanner_main, NULL) == 0);

	for (int round = 0; round < 5; round++) {
		make_image(path); /* thread mode, zstd workers, passes over 96 MiB */
		struct ckpt_heap_opts o;
		ckpt_heap_opts_init(&o);
		o.size = HEAP_SIZE;
		struct ckpt_restore_opts ro;
		ckpt_restore_opts_init(&ro);
		ro.heap = &o;
		ckpt_heap *h = NULL;
		CKPT_ASSERT_OK(ckpt_restore(path, &ro, &h));
		ckpt_heap_destroy(h);
		ro.flags = CKPT_RESTORE_LAZY; /* a fault thread and loaders */
		CKPT_ASSERT_OK(ckpt_restore(path, &ro, &h));
		CKPT_ASSERT_OK(ckpt_restore_wait(h));
		ckpt_heap_destroy(h);
		if (seen_name("ckpt-writer") && seen_name("ckpt-trap") && seen_name("ckpt-zstd") &&
		    seen_name("ckpt-restore") && seen_name("ckpt-load"))
			break;
	}
	atomic_store(&stop_scanner, 1);
	pthread_join(scanner, NULL);
	for (int k = 0; k < nseen; k++)
		cr_expect(strncmp(seen[k].comm, "ckpt-", 5) == 0,
			  "thread %d is named \"%s\", not ckpt-*", (int)seen[k].tid, seen[k].comm);
	cr_assert(seen_name("ckpt-writer") && seen_name("ckpt-trap") && seen_name("ckpt-zstd") &&
			  seen_name("ckpt-restore") && seen_name("ckpt-load"),
		  "expected the writer, trap, zstd, restore and lazy loader threads among %d seen", nseen);
	unlink(path);
	rmdir(dir);
}

/* ------------------------------------------------------------ priorities */

/* A thread's nice value from /proc (field 19 of stat); INT_MIN if gone. */
static int task_nice(pid_t tid)
{
	char p[64], buf[1024];
	snprintf(p, sizeof(p), "/proc/self/task/%d/stat", (int)tid);
	FILE *f = fopen(p, "re");
	if (!f)
		return INT_MIN;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *q = strrchr(buf, ')'); /* comm may hold spaces */
	int field = 2, nice = INT_MIN;
	for (char *t = q ? strtok(q + 1, " ") : NULL; t; t = strtok(NULL, " "))
		if (++field == 19) {
			nice = atoi(t);
			break;
		}
	return nice;
}

/* The zstd workers are started while the checkpoint is prepared, at the
 * application's priority; while the pages stream they must yield to the
 * application as the checkpoint's own thread does (writer_nice), or
 * compression takes the CPU the application's requests need. */
Test(helper_threads, zstd_workers_compress_at_the_writers_priority, .timeout = 120)
{
	char dir[] = "/tmp/ckpt-nice.XXXXXX", path[64];
	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/img", dir);
	struct ckpt_heap_opts o;
	ckpt_heap_opts_init(&o);
	o.size = HEAP_SIZE;
	o.writer_nice = 7;
	ckpt_heap *h = NULL;
	CKPT_ASSERT_OK(ckpt_heap_create(&o, &h));
	uint8_t *d = ckpt_alloc(h, DATA);
	cr_assert(d);
	for (size_t i = 0; i < DATA; i += 64)
		memset(d + i, (int)((i / 4096) * 31 + (i / 64)), 64);
	errno = 0;
	int base = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
	cr_assert(errno == 0);

	int lowered = 0, unlowered = 0, writer_seen = 0;
	for (int round = 0; round < 5 && lowered == 0; round++) {
		struct ckpt_dest dest = {.kind = CKPT_DEST_PATH, .path = path};
		struct ckpt_begin_opts bo;
		ckpt_begin_opts_init(&bo);
		bo.flags = CKPT_BEGIN_NO_FSYNC;
		bo.zstd_level = 3; /* slow enough to be watched */
		CKPT_ASSERT_OK(ckpt_begin(h, &dest, &bo));
		pid_t tids[MAX_KNOWN];
		/* watch until the end: what counts is each worker's last value
		 * while the pages stream */
		while (ckpt_poll(h, NULL, NULL) == 1) {
			int n = list_tids(tids, MAX_KNOWN), l = 0, u = 0;
			for (int i = 0; i < n; i++) {
				char comm[32];
				if (!read_comm(tids[i], comm, sizeof(comm)))
					continue;
				int nice = task_nice(tids[i]);
				if (strcmp(comm, "ckpt-writer") == 0 && nice == base + 7)
					writer_seen++;
				if (strcmp(comm, "ckpt-zstd") != 0 || nice == INT_MIN)
					continue;
				if (nice == base + 7)
					l++;
				else
					u++;
			}
			if (l + u) {
				lowered = l;
				unlowered = u;
			}
			usleep(2000);
		}
		CKPT_ASSERT_OK(ckpt_wait(h));
	}
	ckpt_heap_destroy(h);
	unlink(path);
	rmdir(dir);
	cr_assert(writer_seen > 0, "the checkpoint's thread was never seen streaming at nice %d", base + 7);
	cr_assert(lowered > 0 && unlowered == 0,
		  "zstd workers while streaming: %d at the writer's nice %d, %d at another", lowered,
		  base + 7, unlowered);
}
