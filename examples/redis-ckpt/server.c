/*
 * server.c - redis-ckpt: a single-threaded epoll RESP2 server whose keyspace
 * lives in a libckpt heap.  BGSAVE is ckpt_begin() (the checkpoint's instant
 * is when it returns; pages stream out while clients are served), start-up
 * maps the last image back with ckpt_restore().
 *
 * This file: options, logging, the event loop, the protocol parser, reply
 * buffers and persistence.  Commands are in commands.c, data structures in
 * db.c.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "rdb.h"
#include "repl.h"
#include "server.h"

struct server g_srv;
long long g_now_ms;
static FILE *g_log;
static volatile sig_atomic_t g_sigterm;

/* ------------------------------------------------------------- logging */

long long mstime(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void log_msg(char level, const char *fmt, ...)
{
	char msg[1024], tbuf[64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	localtime_r(&tv.tv_sec, &tm);
	size_t off = strftime(tbuf, sizeof(tbuf), "%d %b %Y %H:%M:%S.", &tm);
	snprintf(tbuf + off, sizeof(tbuf) - off, "%03d", (int)(tv.tv_usec / 1000));
	FILE *f = g_log ? g_log : stdout;
	fprintf(f, "%d:M %s %c %s\n", (int)getpid(), tbuf, level, msg);
	fflush(f);
}

static void ckpt_log_cb(void *arg, int level, const char *msg)
{
	log_msg(level <= CKPT_LOG_WARN ? '#' : '-', "libckpt: %s", msg);
}

/* ------------------------------------------------------------- replies */

static void client_close_async(client *c);

static void reply_reserve(client *c, size_t n)
{
	if (c->olen + n <= c->ocap)
		return;
	if (c->opos > 0 && c->opos == c->olen) {
		c->opos = c->olen = 0;
		if (n <= c->ocap)
			return;
	}
	size_t cap = c->ocap ? c->ocap : 16384;
	while (cap < c->olen + n)
		cap *= 2;
	char *nb = realloc(c->obuf, cap);
	if (!nb) {
		log_msg('#', "out of process memory for a reply, closing client %s", c->addr);
		client_close_async(c);
		return;
	}
	c->obuf = nb;
	c->ocap = cap;
}

static void mark_pending(client *c)
{
	if (!(c->flags & CF_PENDING_WRITE)) {
		c->flags |= CF_PENDING_WRITE;
		c->next_pending = g_srv.pending;
		g_srv.pending = c;
	}
}

void add_reply(client *c, const char *p, size_t len)
{
	if (c->flags & (CF_CLOSE_AFTER_REPLY | CF_CLOSE_ASAP | CF_MASTER))
		return;
	reply_reserve(c, len);
	if (c->olen + len > c->ocap)
		return;
	memcpy(c->obuf + c->olen, p, len);
	c->olen += len;
	mark_pending(c);
}

void add_reply_str(client *c, const char *s)
{
	add_reply(c, s, strlen(s));
}

void add_reply_status(client *c, const char *s)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "+%s\r\n", s);
	add_reply(c, buf, (size_t)n);
}

/* Like Redis: newlines inside an error would break the protocol. */
void add_reply_error(client *c, const char *s)
{
	size_t n = strlen(s);
	char *buf = malloc(n + 4);
	if (!buf)
		return;
	buf[0] = '-';
	for (size_t i = 0; i < n; i++)
		buf[i + 1] = (s[i] == '\r' || s[i] == '\n') ? ' ' : s[i];
	memcpy(buf + n + 1, "\r\n", 2);
	add_reply(c, buf, n + 3);
	free(buf);
}

void add_reply_errorf(client *c, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	add_reply_error(c, buf);
}

/* "<prefix><n>\r\n" into buf (>= 24 bytes); returns its length.  Hot:
 * every bulk reply has one, so no snprintf. */
static size_t fmt_len(char *buf, char prefix, long long n)
{
	char tmp[24];
	size_t t = 0, o = 0;
	unsigned long long u = n < 0 ? 0ull - (unsigned long long)n : (unsigned long long)n;
	do {
		tmp[t++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	buf[o++] = prefix;
	if (n < 0)
		buf[o++] = '-';
	while (t)
		buf[o++] = tmp[--t];
	buf[o++] = '\r';
	buf[o++] = '\n';
	return o;
}

static void add_reply_len(client *c, char prefix, long long n)
{
	char buf[32];
	add_reply(c, buf, fmt_len(buf, prefix, n));
}

void add_reply_bulk(client *c, const char *p, size_t len)
{
	if (c->flags & (CF_CLOSE_AFTER_REPLY | CF_CLOSE_ASAP | CF_MASTER))
		return;
	char hdr[32];
	size_t hl = fmt_len(hdr, '$', (long long)len);
	reply_reserve(c, hl + len + 2);
	if (c->olen + hl + len + 2 > c->ocap)
		return;
	char *o = c->obuf + c->olen;
	memcpy(o, hdr, hl);
	memcpy(o + hl, p, len);
	memcpy(o + hl + len, "\r\n", 2);
	c->olen += hl + len + 2;
	mark_pending(c);
}

void add_reply_bulk_cstr(client *c, const char *s)
{
	if (!s)
		add_reply_nil(c);
	else
		add_reply_bulk(c, s, strlen(s));
}

void add_reply_int(client *c, long long v)
{
	if (v == 0)
		add_reply(c, ":0\r\n", 4);
	else if (v == 1)
		add_reply(c, ":1\r\n", 4);
	else
		add_reply_len(c, ':', v);
}

void add_reply_nil(client *c)
{
	add_reply(c, "$-1\r\n", 5);
}

void add_reply_null_array(client *c)
{
	add_reply(c, "*-1\r\n", 5);
}

void add_reply_array(client *c, long long n)
{
	add_reply_len(c, '*', n);
}

/* Redis 7.0 replies doubles with %.17g in RESP2 (inf as "inf"). */
void add_reply_double(client *c, double d)
{
	char buf[64];
	if (d == __builtin_inf())
		add_reply_bulk_cstr(c, "inf");
	else if (d == -__builtin_inf())
		add_reply_bulk_cstr(c, "-inf");
	else {
		int n = snprintf(buf, sizeof(buf), "%.17g", d);
		add_reply_bulk(c, buf, (size_t)n);
	}
}

size_t add_reply_deferred(client *c)
{
	if (c->opos == c->olen)
		c->opos = c->olen = 0;
	return c->olen;
}

void set_deferred_array(client *c, size_t off, long long n)
{
	if (c->flags & (CF_CLOSE_AFTER_REPLY | CF_CLOSE_ASAP | CF_MASTER))
		return;
	char hdr[32];
	int hl = snprintf(hdr, sizeof(hdr), "*%lld\r\n", n);
	reply_reserve(c, (size_t)hl);
	if (c->olen + (size_t)hl > c->ocap)
		return;
	memmove(c->obuf + off + hl, c->obuf + off, c->olen - off);
	memcpy(c->obuf + off, hdr, (size_t)hl);
	c->olen += (size_t)hl;
	mark_pending(c);
}

void add_reply_ok(client *c)
{
	add_reply(c, "+OK\r\n", 5);
}

void add_reply_oom(client *c)
{
	add_reply_error(c, "OOM command not allowed when used memory > 'maxmemory'.");
}

/* ------------------------------------------------------------- clients */

static void multi_reset(client *c)
{
	for (int i = 0; i < c->nqueued; i++) {
		for (int j = 0; j < c->queue[i].argc; j++)
			free(c->queue[i].argv[j]);
		free(c->queue[i].argv);
		free(c->queue[i].argvlen);
	}
	free(c->queue);
	c->queue = NULL;
	c->nqueued = c->queuecap = 0;
	c->in_multi = c->multi_failed = false;
	unwatch_all(c); /* EXEC and DISCARD end the WATCH too */
}

static bool multi_queue(client *c)
{
	if (c->nqueued == c->queuecap) {
		int cap = c->queuecap ? c->queuecap * 2 : 8;
		struct queued_cmd *q = realloc(c->queue, (size_t)cap * sizeof(*q));
		if (!q)
			return false;
		c->queue = q;
		c->queuecap = cap;
	}
	struct queued_cmd *q = &c->queue[c->nqueued];
	q->argv = calloc((size_t)c->argc, sizeof(char *));
	q->argvlen = calloc((size_t)c->argc, sizeof(size_t));
	q->argc = 0;
	c->nqueued++; /* multi_reset() frees what was copied so far */
	if (!q->argv || !q->argvlen)
		return false;
	for (int i = 0; i < c->argc; i++) {
		q->argv[i] = malloc(c->argvlen[i] + 1);
		if (!q->argv[i])
			return false;
		memcpy(q->argv[i], c->argv[i], c->argvlen[i] + 1);
		q->argvlen[i] = c->argvlen[i];
		q->argc++;
	}
	return true;
}

void cmd_multi(client *c)
{
	if (c->in_multi) {
		add_reply_error(c, "ERR MULTI calls can not be nested");
		return;
	}
	c->in_multi = true;
	add_reply_ok(c);
}

void cmd_discard(client *c)
{
	if (!c->in_multi) {
		add_reply_error(c, "ERR DISCARD without MULTI");
		return;
	}
	multi_reset(c);
	add_reply_ok(c);
}

/* The queued commands run back to back: no other client, and no
 * checkpoint (ckpt_begin() runs between commands of this loop only if a
 * queued BGSAVE asks for it), can see the transaction half done. */
void cmd_exec(client *c)
{
	if (!c->in_multi) {
		add_reply_error(c, "ERR EXEC without MULTI");
		return;
	}
	if (c->multi_failed) {
		multi_reset(c);
		add_reply_error(c, "EXECABORT Transaction discarded because of previous errors.");
		return;
	}
	if (watch_exec_aborts(c)) {
		multi_reset(c);
		add_reply_null_array(c);
		return;
	}
	unwatch_all(c); /* the transaction's own writes do not abort it */
	int argc = c->argc;
	char **argv = c->argv;
	size_t *argvlen = c->argvlen;
	int n = c->nqueued;
	struct queued_cmd *queue = c->queue;
	c->queue = NULL;
	c->nqueued = c->queuecap = 0;
	c->in_multi = false;
	add_reply_array(c, n);
	c->flags |= CF_IN_EXEC;
	for (int i = 0; i < n; i++) {
		c->argc = queue[i].argc;
		c->argv = queue[i].argv;
		c->argvlen = queue[i].argvlen;
		repl_call(c, command_lookup(c->argv[0], c->argvlen[0]));
		g_srv.stat_commands++;
	}
	c->flags &= ~CF_IN_EXEC;
	c->argc = argc;
	c->argv = argv;
	c->argvlen = argvlen;
	c->queue = queue;
	c->nqueued = n;
	multi_reset(c);
}

static void client_free_now(client *c)
{
	multi_reset(c);
	repl_client_freed(c);
	blocking_forget(c);
	if (c->fd >= 0) {
		epoll_ctl(g_srv.epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		g_srv.clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	g_srv.nclients--;
	free(c->qbuf);
	free(c->obuf);
	free(c->argoff);
	free(c->arglen);
	free(c->argv);
	free(c->argvlen);
	free(c->inlinebuf);
	free(c->name);
	free(c);
}

static void client_close_async(client *c)
{
	if (c->flags & CF_CLOSE_ASAP)
		return;
	c->flags |= CF_CLOSE_ASAP;
	c->next_close = g_srv.to_close;
	g_srv.to_close = c;
}

static void free_closed_clients(void)
{
	while (g_srv.to_close) {
		client *c = g_srv.to_close;
		g_srv.to_close = c->next_close;
		client_free_now(c);
	}
}

static void client_set_epollout(client *c, bool on)
{
	if (on == !!(c->flags & CF_EPOLLOUT))
		return;
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c };
	epoll_ctl(g_srv.epfd, EPOLL_CTL_MOD, c->fd, &ev);
	if (on)
		c->flags |= CF_EPOLLOUT;
	else
		c->flags &= ~CF_EPOLLOUT;
}

/* Sends what the client's buffer holds.  false if the client was closed. */
static bool client_write(client *c)
{
	while (c->opos < c->olen) {
		ssize_t n = write(c->fd, c->obuf + c->opos, c->olen - c->opos);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				client_set_epollout(c, true);
				return true;
			}
			client_close_async(c);
			return false;
		}
		c->opos += (size_t)n;
	}
	if (!g_srv.first_reply_ns) {
		/* where the time to the first reply goes (bench/restart.py
		 * subtracts its own start time: both are CLOCK_MONOTONIC) */
		g_srv.first_reply_ns = mono_ns();
		log_msg('-', "Start-up timeline (CLOCK_MONOTONIC ns): main %llu restore %llu+%llu listening %llu "
			"first reply %llu", (unsigned long long)g_srv.main_ns, (unsigned long long)g_srv.restore_t0_ns,
			(unsigned long long)g_srv.restore_ns, (unsigned long long)g_srv.listen_ns,
			(unsigned long long)g_srv.first_reply_ns);
	}
	c->opos = c->olen = 0;
	/* a huge reply (KEYS, LRANGE of everything) should not pin its buffer */
	if (c->ocap > 1024 * 1024) {
		free(c->obuf);
		c->obuf = NULL;
		c->ocap = 0;
	}
	client_set_epollout(c, false);
	if (c->flags & CF_CLOSE_AFTER_REPLY) {
		client_close_async(c);
		return false;
	}
	return true;
}

static void flush_pending(void)
{
	while (g_srv.pending) {
		client *c = g_srv.pending;
		g_srv.pending = c->next_pending;
		c->flags &= ~CF_PENDING_WRITE;
		if (c->flags & CF_CLOSE_ASAP)
			continue;
		if (!(c->flags & CF_EPOLLOUT))
			client_write(c);
	}
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		return (ntohl(s->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
		return IN6_IS_ADDR_LOOPBACK(&s->sin6_addr);
	}
	return true;
}

/* Out of fds: say so at most once a second, not once per pending
 * connection (an accept loop on EMFILE can write thousands of lines). */
static void log_accept_error(int err)
{
	static long long last_ms;
	long long now = mstime();
	if (now - last_ms >= 1000) {
		last_ms = now;
		log_msg('#', "accept: %s", strerror(err));
	}
}

/* As Redis does: raise the fd limit for maxclients (+32 for the server's
 * own fds), and if the hard limit does not allow it, lower maxclients. */
static void adjust_open_files_limit(void)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)g_srv.maxclients + 32;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < want) {
		struct rlimit nl = rl;
		nl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &nl) == 0)
			rl = nl;
	}
	if (rl.rlim_cur < want) {
		int maxc = rl.rlim_cur > 32 ? (int)(rl.rlim_cur - 32) : 1;
		log_msg('#', "You requested maxclients of %d requiring at least %llu max file descriptors; "
			"the limit is %llu, so maxclients is now %d.", g_srv.maxclients,
			(unsigned long long)want, (unsigned long long)rl.rlim_cur, maxc);
		g_srv.maxclients = maxc;
	}
}

static void accept_clients(void)
{
	for (int i = 0; i < 1000; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(g_srv.lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_accept_error(errno);
			return;
		}
		g_srv.stat_conns++;
		if (g_srv.nclients >= g_srv.maxclients) {
			static const char msg[] = "-ERR max number of clients reached\r\n";
			if (write(fd, msg, sizeof(msg) - 1) < 0) {
				/* nothing to do: the client goes away either way */
			}
			close(fd);
			g_srv.stat_rejected++;
			continue;
		}
		if (g_srv.protected_mode && !g_srv.requirepass[0] && !is_loopback(&ss)) {
			static const char msg[] =
				"-DENIED Running in protected mode because protected mode is enabled "
				"and no password is set for the default user. Connect from the "
				"loopback interface, or set --requirepass, or start with "
				"'--protected-mode no'.\r\n";
			if (write(fd, msg, sizeof(msg) - 1) < 0) {
				/* as above */
			}
			close(fd);
			g_srv.stat_rejected++;
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		char host[INET6_ADDRSTRLEN] = "?", addr[64];
		int port = 0;
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *s = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
			port = ntohs(s->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
			port = ntohs(s->sin6_port);
		}
		snprintf(addr, sizeof(addr), "%s:%d", host, port);
		if (!client_new(fd, addr))
			close(fd);
	}
}

client *client_new(int fd, const char *addr)
{
	client *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->fd = fd;
	c->id = ++g_srv.next_client_id;
	c->bulklen = -1;
	c->ctime = time(NULL);
	snprintf(c->addr, sizeof(c->addr), "%s", addr);
	if (!g_srv.requirepass[0])
		c->flags |= CF_AUTHED;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	if (epoll_ctl(g_srv.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(c);
		return NULL;
	}
	c->next = g_srv.clients;
	if (g_srv.clients)
		g_srv.clients->prev = c;
	g_srv.clients = c;
	g_srv.nclients++;
	return c;
}

/* ------------------------------------------------------------- protocol */

static void protocol_error(client *c, const char *what)
{
	add_reply_errorf(c, "ERR Protocol error: %s", what);
	log_msg('-', "Protocol error (%s) from client: %s", what, c->addr);
	c->flags |= CF_CLOSE_AFTER_REPLY;
}

static bool arg_push(client *c, size_t off, size_t len)
{
	if (c->argc == c->argcap) {
		int cap = c->argcap ? c->argcap * 2 : 16;
		size_t *o = realloc(c->argoff, (size_t)cap * sizeof(size_t));
		if (!o)
			return false;
		c->argoff = o;
		size_t *l = realloc(c->arglen, (size_t)cap * sizeof(size_t));
		if (!l)
			return false;
		c->arglen = l;
		char **v = realloc(c->argv, (size_t)cap * sizeof(char *));
		if (!v)
			return false;
		c->argv = v;
		size_t *vl = realloc(c->argvlen, (size_t)cap * sizeof(size_t));
		if (!vl)
			return false;
		c->argvlen = vl;
		c->argcap = cap;
	}
	c->argoff[c->argc] = off;
	c->arglen[c->argc] = len;
	c->argc++;
	return true;
}

/* Strict integer parsing as Redis's string2ll: no spaces, no '+', no
 * leading zeros. */
bool parse_ll(const char *p, size_t len, long long *out)
{
	if (len == 0 || len > 20)
		return false;
	size_t i = 0;
	bool neg = false;
	if (p[0] == '-') {
		neg = true;
		i = 1;
		if (len == 1)
			return false;
	}
	if (p[i] == '0' && len > i + 1)
		return false;
	unsigned long long v = 0;
	for (; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		unsigned long long d = (unsigned long long)(p[i] - '0');
		if (v > (ULLONG_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (neg) {
		if (v > (unsigned long long)LLONG_MAX + 1)
			return false;
		*out = (long long)(0 - v);
	} else {
		if (v > LLONG_MAX)
			return false;
		*out = (long long)v;
	}
	return true;
}

/* Splits an inline command like sdssplitargs: spaces separate, "..." with
 * escapes and '...' quote.  Returns false on unbalanced quotes. */
static bool split_inline(client *c, const char *line, size_t len)
{
	if (c->inlinecap < len + 1) {
		char *nb = realloc(c->inlinebuf, len + 1);
		if (!nb)
			return false;
		c->inlinebuf = nb;
		c->inlinecap = len + 1;
	}
	char *out = c->inlinebuf;
	size_t o = 0, i = 0;
	c->argc = 0;
	while (1) {
		/* '\0' separates too (below): skip it here as well, or an
		 * embedded NUL yields an endless run of empty args, each one
		 * writing a terminator past the end of inlinebuf (found by
		 * fuzz/fuzz_resp.c, fuzz/regressions/resp/) */
		while (i < len && (isspace((unsigned char)line[i]) || line[i] == '\0'))
			i++;
		if (i >= len)
			break;
		size_t start = o;
		int inq = 0, insq = 0;
		bool done = false;
		while (!done) {
			if (inq) {
				if (i >= len)
					return false;
				if (line[i] == '\\' && i + 3 < len && line[i + 1] == 'x' &&
				    isxdigit((unsigned char)line[i + 2]) && isxdigit((unsigned char)line[i + 3])) {
					char hx[3] = { line[i + 2], line[i + 3], 0 };
					out[o++] = (char)strtol(hx, NULL, 16);
					i += 3;
				} else if (line[i] == '\\' && i + 1 < len) {
					i++;
					char ch = line[i];
					out[o++] = ch == 'n' ? '\n' : ch == 'r' ? '\r' : ch == 't' ? '\t' :
						   ch == 'b' ? '\b' : ch == 'a' ? '\a' : ch;
				} else if (line[i] == '"') {
					if (i + 1 < len && !isspace((unsigned char)line[i + 1]))
						return false;
					done = true;
				} else {
					out[o++] = line[i];
				}
			} else if (insq) {
				if (i >= len)
					return false;
				if (line[i] == '\\' && i + 1 < len && line[i + 1] == '\'') {
					i++;
					out[o++] = '\'';
				} else if (line[i] == '\'') {
					if (i + 1 < len && !isspace((unsigned char)line[i + 1]))
						return false;
					done = true;
				} else {
					out[o++] = line[i];
				}
			} else {
				if (i >= len) {
					done = true;
					break;
				}
				switch (line[i]) {
				case ' ': case '\n': case '\r': case '\t': case '\0':
					done = true;
					break;
				case '"': inq = 1; break;
				case '\'': insq = 1; break;
				default: out[o++] = line[i]; break;
				}
				if (done)
					break;
			}
			i++;
		}
		if (!arg_push(c, start, o - start))
			return false;
		out[o++] = 0;
	}
	return true;
}

/* Tries to parse one inline command from qpos.  1: complete, 0: need more,
 * -1: protocol error (reply queued). */
static int parse_inline(client *c)
{
	char *start = c->qbuf + c->qpos;
	size_t avail = c->qlen - c->qpos;
	char *nl = memchr(start, '\n', avail);
	if (!nl) {
		if (avail > PROTO_INLINE_MAX) {
			protocol_error(c, "too big inline request");
			return -1;
		}
		return 0;
	}
	size_t linelen = (size_t)(nl - start);
	if (linelen && start[linelen - 1] == '\r')
		linelen--;
	if (!split_inline(c, start, linelen)) {
		protocol_error(c, "unbalanced quotes in request");
		return -1;
	}
	c->qpos += (size_t)(nl - start) + 1;
	return 1;
}

/* 1: complete command in argoff/arglen, 0: need more, -1: error. */
static int parse_multibulk(client *c)
{
	if (c->multibulklen == 0) {
		char *start = c->qbuf + c->qpos;
		size_t avail = c->qlen - c->qpos;
		char *cr = memchr(start, '\r', avail);
		if (!cr) {
			if (avail > PROTO_INLINE_MAX) {
				protocol_error(c, "too big mbulk count string");
				return -1;
			}
			return 0;
		}
		if ((size_t)(cr - start) + 2 > avail)
			return 0;
		long long ll;
		/* An unauthenticated client gets at most 10 arguments (Redis's
		 * limit): it must not make the server allocate for it. */
		if (!parse_ll(start + 1, (size_t)(cr - start - 1), &ll) || ll > INT_MAX ||
		    (!(c->flags & CF_AUTHED) && ll > 10)) {
			protocol_error(c, "invalid multibulk length");
			return -1;
		}
		c->qpos += (size_t)(cr - start) + 2;
		if (ll <= 0) {
			c->reqtype = 0;
			return 2; /* empty command: skip */
		}
		c->multibulklen = ll;
		c->argc = 0;
		c->bulklen = -1;
	}
	while (c->multibulklen) {
		if (c->bulklen == -1) {
			char *start = c->qbuf + c->qpos;
			size_t avail = c->qlen - c->qpos;
			if (avail == 0)
				return 0;
			char *cr = memchr(start, '\r', avail);
			if (!cr) {
				if (avail > PROTO_INLINE_MAX) {
					protocol_error(c, "too big bulk count string");
					return -1;
				}
				return 0;
			}
			if ((size_t)(cr - start) + 2 > avail)
				return 0;
			if (start[0] != '$') {
				char msg[64];
				snprintf(msg, sizeof(msg), "expected '$', got '%c'", start[0]);
				protocol_error(c, msg);
				return -1;
			}
			long long ll;
			if (!parse_ll(start + 1, (size_t)(cr - start - 1), &ll) || ll < 0 ||
			    ll > PROTO_MAX_BULK_LEN || (!(c->flags & CF_AUTHED) && ll > 16384)) {
				protocol_error(c, "invalid bulk length");
				return -1;
			}
			c->qpos += (size_t)(cr - start) + 2;
			c->bulklen = ll;
			/* a big argument: make room for all of it at once */
			if (ll >= PROTO_MBULK_BIG_ARG && c->qcap < c->qpos + (size_t)ll + 2) {
				size_t base = c->cmdstart;
				memmove(c->qbuf, c->qbuf + base, c->qlen - base);
				c->qlen -= base;
				c->qpos -= base;
				for (int i = 0; i < c->argc; i++)
					c->argoff[i] -= base;
				c->cmdstart = 0;
				if (c->qcap < c->qpos + (size_t)ll + 2) {
					char *nb = realloc(c->qbuf, c->qpos + (size_t)ll + 2);
					if (!nb) {
						protocol_error(c, "out of memory for the request");
						return -1;
					}
					c->qbuf = nb;
					c->qcap = c->qpos + (size_t)ll + 2;
				}
			}
		}
		if (c->qlen - c->qpos < (size_t)c->bulklen + 2)
			return 0;
		if (!arg_push(c, c->qpos, (size_t)c->bulklen)) {
			protocol_error(c, "out of memory for the request");
			return -1;
		}
		c->qbuf[c->qpos + (size_t)c->bulklen] = 0; /* args are C strings too */
		c->qpos += (size_t)c->bulklen + 2;
		c->bulklen = -1;
		c->multibulklen--;
	}
	return 1;
}

static void call_command(client *c);

static void process_input(client *c)
{
	while (c->qpos < c->qlen && !(c->flags & (CF_CLOSE_AFTER_REPLY | CF_CLOSE_ASAP | CF_BLOCKED)) &&
	       !g_srv.shutdown_asap) {
		if (c->reqtype == 0) {
			c->cmdstart = c->qpos;
			c->reqtype = c->qbuf[c->qpos] == '*' ? 1 : 2;
		}
		int r;
		bool is_inline = c->reqtype == 2;
		if (is_inline)
			r = parse_inline(c);
		else
			r = parse_multibulk(c);
		if (r <= 0)
			break;
		c->reqtype = 0;
		if (r == 2)
			continue;
		if (c->argc == 0)
			continue; /* empty inline line */
		for (int i = 0; i < c->argc; i++) {
			c->argv[i] = (is_inline ? c->inlinebuf : c->qbuf) + c->argoff[i];
			c->argvlen[i] = c->arglen[i];
		}
		call_command(c);
		c->argc = 0;
	}
	/* keep the buffer compact: move what is left to the front */
	size_t base = c->reqtype ? c->cmdstart : c->qpos;
	if (base > 0) {
		memmove(c->qbuf, c->qbuf + base, c->qlen - base);
		c->qlen -= base;
		c->qpos -= base;
		if (c->reqtype == 1)
			for (int i = 0; i < c->argc; i++)
				c->argoff[i] -= base;
		c->cmdstart = 0;
	}
}

static void client_read(client *c)
{
	size_t want = 16384;
	if (c->flags & CF_CLOSE_AFTER_REPLY) {
		/* a protocol error is being answered: drain, do not buffer */
		char sink[16384];
		ssize_t n = read(c->fd, sink, sizeof(sink));
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			client_close_async(c);
		return;
	}
	if (c->reqtype == 1 && c->bulklen >= PROTO_MBULK_BIG_ARG) {
		size_t rem = c->qpos + (size_t)c->bulklen + 2 - c->qlen;
		if (rem > 0 && rem < want)
			want = rem;
		else if (rem > want)
			want = rem;
	}
	if (c->qcap - c->qlen < want) {
		size_t cap = c->qcap ? c->qcap : 16384;
		while (cap - c->qlen < want)
			cap *= 2;
		char *nb = realloc(c->qbuf, cap);
		if (!nb) {
			client_close_async(c);
			return;
		}
		c->qbuf = nb;
		c->qcap = cap;
	}
	/* Read into process memory, never into the heap: in SIGBUS trap mode a
	 * kernel write into a protected heap page fails with EFAULT. */
	ssize_t n = read(c->fd, c->qbuf + c->qlen, want);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		client_close_async(c);
		return;
	}
	c->qlen += (size_t)n;
	process_input(c);
	/* shrink an idle, oversized query buffer */
	if (c->qlen == 0 && c->qcap > 1024 * 1024) {
		free(c->qbuf);
		c->qbuf = NULL;
		c->qcap = 0;
	}
}

void client_unblock(client *c)
{
	c->flags &= ~CF_BLOCKED;
	if (!(c->flags & CF_CLOSE_ASAP))
		process_input(c);
}

static void lowercase(char *dst, const char *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = (char)tolower((unsigned char)src[i]);
	dst[n] = 0;
}

static void call_command(client *c)
{
	g_now_ms = mstime();
	if (c->flags & CF_MASTER)
		replica_count(c);
	struct command *cmd = command_lookup(c->argv[0], c->argvlen[0]);
	if (!cmd) {
		/* "ERR unknown command 'x', with args beginning with: 'a' 'b' " */
		char buf[1024];
		size_t off = (size_t)snprintf(buf, sizeof(buf), "ERR unknown command '%.128s', with args beginning with: ",
					      c->argv[0]);
		for (int i = 1; i < c->argc && off < sizeof(buf) - 1; i++)
			off += (size_t)snprintf(buf + off, sizeof(buf) - off, "'%.*s' ",
						(int)(c->argvlen[i] < 128 ? c->argvlen[i] : 128), c->argv[i]);
		add_reply_error(c, buf);
		if (c->in_multi)
			c->multi_failed = true;
		return;
	}
	if ((cmd->arity > 0 && c->argc != cmd->arity) || (c->argc < -cmd->arity)) {
		char name[64];
		lowercase(name, cmd->name, strlen(cmd->name));
		add_reply_errorf(c, "ERR wrong number of arguments for '%s' command", name);
		if (c->in_multi)
			c->multi_failed = true;
		return;
	}
	if (!(c->flags & CF_AUTHED) && !(cmd->flags & CMD_NOAUTH)) {
		add_reply_error(c, "NOAUTH Authentication required.");
		return;
	}
	if (c->in_multi && cmd->proc != cmd_exec && cmd->proc != cmd_discard && cmd->proc != cmd_multi &&
	    cmd->proc != cmd_watch && strcasecmp(cmd->name, "quit") != 0) {
		if (!multi_queue(c)) {
			c->multi_failed = true;
			add_reply_error(c, "ERR out of memory queueing the command");
			return;
		}
		add_reply_status(c, "QUEUED");
		return;
	}
	g_srv.stat_commands++;
	repl_call(c, cmd); /* command_run(), then replicas get it */
	blocking_serve_ready(); /* after the whole command, as Redis */
}

/* ------------------------------------------------------------- persistence */

static void record_stats(void)
{
	struct ckpt_stats st;
	memset(&st, 0, sizeof(st));
	st.struct_size = sizeof(st);
	if (ckpt_stats(g_heap, &st) == 0) {
		g_srv.last_stats = st;
		g_srv.have_stats = true;
	}
}

/*
 * BGSAVE prepares the checkpoint: libckpt sets up the image file and
 * write-protects the keyspace in the background while we keep serving.
 * When it is ready (its event fd, in our epoll set) the loop makes the cut
 * between two commands: that is the checkpoint's instant and its only
 * pause, and it does not grow with the dataset.  SAVE and shutdown use the
 * one-call ckpt_begin().
 */
int persist_begin(bool background)
{
	struct ckpt_dest dest = { .kind = CKPT_DEST_PATH, .path = g_srv.path };
	struct ckpt_begin_opts bo;
	ckpt_begin_opts_init(&bo);
	if (repl_ckpt_busy())
		return -EBUSY; /* a replica's sync holds the heap's one checkpoint: retried */
	g_srv.last_bgsave_try = time(NULL);
	int rc;
	if (background) {
		rc = ckpt_prepare(g_heap, &dest, &bo, &g_srv.ckpt_gen);
	} else {
		/* single-threaded: we are between two commands, no update in flight */
		rc = ckpt_begin(g_heap, &dest, &bo);
		struct ckpt_stats st = {.struct_size = sizeof(st)};
		g_srv.ckpt_gen = ckpt_stats(g_heap, &st) == 0 ? st.generation : 0;
	}
	if (rc < 0) {
		log_msg('#', "Can't start checkpoint to %s: %s", g_srv.path, ckpt_strerror(rc));
		g_srv.last_status = rc;
		return rc;
	}
	g_srv.ckpt_running = true;
	g_srv.ckpt_preparing = background;
	g_dict_resize_ok = false;
	g_srv.ckpt_is_bg = background;
	g_srv.ckpt_start = time(NULL);
	if (background) {
		log_msg('*', "Background saving started (preparing checkpoint %llu)",
			(unsigned long long)g_srv.ckpt_gen);
		return 0;
	}
	g_srv.dirty_at_begin = g_srv.dirty;
	g_srv.keys_at_begin = dict_size(g_ks->db);
	record_stats();
	log_msg('*', "DB saving started (checkpoint, pause %.3f ms, %llu keys)",
		g_srv.last_stats.pause_ns / 1e6, (unsigned long long)g_srv.keys_at_begin);
	return 0;
}

/* The cut of a prepared checkpoint (BGSAVE): called from the event loop,
 * between commands, when libckpt says it is ready (or at shutdown). */
static void persist_cut(void)
{
	g_srv.dirty_at_begin = g_srv.dirty;
	g_srv.keys_at_begin = dict_size(g_ks->db);
	int rc = ckpt_cut(g_heap);
	g_srv.ckpt_preparing = false;
	record_stats();
	if (rc < 0) {
		log_msg('#', "Checkpoint cut failed: %s", ckpt_strerror(rc));
		persist_finish();
		return;
	}
	const struct ckpt_stats *st = &g_srv.last_stats;
	log_msg('*', "Checkpoint cut: pause %.3f ms (%llu pages left to protect), prepared in %.1f ms "
		"(%llu passes, %llu traps), %llu keys",
		st->pause_ns / 1e6, (unsigned long long)st->cut_pages, st->prepare_ns / 1e6,
		(unsigned long long)st->prep_passes, (unsigned long long)st->prep_traps,
		(unsigned long long)g_srv.keys_at_begin);
}

/* The heap's event fd is readable: ready to cut, or a checkpoint ended. */
static void persist_event(void)
{
	uint64_t v;
	if (read(ckpt_event_fd(g_heap), &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_msg('#', "reading the checkpoint event fd: %s", strerror(errno));
	if (!g_srv.ckpt_running)
		return;
	if (g_srv.ckpt_preparing) {
		int r = ckpt_ready(g_heap);
		if (r == 1)
			persist_cut();
		else if (r < 0)
			persist_finish(); /* the preparation failed */
		return;
	}
	if (ckpt_poll(g_heap, NULL, NULL) != 1)
		persist_finish();
}

int persist_finish(void)
{
	int rc = ckpt_wait_gen(g_heap, g_srv.ckpt_gen);
	g_srv.ckpt_running = false;
	g_srv.ckpt_preparing = false;
	g_dict_resize_ok = true;
	record_stats();
	g_srv.last_duration_sec = (long long)(time(NULL) - g_srv.ckpt_start);
	g_srv.last_status = rc;
	if (rc == 0) {
		g_srv.dirty -= g_srv.dirty_at_begin;
		g_srv.lastsave = time(NULL);
		g_srv.saves_done++;
		const struct ckpt_stats *st = &g_srv.last_stats;
		log_msg('*', "%s saving terminated with success: %s, %llu bytes in %.3f s, "
			"pause %.3f ms, %llu traps, pool peak %llu bytes%s",
			g_srv.ckpt_is_bg ? "Background" : "DB", g_srv.path,
			(unsigned long long)st->bytes_written, st->duration_ns / 1e9,
			st->pause_ns / 1e6, (unsigned long long)st->traps,
			(unsigned long long)st->pool_peak_bytes, st->incremental ? ", incremental" : "");
	} else {
		log_msg('#', "%s saving failed: %s (%s)", g_srv.ckpt_is_bg ? "Background" : "DB",
			ckpt_strerror(rc), ckpt_err_name(rc));
	}
	return rc;
}

/* A lazy restore's warm-up: logged once when it ends. */
static bool warm_cron(void)
{
	if (g_srv.warm_done)
		return true;
	uint64_t res = 0, tot = 0;
	int rc = ckpt_restore_progress(g_heap, &res, &tot);
	if (rc < 0) {
		/* Its keys would raise SIGBUS when touched (expiry samples any
		 * key), and no checkpoint can be taken: stop now, cleanly, as
		 * an eager restore would have refused to start. */
		log_msg('#', "Can't restore the image '%s' (lazy restore): a block is damaged (%s: %s). "
			"Refusing to start serving from it: exiting. --restore eager checks the whole "
			"image before serving.", g_srv.path, ckpt_err_name(rc), ckpt_strerror(rc));
		exit(1);
	} else if (res == tot) {
		double ms = (mono_ns() - g_srv.restore_t0_ns) / 1e6;
		log_msg('*', "Warm-up done: %llu pages resident %.3f ms after the restore began",
			(unsigned long long)tot, ms);
		g_srv.warm_done = true;
	}
	return g_srv.warm_done;
}

static void persist_cron(void)
{
	bool warm = warm_cron();
	if (g_srv.ckpt_running) {
		persist_event(); /* the event fd is the fast path; this is the safety net */
		return;
	}
	/* a save point waits for the warm-up (a checkpoint would load the
	 * rest of the heap first, with the event loop stopped) */
	if (!warm)
		return;
	time_t now = time(NULL);
	for (int i = 0; i < g_srv.nsave; i++) {
		struct saveparam *sp = &g_srv.save[i];
		/* after a failure, retry no sooner than 5 s, as Redis does */
		if (g_srv.dirty >= sp->changes && now - g_srv.lastsave > sp->seconds &&
		    (g_srv.last_status == 0 || now - g_srv.last_bgsave_try > 5)) {
			log_msg('*', "%ld changes in %ld seconds. Saving...", sp->changes, sp->seconds);
			persist_begin(true);
			break;
		}
	}
}

/* ------------------------------------------------------------- options */

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "\n*** FATAL CONFIG ERROR ***\n");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

static bool parse_size(const char *s, size_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || errno)
		return false;
	unsigned long long mul = 1;
	if (!strcasecmp(end, "") || !strcasecmp(end, "b"))
		mul = 1;
	else if (!strcasecmp(end, "k"))
		mul = 1000;
	else if (!strcasecmp(end, "kb"))
		mul = 1024;
	else if (!strcasecmp(end, "m"))
		mul = 1000 * 1000;
	else if (!strcasecmp(end, "mb"))
		mul = 1024 * 1024;
	else if (!strcasecmp(end, "g"))
		mul = 1000ull * 1000 * 1000;
	else if (!strcasecmp(end, "gb"))
		mul = 1024ull * 1024 * 1024;
	else
		return false;
	*out = (size_t)(v * mul);
	return true;
}

static bool yesno(const char *s, bool *out)
{
	if (!strcasecmp(s, "yes"))
		*out = true;
	else if (!strcasecmp(s, "no"))
		*out = false;
	else
		return false;
	return true;
}

bool parse_save_param(const char *s)
{
	struct saveparam sp[16];
	int n = 0;
	char *copy = strdup(s), *save = NULL;
	if (!copy)
		return false;
	char *tok = strtok_r(copy, " ", &save);
	while (tok) {
		char *tok2 = strtok_r(NULL, " ", &save);
		long long a, b;
		if (!tok2 || n == 16 || !parse_ll(tok, strlen(tok), &a) || !parse_ll(tok2, strlen(tok2), &b) ||
		    a < 1 || b < 0) {
			free(copy);
			return false;
		}
		sp[n].seconds = (long)a;
		sp[n].changes = (long)b;
		n++;
		tok = strtok_r(NULL, " ", &save);
	}
	free(copy);
	memcpy(g_srv.save, sp, sizeof(sp));
	g_srv.nsave = n;
	return true;
}

static void parse_options(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i];
		if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
			printf("Usage: redis-ckpt [--port N] [--bind ADDR] [--dir PATH] [--dbfilename NAME]\n"
			       "                  [--save \"SECONDS CHANGES ...\"] [--heap-size SIZE]\n"
			       "                  [--snapshot-mode thread|sigbus|fork] [--incremental yes|no]\n"
			       "                  [--maxclients N] [--logfile PATH] [--requirepass PASS]\n"
			       "                  [--protected-mode yes|no] [--restore lazy|eager]\n"
			       "                  [--repl-backlog-size SIZE] [--rdbcompression yes|no]\n");
			exit(0);
		}
		if (!strcmp(opt, "--version") || !strcmp(opt, "-v")) {
			const char *lv;
			ckpt_version(&lv);
			printf("redis-ckpt v=%s libckpt=%s\n", RC_VERSION, lv);
			exit(0);
		}
		if (strncmp(opt, "--", 2) != 0)
			usage_error("unexpected argument '%s' (options look like --port 6379)", opt);
		if (i + 1 >= argc)
			usage_error("option '%s' needs a value", opt);
		const char *val = argv[++i];
		const char *name = opt + 2;
		long long ll;
		if (!strcmp(name, "port")) {
			if (!parse_ll(val, strlen(val), &ll) || ll < 0 || ll > 65535)
				usage_error("invalid --port '%s'", val);
			g_srv.port = (int)ll;
		} else if (!strcmp(name, "bind")) {
			snprintf(g_srv.bind, sizeof(g_srv.bind), "%s", val);
		} else if (!strcmp(name, "dir")) {
			snprintf(g_srv.dir, sizeof(g_srv.dir), "%s", val);
		} else if (!strcmp(name, "dbfilename")) {
			if (strchr(val, '/'))
				usage_error("--dbfilename can't be a path, just a filename: '%s'", val);
			snprintf(g_srv.dbfilename, sizeof(g_srv.dbfilename), "%s", val);
		} else if (!strcmp(name, "save")) {
			if (!parse_save_param(val))
				usage_error("invalid --save '%s' (want \"SECONDS CHANGES ...\" or \"\")", val);
		} else if (!strcmp(name, "heap-size")) {
			if (!parse_size(val, &g_srv.heap_size) || g_srv.heap_size < (1 << 20))
				usage_error("invalid --heap-size '%s' (e.g. 512mb, 4gb; at least 1mb)", val);
		} else if (!strcmp(name, "snapshot-mode")) {
			if (!strcmp(val, "thread"))
				g_srv.mode = CKPT_TRAP_THREAD;
			else if (!strcmp(val, "sigbus"))
				g_srv.mode = CKPT_TRAP_SIGBUS;
			else if (!strcmp(val, "fork"))
				g_srv.mode = CKPT_BACKEND_FORK;
			else
				usage_error("invalid --snapshot-mode '%s' (thread, sigbus or fork)", val);
		} else if (!strcmp(name, "incremental")) {
			if (!yesno(val, &g_srv.incremental))
				usage_error("invalid --incremental '%s' (yes or no)", val);
		} else if (!strcmp(name, "maxclients")) {
			if (!parse_ll(val, strlen(val), &ll) || ll < 1 || ll > 1000000)
				usage_error("invalid --maxclients '%s'", val);
			g_srv.maxclients = (int)ll;
		} else if (!strcmp(name, "logfile")) {
			snprintf(g_srv.logfile, sizeof(g_srv.logfile), "%s", val);
		} else if (!strcmp(name, "requirepass")) {
			snprintf(g_srv.requirepass, sizeof(g_srv.requirepass), "%s", val);
		} else if (!strcmp(name, "restore")) {
			if (strcmp(val, "lazy") && strcmp(val, "eager"))
				usage_error("invalid --restore '%s' (lazy or eager)", val);
			g_srv.restore_eager = !strcmp(val, "eager");
		} else if (!strcmp(name, "rdbcompression")) {
			if (!yesno(val, &g_srv.rdb_compression))
				usage_error("invalid --rdbcompression '%s' (yes or no)", val);
		} else if (!strcmp(name, "repl-backlog-size")) {
			if (!parse_size(val, &g_srv.repl_backlog_size) || g_srv.repl_backlog_size < 1)
				usage_error("invalid --repl-backlog-size '%s' (e.g. 1mb)", val);
			if (g_srv.repl_backlog_size < 16384) /* Redis's minimum */
				g_srv.repl_backlog_size = 16384;
		} else if (!strcmp(name, "protected-mode")) {
			if (!yesno(val, &g_srv.protected_mode))
				usage_error("invalid --protected-mode '%s' (yes or no)", val);
		} else {
			usage_error("unknown option '%s'", opt);
		}
	}
}

/* ------------------------------------------------------------- start-up */

static void on_sigterm(int sig)
{
	g_sigterm = 1;
}

static int listen_socket(void)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof(ss));
	int family;
	if (strchr(g_srv.bind, ':')) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
		s->sin6_family = AF_INET6;
		s->sin6_port = htons((uint16_t)g_srv.port);
		if (inet_pton(AF_INET6, g_srv.bind, &s->sin6_addr) != 1)
			return -EINVAL;
		sl = sizeof(*s);
		family = AF_INET6;
	} else {
		struct sockaddr_in *s = (struct sockaddr_in *)&ss;
		s->sin_family = AF_INET;
		s->sin_port = htons((uint16_t)g_srv.port);
		if (inet_pton(AF_INET, g_srv.bind, &s->sin_addr) != 1)
			return -EINVAL;
		sl = sizeof(*s);
		family = AF_INET;
	}
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 511) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static void open_heap(void)
{
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = g_srv.heap_size;
	ho.backend = g_srv.mode;
	ho.flags = g_srv.incremental ? CKPT_HEAP_INCREMENTAL : 0;
	ho.name = "redis-ckpt";
	ho.log = ckpt_log_cb;
	ho.app_tag = KS_APP_TAG; /* an image of another keyspace layout is refused */

	bool import_rdb = rdb_startup_redirect(g_srv.path, sizeof(g_srv.path));
	struct stat stbuf;
	if (stat(g_srv.path, &stbuf) == 0) {
		char err[512] = "";
		struct ckpt_restore_opts ro;
		ckpt_restore_opts_init(&ro);
		ro.heap = &ho;
		ro.errbuf = err;
		ro.errbuf_size = sizeof(err);
		/* lazy: serve at once, pages load on first touch and in the
		 * background; a block found damaged later is never served */
		ro.flags = g_srv.restore_eager ? 0 : CKPT_RESTORE_LAZY;
		uint64_t t0 = mono_ns();
		g_srv.restore_t0_ns = t0;
		int rc = ckpt_restore(g_srv.path, &ro, &g_heap);
		g_srv.restore_ns = mono_ns() - t0;
		if (rc < 0) {
			log_msg('#', "Can't restore the image '%s': %s (%s%s%s). Refusing to start "
				"empty over it: move the file away to start with an empty dataset.",
				g_srv.path, ckpt_strerror(rc), ckpt_err_name(rc), err[0] ? ": " : "", err);
			exit(1);
		}
		g_ks = ckpt_root_get(g_heap);
		if (!g_ks || g_ks->magic != KS_MAGIC || !g_ks->db || !g_ks->expires) {
			log_msg('#', "Can't restore the image '%s': it is a libckpt image but holds "
				"no redis-ckpt keyspace (root pointer %p). Refusing to start.",
				g_srv.path, (void *)g_ks);
			exit(1);
		}
		g_srv.restored_keys = dict_size(g_ks->db);
		g_srv.warm_done = g_srv.restore_eager;
		log_msg('*', "DB loaded from checkpoint image %s: %.3f ms, %llu keys, %zu bytes heap%s",
			g_srv.path, g_srv.restore_ns / 1e6, (unsigned long long)g_srv.restored_keys,
			ckpt_heap_used(g_heap), g_srv.restore_eager ? "" : " (lazy: pages load in the background)");
		if (ckpt_heap_size(g_heap) != g_srv.heap_size) {
			/* the image fixes the heap's address range */
			log_msg('#', "The heap size comes from the image: %zu bytes (--heap-size %zu ignored)",
				ckpt_heap_size(g_heap), g_srv.heap_size);
			g_srv.heap_size = ckpt_heap_size(g_heap);
		}
		g_srv.lastsave = stbuf.st_mtime;
		return;
	} else if (errno != ENOENT) {
		log_msg('#', "Can't access the image '%s': %s. Refusing to start.", g_srv.path, strerror(errno));
		exit(1);
	}
	g_srv.warm_done = true; /* nothing to load */
	int rc = ckpt_heap_create(&ho, &g_heap);
	if (rc < 0) {
		log_msg('#', "Can't create the libckpt heap (%zu bytes, mode %d): %s (%s)", g_srv.heap_size,
			(int)g_srv.mode, ckpt_strerror(rc), ckpt_err_name(rc));
		exit(1);
	}
	keyspace_init_fresh();
	if (!g_ks) {
		log_msg('#', "The libckpt heap is too small for an empty keyspace");
		exit(1);
	}
	if (import_rdb)
		rdb_startup_import();
}

/* epoll data of the heap's event fd (clients have their own pointers) */
static char g_ckpt_event_tag;

static void event_loop(void)
{
	struct epoll_event evs[256];
	long long next_cron = mstime();
	while (!g_srv.shutdown_asap) {
		free_closed_clients();
		blocking_resume(); /* served BLPOPs: their pipelines go on */
		flush_pending();
		free_closed_clients();
		if (g_sigterm) {
			log_msg('#', "Received SIGTERM scheduling shutdown...");
			break;
		}
		long long now = mstime();
		int timeout = next_cron > now ? (int)(next_cron - now) : 0;
		int n = epoll_wait(g_srv.epfd, evs, 256, timeout);
		if (n < 0 && errno != EINTR) {
			log_msg('#', "epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			client *c = evs[i].data.ptr;
			if (!c) {
				accept_clients();
				continue;
			}
			if ((void *)c == (void *)&g_ckpt_event_tag) {
				persist_event();
				continue;
			}
			if (c->flags & CF_CLOSE_ASAP)
				continue;
			if (evs[i].events & EPOLLOUT)
				if (!client_write(c))
					continue;
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				client_read(c);
		}
		now = mstime();
		if (now >= next_cron) {
			/* 10 ms tick: checkpoint progress; expiry and rehash get a
			 * bounded slice so that the loop never stalls. */
			g_now_ms = now;
			persist_cron();
			repl_cron();
			blocking_cron(now);
			memory_cron();
			if (!repl_is_replica()) /* a replica waits for its primary's DELs */
				active_expire_cycle(1000);
			dict_maybe_shrink(g_ks->db);
			/* active rehash would touch (and trap on) page after page
			 * of both tables while a checkpoint runs: wait for its end */
			if (!g_srv.ckpt_running && !repl_ckpt_busy())
				dict_rehash_ms(g_ks->db, 1);
			next_cron = now + 10;
		}
	}
}

/* SHUTDOWN and SIGTERM: save unless told not to. */
int server_prepare_shutdown(bool save, bool nosave)
{
	repl_stop_sync();
	if (g_srv.ckpt_running) {
		log_msg('#', "There is a checkpoint in progress: waiting for it before shutting down");
		if (g_srv.ckpt_preparing)
			persist_cut();
		if (g_srv.ckpt_running)
			persist_finish();
	}
	if (save || (!nosave && g_srv.nsave > 0)) {
		log_msg('#', "Saving the final checkpoint before exiting.");
		int rc = persist_begin(false);
		if (rc == 0)
			rc = persist_finish();
		if (rc != 0) {
			log_msg('#', "Error trying to save the DB, can't exit.");
			return rc;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	g_srv.main_ns = mono_ns();
	g_srv.port = 6379;
	snprintf(g_srv.bind, sizeof(g_srv.bind), "127.0.0.1");
	snprintf(g_srv.dir, sizeof(g_srv.dir), ".");
	snprintf(g_srv.dbfilename, sizeof(g_srv.dbfilename), "dump.ckpt");
	parse_save_param("3600 1 300 100 60 10000");
	g_srv.heap_size = 1ull << 30;
	g_srv.mode = CKPT_TRAP_THREAD;
	g_srv.incremental = false;
	g_srv.maxclients = 10000;
	g_srv.protected_mode = true;
	g_srv.repl_backlog_size = 1 << 20; /* Redis's default */
	g_srv.rdb_compression = true;
	parse_options(argc, argv);

	if (g_srv.logfile[0]) {
		g_log = fopen(g_srv.logfile, "ae");
		if (!g_log) {
			fprintf(stderr, "Can't open the log file '%s': %s\n", g_srv.logfile, strerror(errno));
			exit(1);
		}
	}
	adjust_open_files_limit();
	snprintf(g_srv.path, sizeof(g_srv.path), "%s/%s", g_srv.dir, g_srv.dbfilename);
	struct stat sd;
	if (stat(g_srv.dir, &sd) != 0 || !S_ISDIR(sd.st_mode)) {
		log_msg('#', "Can't use --dir '%s': %s", g_srv.dir,
			errno ? strerror(errno) : "not a directory");
		exit(1);
	}
	srandom((unsigned)(mstime() ^ getpid()));
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigterm;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	commands_init();
	g_srv.start_time = time(NULL);
	g_srv.lastsave = time(NULL);
	log_msg('*', "redis-ckpt %s starting, pid %d, libckpt heap %zu bytes, snapshot mode %s%s",
		RC_VERSION, (int)getpid(), g_srv.heap_size,
		g_srv.mode == CKPT_TRAP_THREAD ? "thread" : g_srv.mode == CKPT_TRAP_SIGBUS ? "sigbus" : "fork",
		g_srv.incremental ? ", incremental" : "");
	open_heap();

	g_srv.lfd = listen_socket();
	if (g_srv.lfd < 0) {
		log_msg('#', "Could not create server TCP listening socket %s:%d: %s", g_srv.bind, g_srv.port,
			strerror(-g_srv.lfd));
		exit(1);
	}
	g_srv.epfd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(g_srv.epfd, EPOLL_CTL_ADD, g_srv.lfd, &ev);
	struct epoll_event cev = { .events = EPOLLIN, .data.ptr = &g_ckpt_event_tag };
	if (epoll_ctl(g_srv.epfd, EPOLL_CTL_ADD, ckpt_event_fd(g_heap), &cev) < 0)
		log_msg('#', "epoll on the checkpoint event fd: %s (the 10 ms cron polls instead)",
			strerror(errno));
	g_srv.listen_ns = mono_ns();
	log_msg('*', "Ready to accept connections on %s:%d", g_srv.bind, g_srv.port);

	event_loop();
	if (!g_srv.shutdown_asap) {
		/* SIGTERM: like Redis, save if save points are configured */
		if (server_prepare_shutdown(false, false) != 0)
			log_msg('#', "Exiting without a final checkpoint");
	}
	flush_pending();
	log_msg('#', "redis-ckpt is now ready to exit, bye bye...");
	ckpt_heap_destroy(g_heap);
	return 0;
}
