/*
 * faultlat.c - latency of the first write to each page while a snapshot is
 * in progress: libckpt's trap paths against what a user would use instead.
 *
 *   build/bench/faultlat [--mode LIST] [--pattern LIST] [--fa LIST]
 *                        [--pages N] [--reps R] [--seed S] [--cdf DIR]
 *
 * Modes (LIST is comma separated, or "all", "raw", "ckpt"):
 *   plain        a write to an ordinary, writable page (the floor of floors)
 *   copy4k       not a write: a 4 KiB memcpy of the page (from a populated
 *                shmem mapping into a pre-faulted pool), the floor of any
 *                copy-before-write scheme, fork's COW included
 *   copy4k-alias the same copy from a second, never-touched read-only
 *                mapping of the memfd (libckpt's writer alias): the first
 *                read of each page there takes a minor fault
 *   wp-unprot    a shmem page write-protected with uffd-wp and unprotected
 *                again before the write: what a page unprotected by
 *                fault-around or by the writer costs on its first write
 *                (the kernel takes a fault to give the pte its write bit back)
 *   wpasync      uffd-wp with UFFD_FEATURE_WP_ASYNC on shmem: the kernel
 *                resolves the fault itself (the floor of any WP scheme)
 *   fork         private anon heap, fork(), the parent writes: kernel COW
 *   mprotect     PROT_READ + SIGSEGV handler that copies the page aside and
 *                mprotect()s it writable (the classic 1995 libckpt)
 *   uffd-sigbus  raw uffd-wp on shmem, UFFD_FEATURE_SIGBUS, handled in the
 *                faulting thread: copy aside + UFFDIO_WRITEPROTECT(0)
 *   uffd-thread  raw uffd-wp, a handler thread in a blocking read()
 *   uffd-poll    raw uffd-wp, a handler thread busy-polling a non-blocking fd
 *   ckpt-thread  libckpt CKPT_TRAP_THREAD through the public API
 *   ckpt-poll    libckpt CKPT_TRAP_THREAD + CKPT_HEAP_BUSY_POLL
 *   ckpt-sigbus  libckpt CKPT_TRAP_SIGBUS
 * The ckpt-* modes run once per fault-around size in --fa (default 1,4,16,64)
 * and checkpoint into a sink that discards; its first pages() call blocks
 * until the measurement is over, so the writer never unprotects a page ahead
 * of the application and every first write takes the trap path.
 *
 * --live POOL: the ckpt-* modes instead checkpoint to a real image file in
 * $TMPDIR (no fsync) with the writer running and the pool capped at POOL:
 * what an application sees when its writes outrun the writer (traps wait
 * for pool slots: pool_waits).  Mode names get a "-live" suffix.
 *
 * Patterns: seq (each page once, in order), rand (N uniform writes over N
 * pages), zipf (N writes, zipfian s=0.99 over the pages, hot pages scattered).
 *
 * Every write is timed with the TSC; the distribution is over the writes that
 * are the first to their page (the ones that can fault).  One output line per
 * (mode, pattern, fault-around):
 *   faultlat mode=M pattern=P fa=F count=C p50=.. p90=.. p99=.. p999=.. max=..
 *            amort=.. amp=.. traps=..
 * latencies in ns; each statistic is the median over the repetitions; amort =
 * the whole write loop's time / distinct pages written; amort_cpu = the
 * process's CPU time over the loop (all threads) / distinct pages written,
 * which a loaded machine's run-queue waits do not inflate; amp = pages copied
 * aside / distinct pages written (-1 where nothing is copied by us).
 * Each mode runs in a child process so signal handlers and heaps never mix.
 */
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt.h"
#include "uffd_compat.h"
#include "benchutil.h"

#define PG 4096ul

enum pattern { PAT_SEQ, PAT_RAND, PAT_ZIPF };
static const char *pattern_names[] = { "seq", "rand", "zipf" };

static const char *all_modes[] = { "plain", "copy4k", "copy4k-alias", "wp-unprot", "wpasync", "fork", "mprotect", "uffd-sigbus",
				   "uffd-thread", "uffd-poll", "ckpt-thread", "ckpt-poll",
				   "ckpt-sigbus" };
#define NMODES (sizeof(all_modes) / sizeof(all_modes[0]))

static size_t g_pages = 8192;
static int g_reps = 3;
static uint64_t g_seed = 1;
static const char *g_cdf_dir;
static size_t g_live_pool; /* --live: ckpt-* modes write a real image with this pool cap */
static double g_ns_per_tick;

/* ------------------------------------------------------------ workload */

struct workload {
	uint32_t *idx;  /* page written by write i */
	uint8_t *first; /* write i is the first to its page */
	size_t nwrites;
	size_t distinct;
};

static void workload_make(struct workload *w, enum pattern pat, size_t npages, uint64_t seed)
{
	size_t n = npages;
	w->idx = malloc(n * sizeof(*w->idx));
	w->first = calloc(n, 1);
	uint8_t *seen = calloc(npages, 1);
	if (!w->idx || !w->first || !seen) {
		fprintf(stderr, "faultlat: out of memory\n");
		exit(1);
	}
	uint64_t rs = seed;
	if (pat == PAT_SEQ) {
		for (size_t i = 0; i < n; i++)
			w->idx[i] = (uint32_t)i;
	} else if (pat == PAT_RAND) {
		for (size_t i = 0; i < n; i++)
			w->idx[i] = (uint32_t)(bench_rand(&rs) % npages);
	} else {
		/* zipf: inverse CDF over ranks, ranks scattered by a permutation
		 * (a hash table's hot keys are not adjacent) */
		double *cdf = malloc(npages * sizeof(*cdf));
		uint32_t *perm = malloc(npages * sizeof(*perm));
		if (!cdf || !perm) {
			fprintf(stderr, "faultlat: out of memory\n");
			exit(1);
		}
		double sum = 0;
		for (size_t r = 0; r < npages; r++) {
			sum += 1.0 / pow((double)(r + 1), 0.99);
			cdf[r] = sum;
			perm[r] = (uint32_t)r;
		}
		for (size_t r = npages - 1; r > 0; r--) {
			size_t j = bench_rand(&rs) % (r + 1);
			uint32_t t = perm[r];
			perm[r] = perm[j];
			perm[j] = t;
		}
		for (size_t i = 0; i < n; i++) {
			double u = (double)(bench_rand(&rs) >> 11) / 9007199254740992.0 * sum;
			size_t lo = 0, hi = npages - 1;
			while (lo < hi) {
				size_t mid = (lo + hi) / 2;
				if (cdf[mid] < u)
					lo = mid + 1;
				else
					hi = mid;
			}
			w->idx[i] = perm[lo];
		}
		free(cdf);
		free(perm);
	}
	w->nwrites = n;
	w->distinct = 0;
	for (size_t i = 0; i < n; i++) {
		if (!seen[w->idx[i]]) {
			seen[w->idx[i]] = 1;
			w->first[i] = 1;
			w->distinct++;
		}
	}
	free(seen);
}

static void workload_free(struct workload *w)
{
	free(w->idx);
	free(w->first);
}

/* Runs the timed write loop over @base.  Fills @lat (ticks) for the first
 * writes and returns their number; *window gets the whole loop's ticks. */
static uint64_t g_cpu_ns; /* process CPU time of the last run_writes() */

static uint64_t process_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static size_t run_writes(uint8_t *base, const struct workload *w, uint64_t *lat, uint64_t *window)
{
	size_t k = 0;
	uint64_t c0 = process_cpu_ns();
	uint64_t w0 = bench_tsc();
	for (size_t i = 0; i < w->nwrites; i++) {
		/* vary the offset so that no two writes hit the same line */
		volatile uint64_t *p = (volatile uint64_t *)(void *)(base + (size_t)w->idx[i] * PG +
								     ((i * 64) & (PG - 1)));
		uint64_t t0 = bench_tsc();
		*p = i + 1;
		uint64_t t1 = bench_tsc();
		if (w->first[i])
			lat[k++] = t1 - t0;
	}
	*window = bench_tsc() - w0;
	/* CPU time (all threads: a handler thread's work counts, time spent
	 * waiting for a CPU on a loaded machine does not) */
	g_cpu_ns = process_cpu_ns() - c0;
	return k;
}

/* ------------------------------------------------------- copy-aside pool */

static uint8_t *g_pool;        /* where handlers copy pages (pre-faulted) */
static _Atomic size_t g_pool_used;
static uint8_t *g_region;
static size_t g_region_len;
static int g_uffd = -1;

static void pool_alloc(size_t len)
{
	g_pool = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		      -1, 0);
	if (g_pool == MAP_FAILED) {
		perror("faultlat: pool mmap");
		exit(1);
	}
	atomic_store(&g_pool_used, 0);
}

static void copy_aside(const void *page)
{
	size_t slot = atomic_fetch_add(&g_pool_used, 1);
	memcpy(g_pool + (slot % g_pages) * PG, page, PG);
}

/* ------------------------------------------------------------- regions */

static uint8_t *map_shmem(size_t len, int *fd_out)
{
	int fd = memfd_create("faultlat", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)len) != 0) {
		perror("faultlat: memfd");
		exit(1);
	}
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		perror("faultlat: mmap shmem");
		exit(1);
	}
	*fd_out = fd;
	return p;
}

static uint8_t *map_anon(size_t len)
{
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("faultlat: mmap anon");
		exit(1);
	}
	/* 4 KiB pages everywhere: a THP would turn the first COW into a
	 * split + copy and make the comparison about something else */
	madvise(p, len, MADV_NOHUGEPAGE);
	return p;
}

static void touch(uint8_t *p, size_t len)
{
	for (size_t off = 0; off < len; off += PG)
		p[off] = (uint8_t)(off / PG + 1);
}

static int uffd_open(bool nonblock)
{
	int flags = O_CLOEXEC | (nonblock ? O_NONBLOCK : 0);
	int fd = (int)syscall(SYS_userfaultfd, flags);
	if (fd < 0) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
			close(dev);
		}
	}
	return fd;
}

/* uffd-wp on [p, p+len): API handshake with @features, register, protect. */
static int uffd_wp_setup(uint8_t *p, size_t len, uint64_t features, bool nonblock)
{
	int fd = uffd_open(nonblock);
	if (fd < 0)
		return -errno;
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	if (ioctl(fd, UFFDIO_API, &api) != 0)
		goto fail;
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)p, .len = len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	if (ioctl(fd, UFFDIO_REGISTER, &reg) != 0)
		goto fail;
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)p, .len = len },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};
	if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp) != 0)
		goto fail;
	return fd;
fail:;
	int e = -errno;
	close(fd);
	return e;
}

static int uffd_unprotect(int fd, void *page, size_t len)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)page, .len = len },
		.mode = 0, /* clears the mark and wakes the faulting thread */
	};
	return ioctl(fd, UFFDIO_WRITEPROTECT, &wp);
}

/* ------------------------------------------------------------ handlers */

static void segv_handler(int sig, siginfo_t *si, void *uc)
{
	uint8_t *a = (uint8_t *)((uintptr_t)si->si_addr & ~(PG - 1));
	if (a < g_region || a >= g_region + g_region_len) {
		signal(sig, SIG_DFL);
		return; /* re-faults and dies with the default action */
	}
	copy_aside(a);
	mprotect(a, PG, PROT_READ | PROT_WRITE);
}

static void bus_handler(int sig, siginfo_t *si, void *uc)
{
	uint8_t *a = (uint8_t *)((uintptr_t)si->si_addr & ~(PG - 1));
	if (a < g_region || a >= g_region + g_region_len) {
		signal(sig, SIG_DFL);
		return;
	}
	copy_aside(a);
	uffd_unprotect(g_uffd, a, PG);
}

static atomic_bool g_stop;

static void *uffd_thread(void *arg)
{
	bool poll_mode = arg != NULL;
	for (;;) {
		struct uffd_msg msg;
		ssize_t n = read(g_uffd, &msg, sizeof(msg));
		if (n != (ssize_t)sizeof(msg)) {
			if (atomic_load_explicit(&g_stop, memory_order_relaxed))
				return NULL;
			if (poll_mode && errno == EAGAIN) {
				bench_cpu_relax();
				continue;
			}
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return NULL; /* fd closed */
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		uint8_t *a = (uint8_t *)(uintptr_t)(msg.arg.pagefault.address & ~(PG - 1));
		copy_aside(a);
		uffd_unprotect(g_uffd, a, PG);
	}
}

/* ------------------------------------------------------------ ckpt modes */

/* A sink that discards, and whose first pages() call blocks until the
 * measurement is done (see the top of the file). */
struct hold_sink {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool released;
};

static int hs_begin(void *arg, const struct ckpt_sink_info *info) { return 0; }

static int hs_pages(void *arg, uint64_t first, uint32_t n, const void *data)
{
	struct hold_sink *s = arg;
	pthread_mutex_lock(&s->mu);
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 120; /* never hang a benchmark run for good */
	while (!s->released)
		if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static int hs_end(void *arg, int status) { return 0; }

static void hs_release(struct hold_sink *s)
{
	pthread_mutex_lock(&s->mu);
	s->released = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------ one rep */

struct rep_result {
	size_t count;
	uint64_t *lat;  /* ticks, count entries */
	uint64_t window;
	uint64_t cpu_ns;
	size_t distinct;
	double amp;     /* -1: not applicable */
	uint64_t traps;
	uint64_t pool_waits;
	int err;        /* nonzero: the mode cannot run here; message printed */
};

static void run_rep(const char *mode, enum pattern pat, unsigned fa, uint64_t seed,
		    struct rep_result *r)
{
	size_t len = g_pages * PG;
	struct workload w;
	workload_make(&w, pat, g_pages, seed);
	memset(r, 0, sizeof(*r));
	r->lat = malloc(w.nwrites * sizeof(*r->lat));
	r->distinct = w.distinct;
	r->amp = -1;
	int fd = -1;

	if (strcmp(mode, "plain") == 0) {
		uint8_t *p = map_anon(len);
		touch(p, len);
		r->count = run_writes(p, &w, r->lat, &r->window);
		munmap(p, len);
	} else if (strcmp(mode, "fork") == 0) {
		uint8_t *p = map_anon(len);
		touch(p, len);
		int pfd[2];
		if (pipe2(pfd, O_CLOEXEC) != 0) {
			perror("pipe");
			exit(1);
		}
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			/* the "snapshot child": keeps the pages shared until told */
			char c;
			close(pfd[1]);
			while (read(pfd[0], &c, 1) < 0 && errno == EINTR)
				;
			_exit(0);
		}
		close(pfd[0]);
		r->count = run_writes(p, &w, r->lat, &r->window);
		close(pfd[1]);
		waitpid(pid, NULL, 0);
		munmap(p, len);
	} else if (strcmp(mode, "mprotect") == 0) {
		uint8_t *p = map_shmem(len, &fd);
		touch(p, len);
		pool_alloc(len);
		g_region = p;
		g_region_len = len;
		struct sigaction sa = { .sa_sigaction = segv_handler, .sa_flags = SA_SIGINFO | SA_NODEFER };
		sigaction(SIGSEGV, &sa, NULL);
		mprotect(p, len, PROT_READ);
		r->count = run_writes(p, &w, r->lat, &r->window);
		signal(SIGSEGV, SIG_DFL);
		r->traps = atomic_load(&g_pool_used);
		r->amp = (double)r->traps / (double)w.distinct;
		munmap(g_pool, len);
		munmap(p, len);
		close(fd);
	} else if (strcmp(mode, "copy4k") == 0 || strcmp(mode, "copy4k-alias") == 0) {
		uint8_t *heap = map_shmem(len, &fd);
		touch(heap, len);
		uint8_t *p = heap;
		if (strcmp(mode, "copy4k-alias") == 0) {
			p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
			if (p == MAP_FAILED) {
				perror("faultlat: alias mmap");
				exit(1);
			}
		}
		pool_alloc(len);
		uint64_t c0 = process_cpu_ns(), w0 = bench_tsc();
		for (size_t i = 0; i < w.nwrites; i++) {
			if (!w.first[i])
				continue;
			uint64_t t0 = bench_tsc();
			memcpy(g_pool + r->count * PG, p + (size_t)w.idx[i] * PG, PG);
			uint64_t t1 = bench_tsc();
			r->lat[r->count++] = t1 - t0;
		}
		r->window = bench_tsc() - w0;
		g_cpu_ns = process_cpu_ns() - c0;
		munmap(g_pool, len);
		if (p != heap)
			munmap(p, len);
		munmap(heap, len);
		close(fd);
	} else if (strcmp(mode, "wp-unprot") == 0) {
		uint8_t *p = map_shmem(len, &fd);
		touch(p, len);
		int u = uffd_wp_setup(p, len, UFFD_FEATURE_WP_HUGETLBFS_SHMEM, true);
		if (u < 0 || uffd_unprotect(u, p, len) != 0) {
			printf("faultlat mode=%s unavailable: uffd setup: %s\n", mode,
			       strerror(u < 0 ? -u : errno));
			r->err = 1;
		} else {
			r->count = run_writes(p, &w, r->lat, &r->window);
		}
		if (u >= 0)
			close(u);
		munmap(p, len);
		close(fd);
	} else if (strcmp(mode, "wpasync") == 0 || strcmp(mode, "uffd-sigbus") == 0 ||
		   strcmp(mode, "uffd-thread") == 0 || strcmp(mode, "uffd-poll") == 0) {
		uint8_t *p = map_shmem(len, &fd);
		touch(p, len);
		pool_alloc(len);
		g_region = p;
		g_region_len = len;
		uint64_t feat = UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
		bool async = strcmp(mode, "wpasync") == 0;
		bool sigbus = strcmp(mode, "uffd-sigbus") == 0;
		bool busy = strcmp(mode, "uffd-poll") == 0;
		if (async)
			feat |= UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
		if (sigbus)
			feat |= UFFD_FEATURE_SIGBUS;
		g_uffd = uffd_wp_setup(p, len, feat, busy);
		if (g_uffd < 0) {
			printf("faultlat mode=%s unavailable: uffd setup: %s\n", mode, strerror(-g_uffd));
			r->err = 1;
		} else {
			pthread_t th;
			atomic_store(&g_stop, false);
			if (sigbus) {
				struct sigaction sa = { .sa_sigaction = bus_handler,
							.sa_flags = SA_SIGINFO | SA_NODEFER };
				sigaction(SIGBUS, &sa, NULL);
			} else if (!async) {
				pthread_create(&th, NULL, uffd_thread, busy ? (void *)1 : NULL);
			}
			r->count = run_writes(p, &w, r->lat, &r->window);
			if (sigbus) {
				signal(SIGBUS, SIG_DFL);
			} else if (!async) {
				atomic_store(&g_stop, true);
				if (!busy)
					pthread_cancel(th); /* parked in read(): a cancellation point */
				pthread_join(th, NULL);
			}
			if (!async) {
				r->traps = atomic_load(&g_pool_used);
				r->amp = (double)r->traps / (double)w.distinct;
			}
			close(g_uffd);
			g_uffd = -1;
		}
		munmap(g_pool, len);
		munmap(p, len);
		close(fd);
	} else if (strncmp(mode, "ckpt-", 5) == 0) {
		struct ckpt_heap_opts ho;
		ckpt_heap_opts_init(&ho);
		ho.size = len * 2 + (72ul << 20);
		ho.pool_bytes = len * 2 + (16ul << 20); /* never wait for the pool */
		if (g_live_pool)
			ho.pool_bytes = g_live_pool;
		ho.fault_around = fa;
		ho.name = "faultlat";
		if (strcmp(mode, "ckpt-sigbus") == 0)
			ho.backend = CKPT_TRAP_SIGBUS;
		else
			ho.backend = CKPT_TRAP_THREAD;
		if (strcmp(mode, "ckpt-poll") == 0)
			ho.flags |= CKPT_HEAP_BUSY_POLL;
		ckpt_heap *h = NULL;
		int rc = ckpt_heap_create(&ho, &h);
		uint8_t *blk = NULL;
		/* The writer claims, copies and unprotects its first batch before
		 * the sink's first pages() call can hold it: keep the measured
		 * pages out of that batch with a padding block in front. */
		if (rc == 0 && !ckpt_alloc(h, 4ul << 20))
			rc = -ENOMEM;
		if (rc == 0) {
			blk = ckpt_alloc(h, len + PG);
			if (!blk)
				rc = -ENOMEM;
		}
		if (rc != 0) {
			printf("faultlat mode=%s unavailable: %s: %s\n", mode,
			       ckpt_err_name(rc), ckpt_strerror(rc));
			r->err = 1;
			ckpt_heap_destroy(h);
		} else {
			uint8_t *p = (uint8_t *)(((uintptr_t)blk + PG - 1) & ~(PG - 1));
			touch(p, len);
			struct hold_sink hs = { .mu = PTHREAD_MUTEX_INITIALIZER,
						.cv = PTHREAD_COND_INITIALIZER };
			struct ckpt_sink sink = { .begin = hs_begin, .pages = hs_pages,
						  .end = hs_end, .arg = &hs };
			struct ckpt_dest dest = { .kind = CKPT_DEST_SINK, .sink = &sink };
			struct ckpt_begin_opts bo;
			char img[512];
			ckpt_begin_opts_init(&bo);
			if (g_live_pool) {
				/* --live: a real image in $TMPDIR (no fsync), the
				 * writer running: traps meet a bounded pool that
				 * only the writer drains */
				const char *td = getenv("TMPDIR");
				snprintf(img, sizeof(img), "%s/faultlat.%d.img", td && *td ? td : "/tmp",
					 (int)getpid());
				dest = (struct ckpt_dest){ .kind = CKPT_DEST_PATH, .path = img };
				bo.flags |= CKPT_BEGIN_NO_FSYNC;
				hs.released = true;
			}
			rc = ckpt_begin(h, &dest, &bo);
			if (rc != 0) {
				printf("faultlat mode=%s unavailable: ckpt_begin: %s\n", mode,
				       ckpt_strerror(rc));
				r->err = 1;
			} else {
				r->count = run_writes(p, &w, r->lat, &r->window);
				struct ckpt_stats st = { .struct_size = sizeof(st) };
				ckpt_stats(h, &st);
				if (getenv("FAULTLAT_DEBUG"))
					fprintf(stderr, "faultlat: %s traps=%llu saved=%llu emitted=%llu total=%llu\n",
						mode, (unsigned long long)st.traps,
						(unsigned long long)st.pages_saved_by_traps,
						(unsigned long long)st.pages_emitted,
						(unsigned long long)st.pages_total);
				hs_release(&hs);
				rc = ckpt_wait(h);
				if (rc != 0)
					fprintf(stderr, "faultlat: ckpt_wait: %s\n", ckpt_strerror(rc));
				r->traps = st.traps;
				r->pool_waits = st.pool_waits;
				r->amp = (double)st.pages_saved_by_traps / (double)w.distinct;
				if (g_live_pool)
					unlink(img);
			}
			ckpt_heap_destroy(h);
		}
	} else {
		fprintf(stderr, "faultlat: unknown mode %s\n", mode);
		exit(2);
	}
	r->cpu_ns = g_cpu_ns;
	workload_free(&w);
}

/* ------------------------------------------------------------ reporting */

static void write_cdf(const char *mode, const char *pat, unsigned fa, uint64_t *all, size_t n)
{
	if (!g_cdf_dir || n == 0)
		return;
	char path[512];
	snprintf(path, sizeof(path), "%s/faultlat-%s%s-%s-fa%u.cdf", g_cdf_dir, mode,
		 g_live_pool ? "-live" : "", pat, fa);
	FILE *f = fopen(path, "we");
	if (!f) {
		fprintf(stderr, "faultlat: %s: %s\n", path, strerror(errno));
		return;
	}
	qsort(all, n, sizeof(*all), bench_cmp_u64);
	/* ~2000 points: enough for a smooth CDF, with the whole tail kept */
	size_t step = n / 2000 ? n / 2000 : 1;
	for (size_t i = 0; i < n; i += step)
		fprintf(f, "%.1f %.6f\n", (double)all[i] * g_ns_per_tick, (double)(i + 1) / (double)n);
	for (size_t i = n - n / 1000 > 0 ? n - n / 1000 : 0; i < n; i++)
		fprintf(f, "%.1f %.6f\n", (double)all[i] * g_ns_per_tick, (double)(i + 1) / (double)n);
	fclose(f);
}

static void run_config(const char *mode, enum pattern pat, unsigned fa)
{
	double p50[16], p90[16], p99[16], p999[16], mx[16], am[16], ac[16], amp[16], tr[16], pw[16];
	int reps = g_reps > 16 ? 16 : g_reps;
	size_t count = 0;
	uint64_t *all = NULL;
	size_t nall = 0;
	for (int k = 0; k < reps; k++) {
		struct rep_result r;
		run_rep(mode, pat, fa, g_seed + (uint64_t)k * 7919, &r);
		if (r.err) {
			free(r.lat);
			free(all);
			return;
		}
		qsort(r.lat, r.count, sizeof(*r.lat), bench_cmp_u64);
		double t = g_ns_per_tick;
		p50[k] = (double)bench_quantile_u64(r.lat, r.count, 0.50) * t;
		p90[k] = (double)bench_quantile_u64(r.lat, r.count, 0.90) * t;
		p99[k] = (double)bench_quantile_u64(r.lat, r.count, 0.99) * t;
		p999[k] = (double)bench_quantile_u64(r.lat, r.count, 0.999) * t;
		mx[k] = r.count ? (double)r.lat[r.count - 1] * t : 0;
		am[k] = (double)r.window * t / (double)r.distinct;
		ac[k] = (double)r.cpu_ns / (double)r.distinct;
		amp[k] = r.amp;
		tr[k] = (double)r.traps;
		pw[k] = (double)r.pool_waits;
		count = r.count;
		all = realloc(all, (nall + r.count) * sizeof(*all));
		memcpy(all + nall, r.lat, r.count * sizeof(*all));
		nall += r.count;
		free(r.lat);
	}
	printf("faultlat mode=%s%s pattern=%s fa=%u count=%zu p50=%.0f p90=%.0f p99=%.0f "
	       "p999=%.0f max=%.0f amort=%.0f amort_cpu=%.0f amp=%.3f traps=%.0f pool_waits=%.0f reps=%d\n",
	       mode, g_live_pool ? "-live" : "", pattern_names[pat], fa, count, bench_median(p50, reps),
	       bench_median(p90, reps), bench_median(p99, reps), bench_median(p999, reps),
	       bench_median(mx, reps), bench_median(am, reps), bench_median(ac, reps),
	       bench_median(amp, reps),
	       bench_median(tr, reps), bench_median(pw, reps), reps);
	fflush(stdout);
	write_cdf(mode, pattern_names[pat], fa, all, nall);
	free(all);
}

/* ------------------------------------------------------------ main */

static bool in_list(const char *list, const char *name)
{
	if (strcmp(list, "all") == 0)
		return true;
	if (strcmp(list, "raw") == 0)
		return strncmp(name, "ckpt-", 5) != 0;
	if (strcmp(list, "ckpt") == 0)
		return strncmp(name, "ckpt-", 5) == 0;
	size_t n = strlen(name);
	for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
		if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0))
			return true;
	return false;
}

static void usage(void)
{
	fprintf(stderr, "usage: faultlat [--mode all|raw|ckpt|M,...] [--pattern all|seq,rand,zipf]\n"
			"                [--fa 1,4,16,64] [--pages N] [--reps R] [--seed S] [--cdf DIR]\n"
			"                [--live POOL_BYTES]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *modes = "all", *patterns = "all", *fas = "1,4,16,64";
	static const struct option lo[] = {
		{ "mode", required_argument, 0, 'm' },  { "pattern", required_argument, 0, 'p' },
		{ "fa", required_argument, 0, 'f' },    { "pages", required_argument, 0, 'n' },
		{ "reps", required_argument, 0, 'r' },  { "seed", required_argument, 0, 's' },
		{ "cdf", required_argument, 0, 'c' },   { "live", required_argument, 0, 'L' },
		{ 0, 0, 0, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "m:p:f:n:r:s:c:L:", lo, NULL)) != -1) {
		switch (c) {
		case 'm': modes = optarg; break;
		case 'p': patterns = optarg; break;
		case 'f': fas = optarg; break;
		case 'n': g_pages = strtoul(optarg, NULL, 0); break;
		case 'r': g_reps = atoi(optarg); break;
		case 's': g_seed = strtoull(optarg, NULL, 0); break;
		case 'c': g_cdf_dir = optarg; break;
		case 'L': g_live_pool = bench_parse_size(optarg); break;
		default: usage();
		}
	}
	if (g_pages < 16 || g_reps < 1)
		usage();
	if (sysconf(_SC_PAGESIZE) != (long)PG) {
		fprintf(stderr, "faultlat: needs 4 KiB pages\n");
		return 77;
	}
	g_ns_per_tick = bench_tsc_ns_per_tick();
	printf("faultlat pages=%zu reps=%d seed=%llu ns_per_tick=%.4f\n", g_pages, g_reps,
	       (unsigned long long)g_seed, g_ns_per_tick);
	fflush(stdout);

	unsigned fa_list[8];
	int nfa = 0;
	for (const char *p = fas; *p && nfa < 8;) {
		fa_list[nfa++] = (unsigned)strtoul(p, (char **)&p, 0);
		if (*p == ',')
			p++;
		else
			break;
	}
	int failed = 0;
	for (size_t m = 0; m < NMODES; m++) {
		if (!in_list(modes, all_modes[m]))
			continue;
		bool is_ckpt = strncmp(all_modes[m], "ckpt-", 5) == 0;
		/* a child per mode: signal handlers, threads and heaps of one
		 * mode never leak into the next */
		fflush(stdout);
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			/* a mode that hangs (an engine bug) must not hang the run */
			alarm(600);
			for (int pt = 0; pt < 3; pt++) {
				if (!in_list(patterns, pattern_names[pt]))
					continue;
				for (int f = 0; f < (is_ckpt ? nfa : 1); f++)
					run_config(all_modes[m], (enum pattern)pt, is_ckpt ? fa_list[f] : 1);
			}
			fflush(stdout);
			_exit(0);
		}
		int st;
		waitpid(pid, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			printf("faultlat mode=%s failed: %s %d\n", all_modes[m],
			       WIFSIGNALED(st) ? "signal" : "exit",
			       WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
			failed = 1;
		}
	}
	return failed;
}
