/*
 * memgrowth.c - extra memory a snapshot costs while the application writes
 * everything.
 *
 *   build/bench/memgrowth [--size 256m] [--pool 64m] [--trace DIR] [--method fork,ckpt]
 *
 * Workload: the application thread writes one word into every page of a
 * touched heap, over and over, from the moment the snapshot starts until it
 * is complete.  The snapshot goes to a file in $TMPDIR (page cache, no
 * fsync) in both cases, so both save at the same speed.
 *   fork  private anon heap; fork(); the child write(2)s its copy-on-write
 *         view to the file (a BGSAVE).  Extra memory = the anon pages only
 *         the child still maps = the pages the parent copied: sampled from
 *         the child's /proc/PID/smaps_rollup (Private_Clean + Private_Dirty).
 *   ckpt  libckpt heap (CKPT_TRAP_THREAD, pool cap --pool); ckpt_begin() to
 *         the file.  Extra memory = the pool of pages copied aside:
 *         ckpt_stats().pool_peak_bytes, sampled.
 * Output: "memgrowth method=M size=B peak_bytes=B written_bytes=B window_ms=T
 * pool_cap=B samples=N"; with --trace DIR, DIR/memgrowth-M.dat holds
 * "ms bytes" samples every 10 ms.
 */
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt.h"
#include "benchutil.h"

#define PG 4096ul

static size_t g_size = 256ul << 20;
static size_t g_pool = 64ul << 20;
static const char *g_trace;

#define MAXS 20000
struct series {
	uint64_t t[MAXS];
	uint64_t v[MAXS];
	size_t n;
};
static struct series g_ser;
static atomic_bool g_done;
static uint64_t g_t0;

static void ser_add(uint64_t v)
{
	if (g_ser.n < MAXS) {
		g_ser.t[g_ser.n] = bench_now_ns() - g_t0;
		g_ser.v[g_ser.n] = v;
		g_ser.n++;
	}
}

static void ser_dump(const char *method)
{
	if (!g_trace)
		return;
	char path[512];
	snprintf(path, sizeof(path), "%s/memgrowth-%s.dat", g_trace, method);
	FILE *f = fopen(path, "we");
	if (!f)
		return;
	for (size_t i = 0; i < g_ser.n; i++)
		fprintf(f, "%.1f %llu\n", (double)g_ser.t[i] / 1e6, (unsigned long long)g_ser.v[i]);
	fclose(f);
}

static uint64_t ser_peak(void)
{
	uint64_t m = 0;
	for (size_t i = 0; i < g_ser.n; i++)
		if (g_ser.v[i] > m)
			m = g_ser.v[i];
	return m;
}

static const char *tmpdir(void)
{
	const char *t = getenv("TMPDIR");
	return t && *t ? t : "/tmp";
}

/* ------------------------------------------------------------- fork */

static pid_t g_child;

static void *fork_sampler(void *arg)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)g_child);
	while (!atomic_load(&g_done)) {
		long pc = bench_proc_kb(path, "Private_Clean");
		long pd = bench_proc_kb(path, "Private_Dirty");
		if (pc >= 0 && pd >= 0)
			ser_add((uint64_t)(pc + pd) * 1024);
		usleep(10000);
	}
	return NULL;
}

static void *fork_waiter(void *arg)
{
	int st;
	waitpid(g_child, &st, 0);
	atomic_store(&g_done, true);
	return NULL;
}

static void run_fork(void)
{
	uint8_t *p = mmap(NULL, g_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		printf("memgrowth method=fork unavailable: mmap: %s\n", strerror(errno));
		return;
	}
	madvise(p, g_size, MADV_NOHUGEPAGE);
	for (size_t off = 0; off < g_size; off += PG)
		p[off] = 1;
	char path[512];
	snprintf(path, sizeof(path), "%s/memgrowth-fork.%d.img", tmpdir(), (int)getpid());
	g_ser.n = 0;
	atomic_store(&g_done, false);
	/* the child's smaps counts its libc etc. too: subtract its baseline */
	fflush(stdout);
	g_t0 = bench_now_ns();
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) != 0) {
		printf("memgrowth method=fork unavailable: pipe: %s\n", strerror(errno));
		return;
	}
	g_child = fork();
	if (g_child == 0) {
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			_exit(1);
		for (size_t off = 0; off < g_size; off += 1ul << 20) {
			size_t n = g_size - off < (1ul << 20) ? g_size - off : 1ul << 20;
			if (write(fd, p + off, n) != (ssize_t)n)
				_exit(1);
		}
		close(fd);
		/* the last word on what was copied: sampling from outside
		 * misses the end of the window */
		long pc = bench_proc_kb("/proc/self/smaps_rollup", "Private_Clean");
		long pd = bench_proc_kb("/proc/self/smaps_rollup", "Private_Dirty");
		uint64_t v = pc >= 0 && pd >= 0 ? (uint64_t)(pc + pd) * 1024 : 0;
		if (write(pfd[1], &v, sizeof(v)) != (ssize_t)sizeof(v))
			_exit(1);
		_exit(0);
	}
	close(pfd[1]);
	pthread_t ts, tw;
	pthread_create(&ts, NULL, fork_sampler, NULL);
	pthread_create(&tw, NULL, fork_waiter, NULL);
	size_t written = 0;
	bool wrapped = false;
	while (!atomic_load(&g_done)) {
		for (size_t off = 0; off < g_size && !atomic_load_explicit(&g_done, memory_order_relaxed);
		     off += PG) {
			p[off]++;
			if (!wrapped)
				written += PG;
		}
		wrapped = true;
	}
	uint64_t window = bench_now_ns() - g_t0;
	pthread_join(tw, NULL);
	pthread_join(ts, NULL);
	uint64_t final = 0;
	if (read(pfd[0], &final, sizeof(final)) == (ssize_t)sizeof(final) && final)
		ser_add(final);
	close(pfd[0]);
	unlink(path);
	printf("memgrowth method=fork size=%zu peak_bytes=%llu written_bytes=%zu window_ms=%.1f "
	       "pool_cap=0 samples=%zu\n",
	       g_size, (unsigned long long)ser_peak(), written, (double)window / 1e6, g_ser.n);
	fflush(stdout);
	ser_dump("fork");
	munmap(p, g_size);
}

/* ------------------------------------------------------------- ckpt */

static ckpt_heap *g_heap;

static void *ckpt_sampler(void *arg)
{
	while (!atomic_load(&g_done)) {
		struct ckpt_stats st = { .struct_size = sizeof(st) };
		if (ckpt_stats(g_heap, &st) == 0)
			ser_add(st.pool_peak_bytes);
		usleep(10000);
	}
	return NULL;
}

static void run_ckpt(void)
{
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = g_size + (64ul << 20);
	ho.pool_bytes = g_pool;
	ho.name = "memgrowth";
	uint8_t *p = NULL;
	int rc = ckpt_heap_create(&ho, &g_heap);
	if (rc == 0 && !(p = ckpt_alloc(g_heap, g_size)))
		rc = -ENOMEM;
	if (rc != 0) {
		printf("memgrowth method=ckpt unavailable: %s\n", ckpt_strerror(rc));
		ckpt_heap_destroy(g_heap);
		return;
	}
	for (size_t off = 0; off < g_size; off += PG)
		p[off] = 1;
	char path[512];
	snprintf(path, sizeof(path), "%s/memgrowth-ckpt.%d.img", tmpdir(), (int)getpid());
	struct ckpt_dest dest = { .kind = CKPT_DEST_PATH, .path = path };
	struct ckpt_begin_opts bo;
	ckpt_begin_opts_init(&bo);
	bo.flags |= CKPT_BEGIN_NO_FSYNC;
	g_ser.n = 0;
	atomic_store(&g_done, false);
	g_t0 = bench_now_ns();
	rc = ckpt_begin(g_heap, &dest, &bo);
	if (rc != 0) {
		printf("memgrowth method=ckpt unavailable: ckpt_begin: %s\n", ckpt_strerror(rc));
		ckpt_heap_destroy(g_heap);
		return;
	}
	pthread_t ts;
	pthread_create(&ts, NULL, ckpt_sampler, NULL);
	size_t written = 0;
	bool wrapped = false;
	while (ckpt_poll(g_heap, NULL, NULL) == 1) {
		for (size_t off = 0; off < g_size; off += PG) {
			p[off]++;
			if (!wrapped)
				written += PG;
			if ((off & ((1ul << 22) - 1)) == 0 && ckpt_poll(g_heap, NULL, NULL) != 1)
				break;
		}
		wrapped = true;
	}
	uint64_t window = bench_now_ns() - g_t0;
	rc = ckpt_wait(g_heap);
	atomic_store(&g_done, true);
	pthread_join(ts, NULL);
	struct ckpt_stats st = { .struct_size = sizeof(st) };
	ckpt_stats(g_heap, &st);
	ser_add(st.pool_peak_bytes);
	unlink(path);
	printf("memgrowth method=ckpt size=%zu peak_bytes=%llu written_bytes=%zu window_ms=%.1f "
	       "pool_cap=%zu samples=%zu result=%d pool_waits=%llu\n",
	       g_size, (unsigned long long)st.pool_peak_bytes, written, (double)window / 1e6, g_pool,
	       g_ser.n, rc, (unsigned long long)st.pool_waits);
	fflush(stdout);
	ser_dump("ckpt");
	ckpt_heap_destroy(g_heap);
}

int main(int argc, char **argv)
{
	const char *methods = "fork,ckpt";
	static const struct option lo[] = {
		{ "size", required_argument, 0, 'z' },  { "pool", required_argument, 0, 'p' },
		{ "trace", required_argument, 0, 't' }, { "method", required_argument, 0, 'm' },
		{ 0, 0, 0, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "z:p:t:m:", lo, NULL)) != -1) {
		switch (c) {
		case 'z': g_size = bench_parse_size(optarg); break;
		case 'p': g_pool = bench_parse_size(optarg); break;
		case 't': g_trace = optarg; break;
		case 'm': methods = optarg; break;
		default:
			fprintf(stderr, "usage: memgrowth [--size 256m] [--pool 64m] [--trace DIR] [--method fork,ckpt]\n");
			return 2;
		}
	}
	g_size &= ~(PG - 1);
	if (g_size < 16 * PG)
		g_size = 16 * PG;
	if (strstr(methods, "fork"))
		run_fork();
	if (strstr(methods, "ckpt"))
		run_ckpt();
	return 0;
}
