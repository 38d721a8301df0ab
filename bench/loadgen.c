/*
 * loadgen.c - an open-loop Redis load generator with honest tails.
 *
 * redis-benchmark is closed-loop: when the server stalls it stops sending,
 * so a 50 ms stall shows up as one slow request instead of the thousands of
 * users who waited (coordinated omission).  Here requests are scheduled at a
 * fixed rate, whatever the server does, and each latency is measured from
 * the request's scheduled time to its reply.
 *
 *   loadgen --populate N [--value-size B] [--port P] [--key-prefix P]
 *       SET key:000000000000 .. key:N-1 (pipelined) and exit: the names
 *       redis-benchmark's -r N draws (key:%012d), so its writers and ours hit
 *       keys that exist.
 *   loadgen --rate R --duration S [--conns C] [--keys N] [--set-ratio F]
 *           [--key-prefix P] [--save-at S --save-cmd BGSAVE] [--save-wait S]
 *           [--window S] [--pid PID] [--trace FILE]
 *       R requests/s for S seconds over C connections, on keys P%012d (P is
 *       "key:" unless --key-prefix); at --save-at seconds
 *       sends the save command on its own connection and polls
 *       INFO persistence until rdb_bgsave_in_progress:0: that is the snapshot
 *       window (after the load ends, the poll goes on up to --save-wait
 *       seconds, default 5, so a long snapshot's end and memory peak are
 *       seen).  --window S: also the requests scheduled in the S seconds
 *       from the save command and in the S seconds just before it.
 *       --pid: samples the Pss (smaps_rollup) of PID and its
 *       children every 10 ms (RSS + shmem without double counting fork's
 *       shared pages).
 *   loadgen --writer --rate R --duration S [--keys N] [--seed X]
 *       a background writer on one pipelined connection: write number c
 *       (1, 2, ...) sets key:%012d with index splitmix64(X + c * golden) % N
 *       (bench_rand) to "c=<c>;" padded to --value-size: one connection, so
 *       the server applies writes in counter order, and an image holding
 *       write M must hold, for every key, its last write numbered <= M
 *       (tests/sh/test_loaded_smoke.sh checks exactly that).  Stops after S
 *       seconds or at SIGTERM/SIGINT.
 *   loadgen --ready [--timeout S]
 *       connects and PINGs until the server answers PONG (not -LOADING);
 *       prints the CLOCK_REALTIME ns of the first reply.
 * Output (key=value lines):
 *   loadgen window=inside|outside|all|before|after count= p50_us= p99_us= p999_us= max_us=
 *   loadgen writer writes= acked= seed= keys= value_size= ms=
 *   loadgen snapshot start_ms= end_ms= duration_ms= status=
 *   loadgen throughput sent= done= rate_outside= min_rate_inside= dip=
 *   loadgen memory base_pss_kb= peak_pss_kb= extra_kb=
 * --trace FILE: per 50 ms bucket "t_ms count p50_us p99_us max_us"; then a
 * "# window start end" comment line.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

#include "benchutil.h"

static const char *g_host = "127.0.0.1";
static int g_port = 6379;
static const char *g_prefix = "key:";

static int connect_to(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)g_port) };
	inet_pton(AF_INET, g_host, &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static int write_all(int fd, const char *b, size_t n)
{
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd p = { fd, POLLOUT, 0 };
				poll(&p, 1, 100);
				continue;
			}
			return -1;
		}
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* ---------------------------------------------------------- RESP parsing */

struct conn {
	int fd;
	char *rb;     /* read buffer */
	size_t rlen, rcap;
	uint64_t *q;  /* scheduled send times of outstanding requests (FIFO) */
	size_t qh, qt, qcap;
	char *wb;     /* pending output */
	size_t wlen, wcap;
};

/* Length of one complete reply at the start of @b, 0 if incomplete. */
static size_t resp_len(const char *b, size_t n)
{
	const char *e = memchr(b, '\n', n);
	if (!e)
		return 0;
	size_t hl = (size_t)(e - b) + 1;
	if (b[0] == '$') {
		long l = strtol(b + 1, NULL, 10);
		if (l < 0)
			return hl;
		return n >= hl + (size_t)l + 2 ? hl + (size_t)l + 2 : 0;
	}
	if (b[0] == '*') {
		long cnt = strtol(b + 1, NULL, 10);
		size_t off = hl;
		for (long i = 0; i < cnt; i++) {
			size_t l = resp_len(b + off, n - off);
			if (!l)
				return 0;
			off += l;
		}
		return off;
	}
	return hl; /* + - : */
}

/* Reads one full reply synchronously into @out (NUL-terminated). */
static int sync_cmd(int fd, const char *cmd, char *out, size_t outsz)
{
	if (write_all(fd, cmd, strlen(cmd)) != 0)
		return -1;
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, out + n, outsz - 1 - n);
		if (r <= 0) {
			if (r < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			return -1;
		}
		n += (size_t)r;
		out[n] = 0;
		if (resp_len(out, n) || n == outsz - 1)
			return 0;
	}
}

/* -------------------------------------------------------------- populate */

static int populate(long nkeys, int vsize)
{
	int fd = connect_to();
	if (fd < 0) {
		fprintf(stderr, "loadgen: connect %s:%d: %s\n", g_host, g_port, strerror(errno));
		return 1;
	}
	char *val = malloc((size_t)vsize + 1);
	for (int i = 0; i < vsize; i++)
		val[i] = (char)('a' + i % 26);
	val[vsize] = 0;
	size_t cap = 1 << 20;
	char *buf = malloc(cap), *rbuf = malloc(1 << 16);
	const long batch = 1000;
	uint64_t t0 = bench_now_ns();
	for (long k = 0; k < nkeys; k += batch) {
		size_t n = 0;
		long m = nkeys - k < batch ? nkeys - k : batch;
		for (long i = 0; i < m; i++) {
			char key[64];
			int kl = snprintf(key, sizeof(key), "%s%012ld", g_prefix, k + i);
			n += (size_t)snprintf(buf + n, cap - n, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n",
					      kl, key, vsize, val);
		}
		if (write_all(fd, buf, n) != 0)
			return 1;
		/* read m "+OK\r\n" replies */
		long got = 0;
		size_t have = 0;
		while (got < m) {
			ssize_t r = read(fd, rbuf + have, (1 << 16) - have);
			if (r <= 0)
				return 1;
			have += (size_t)r;
			size_t off = 0, l;
			while (off < have && (l = resp_len(rbuf + off, have - off)) > 0) {
				if (rbuf[off] == '-') {
					fprintf(stderr, "loadgen: error reply: %.*s", (int)l, rbuf + off);
					return 1;
				}
				off += l;
				got++;
			}
			memmove(rbuf, rbuf + off, have - off);
			have -= off;
		}
	}
	printf("loadgen populate keys=%ld value_size=%d ms=%.0f\n", nkeys, vsize,
	       (double)(bench_now_ns() - t0) / 1e6);
	close(fd);
	return 0;
}

/* ------------------------------------------------------------ writer */

static volatile sig_atomic_t g_stop;
static void on_stop(int sig) { (void)sig; g_stop = 1; }

/* Appends write number @c (see the top comment) to @buf. */
static size_t writer_cmd(char *buf, size_t cap, uint64_t *rs, uint64_t c, long nkeys, int vsize)
{
	char key[64], val[512];
	int kl = snprintf(key, sizeof(key), "key:%012llu", (unsigned long long)(bench_rand(rs) % (uint64_t)nkeys));
	int vl = snprintf(val, sizeof(val), "c=%llu;", (unsigned long long)c);
	if (vl < vsize) {
		memset(val + vl, 'x', (size_t)(vsize - vl));
		vl = vsize;
	}
	return (size_t)snprintf(buf, cap, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%.*s\r\n", kl, key, vl, vl,
				val);
}

/* At most this many writes unanswered: the writer follows its rate while the
 * server keeps up and falls behind (closed loop) when it stalls, so a stall
 * does not queue an unbounded burst behind it. */
#define WRITER_INFLIGHT 256

static int writer(double rate, double duration, long nkeys, int vsize, uint64_t seed)
{
	int fd = connect_to();
	if (fd < 0) {
		fprintf(stderr, "loadgen: connect %s:%d: %s\n", g_host, g_port, strerror(errno));
		return 1;
	}
	signal(SIGTERM, on_stop);
	signal(SIGINT, on_stop);
	size_t cap = WRITER_INFLIGHT * 600;
	char *buf = malloc(cap), *rbuf = malloc(1 << 16);
	uint64_t rs = seed, c = 0, acked = 0;
	uint64_t t0 = bench_now_ns(), end = t0 + (uint64_t)(duration * 1e9);
	size_t have = 0;
	while (!g_stop && bench_now_ns() < end) {
		uint64_t due = (uint64_t)((double)(bench_now_ns() - t0) * rate / 1e9);
		size_t n = 0;
		while (c < due && c - acked < WRITER_INFLIGHT) {
			c++;
			n += writer_cmd(buf + n, cap - n, &rs, c, nkeys, vsize);
		}
		if (n && write_all(fd, buf, n) != 0)
			break;
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, 1) <= 0)
			continue;
		ssize_t r = read(fd, rbuf + have, (1 << 16) - have);
		if (r <= 0)
			break;
		have += (size_t)r;
		size_t off = 0, l;
		while (off < have && (l = resp_len(rbuf + off, have - off)) > 0) {
			if (rbuf[off] == '-') {
				fprintf(stderr, "loadgen: writer: error reply: %.*s", (int)l, rbuf + off);
				return 1;
			}
			off += l;
			acked++;
		}
		memmove(rbuf, rbuf + off, have - off);
		have -= off;
	}
	printf("loadgen writer writes=%llu acked=%llu seed=%llu keys=%ld value_size=%d ms=%.0f\n",
	       (unsigned long long)c, (unsigned long long)acked, (unsigned long long)seed, nkeys, vsize,
	       (double)(bench_now_ns() - t0) / 1e6);
	fflush(stdout);
	close(fd);
	return 0;
}

static int ready_wait(double timeout_s)
{
	uint64_t t0 = bench_now_ns();
	char out[256];
	while ((double)(bench_now_ns() - t0) < timeout_s * 1e9) {
		int fd = connect_to();
		if (fd >= 0) {
			while (sync_cmd(fd, "*1\r\n$4\r\nPING\r\n", out, sizeof(out)) == 0) {
				if (strncmp(out, "+PONG", 5) == 0) {
					struct timespec ts;
					clock_gettime(CLOCK_REALTIME, &ts);
					printf("loadgen ready realtime_ns=%llu\n",
					       (unsigned long long)ts.tv_sec * 1000000000ull +
						       (unsigned long long)ts.tv_nsec);
					close(fd);
					return 0;
				}
				usleep(1000); /* -LOADING: ask again */
			}
			close(fd);
		}
		usleep(1000);
	}
	printf("loadgen ready timeout\n");
	return 1;
}

/* ------------------------------------------------------------ memory */

static long pss_kb_of(int pid)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/%d/smaps_rollup", pid);
	return bench_proc_kb(p, "Pss");
}

/* Pss of @pid plus its direct children (fork's BGSAVE child). */
static long pss_tree_kb(int pid)
{
	long sum = pss_kb_of(pid);
	if (sum < 0)
		return -1;
	char p[64];
	snprintf(p, sizeof(p), "/proc/%d/task/%d/children", pid, pid);
	FILE *f = fopen(p, "re");
	if (f) {
		int c;
		while (fscanf(f, "%d", &c) == 1) {
			long v = pss_kb_of(c);
			if (v > 0)
				sum += v;
		}
		fclose(f);
	}
	return sum;
}

/* Memory is sampled on its own thread: reading smaps_rollup of a large
 * process walks its page tables for milliseconds, which must not delay the
 * request schedule. */
static int g_mem_pid = -1;
static atomic_bool g_mem_stop, g_mem_saving;
static _Atomic long g_base_pss = -1, g_peak_pss = -1;

static void *mem_sampler(void *arg)
{
	while (!atomic_load(&g_mem_stop)) {
		long v = pss_tree_kb(g_mem_pid);
		if (v > 0) {
			if (!atomic_load(&g_mem_saving) && v > atomic_load(&g_base_pss))
				atomic_store(&g_base_pss, v);
			if (v > atomic_load(&g_peak_pss))
				atomic_store(&g_peak_pss, v);
		}
		usleep(10000);
	}
	return NULL;
}

/* -------------------------------------------------------------- load */

struct sample {
	uint32_t t_ms10; /* completion time, 0.1 ms units since start */
	uint32_t lat_us;
	uint64_t sched;  /* scheduled send time, ns since start */
};

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void stats_line(const char *name, uint32_t *v, size_t n)
{
	if (!n) {
		printf("loadgen window=%s count=0\n", name);
		return;
	}
	qsort(v, n, sizeof(*v), cmp_u32);
#define Q(q) v[(size_t)((q) * (double)(n - 1))]
	printf("loadgen window=%s count=%zu p50_us=%u p99_us=%u p999_us=%u max_us=%u\n", name, n,
	       Q(0.5), Q(0.99), Q(0.999), v[n - 1]);
#undef Q
}

static void conn_queue(struct conn *c, uint64_t sched, const char *cmd, size_t n)
{
	if (c->qt - c->qh == c->qcap) {
		size_t nc = c->qcap * 2;
		uint64_t *nq = malloc(nc * sizeof(*nq));
		for (size_t i = 0; i < c->qcap; i++)
			nq[i] = c->q[(c->qh + i) % c->qcap];
		free(c->q);
		c->q = nq;
		c->qt = c->qcap;
		c->qh = 0;
		c->qcap = nc;
	}
	c->q[c->qt++ % c->qcap] = sched;
	if (c->wlen + n > c->wcap) {
		c->wcap = (c->wlen + n) * 2;
		c->wb = realloc(c->wb, c->wcap);
	}
	memcpy(c->wb + c->wlen, cmd, n);
	c->wlen += n;
}

/* --window: the requests scheduled in [save - S, save) and [save, save + S),
 * by their scheduled send time (not completion): a request delayed out of the
 * window by a stall still counts in the window it was meant for. */
static void window_lines(const struct sample *smp, size_t ns, int64_t save_ns, double win_s)
{
	uint32_t *bef = malloc((ns + 1) * sizeof(uint32_t)), *aft = malloc((ns + 1) * sizeof(uint32_t));
	size_t nb = 0, na = 0;
	int64_t w = (int64_t)(win_s * 1e9);
	for (size_t i = 0; i < ns; i++) {
		int64_t sched = (int64_t)smp[i].sched;
		if (sched >= save_ns - w && sched < save_ns)
			bef[nb++] = smp[i].lat_us;
		else if (sched >= save_ns && sched < save_ns + w)
			aft[na++] = smp[i].lat_us;
	}
	stats_line("before", bef, nb);
	stats_line("after", aft, na);
	free(bef);
	free(aft);
}

struct load_opts {
	double rate, duration, set_ratio, save_at, save_wait, window;
	int nconns, vsize, pid;
	long nkeys;
	const char *save_cmd, *trace;
};

/* One open-loop run: the connections, the schedule, the snapshot's state and
 * the samples.  Times are ns of CLOCK_MONOTONIC; win_* are ns since t0. */
struct run {
	const struct load_opts *o;
	struct conn *cs;
	struct pollfd *pfd;
	int ctl, rr;
	struct sample *smp;
	size_t ns, maxs;
	char *val;
	uint64_t rs, t0, period, next, end, sent;
	int64_t win_start, win_end;
	bool save_sent, save_done, stop_sending;
	char save_status[64];
	uint64_t next_poll, drain_deadline, save_deadline;
};

static int run_open(struct run *r, const struct load_opts *o)
{
	memset(r, 0, sizeof(*r));
	r->o = o;
	r->cs = calloc((size_t)o->nconns, sizeof(*r->cs));
	r->pfd = calloc((size_t)o->nconns, sizeof(*r->pfd));
	for (int i = 0; i < o->nconns; i++) {
		struct conn *c = &r->cs[i];
		c->fd = connect_to();
		if (c->fd < 0) {
			fprintf(stderr, "loadgen: connect %s:%d: %s\n", g_host, g_port, strerror(errno));
			return 1;
		}
		fcntl(c->fd, F_SETFL, O_NONBLOCK);
		c->rcap = 1 << 16;
		c->rb = malloc(c->rcap);
		c->qcap = 1024;
		c->q = malloc(c->qcap * sizeof(uint64_t));
	}
	r->ctl = o->save_at >= 0 ? connect_to() : -1;
	r->maxs = (size_t)(o->rate * o->duration * 1.1) + 1024;
	r->smp = malloc(r->maxs * sizeof(*r->smp));
	r->val = malloc((size_t)o->vsize + 1);
	for (int i = 0; i < o->vsize; i++)
		r->val[i] = (char)('A' + i % 26);
	r->val[o->vsize] = 0;
	r->rs = 12345;
	r->t0 = r->next = bench_now_ns();
	r->period = (uint64_t)(1e9 / o->rate);
	r->end = r->t0 + (uint64_t)(o->duration * 1e9);
	r->win_start = r->win_end = -1;
	snprintf(r->save_status, sizeof(r->save_status), "none");
	return 0;
}

/* Queues every request that is due: open loop.  Up to the end time, not up
 * to the iteration that notices it: a loop delayed past the end still sends
 * the requests scheduled before it. */
static void schedule_due(struct run *r, uint64_t now)
{
	const struct load_opts *o = r->o;
	while (!r->stop_sending && r->next <= now && r->next < r->end) {
		struct conn *c = &r->cs[r->rr];
		r->rr = (r->rr + 1) % o->nconns;
		char cmd[512], key[64];
		int kl = snprintf(key, sizeof(key), "%s%012llu", g_prefix,
				  (unsigned long long)(bench_rand(&r->rs) % (uint64_t)o->nkeys));
		int n;
		if ((double)(bench_rand(&r->rs) >> 11) / 9007199254740992.0 < o->set_ratio)
			n = snprintf(cmd, sizeof(cmd), "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", kl, key,
				     o->vsize, r->val);
		else
			n = snprintf(cmd, sizeof(cmd), "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", kl, key);
		conn_queue(c, r->next, cmd, (size_t)n);
		r->next += r->period;
		r->sent++;
	}
	if (!r->stop_sending && r->next >= r->end) {
		r->stop_sending = true;
		r->drain_deadline = now + 5000000000ull;
		r->save_deadline = now + (uint64_t)(o->save_wait * 1e9);
	}
	for (int i = 0; i < o->nconns; i++) {
		struct conn *c = &r->cs[i];
		ssize_t w = c->wlen ? write(c->fd, c->wb, c->wlen) : 0;
		if (w > 0) {
			memmove(c->wb, c->wb + w, c->wlen - (size_t)w);
			c->wlen -= (size_t)w;
		}
	}
}

/* The snapshot, on its own connection: sends the save command when due, then
 * every 5 ms reads its reply and polls INFO persistence until
 * rdb_bgsave_in_progress:0.  The reads block: the save reply and INFO are
 * quick, and it is not a measured connection. */
static void save_step(struct run *r, uint64_t now)
{
	const struct load_opts *o = r->o;
	char out[8192];
	if (r->ctl >= 0 && !r->save_sent && now - r->t0 >= (uint64_t)(o->save_at * 1e9)) {
		char cmd[256];
		snprintf(cmd, sizeof(cmd), "*1\r\n$%zu\r\n%s\r\n", strlen(o->save_cmd), o->save_cmd);
		r->win_start = (int64_t)(now - r->t0);
		/* not waited for here: a blocking read would stop the load for
		 * the length of fork() */
		write_all(r->ctl, cmd, strlen(cmd));
		r->save_sent = true;
		atomic_store(&g_mem_saving, true);
		r->next_poll = now + 5000000ull;
	}
	if (!r->save_sent || r->save_done || now < r->next_poll)
		return;
	bool replied = strcmp(r->save_status, "none") != 0;
	struct pollfd p = { r->ctl, POLLIN, 0 };
	if (!replied && poll(&p, 1, 0) > 0) {
		if (sync_cmd(r->ctl, "", out, sizeof(out)) == 0)
			snprintf(r->save_status, sizeof(r->save_status), "%.*s", (int)strcspn(out, "\r\n"), out);
	} else if (replied && sync_cmd(r->ctl, "*2\r\n$4\r\nINFO\r\n$11\r\npersistence\r\n", out, sizeof(out)) == 0 &&
		   strstr(out, "rdb_bgsave_in_progress:0")) {
		r->win_end = (int64_t)(bench_now_ns() - r->t0);
		r->save_done = true;
		char *st = strstr(out, "rdb_last_bgsave_status:");
		if (st)
			snprintf(r->save_status, sizeof(r->save_status), "%.*s", (int)strcspn(st + 23, "\r\n"),
				 st + 23);
	}
	r->next_poll = bench_now_ns() + 5000000ull;
}

/* Reads the replies that arrived; each completes its connection's oldest
 * outstanding request: one sample. */
static void read_replies(struct run *r)
{
	for (int i = 0; i < r->o->nconns; i++) {
		if (!(r->pfd[i].revents & POLLIN))
			continue;
		struct conn *c = &r->cs[i];
		ssize_t n = read(c->fd, c->rb + c->rlen, c->rcap - c->rlen);
		if (n <= 0)
			continue;
		c->rlen += (size_t)n;
		uint64_t tnow = bench_now_ns();
		size_t off = 0, l;
		while (off < c->rlen && (l = resp_len(c->rb + off, c->rlen - off)) > 0) {
			if (c->qh < c->qt && r->ns < r->maxs) {
				uint64_t s = c->q[c->qh++ % c->qcap];
				struct sample *sm = &r->smp[r->ns++];
				sm->t_ms10 = (uint32_t)((tnow - r->t0) / 100000);
				sm->lat_us = (uint32_t)((tnow - s) / 1000);
				sm->sched = s - r->t0;
			}
			off += l;
		}
		memmove(c->rb, c->rb + off, c->rlen - off);
		c->rlen -= off;
		if (c->rlen == c->rcap) {
			c->rcap *= 2;
			c->rb = realloc(c->rb, c->rcap);
		}
	}
}

/* @return true when the load is over: nothing left to send, every reply in
 * (or the drain deadline passed), the snapshot over (or --save-wait passed).
 * Else sleeps until the next request is due or a reply arrives (ppoll:
 * poll()'s 1 ms granularity would either spin a core away from the server on
 * a 2-core machine or send late). */
static bool run_wait(struct run *r, uint64_t now)
{
	size_t outstanding = 0;
	for (int i = 0; i < r->o->nconns; i++) {
		r->pfd[i].fd = r->cs[i].fd;
		r->pfd[i].events = POLLIN | (r->cs[i].wlen ? POLLOUT : 0);
		outstanding += r->cs[i].qt - r->cs[i].qh;
	}
	if (r->stop_sending && (outstanding == 0 || now > r->drain_deadline) &&
	    (!r->save_sent || r->save_done || now > r->save_deadline))
		return true;
	uint64_t t_next = r->stop_sending ? now + 1000000 : r->next;
	if (r->save_sent && !r->save_done && r->next_poll < t_next)
		t_next = r->next_poll;
	uint64_t wait = t_next > now ? t_next - now : 0;
	if (wait > 1000000)
		wait = 1000000;
	struct timespec to = { 0, (long)wait };
	ppoll(r->pfd, (nfds_t)r->o->nconns, &to, NULL);
	return false;
}

/* The latency lines: all, inside / outside the snapshot window, and
 * --window's before / after. */
static void print_windows(const struct run *r)
{
	size_t ns = r->ns, nin = 0, nout = 0;
	uint32_t *in = malloc((ns + 1) * sizeof(uint32_t)), *out = malloc((ns + 1) * sizeof(uint32_t)),
		 *all = malloc((ns + 1) * sizeof(uint32_t));
	uint64_t ws = r->win_start >= 0 ? (uint64_t)r->win_start / 100000 : UINT64_MAX;
	uint64_t we = r->win_end >= 0 ? (uint64_t)r->win_end / 100000 : ws;
	for (size_t i = 0; i < ns; i++) {
		const struct sample *sm = &r->smp[i];
		all[i] = sm->lat_us;
		/* a request belongs to the window if any of its life overlaps it */
		uint64_t done = sm->t_ms10, st = done - (sm->lat_us / 100 < done ? sm->lat_us / 100 : done);
		if (r->win_start >= 0 && done >= ws && st <= we)
			in[nin++] = sm->lat_us;
		else
			out[nout++] = sm->lat_us;
	}
	stats_line("all", all, ns);
	stats_line("inside", in, nin);
	stats_line("outside", out, nout);
	if (r->o->window > 0 && r->win_start >= 0)
		window_lines(r->smp, ns, r->win_start, r->o->window);
	if (r->save_sent)
		printf("loadgen snapshot start_ms=%.1f end_ms=%.1f duration_ms=%.1f status=%s\n",
		       (double)r->win_start / 1e6, (double)r->win_end / 1e6,
		       r->win_end >= 0 ? (double)(r->win_end - r->win_start) / 1e6 : -1.0, r->save_status);
	free(in);
	free(out);
	free(all);
}

/* Throughput per 250 ms bucket (the dip: the worst bucket touching the
 * window against the median bucket outside it; at 50 ms any stall would read
 * as a 100% dip). */
static void print_throughput(const struct run *r, double elapsed)
{
	size_t nb4 = (size_t)(elapsed * 4) + 2;
	uint32_t *bc = calloc(nb4, sizeof(*bc));
	for (size_t i = 0; i < r->ns; i++) {
		size_t b = r->smp[i].t_ms10 / 2500;
		if (b < nb4)
			bc[b]++;
	}
	uint64_t ws = r->win_start >= 0 ? (uint64_t)r->win_start / 100000 : UINT64_MAX;
	uint64_t we = r->win_end >= 0 ? (uint64_t)r->win_end / 100000 : ws;
	double min_in = -1, *ob = malloc(nb4 * sizeof(double));
	size_t nob = 0, last_b = (size_t)(r->o->duration * 4); /* buckets past it are the drain */
	for (size_t b = 1; b < nb4 && b < last_b; b++) {
		double rt = bc[b] * 4.0;
		uint64_t bs = b * 2500, be = bs + 2500;
		if (r->win_start >= 0 && be >= ws && bs <= we) {
			if (min_in < 0 || rt < min_in)
				min_in = rt;
		} else {
			ob[nob++] = rt;
		}
	}
	double med_out = bench_median(ob, nob);
	printf("loadgen throughput sent=%llu done=%zu target_rate=%.0f rate_outside=%.0f "
	       "min_rate_inside=%.0f dip=%.3f\n",
	       (unsigned long long)r->sent, r->ns, r->o->rate, med_out, min_in,
	       min_in >= 0 && med_out > 0 ? 1.0 - min_in / med_out : 0.0);
	free(bc);
	free(ob);
}

/* --trace: per 50 ms bucket "t_ms count p50_us p99_us max_us", then the
 * window.  Samples are in completion order per connection, not globally:
 * bucketed first. */
static void write_trace(const struct run *r, double elapsed)
{
	FILE *f = fopen(r->o->trace, "we");
	if (!f)
		return;
	size_t nb = (size_t)(elapsed * 20) + 2;
	uint32_t **bl = calloc(nb, sizeof(*bl));
	size_t *bn = calloc(nb, sizeof(*bn)), *bcap = calloc(nb, sizeof(*bcap));
	for (size_t i = 0; i < r->ns; i++) {
		size_t b = r->smp[i].t_ms10 / 500;
		if (b >= nb)
			continue;
		if (bn[b] == bcap[b]) {
			bcap[b] = bcap[b] ? bcap[b] * 2 : 64;
			bl[b] = realloc(bl[b], bcap[b] * sizeof(uint32_t));
		}
		bl[b][bn[b]++] = r->smp[i].lat_us;
	}
	for (size_t b = 0; b < nb; b++) {
		if (!bn[b])
			continue;
		qsort(bl[b], bn[b], sizeof(uint32_t), cmp_u32);
		fprintf(f, "%zu %zu %u %u %u\n", b * 50, bn[b], bl[b][bn[b] / 2],
			bl[b][(size_t)(0.99 * (double)(bn[b] - 1))], bl[b][bn[b] - 1]);
		free(bl[b]);
	}
	if (r->win_start >= 0)
		fprintf(f, "# window %.1f %.1f\n", (double)r->win_start / 1e6,
			(double)(r->win_end >= 0 ? r->win_end : r->win_start) / 1e6);
	fclose(f);
	free(bl);
	free(bn);
	free(bcap);
}

static int load(const struct load_opts *o)
{
	struct run r;
	if (run_open(&r, o) != 0)
		return 1;
	pthread_t mem_th;
	if (o->pid > 0) {
		g_mem_pid = o->pid;
		pthread_create(&mem_th, NULL, mem_sampler, NULL);
	}
	for (;;) {
		uint64_t now = bench_now_ns();
		schedule_due(&r, now);
		save_step(&r, now);
		if (run_wait(&r, now))
			break;
		read_replies(&r);
	}
	double elapsed = (double)(bench_now_ns() - r.t0) / 1e9;
	if (o->pid > 0) {
		atomic_store(&g_mem_stop, true);
		pthread_join(mem_th, NULL);
	}
	print_windows(&r);
	print_throughput(&r, elapsed);
	if (o->pid > 0) {
		long base = atomic_load(&g_base_pss), peak = atomic_load(&g_peak_pss);
		printf("loadgen memory base_pss_kb=%ld peak_pss_kb=%ld extra_kb=%ld\n", base, peak, peak - base);
	}
	if (o->trace)
		write_trace(&r, elapsed);
	fflush(stdout);
	return r.ns > 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	long populate_n = -1;
	double timeout = 60;
	uint64_t seed = 1;
	bool ready = false, wr = false;
	struct load_opts o = {
		.rate = 20000, .duration = 10, .set_ratio = 0.5, .save_at = -1, .save_wait = 5,
		.nconns = 8, .vsize = 64, .pid = -1, .nkeys = 1000000, .save_cmd = "BGSAVE",
	};
	static const struct option lo[] = {
		{ "host", required_argument, 0, 'h' },       { "port", required_argument, 0, 'p' },
		{ "populate", required_argument, 0, 'P' },   { "value-size", required_argument, 0, 'v' },
		{ "rate", required_argument, 0, 'r' },       { "duration", required_argument, 0, 'd' },
		{ "conns", required_argument, 0, 'c' },      { "keys", required_argument, 0, 'k' },
		{ "set-ratio", required_argument, 0, 's' },  { "save-at", required_argument, 0, 'a' },
		{ "save-cmd", required_argument, 0, 'C' },   { "pid", required_argument, 0, 'i' },
		{ "trace", required_argument, 0, 't' },      { "ready", no_argument, 0, 'R' },
		{ "timeout", required_argument, 0, 'T' },    { "window", required_argument, 0, 'w' },
		{ "save-wait", required_argument, 0, 'W' },  { "key-prefix", required_argument, 0, 'K' },
		{ "writer", no_argument, 0, 'X' },           { "seed", required_argument, 0, 'S' },
		{ 0, 0, 0, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'h': g_host = optarg; break;
		case 'p': g_port = atoi(optarg); break;
		case 'P': populate_n = atol(optarg); break;
		case 'v': o.vsize = atoi(optarg); break;
		case 'r': o.rate = atof(optarg); break;
		case 'd': o.duration = atof(optarg); break;
		case 'c': o.nconns = atoi(optarg); break;
		case 'k': o.nkeys = atol(optarg); break;
		case 's': o.set_ratio = atof(optarg); break;
		case 'a': o.save_at = atof(optarg); break;
		case 'C': o.save_cmd = optarg; break;
		case 'i': o.pid = atoi(optarg); break;
		case 't': o.trace = optarg; break;
		case 'R': ready = true; break;
		case 'T': timeout = atof(optarg); break;
		case 'w': o.window = atof(optarg); break;
		case 'W': o.save_wait = atof(optarg); break;
		case 'K': g_prefix = optarg; break;
		case 'X': wr = true; break;
		case 'S': seed = strtoull(optarg, NULL, 0); break;
		default:
			fprintf(stderr, "usage: see the comment at the top of bench/loadgen.c\n");
			return 2;
		}
	}
	if (o.vsize < 1 || o.vsize > 400 || o.nconns < 1 || o.rate <= 0 || o.nkeys < 1 ||
	    strlen(g_prefix) > 40)
		return 2;
	if (ready)
		return ready_wait(timeout);
	if (populate_n >= 0)
		return populate(populate_n, o.vsize);
	if (wr)
		return writer(o.rate, o.duration, o.nkeys, o.vsize, seed);
	return load(&o);
}
