/*
 * pause.c - how long the application stops when a snapshot starts, against
 * heap size.
 *
 *   build/bench/pause [--sizes 256m,1g] [--reps R] [--seed S] [--no-hugetlb]
 *
 * Methods (one output line each per size, median of R repetitions):
 *   fork        fork() of a touched private anon heap (the parent's stall)
 *   wp-raw      UFFDIO_WRITEPROTECT of a touched, registered shmem heap
 *   ckpt-full   ckpt_begin() of a full checkpoint (wall time of the call)
 *   ckpt-incr1  ckpt_begin() of an incremental checkpoint, 1% of pages dirty
 *   ckpt-incr10 the same with 10% dirty
 *   ckpt-huge   ckpt_begin() of a full checkpoint of a CKPT_HEAP_HUGETLB heap;
 *               2 MiB pages are reserved through /proc/sys/vm/nr_hugepages
 *               under the machine lock and the old value is put back
 * Output: "pause method=M size=BYTES ns=N stats_pause_ns=N reps=R"
 * (stats_pause_ns: ckpt_stats().pause_ns, the library's own figure; -1 for
 * the raw methods).  The checkpoints go to a sink that discards.
 *
 *   build/bench/pause --loaded [--sizes 1g,2g] [--reps R] [--rate PAGES/S]
 *
 * Issue 10: the same pauses while a writer thread dirties random pages of the
 * heap throughout (--rate, default 100,000 pages/s; the rate it achieved is
 * reported: a trap-bound writer falls short of it), each method on its own
 * heap of the size, one at a time:
 *   fork        fork() of a touched private anon heap
 *   ckpt-full   ckpt_begin(): today's one call, the pause is the full
 *               write-protect of the heap
 *   ckpt-cut    the new cut: ckpt_prepare(), then, once ckpt_ready() says 1
 *               (woken by ckpt_event_fd()), ckpt_cut(); ns is the ckpt_cut()
 *               call, stats_pause_ns the library's pause
 *   ckpt-incr1  ckpt_begin() of an incremental checkpoint after 1% of pages
 *               were dirtied at random (writer stopped: the dirty set is 1%)
 *   ckpt-incr1-cut  the same through prepare + cut
 * Output: "pause loaded method=M size=BYTES ns=N stats_pause_ns=N
 * dirty_rate=PAGES/S reps=R" (medians; ns: wall time of the call), and for
 * the cut methods "prepare_ns= prep_passes= cut_pages= prep_traps=
 * prep_p50_ns= prep_p99_ns=" (preparation's cost: its duration, the traps
 * it caused and their latency, from prep_trap_hist: the upper bound of the
 * bucket holding the percentile) and prep_dirty_rate (the writer's pages/s
 * during the preparation).
 */
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt.h"
#include "uffd_compat.h"
#include "benchutil.h"

#define PG 4096ul

static int g_reps = 3;
static uint64_t g_seed = 1;

static void touch(uint8_t *p, size_t len, size_t step)
{
	for (size_t off = 0; off < len; off += step)
		p[off] = (uint8_t)(off / step + 1);
}

static void report(const char *m, size_t size, double *ns, double *sp, int n)
{
	if (n == 0)
		return;
	printf("pause method=%s size=%zu ns=%.0f stats_pause_ns=%.0f reps=%d\n", m, size,
	       bench_median(ns, (size_t)n), sp ? bench_median(sp, (size_t)n) : -1.0, n);
	fflush(stdout);
}

static void bench_fork(size_t size)
{
	double ns[16];
	uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		printf("pause method=fork size=%zu unavailable: mmap: %s\n", size, strerror(errno));
		return;
	}
	/* 4 KiB pages: what a database's heap under THP=madvise gets */
	madvise(p, size, MADV_NOHUGEPAGE);
	touch(p, size, PG);
	for (int k = 0; k < g_reps; k++) {
		fflush(stdout);
		uint64_t t0 = bench_now_ns();
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		uint64_t t1 = bench_now_ns();
		ns[k] = (double)(t1 - t0);
		waitpid(pid, NULL, 0);
		/* the child is gone: the parent's pages are exclusive again after
		 * the next write; re-touch so every rep starts the same */
		touch(p, size, PG);
	}
	report("fork", size, ns, NULL, g_reps);
	munmap(p, size);
}

static void bench_wp_raw(size_t size)
{
	double ns[16];
	int fd = memfd_create("pause", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
		printf("pause method=wp-raw size=%zu unavailable: memfd: %s\n", size, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM };
	struct uffdio_register reg = { .range = { (uintptr_t)p, size }, .mode = UFFDIO_REGISTER_MODE_WP };
	if (p == MAP_FAILED || uffd < 0 || ioctl(uffd, UFFDIO_API, &api) != 0 ||
	    ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) {
		printf("pause method=wp-raw size=%zu unavailable: uffd: %s\n", size, strerror(errno));
		goto out;
	}
	touch(p, size, PG);
	for (int k = 0; k < g_reps; k++) {
		struct uffdio_writeprotect wp = { .range = { (uintptr_t)p, size },
						  .mode = UFFDIO_WRITEPROTECT_MODE_WP };
		uint64_t t0 = bench_now_ns();
		int rc = ioctl(uffd, UFFDIO_WRITEPROTECT, &wp);
		uint64_t t1 = bench_now_ns();
		if (rc != 0) {
			printf("pause method=wp-raw size=%zu unavailable: WRITEPROTECT: %s\n", size,
			       strerror(errno));
			goto out;
		}
		ns[k] = (double)(t1 - t0);
		wp.mode = 0;
		ioctl(uffd, UFFDIO_WRITEPROTECT, &wp);
	}
	report("wp-raw", size, ns, NULL, g_reps);
out:
	if (uffd >= 0)
		close(uffd);
	if (p != MAP_FAILED)
		munmap(p, size);
	close(fd);
}

static int null_begin(void *a, const struct ckpt_sink_info *i) { return 0; }
static int null_pages(void *a, uint64_t f, uint32_t n, const void *d) { return 0; }
static int null_end(void *a, int s) { return 0; }
static const struct ckpt_sink null_sink = { null_begin, null_pages, null_end, NULL };

/* One timed ckpt_begin() + wait; returns 0 and fills ns / stats pause. */
static int timed_begin(ckpt_heap *h, double *ns, double *sp)
{
	struct ckpt_dest dest = { .kind = CKPT_DEST_SINK, .sink = &null_sink };
	uint64_t t0 = bench_now_ns();
	int rc = ckpt_begin(h, &dest, NULL);
	uint64_t t1 = bench_now_ns();
	if (rc != 0)
		return rc;
	rc = ckpt_wait(h);
	struct ckpt_stats st = { .struct_size = sizeof(st) };
	ckpt_stats(h, &st);
	*ns = (double)(t1 - t0);
	*sp = (double)st.pause_ns;
	return rc;
}

/* @dirty_pct 0: full checkpoints; else incremental ones after dirtying that
 * share of pages. */
static void bench_ckpt(const char *name, size_t size, unsigned flags, int dirty_pct)
{
	double ns[16], sp[16];
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = size + (64ul << 20);
	ho.flags = flags;
	ho.name = "pause";
	ckpt_heap *h = NULL;
	int rc = ckpt_heap_create(&ho, &h);
	uint8_t *p = NULL;
	if (rc == 0 && !(p = ckpt_alloc(h, size)))
		rc = -ENOMEM;
	if (rc != 0) {
		printf("pause method=%s size=%zu unavailable: %s\n", name, size, ckpt_strerror(rc));
		ckpt_heap_destroy(h);
		return;
	}
	size_t psz = ckpt_heap_page_size(h);
	touch(p, size, PG);
	uint64_t rs = g_seed;
	int n = 0;
	if (dirty_pct) {
		/* the first checkpoint is full: the base the incrementals amend */
		double a, b;
		if ((rc = timed_begin(h, &a, &b)) != 0)
			goto fail;
	}
	for (int k = 0; k < g_reps; k++) {
		if (dirty_pct) {
			size_t np = size / psz, nd = np * (size_t)dirty_pct / 100;
			for (size_t i = 0; i < nd; i++)
				p[(bench_rand(&rs) % np) * psz] ^= 1;
		}
		if ((rc = timed_begin(h, &ns[n], &sp[n])) != 0)
			goto fail;
		n++;
	}
	report(name, size, ns, sp, n);
	ckpt_heap_destroy(h);
	return;
fail:
	printf("pause method=%s size=%zu unavailable: %s\n", name, size, ckpt_strerror(rc));
	ckpt_heap_destroy(h);
}

/* ------------------------------------------------------------ loaded */

/* A thread writing one byte into random pages at a fixed rate (paced every
 * 100 us, no catch-up bursts beyond 10 ms behind). */
struct dirtier {
	uint8_t *p;
	size_t npages;
	double rate;
	uint64_t seed, t0, t1;
	_Atomic uint64_t writes; /* read by the timing thread while it runs */
	atomic_bool stop;
	pthread_t th;
};

static void *dirtier_main(void *arg)
{
	struct dirtier *d = arg;
	uint64_t rs = d->seed, done = 0;
	d->t0 = bench_now_ns();
	while (!atomic_load(&d->stop)) {
		uint64_t now = bench_now_ns();
		uint64_t due = (uint64_t)((double)(now - d->t0) * d->rate / 1e9);
		uint64_t lag = (uint64_t)(d->rate / 100); /* 10 ms of writes */
		if (due > done + lag)
			done = due - lag;
		for (; done < due; done++) {
			d->p[(bench_rand(&rs) % d->npages) * PG] += 1;
			atomic_fetch_add_explicit(&d->writes, 1, memory_order_relaxed);
		}
		usleep(100);
	}
	d->t1 = bench_now_ns();
	return NULL;
}

static void dirtier_start(struct dirtier *d, uint8_t *p, size_t size, double rate)
{
	memset(d, 0, sizeof(*d));
	d->p = p;
	d->npages = size / PG;
	d->rate = rate;
	d->seed = g_seed ^ size;
	pthread_create(&d->th, NULL, dirtier_main, d);
	usleep(200000); /* running at its rate before the first measurement */
}

/* Stops the writer; @return the rate it achieved, pages/s. */
static double dirtier_stop(struct dirtier *d)
{
	atomic_store(&d->stop, true);
	pthread_join(d->th, NULL);
	return (double)atomic_load(&d->writes) / ((double)(d->t1 - d->t0) / 1e9);
}

static void report_loaded(const char *m, size_t size, double *ns, double *sp, int n, double rate)
{
	if (n == 0)
		return;
	printf("pause loaded method=%s size=%zu ns=%.0f stats_pause_ns=%.0f dirty_rate=%.0f reps=%d\n", m,
	       size, bench_median(ns, (size_t)n), sp ? bench_median(sp, (size_t)n) : -1.0, rate, n);
	fflush(stdout);
}

/* Upper bound (ns) of the bucket of @h holding quantile @q; -1 if empty. */
static double hist_quantile(const uint64_t *h, double q)
{
	uint64_t n = 0, acc = 0;
	for (int i = 0; i < CKPT_HIST_BUCKETS; i++)
		n += h[i];
	if (!n)
		return -1;
	for (int i = 0; i < CKPT_HIST_BUCKETS; i++) {
		acc += h[i];
		if ((double)acc >= q * (double)n)
			return (double)(2ull << i);
	}
	return -1;
}

/* Preparation's figures of the cut methods, one array per field. */
struct prep_figs {
	double cut_ns[16], pause[16], prep[16], passes[16], cut_pages[16], traps[16], p50[16], p99[16];
	double prep_rate[16]; /* the writer's pages/s from ckpt_prepare() to ckpt_cut() */
};

/* ckpt_prepare(), wait for ckpt_ready() on the event fd, timed ckpt_cut(),
 * wait for the end; fills rep @k of @f.  @d: the running writer, or NULL. */
static int timed_cut(ckpt_heap *h, struct dirtier *d, struct prep_figs *f, int k)
{
	struct ckpt_dest dest = { .kind = CKPT_DEST_SINK, .sink = &null_sink };
	uint64_t gen = 0, w0 = d ? atomic_load(&d->writes) : 0, tp = bench_now_ns();
	int rc = ckpt_prepare(h, &dest, NULL, &gen);
	if (rc != 0)
		return rc;
	int efd = ckpt_event_fd(h);
	uint64_t deadline = bench_now_ns() + 300000000000ull;
	while ((rc = ckpt_ready(h)) == 0) {
		if (bench_now_ns() > deadline)
			return -ETIMEDOUT;
		struct pollfd p = { efd, POLLIN, 0 };
		uint64_t v;
		/* the fd says "ready"; the 10 ms timeout only bounds a missed wake */
		if (efd >= 0 && poll(&p, 1, 10) > 0 && read(efd, &v, sizeof(v)) < 0)
			usleep(1000);
		else if (efd < 0)
			usleep(1000);
	}
	if (rc < 0) {
		/* -ENOENT: the preparation failed; its result says why */
		int w = ckpt_wait_gen(h, gen);
		return w ? w : rc;
	}
	uint64_t t0 = bench_now_ns();
	f->prep_rate[k] = d ? (double)(atomic_load(&d->writes) - w0) / ((double)(t0 - tp) / 1e9) : 0;
	rc = ckpt_cut(h);
	f->cut_ns[k] = (double)(bench_now_ns() - t0);
	if (rc != 0)
		return rc;
	rc = ckpt_wait_gen(h, gen);
	struct ckpt_stats st = { .struct_size = sizeof(st) };
	ckpt_stats(h, &st);
	f->pause[k] = (double)st.pause_ns;
	f->prep[k] = (double)st.prepare_ns;
	f->passes[k] = (double)st.prep_passes;
	f->cut_pages[k] = (double)st.cut_pages;
	f->traps[k] = (double)st.prep_traps;
	f->p50[k] = hist_quantile(st.prep_trap_hist, 0.5);
	f->p99[k] = hist_quantile(st.prep_trap_hist, 0.99);
	return rc;
}

static void report_cut(const char *m, size_t size, struct prep_figs *f, int n, double rate)
{
	size_t z = (size_t)n;
	printf("pause loaded method=%s size=%zu ns=%.0f stats_pause_ns=%.0f dirty_rate=%.0f reps=%d "
	       "prepare_ns=%.0f prep_passes=%.0f cut_pages=%.0f prep_traps=%.0f prep_p50_ns=%.0f "
	       "prep_p99_ns=%.0f prep_dirty_rate=%.0f\n",
	       m, size, bench_median(f->cut_ns, z), bench_median(f->pause, z), rate, n,
	       bench_median(f->prep, z), bench_median(f->passes, z), bench_median(f->cut_pages, z),
	       bench_median(f->traps, z), bench_median(f->p50, z), bench_median(f->p99, z),
	       bench_median(f->prep_rate, z));
	fflush(stdout);
}

static void loaded_fork(size_t size, double rate)
{
	double ns[16];
	uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		printf("pause loaded method=fork size=%zu unavailable: mmap: %s\n", size, strerror(errno));
		return;
	}
	madvise(p, size, MADV_NOHUGEPAGE);
	touch(p, size, PG);
	struct dirtier d;
	dirtier_start(&d, p, size, rate);
	for (int k = 0; k < g_reps; k++) {
		fflush(stdout);
		uint64_t t0 = bench_now_ns();
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		ns[k] = (double)(bench_now_ns() - t0);
		waitpid(pid, NULL, 0);
		usleep(200000);
	}
	report_loaded("fork", size, ns, NULL, g_reps, dirtier_stop(&d));
	munmap(p, size);
}

/* A touched heap of @size (+ 64 MiB for the allocator) with its one block. */
static ckpt_heap *loaded_heap(const char *name, size_t size, unsigned flags, uint8_t **pp)
{
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = size + (64ul << 20);
	ho.flags = flags;
	ho.name = "pause";
	ckpt_heap *h = NULL;
	int rc = ckpt_heap_create(&ho, &h);
	if (rc == 0 && !(*pp = ckpt_alloc(h, size)))
		rc = -ENOMEM;
	if (rc != 0) {
		printf("pause loaded method=%s size=%zu unavailable: %s\n", name, size, ckpt_strerror(rc));
		ckpt_heap_destroy(h);
		return NULL;
	}
	touch(*pp, size, PG);
	return h;
}

static void loaded_full(size_t size, double rate)
{
	double ns[16], sp[16];
	uint8_t *p;
	ckpt_heap *h = loaded_heap("ckpt-full", size, 0, &p);
	if (!h)
		return;
	struct dirtier d;
	dirtier_start(&d, p, size, rate);
	int n = 0, rc = 0;
	for (; n < g_reps && (rc = timed_begin(h, &ns[n], &sp[n])) == 0; n++)
		usleep(200000);
	double r = dirtier_stop(&d);
	if (rc != 0)
		printf("pause loaded method=ckpt-full size=%zu unavailable: %s\n", size, ckpt_strerror(rc));
	else
		report_loaded("ckpt-full", size, ns, sp, n, r);
	ckpt_heap_destroy(h);
}

static void loaded_cut(size_t size, double rate)
{
	struct prep_figs f;
	uint8_t *p;
	ckpt_heap *h = loaded_heap("ckpt-cut", size, 0, &p);
	if (!h)
		return;
	struct dirtier d;
	dirtier_start(&d, p, size, rate);
	int n = 0, rc = 0;
	for (; n < g_reps && (rc = timed_cut(h, &d, &f, n)) == 0; n++)
		usleep(200000);
	double r = dirtier_stop(&d);
	if (rc != 0)
		printf("pause loaded method=ckpt-cut size=%zu unavailable: %s\n", size, ckpt_strerror(rc));
	else
		report_cut("ckpt-cut", size, &f, n, r);
	ckpt_heap_destroy(h);
}

/* Dirties @pct % of the heap's pages, chosen at random (with repeats). */
static void dirty_random(uint8_t *p, size_t size, int pct, uint64_t *rs)
{
	size_t np = size / PG, nd = np * (size_t)pct / 100;
	for (size_t i = 0; i < nd; i++)
		p[(bench_rand(rs) % np) * PG] ^= 1;
}

static void loaded_incr(size_t size)
{
	double ns[16], sp[16], a, b;
	uint8_t *p;
	ckpt_heap *h = loaded_heap("ckpt-incr1", size, CKPT_HEAP_INCREMENTAL, &p);
	if (!h)
		return;
	uint64_t rs = g_seed + 1;
	int n = 0, rc = timed_begin(h, &a, &b); /* the full base */
	for (; rc == 0 && n < g_reps; n++) {
		dirty_random(p, size, 1, &rs);
		rc = timed_begin(h, &ns[n], &sp[n]);
	}
	if (rc != 0)
		printf("pause loaded method=ckpt-incr1 size=%zu unavailable: %s\n", size, ckpt_strerror(rc));
	else
		report_loaded("ckpt-incr1", size, ns, sp, n, 0);
	/* the same 1% through prepare + cut, on the same heap (its base is the
	 * last checkpoint above) */
	struct prep_figs f;
	for (n = 0; rc == 0 && n < g_reps; n++) {
		dirty_random(p, size, 1, &rs);
		rc = timed_cut(h, NULL, &f, n);
	}
	if (rc != 0)
		printf("pause loaded method=ckpt-incr1-cut size=%zu unavailable: %s\n", size, ckpt_strerror(rc));
	else
		report_cut("ckpt-incr1-cut", size, &f, n, 0);
	ckpt_heap_destroy(h);
}

static void bench_loaded(size_t size, double rate)
{
	loaded_fork(size, rate);
	loaded_full(size, rate);
	loaded_cut(size, rate);
	loaded_incr(size);
}

/* hugetlb reservation, restored on every exit path (atexit + signals) */
static long g_old_nr = -1;
static int g_lock_fd = -1;

static long read_nr_hugepages(void)
{
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "re");
	long v = -1;
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static int write_nr_hugepages(long v)
{
	int fd = open("/proc/sys/vm/nr_hugepages", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char b[32];
	int n = snprintf(b, sizeof(b), "%ld\n", v);
	int rc = write(fd, b, (size_t)n) == n ? 0 : -errno;
	close(fd);
	return rc;
}

static void restore_hugetlb(void)
{
	if (g_old_nr >= 0) {
		write_nr_hugepages(g_old_nr);
		g_old_nr = -1;
	}
	if (g_lock_fd >= 0) {
		close(g_lock_fd);
		g_lock_fd = -1;
	}
}

static void on_signal(int sig)
{
	restore_hugetlb();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void bench_hugetlb(size_t size)
{
	g_lock_fd = open("/run/lock/libckpt-machine.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (g_lock_fd < 0 || flock(g_lock_fd, LOCK_EX) != 0) {
		printf("pause method=ckpt-huge size=%zu unavailable: machine lock: %s\n", size,
		       strerror(errno));
		restore_hugetlb();
		return;
	}
	g_old_nr = read_nr_hugepages();
	long want = g_old_nr + (long)((size + (64ul << 20)) >> 21) + 4;
	if (g_old_nr < 0 || write_nr_hugepages(want) != 0 || read_nr_hugepages() < want) {
		printf("pause method=ckpt-huge size=%zu unavailable: cannot reserve %ld hugetlb pages\n",
		       size, want);
		restore_hugetlb();
		return;
	}
	bench_ckpt("ckpt-huge", size, CKPT_HEAP_HUGETLB, 0);
	restore_hugetlb();
}

int main(int argc, char **argv)
{
	const char *sizes = "256m,1g";
	bool hugetlb = true, loaded = false;
	double rate = 100000;
	static const struct option lo[] = {
		{ "sizes", required_argument, 0, 'z' }, { "reps", required_argument, 0, 'r' },
		{ "seed", required_argument, 0, 's' },  { "no-hugetlb", no_argument, 0, 'H' },
		{ "loaded", no_argument, 0, 'L' },      { "rate", required_argument, 0, 'R' },
		{ 0, 0, 0, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "z:r:s:H", lo, NULL)) != -1) {
		switch (c) {
		case 'z': sizes = optarg; break;
		case 'r': g_reps = atoi(optarg); break;
		case 's': g_seed = strtoull(optarg, NULL, 0); break;
		case 'H': hugetlb = false; break;
		case 'L': loaded = true; break;
		case 'R': rate = atof(optarg); break;
		default:
			fprintf(stderr, "usage: pause [--sizes 256m,1g] [--reps R] [--seed S] [--no-hugetlb]\n"
					"       pause --loaded [--sizes 1g,2g] [--reps R] [--rate PAGES/S]\n");
			return 2;
		}
	}
	if (g_reps < 1 || g_reps > 16)
		g_reps = 3;
	atexit(restore_hugetlb);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	printf("pause reps=%d seed=%llu%s\n", g_reps, (unsigned long long)g_seed, loaded ? " loaded" : "");
	for (const char *s = sizes; *s;) {
		size_t size = bench_parse_size(s);
		size = (size + (2ul << 20) - 1) & ~((2ul << 20) - 1);
		if (loaded) {
			bench_loaded(size, rate);
			goto next;
		}
		bench_fork(size);
		bench_wp_raw(size);
		bench_ckpt("ckpt-full", size, 0, 0);
		bench_ckpt("ckpt-incr1", size, CKPT_HEAP_INCREMENTAL, 1);
		bench_ckpt("ckpt-incr10", size, CKPT_HEAP_INCREMENTAL, 10);
		if (hugetlb && geteuid() == 0)
			bench_hugetlb(size);
next:
		s = strchr(s, ',');
		if (!s)
			break;
		s++;
	}
	return 0;
}
