/*
 * soak_trial.c - one randomized consistency trial (or many) for tests/soak.sh.
 *
 *   soak_trial --dir DIR [--seed S] [--trials N] [--kill-pct P] [--cancel-pct P]
 *              [--pageout] [--cgroup PATH] [--quiet]
 *
 * A trial draws its parameters from the seed: trap mode (handler thread,
 * SIGBUS, fork), fault-around, pool size, 1-3 writer threads, full or
 * incremental checkpoints (a chain of 1-4), zstd or stored, heap and data
 * sizes.  It then runs in a child process:
 *
 *   - writer threads keep changing random heap pages (and allocating and
 *     freeing small blocks) under a database-style read lock;
 *   - for each checkpoint the main thread takes the write lock, copies the
 *     heap's extent as the reference, writes it to DIR/ref.pending, calls
 *     ckpt_begin() and renames the reference to DIR/ref.GEN (the
 *     checkpoint's generation), releases the lock, and waits - sometimes
 *     cancelling at a random moment;
 *   - with --pageout, a helper process swaps random stretches of the heap
 *     out with process_madvise(MADV_PAGEOUT) the whole time (needs swap:
 *     soak.sh sets up zram);
 *   - with --cgroup, the child joins that memory cgroup (soak.sh sets a
 *     limit below the trial's footprint so the kernel reclaims under it).
 *
 * The parent SIGKILLs the child at a random moment in --kill-pct percent of
 * the trials.  Whatever happened, the parent then checks the image at
 * DIR/img: if there is one it must verify (atomic publish: never a torn
 * image), and ckpt_restore() of it must give exactly DIR/ref.GEN for the
 * generation the image says it holds (pages past the reference are zero).
 * A mismatch is printed with the seed that reproduces it.
 *
 * Output: one line per trial unless --quiet; the last line is
 * "trials N mismatches M killed K cancelled C oom O" (soak.sh sums these).
 * Exit 0 when there was no mismatch, 1 otherwise, 2 on a set-up problem.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif

/* make tsan moves it: TSan's shadow layout excludes the usual range */
#ifndef SOAK_BASE
#define SOAK_BASE 0x5e0000000000ull
#endif
#define BASE ((void *)SOAK_BASE)
#define PSZ 4096u

struct params {
	uint64_t seed;
	enum ckpt_backend backend;
	unsigned fault_around;
	size_t pool_bytes;
	int nwriters;
	bool incremental;
	int nckpt;
	int zstd;
	size_t heap_size;
	size_t data_pages;
	bool busy_poll;
};

static const char *g_dir;
static bool g_quiet;
static bool g_pageout;
static const char *g_cgroup;

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void draw(struct params *p, uint64_t seed)
{
	uint64_t s = seed;
	static const unsigned fa[] = { 1, 4, 16, 64 };
	static const size_t pools[] = { 4 * PSZ, 32 * PSZ, 1u << 20, 8u << 20 };
	memset(p, 0, sizeof(*p));
	p->seed = seed;
	unsigned m = (unsigned)(rnd(&s) % 10);
	p->backend = m < 5 ? CKPT_TRAP_THREAD : m < 9 ? CKPT_TRAP_SIGBUS : CKPT_BACKEND_FORK;
	p->fault_around = fa[rnd(&s) % 4];
	p->pool_bytes = pools[rnd(&s) % 4];
	p->nwriters = 1 + (int)(rnd(&s) % 3);
	p->incremental = p->backend != CKPT_BACKEND_FORK && rnd(&s) % 2;
	p->nckpt = 1 + (int)(rnd(&s) % 4);
	p->zstd = rnd(&s) % 3 == 0 ? 1 : 0;
	p->heap_size = (size_t)(16 + rnd(&s) % 3 * 16) << 20;
	p->data_pages = 256 + rnd(&s) % 1792;
	p->busy_poll = p->backend == CKPT_TRAP_THREAD && rnd(&s) % 4 == 0;
}

static const char *backend_name(enum ckpt_backend b)
{
	return b == CKPT_TRAP_THREAD ? "thread" : b == CKPT_TRAP_SIGBUS ? "sigbus" : "fork";
}

/* ------------------------------------------------------------ the child */

struct shared {
	ckpt_heap *h;
	uint8_t *data;
	size_t data_pages;
	pthread_rwlock_t db; /* the "database lock": writers read-lock, begin write-locks */
	atomic_int stop;
};

struct writer_arg {
	struct shared *S;
	uint64_t seed;
	int idx, nw; /* writer idx owns the pages with page % nw == idx */
};

static void *writer_main(void *arg)
{
	struct writer_arg *wa = arg;
	struct shared *S = wa->S;
	uint64_t s = wa->seed;
	void *blocks[16] = { 0 };
	while (!atomic_load(&S->stop)) {
		pthread_rwlock_rdlock(&S->db);
		uint64_t r = rnd(&s);
		/* each page has one writer: the read lock keeps checkpoints
		 * out, it does not order writers among themselves */
		size_t page = (size_t)(r % (S->data_pages / (size_t)wa->nw)) * (size_t)wa->nw + (size_t)wa->idx;
		uint8_t *pg = S->data + page * PSZ;
		switch ((r >> 32) % 8) {
		case 0: /* a block comes or goes: allocator metadata changes */ {
			int k = (int)((r >> 40) % 16);
			if (blocks[k]) {
				ckpt_free(S->h, blocks[k]);
				blocks[k] = NULL;
			} else if ((blocks[k] = ckpt_alloc(S->h, 16 + (r >> 48) % 9000))) {
				memset(blocks[k], (int)(r & 0xff), 16);
			}
			break;
		}
		case 1: /* a whole page becomes zero */
			memset(pg, 0, PSZ);
			break;
		default:
			memcpy(pg + (r >> 40) % (PSZ - 8), &r, 8);
			break;
		}
		pthread_rwlock_unlock(&S->db);
	}
	return NULL;
}

static int write_file(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	const uint8_t *b = p;
	while (n) {
		ssize_t k = write(fd, b, n);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			close(fd);
			return -e;
		}
		b += k;
		n -= (size_t)k;
	}
	return close(fd) ? -errno : 0;
}

static void join_cgroup(void)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/cgroup.procs", g_cgroup);
	FILE *f = fopen(p, "we");
	if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0) {
		fprintf(stderr, "soak_trial: cannot join %s: %s\n", g_cgroup, strerror(errno));
		_exit(2);
	}
}

/* Helper process: pages random stretches of the heap out, from outside. */
static pid_t start_pageout(pid_t target, size_t bytes, uint64_t seed)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	int pfd = (int)syscall(SYS_pidfd_open, target, 0);
	if (pfd < 0)
		_exit(3);
	uint64_t s = seed;
	for (;;) {
		size_t pages = bytes / PSZ;
		size_t first = (size_t)(rnd(&s) % pages);
		size_t n = 1 + (size_t)(rnd(&s) % 64);
		if (first + n > pages)
			n = pages - first;
		struct iovec iov = { (uint8_t *)BASE + first * PSZ, n * PSZ };
		syscall(SYS_process_madvise, pfd, &iov, 1, MADV_PAGEOUT, 0);
		usleep(100 + (useconds_t)(rnd(&s) % 400));
		if (getppid() != target)
			_exit(0);
	}
}

/* The child's whole life.  Exit codes: 0 done, 10 + rc class on errors
 * the parent reports. */
static int child_main(const struct params *P, unsigned cancel_pct)
{
	if (g_cgroup)
		join_cgroup();
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = P->heap_size;
	ho.base = BASE;
	ho.backend = P->backend;
	ho.fault_around = P->fault_around;
	ho.pool_bytes = P->pool_bytes;
	ho.flags = (P->incremental ? CKPT_HEAP_INCREMENTAL : 0) | (P->busy_poll ? CKPT_HEAP_BUSY_POLL : 0);
	ho.name = "soak";
	struct shared S;
	memset(&S, 0, sizeof(S));
	int rc = ckpt_heap_create(&ho, &S.h);
	if (rc) {
		fprintf(stderr, "soak_trial: heap: %s\n", ckpt_strerror(rc));
		return 20;
	}
	S.data_pages = P->data_pages;
	S.data = ckpt_alloc(S.h, S.data_pages * PSZ);
	if (!S.data)
		return 21;
	uint64_t s = P->seed ^ 0x5eed;
	for (size_t i = 0; i < S.data_pages * PSZ; i += 8) {
		uint64_t v = (i / PSZ) % 7 == 3 ? 0 : rnd(&s) % 4 ? i * 31 : rnd(&s);
		memcpy(S.data + i, &v, 8);
	}
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&S.db, &ra);
	pid_t po = g_pageout ? start_pageout(getpid(), P->heap_size, P->seed ^ 0xa5) : -1;

	pthread_t th[3];
	struct writer_arg wa[3];
	for (int i = 0; i < P->nwriters; i++) {
		wa[i] = (struct writer_arg){ &S, P->seed * 7 + (uint64_t)i, i, P->nwriters };
		pthread_create(&th[i], NULL, writer_main, &wa[i]);
	}
	uint8_t *ref = malloc(P->heap_size);
	char pending[600], refpath[600], img[600];
	snprintf(pending, sizeof(pending), "%s/ref.pending", g_dir);
	snprintf(img, sizeof(img), "%s/img", g_dir);
	int result = 0;
	for (int k = 0; k < P->nckpt && ref; k++) {
		usleep((useconds_t)(rnd(&s) % 3000));
		struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = img };
		struct ckpt_begin_opts bo;
		ckpt_begin_opts_init(&bo);
		bo.zstd_level = P->zstd;
		bo.flags = CKPT_BEGIN_NO_FSYNC;
		pthread_rwlock_wrlock(&S.db);
		size_t used = ckpt_heap_used(S.h);
		memcpy(ref, ckpt_heap_base(S.h), used);
		rc = write_file(pending, ref, used);
		if (rc == 0)
			rc = ckpt_begin(S.h, &d, &bo);
		struct ckpt_stats st = { .struct_size = sizeof(st) };
		if (rc == 0) {
			ckpt_stats(S.h, &st);
			snprintf(refpath, sizeof(refpath), "%s/ref.%llu", g_dir,
				 (unsigned long long)st.generation);
			if (rename(pending, refpath) != 0)
				rc = -errno;
		}
		pthread_rwlock_unlock(&S.db);
		if (rc) {
			fprintf(stderr, "soak_trial: seed %llu: checkpoint %d: begin: %s\n",
				(unsigned long long)P->seed, k, ckpt_err_name(rc));
			result = 22;
			break;
		}
		bool cancel = rnd(&s) % 100 < cancel_pct;
		if (cancel) {
			usleep((useconds_t)(rnd(&s) % 2000));
			ckpt_cancel(S.h);
		}
		rc = ckpt_wait(S.h);
		if (rc == CKPT_E_CANCELED && cancel) {
			/* write(2): the child leaves with _exit(), which flushes no stdio */
			if (write(1, "cancelled\n", 10) < 0) {
				/* the parent went away: nothing to report to */
			}
			continue;
		}
		if (rc) {
			fprintf(stderr, "soak_trial: seed %llu: checkpoint %d: wait: %s\n",
				(unsigned long long)P->seed, k, ckpt_err_name(rc));
			result = 23;
			break;
		}
	}
	atomic_store(&S.stop, 1);
	for (int i = 0; i < P->nwriters; i++)
		pthread_join(th[i], NULL);
	if (po > 0) {
		kill(po, SIGKILL);
		waitpid(po, NULL, 0);
	}
	ckpt_heap_destroy(S.h);
	free(ref);
	return result;
}

/* ------------------------------------------------------------ the parent */

static void rm_dir_contents(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
			continue;
		char p[600];
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		unlink(p);
	}
	closedir(d);
}

static uint8_t *read_all(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return NULL;
	}
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

/* 0 consistent (or no image), 1 mismatch. */
static int verify(const struct params *P, bool killed, char *why, size_t wsz)
{
	char img[600];
	snprintf(img, sizeof(img), "%s/img", g_dir);
	struct ckpt_image_info ii;
	char err[256] = "";
	int rc = ckpt_image_info(img, &ii, err, sizeof(err));
	if (rc == -ENOENT) {
		snprintf(why, wsz, "no image");
		return 0;
	}
	if (rc) {
		snprintf(why, wsz, "image info: %s (%s)", ckpt_err_name(rc), err);
		return 1;
	}
	rc = ckpt_image_verify(img, CKPT_VERIFY_CHAIN, err, sizeof(err));
	if (rc) {
		snprintf(why, wsz, "the published image does not verify: %s (%s)", ckpt_err_name(rc), err);
		return 1;
	}
	char refpath[600];
	snprintf(refpath, sizeof(refpath), "%s/ref.%llu", g_dir, (unsigned long long)ii.generation);
	size_t rlen = 0;
	uint8_t *ref = read_all(refpath, &rlen);
	if (!ref && killed) {
		/* killed between the publish and the reference's rename */
		snprintf(refpath, sizeof(refpath), "%s/ref.pending", g_dir);
		ref = read_all(refpath, &rlen);
	}
	if (!ref) {
		snprintf(why, wsz, "image of generation %llu has no reference", (unsigned long long)ii.generation);
		return 1;
	}
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.backend = CKPT_TRAP_THREAD;
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.heap = &ho;
	ro.errbuf = err;
	ro.errbuf_size = sizeof(err);
	ckpt_heap *h = NULL;
	rc = ckpt_restore(img, &ro, &h);
	if (rc) {
		free(ref);
		snprintf(why, wsz, "restore: %s (%s)", ckpt_err_name(rc), err);
		return 1;
	}
	int bad = 0;
	const uint8_t *m = ckpt_heap_base(h);
	if (rlen > ckpt_heap_size(h)) {
		bad = 1;
		snprintf(why, wsz, "reference longer than the heap");
	} else if (memcmp(m, ref, rlen) != 0) {
		size_t i = 0;
		while (i < rlen && m[i] == ref[i])
			i++;
		bad = 1;
		snprintf(why, wsz, "generation %llu differs from its reference at byte %zu (page %zu)",
			 (unsigned long long)ii.generation, i, i / PSZ);
	} else {
		/* past the reference's extent the heap was never handed out */
		size_t end = ii.npages * PSZ;
		for (size_t i = rlen; i < end && !bad; i += 8) {
			uint64_t v;
			memcpy(&v, m + i, 8);
			if (v) {
				bad = 1;
				snprintf(why, wsz, "byte %zu past the extent is not zero", i);
			}
		}
	}
	if (!bad)
		snprintf(why, wsz, "generation %llu ok (%s)", (unsigned long long)ii.generation,
			 (ii.flags & CKPT_SINK_INCREMENTAL) ? "incremental" : "full");
	ckpt_heap_destroy(h);
	free(ref);
	(void)P;
	return bad;
}

int main(int argc, char **argv)
{
	uint64_t seed = (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
	long trials = 1;
	unsigned kill_pct = 20, cancel_pct = 10;
	static const struct option lo[] = {
		{ "dir", required_argument, 0, 'd' },	 { "seed", required_argument, 0, 's' },
		{ "trials", required_argument, 0, 'n' }, { "kill-pct", required_argument, 0, 'k' },
		{ "cancel-pct", required_argument, 0, 'c' }, { "pageout", no_argument, 0, 'p' },
		{ "cgroup", required_argument, 0, 'g' }, { "quiet", no_argument, 0, 'q' },
		{ 0, 0, 0, 0 },
	};
	int o;
	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 'd': g_dir = optarg; break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 'n': trials = atol(optarg); break;
		case 'k': kill_pct = (unsigned)atoi(optarg); break;
		case 'c': cancel_pct = (unsigned)atoi(optarg); break;
		case 'p': g_pageout = true; break;
		case 'g': g_cgroup = optarg; break;
		case 'q': g_quiet = true; break;
		default: return 2;
		}
	}
	if (!g_dir) {
		fprintf(stderr, "usage: soak_trial --dir DIR [--seed S] [--trials N] [--kill-pct P] "
				"[--cancel-pct P] [--pageout] [--cgroup PATH] [--quiet]\n");
		return 2;
	}
	mkdir(g_dir, 0700);
	long mismatches = 0, killed = 0, cancelled = 0, oom = 0, done = 0;
	for (long t = 0; t < trials; t++, seed++) {
		struct params P;
		draw(&P, seed);
		rm_dir_contents(g_dir);
		uint64_t s = seed ^ 0xdead;
		bool do_kill = rnd(&s) % 100 < kill_pct;
		int out[2];
		if (pipe2(out, O_CLOEXEC) != 0)
			return 2;
		fflush(stdout);
		pid_t pid = fork();
		if (pid < 0)
			return 2;
		if (pid == 0) {
			dup2(out[1], 1);
			_exit(child_main(&P, cancel_pct));
		}
		close(out[1]);
		if (do_kill) {
			/* anywhere in the child's life: set-up, a checkpoint's
			 * stream, the publish, between checkpoints */
			usleep((useconds_t)(rnd(&s) % 400000));
			kill(pid, SIGKILL);
		}
		char buf[256];
		ssize_t n;
		int ncancel = 0;
		while ((n = read(out[0], buf, sizeof(buf) - 1)) > 0) {
			buf[n] = 0;
			for (char *q = buf; (q = strstr(q, "cancelled")); q++)
				ncancel++;
		}
		close(out[0]);
		int status = 0;
		waitpid(pid, &status, 0);
		cancelled += ncancel;
		bool was_killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
		if (was_killed && !do_kill)
			oom++; /* the cgroup's OOM killer, not us */
		if (was_killed)
			killed++;
		char why[400] = "";
		int bad = 0;
		if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
			bad = 1;
			snprintf(why, sizeof(why), "child exited %d", WEXITSTATUS(status));
		} else if (WIFSIGNALED(status) && !was_killed) {
			bad = 1;
			snprintf(why, sizeof(why), "child died of signal %d", WTERMSIG(status));
		} else {
			bad = verify(&P, was_killed, why, sizeof(why));
		}
		done++;
		mismatches += bad;
		if (bad || !g_quiet)
			printf("%s seed %llu: %s fa=%u pool=%zuK writers=%d %s x%d zstd=%d heap=%zuM data=%zu pages%s%s: %s\n",
			       bad ? "MISMATCH" : "ok", (unsigned long long)seed, backend_name(P.backend),
			       P.fault_around, P.pool_bytes >> 10, P.nwriters,
			       P.incremental ? "incremental" : "full", P.nckpt, P.zstd, P.heap_size >> 20,
			       P.data_pages, P.busy_poll ? " busy-poll" : "",
			       was_killed ? (do_kill ? " SIGKILLed" : " OOM-killed") : "", why);
		fflush(stdout);
	}
	rm_dir_contents(g_dir);
	rmdir(g_dir);
	printf("trials %ld mismatches %ld killed %ld cancelled %ld oom %ld\n", done, mismatches, killed,
	       cancelled, oom);
	return mismatches ? 1 : 0;
}
