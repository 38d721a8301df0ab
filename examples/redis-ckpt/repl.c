/*
 * repl.c - redis-ckpt as a replication primary for real Redis replicas and
 * `redis-cli --rdb`.
 *
 * A full sync needs the dataset as of one instant, serialised as an RDB,
 * while the server goes on.  Redis forks; redis-ckpt's heap is
 * MADV_DONTFORK, and forking a big heap is what libckpt avoids anyway.
 * Instead:
 *   1. a checkpoint to a temporary image in --dir, prepared and cut as a
 *      BGSAVE is (ckpt_prepare(), then ckpt_cut() from the cron once
 *      libckpt says few pages are left to protect): the cut is the sync's
 *      point in time, and the replication offset is read in the same
 *      event-loop step, so no command falls between the two; the server
 *      pays what it pays for a BGSAVE (ckpt_begin() protected the whole
 *      heap in its pause: 58 ms at 3M keys under load);
 *   2. once the image is complete, fork() a helper: cheap, the heap is not
 *      in the child, whose address range is therefore free;
 *   3. the helper, at nice 10, ckpt_restore()s the image at the heap's own
 *      address, removes the file, serialises that keyspace as an RDB
 *      straight to the replica's socket, framed as Redis's diskless sync
 *      ("$EOF:<mark>"), reports its end through a pipe and exits;
 *   4. from step 1 on, every write command is propagated into the
 *      replica's held-back buffer; once the helper has reported success
 *      and the replica's first REPLCONF ACK says it has loaded the RDB,
 *      the buffer follows in slices, then the replica gets the live
 *      stream.
 * The server writes nothing to the replica's socket while the helper does,
 * and nothing after the EOF mark until that first ACK, as Redis's diskless
 * sync: a reader of an EOF-marked RDB (a redis-server replica, redis-cli
 * --rdb) compares the last 40 bytes of each read() with the mark, so bytes
 * glued behind the mark in the same read hide it and the reader waits for
 * ever.  A replica that asked for the RDB only (REPLCONF rdb-only 1, as
 * redis-cli --rdb does) never gets the stream: its socket is shut down for
 * writing after the RDB.
 * Offsets count the bytes of the command stream as Redis does, so that
 * REPLCONF ACK and INFO replication compare with a real primary's.
 *
 * Partial resync: from the first replica on, the stream also goes into a
 * circular backlog (--repl-backlog-size, 1 MiB as Redis).  A replica that
 * lost its link asks PSYNC <replid> <its offset + 1>; when that byte is
 * still in the backlog it gets +CONTINUE and the bytes from there, and no
 * checkpoint is taken.  The backlog outlives the replicas for an hour, as
 * Redis's repl-backlog-ttl; freeing it changes the replication id.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rdb.h"
#include "repl.h"

/* A replica's output (held back or queued) beyond this is dropped with the
 * replica, as Redis's client-output-buffer-limit replica 256mb. */
#define REPL_OUTPUT_LIMIT (256ull << 20)
#define REPL_PING_PERIOD_MS 10000
#define REPL_BACKLOG_TTL_MS (3600 * 1000LL)
/* The held-back stream goes to the replica's output this much per 10 ms
 * tick, and only once the previous slice has left for the socket: at most
 * 50 MB/s, and the loop never copies or writes tens of MB in one step (the
 * 3M-key sync held 9-20 MB).  Below client_write()'s 1 MiB, above which it
 * frees the buffer after each write. */
#define REPL_DRAIN_SLICE (512u << 10)

/* RS_WAIT_ACK: the RDB is sent, the stream is held until the replica's
 * first REPLCONF ACK (INFO says online, as Redis does meanwhile). */
enum rstate { RS_HANDSHAKE, RS_WAIT_START, RS_TRANSFER, RS_WAIT_ACK, RS_ONLINE };

struct replica {
	client *c;
	enum rstate state;
	bool psync;             /* PSYNC (gets +FULLRESYNC) rather than SYNC */
	bool rdb_only;          /* REPLCONF rdb-only 1: the RDB, no stream */
	bool capa_psync2;       /* +CONTINUE carries the replication id */
	long long sync_ms;      /* when its sync started */
	int listening_port;
	long long ack_off;
	long long ack_ms;
	/* the stream while the helper sends the RDB; once online, until
	 * [hpos, hlen) has drained to the output (repl_cron()), whatever
	 * follows is appended here too, to keep the order */
	char *held;
	size_t hpos, hlen, hcap;
	bool over_limit;
	struct replica *next;
};

static struct {
	char replid[41];
	long long offset;        /* master_repl_offset */
	struct replica *list;    /* replicas past the handshake */
	int nlinked;
	/* the running sync */
	struct replica *syncing;
	pid_t child;
	int done_fd;             /* while child > 0: its report (helper_exit()) */
	bool reported;           /* the helper has said how the sync ended */
	char tmp[1500];          /* the sync's image, removed by the helper */
	long long sync_off;      /* the offset of the sync's instant */
	bool ckpt;
	bool preparing;          /* the sync's checkpoint is prepared, not cut */
	long long sync_start_ms;
	long long last_ping_ms;
	long long syncs_done, syncs_failed;
	long long last_held; /* bytes of stream held back during the last sync */
	struct ckpt_stats last; /* the last sync's checkpoint */
	long long sync_full, partial_ok, partial_err; /* INFO stats */
	/* the backlog: the stream's last histlen bytes, offsets
	 * [offset - histlen + 1, offset], the newest ending before idx */
	char *bl;
	size_t bl_size, bl_idx, bl_histlen;
	long long no_replicas_since; /* ms; for the backlog's TTL */
} R;

static const char *state_name(enum rstate s)
{
	return s == RS_ONLINE || s == RS_WAIT_ACK ? "online" : s == RS_TRANSFER ? "send_bulk" : "wait_bgsave";
}

static void random_hex(char *out, size_t n)
{
	unsigned char raw[64];
	if (getrandom(raw, n / 2 + 1, 0) < 0)
		for (size_t i = 0; i < sizeof(raw); i++)
			raw[i] = (unsigned char)random();
	for (size_t i = 0; i < n; i++)
		out[i] = "0123456789abcdef"[(raw[i / 2] >> (i % 2 ? 0 : 4)) & 15];
	out[n] = 0;
}

static const char *replid(void)
{
	if (!R.replid[0])
		random_hex(R.replid, 40);
	return R.replid;
}

/* Drops a replica: shutting the socket down makes the event loop see the
 * hang-up and free the client (which calls repl_client_freed()). */
static void drop_replica(struct replica *r, const char *why)
{
	log_msg('#', "Dropping replica %s: %s", r->c->addr, why);
	shutdown(r->c->fd, SHUT_RDWR);
	r->over_limit = true;
}

static bool hold(struct replica *r, const char *p, size_t n)
{
	if (r->hlen + n > r->hcap) {
		size_t cap = r->hcap ? r->hcap : 65536;
		while (cap < r->hlen + n)
			cap *= 2;
		char *nb = realloc(r->held, cap);
		if (!nb)
			return false;
		r->held = nb;
		r->hcap = cap;
	}
	memcpy(r->held + r->hlen, p, n);
	r->hlen += n;
	return true;
}

static void backlog_free(void)
{
	free(R.bl);
	R.bl = NULL;
	R.bl_size = R.bl_idx = R.bl_histlen = 0;
	R.replid[0] = 0; /* a new history: no replica may continue the old one */
}

static void backlog_create(void)
{
	if (R.bl)
		return;
	R.bl = malloc(g_srv.repl_backlog_size);
	if (R.bl)
		R.bl_size = g_srv.repl_backlog_size;
	R.bl_idx = R.bl_histlen = 0;
	R.no_replicas_since = mstime();
}

static void backlog_add(const char *p, size_t n)
{
	if (n > R.bl_size) { /* only the last bl_size bytes can stay */
		p += n - R.bl_size;
		n = R.bl_size;
	}
	while (n) {
		size_t k = R.bl_size - R.bl_idx < n ? R.bl_size - R.bl_idx : n;
		memcpy(R.bl + R.bl_idx, p, k);
		R.bl_idx = (R.bl_idx + k) % R.bl_size;
		R.bl_histlen = R.bl_histlen + k > R.bl_size ? R.bl_size : R.bl_histlen + k;
		p += k;
		n -= k;
	}
}

/* The first offset the backlog can serve (PSYNC's offset is the replica's
 * own plus one: the first byte it lacks). */
static long long backlog_first(void)
{
	return R.offset - (long long)R.bl_histlen + 1;
}

/* Queues the stream's bytes from offset @from (backlog_first() .. offset
 * + 1) to the end for @c. */
static void backlog_send(client *c, long long from)
{
	size_t len = (size_t)(R.offset - from + 1);
	size_t start = (R.bl_idx + R.bl_size - len) % R.bl_size;
	size_t k = R.bl_size - start < len ? R.bl_size - start : len;
	if (k)
		add_reply(c, R.bl + start, k);
	if (len > k)
		add_reply(c, R.bl, len - k);
}

/* Appends a piece of the replication stream for every replica.  Replicas
 * still waiting for their snapshot get nothing: it will include this. */
static void feed(const char *p, size_t n)
{
	R.offset += (long long)n;
	if (R.bl)
		backlog_add(p, n);
	for (struct replica *r = R.list; r; r = r->next) {
		if (r->over_limit)
			continue;
		if (r->state == RS_TRANSFER || r->state == RS_WAIT_ACK || (r->state == RS_ONLINE && r->held)) {
			if (r->rdb_only)
				continue;
			if (r->hlen + n > REPL_OUTPUT_LIMIT || !hold(r, p, n))
				drop_replica(r, "output held during the sync is over 256 MB");
		} else if (r->state == RS_ONLINE) {
			add_reply(r->c, p, n);
			if (r->c->olen - r->c->opos > REPL_OUTPUT_LIMIT)
				drop_replica(r, "output buffer over 256 MB");
		}
	}
}

static void propagate(int argc, char **argv, const size_t *len)
{
	size_t cap = 32;
	for (int i = 0; i < argc; i++)
		cap += len[i] + 32;
	char *b = malloc(cap);
	if (!b)
		return;
	size_t off = (size_t)snprintf(b, cap, "*%d\r\n", argc);
	for (int i = 0; i < argc; i++) {
		off += (size_t)snprintf(b + off, cap - off, "$%zu\r\n", len[i]);
		memcpy(b + off, argv[i], len[i]);
		off += len[i];
		b[off++] = '\r';
		b[off++] = '\n';
	}
	feed(b, off);
	free(b);
}

/* While replicas are attached, or might come back for a partial resync. */
static bool streaming(void)
{
	return R.list != NULL || R.bl != NULL;
}

void repl_propagate_expired(const char *key, size_t klen)
{
	if (!streaming())
		return;
	char *argv[2] = { "DEL", (char *)key };
	size_t len[2] = { 3, klen };
	propagate(2, argv, len);
}

/* SPOP chooses members at random: replicas get SREM of the ones this
 * server popped, read back from the reply just added at @off. */
static void propagate_spop(client *c, size_t off)
{
	const char *p = c->obuf + off, *end = c->obuf + c->olen;
	long n = 1;
	if (p < end && *p == '*') {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		n = strtol(p + 1, NULL, 10);
		p = nl ? nl + 1 : end;
	}
	if (n <= 0 || n > 1 << 20)
		return;
	char **argv = calloc((size_t)n + 2, sizeof(char *));
	size_t *len = calloc((size_t)n + 2, sizeof(size_t));
	int argc = 0;
	if (!argv || !len)
		goto out;
	argv[argc] = "SREM", len[argc++] = 4;
	argv[argc] = c->argv[1], len[argc++] = c->argvlen[1];
	for (long i = 0; i < n && p < end && *p == '$'; i++) {
		long l = strtol(p + 1, NULL, 10);
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (l < 0 || !nl || nl + 1 + l > end)
			goto out;
		argv[argc] = (char *)nl + 1, len[argc++] = (size_t)l;
		p = nl + 1 + l + 2;
	}
	if (argc > 2)
		propagate(argc, argv, len);
out:
	free(argv);
	free(len);
}

/* Redis 7.0 propagates an expiry as the absolute time it set (SET ...
 * PXAT, PEXPIREAT, RESTORE ... ABSTTL): a relative one is re-based on the
 * replica's clock when it applies it, and the writes held back during a
 * full sync are applied seconds later, so their keys outlived the
 * primary's on the replica.  After the command ran, the key itself says
 * what to send: its absolute expiry, or a DEL when an expiry in the past
 * removed it.  false: the command goes as it is (no expiry on the key,
 * e.g. GETEX PERSIST or SET without one). */
static bool propagate_expiry(client *c, struct command *cmd)
{
	const char *n = cmd->name;
	int vi = !strcmp(n, "set") ? 2 : !strcmp(n, "setex") || !strcmp(n, "psetex") ? 3 : 0;
	bool expire = !strcmp(n, "expire") || !strcmp(n, "pexpire") || !strcmp(n, "expireat") ||
		      !strcmp(n, "getex");
	bool restore = !strcmp(n, "restore");
	if ((!vi && !expire && !restore) || c->argc <= vi)
		return false;
	dent *e = dict_find(g_ks->db, c->argv[1], c->argvlen[1]);
	if (!e) {
		char *argv[2] = { "DEL", c->argv[1] };
		size_t len[2] = { 3, c->argvlen[1] };
		propagate(2, argv, len);
		return true;
	}
	if (e->expire == -1)
		return false;
	char when[24];
	size_t wl = (size_t)snprintf(when, sizeof(when), "%lld", (long long)e->expire);
	if (vi || expire) {
		char *argv[5] = { vi ? "SET" : "PEXPIREAT", c->argv[1], vi ? c->argv[vi] : when, "PXAT", when };
		size_t len[5] = { vi ? 3 : 9, c->argvlen[1], vi ? c->argvlen[vi] : wl, 4, wl };
		propagate(vi ? 5 : 3, argv, len);
		return true;
	}
	/* RESTORE key ttl payload [REPLACE] [ABSTTL] ...: ttl becomes absolute */
	char **argv = calloc((size_t)c->argc + 1, sizeof(char *));
	size_t *len = calloc((size_t)c->argc + 1, sizeof(size_t));
	if (!argv || !len) {
		free(argv);
		free(len);
		return false;
	}
	int argc = 0;
	bool abs = false;
	for (int i = 0; i < c->argc; i++) {
		abs |= i > 3 && strcasecmp(c->argv[i], "absttl") == 0;
		argv[argc] = i == 2 ? when : c->argv[i];
		len[argc++] = i == 2 ? wl : c->argvlen[i];
	}
	if (!abs)
		argv[argc] = "ABSTTL", len[argc++] = 6;
	propagate(argc, argv, len);
	free(argv);
	free(len);
	return true;
}

static bool g_applying;

bool repl_applying_primary(void)
{
	return g_applying;
}

void repl_call(client *c, struct command *cmd)
{
	if ((cmd->flags & CMD_WRITE) && !(c->flags & CF_MASTER) && repl_is_replica()) {
		add_reply_error(c, "READONLY You can't write against a read only replica.");
		return;
	}
	if ((c->flags & CF_MASTER) && strcmp(cmd->name, "select") == 0 &&
	    (c->argc != 2 || strcmp(c->argv[1], "0") != 0)) {
		log_msg('#', "The primary selects database %s: redis-ckpt has database 0 only; link closed",
			c->argc == 2 ? c->argv[1] : "?");
		shutdown(c->fd, SHUT_RDWR);
		return;
	}
	long long dirty = g_srv.dirty;
	size_t olen = c->olen;
	bool was = g_applying;
	g_applying = (c->flags & CF_MASTER) != 0;
	command_run(c, cmd); /* cmd->proc(c) and WATCH/BLPOP bookkeeping */
	g_applying = was;
	if (!streaming() || !(cmd->flags & CMD_WRITE) || g_srv.dirty == dirty)
		return;
	if (strcmp(cmd->name, "spop") == 0)
		propagate_spop(c, olen);
	else if (!propagate_expiry(c, cmd))
		propagate(c->argc, c->argv, c->argvlen);
	c->repl_woff = R.offset;
}

/* ------------------------------------------------------------- WAIT */

struct waiter {
	client *c;
	long long target;    /* the offset every write before the WAIT ends at */
	long long numreplicas;
	long long deadline;  /* ms, 0: none */
	struct waiter *next;
};
static struct waiter *g_waiters;

#define GETACK "*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n"

static long long acked(long long target)
{
	long long n = 0;
	for (struct replica *r = R.list; r; r = r->next)
		if (r->state == RS_ONLINE && r->ack_off >= target)
			n++;
	return n;
}

/* From the cron: answers the WAITs whose replicas acknowledged or whose
 * time is up.  One at a time: unblocking runs the client's next commands,
 * which may add waiters. */
static void check_waiters(void)
{
	long long now = mstime();
	for (int guard = 0; guard < 10000; guard++) {
		struct waiter **pp = &g_waiters;
		while (*pp) {
			struct waiter *w = *pp;
			long long got = acked(w->target);
			if (got >= w->numreplicas || (w->deadline && now >= w->deadline))
				break;
			pp = &w->next;
		}
		struct waiter *w = *pp;
		if (!w)
			return;
		*pp = w->next;
		add_reply_int(w->c, acked(w->target));
		client *c = w->c;
		free(w);
		client_unblock(c);
	}
}

static void forget_waiter(client *c)
{
	for (struct waiter **pp = &g_waiters; *pp; pp = &(*pp)->next) {
		if ((*pp)->c == c) {
			struct waiter *w = *pp;
			*pp = w->next;
			free(w);
			return;
		}
	}
}

void cmd_wait(client *c)
{
	long long n, timeout;
	if (!parse_ll(c->argv[1], c->argvlen[1], &n) || !parse_ll(c->argv[2], c->argvlen[2], &timeout)) {
		add_reply_error(c, "ERR value is not an integer or out of range");
		return;
	}
	if (timeout < 0) {
		add_reply_error(c, "ERR timeout is negative");
		return;
	}
	long long target = c->repl_woff;
	if (acked(target) >= n || (c->flags & CF_IN_EXEC)) {
		add_reply_int(c, acked(target));
		return;
	}
	struct waiter *w = calloc(1, sizeof(*w));
	if (!w) {
		add_reply_error(c, "ERR out of memory");
		return;
	}
	*w = (struct waiter){ c, target, n, timeout ? mstime() + timeout : 0, g_waiters };
	g_waiters = w;
	c->flags |= CF_BLOCKED;
	if (R.list) /* replicas answer with REPLCONF ACK at once */
		feed(GETACK, sizeof(GETACK) - 1);
}

/* ------------------------------------------------------------- helper */

/* The helper (and the restore's worker threads, which inherit it) runs at
 * nice 10: the server's event loop comes first when cores are scarce.
 * SCHED_IDLE with a lazy restore was tried (bench/results/
 * 2026-11-30-vm-replsync.md): traced at 3M keys, the nice-10 helper took
 * little of the server's CPU already (29 ms of the main thread's 21 waits
 * of 10 ms or more in one sync), and on a quiet machine, main's helper and
 * the SCHED_IDLE lazy one alternating, the sync window's p99 was 3.5-5.9
 * against 5.4-30.5 ms while the sync took 7.6-9.9 against 10.0-10.5 s: no
 * gain to show, a longer sync, and 1-2 s bursts of the server's CPU seen
 * only with the lazy helper and not explained. */
static void helper_lower_priority(void)
{
	if (nice(10) == -1)
		errno = 0;
}

/* The helper tells the server how the sync ended (its exit status, one
 * byte) before it exits: the exit frees its copy of the heap and the
 * image's page cache at a low priority, which took 0.8-7 s of a 3M-key
 * sync on a busy machine (SCHED_IDLE), and the replica's stream waits for
 * the sync's end.
 * If the byte cannot go, the server waits for the exit instead. */
static void helper_exit(int done_fd, int code)
{
	unsigned char b = (unsigned char)code;
	if (write(done_fd, &b, 1) != 1)
		errno = 0;
	_exit(code);
}

/* The helper process: restores the sync's image (the heap is not mapped
 * in a child: MADV_DONTFORK, so its address range is free), verified
 * whole before the first RDB byte, then sends the RDB.  Never returns.
 * Exit status: 0 sent, 2 restore failed, 3 write failed. */
static void helper_main(int sfd, int done_fd, bool psync, long long off, const char *mark)
{
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	helper_lower_priority();
	/* other clients' sockets must close when the server closes them */
	for (client *x = g_srv.clients; x; x = x->next)
		if (x->fd != sfd)
			close(x->fd);
	close(g_srv.lfd);
	close(g_srv.epfd);

	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.name = "redis-ckpt-sync";
	ho.app_tag = KS_APP_TAG; /* the server's: its images carry it */
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.heap = &ho;
	char why[400] = "";
	ro.errbuf = why;
	ro.errbuf_size = sizeof(why);
	ckpt_heap *h;
	char hdr[160];
	long long t0 = mstime();
	int rc = ckpt_restore(R.tmp, &ro, &h);
	/* restored into the helper's own memory: the file's pages, never
	 * written back (the checkpoint did not fsync), go with it */
	unlink(R.tmp);
	long long t1 = mstime();
	if (rc != 0) {
		char e[600];
		int n = snprintf(e, sizeof(e), "-ERR the sync's checkpoint could not be restored: %s %s\r\n",
				 ckpt_err_name(rc), ro.errbuf ? ro.errbuf : "");
		rdb_write_all(sfd, e, (size_t)n);
		helper_exit(done_fd, 2);
	}
	log_msg('-', "Sync helper: image restored in %lld ms", t1 - t0);
	g_heap = h;
	g_ks = ckpt_root_get(h);
	int n = 0;
	if (psync)
		n = snprintf(hdr, sizeof(hdr), "+FULLRESYNC %s %lld\r\n", R.replid, off);
	n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, "$EOF:%s\r\n", mark);
	struct rdb_aux aux = { .replid = R.replid, .repl_offset = off };
	if (rdb_write_all(sfd, hdr, (size_t)n) || rdb_write_keyspace(sfd, &aux) || rdb_write_all(sfd, mark, 40))
		helper_exit(done_fd, 3);
	log_msg('-', "Sync helper: RDB sent in %lld ms", mstime() - t1);
	helper_exit(done_fd, 0);
}

/* The sync's checkpoint to a temporary image, prepared as a BGSAVE's;
 * repl_cron() cuts it.  (A pipe into the helper was tried first: it ties
 * the checkpoint's length, during which the server's writes trap, to how
 * fast the helper reads; a file does not.) */
static void start_sync(struct replica *r)
{
	snprintf(R.tmp, sizeof(R.tmp), "%s/temp-sync-%d.ckpt", g_srv.dir, (int)getpid());
	struct ckpt_dest dest = { .kind = CKPT_DEST_PATH, .path = R.tmp };
	struct ckpt_begin_opts bo;
	ckpt_begin_opts_init(&bo);
	bo.flags = CKPT_BEGIN_FULL | CKPT_BEGIN_NO_FSYNC;
	replid();
	int rc = ckpt_prepare(g_heap, &dest, &bo, NULL);
	if (rc < 0) {
		log_msg('#', "Can't start the checkpoint for replica %s: %s", r->c->addr, ckpt_strerror(rc));
		drop_replica(r, "no checkpoint");
		return;
	}
	R.syncing = r;
	R.sync_start_ms = r->sync_ms = mstime();
	R.ckpt = R.preparing = true;
	g_dict_resize_ok = false;
	log_msg('*', "Starting full sync for replica %s: preparing the checkpoint", r->c->addr);
}

/* The sync's instant.  Writes until now are in the image; from now on
 * they are held back for the replica.  Single-threaded: between two
 * commands, and R.offset is the offset of this very instant. */
static void sync_cut(void)
{
	R.preparing = false;
	R.sync_off = R.offset;
	int rc = ckpt_cut(g_heap);
	if (rc < 0) { /* the checkpoint has failed: repl_cron's ckpt_wait() says so */
		log_msg('#', "The sync's checkpoint cut failed: %s", ckpt_strerror(rc));
		return;
	}
	if (R.syncing)
		R.syncing->state = RS_TRANSFER;
	struct ckpt_stats st = { .struct_size = sizeof(st) };
	ckpt_stats(g_heap, &st);
	log_msg('*', "Full sync at offset %lld: checkpoint cut (pause %.3f ms, prepared in %.1f ms)", R.sync_off,
		st.pause_ns / 1e6, (mstime() - R.sync_start_ms) * 1.0);
}

/* The prepared checkpoint: cut it when libckpt says it is ready, or after
 * 10 s of preparation whatever is left (a write rate the passes cannot
 * outrun); dropped if its replica went away meanwhile. */
static void sync_prepare_step(void)
{
	if (!R.syncing) {
		ckpt_cancel(g_heap);
		R.preparing = false; /* ckpt_wait() below reports the cancel */
		return;
	}
	int rd = ckpt_ready(g_heap);
	if (rd == 1 || (rd == 0 && mstime() - R.sync_start_ms > 10000))
		sync_cut();
	else if (rd < 0)
		R.preparing = false; /* the preparation failed: ckpt_wait() says why */
}

static void sync_finished(int status);

/* The checkpoint is complete: a helper restores and sends it. */
static void start_helper(void)
{
	struct replica *r = R.syncing;
	char mark[41];
	random_hex(mark, 40);
	struct timespec a, b;
	int done[2] = { -1, -1 };
	pid_t pid = -1;
	clock_gettime(CLOCK_MONOTONIC, &a);
	if (r && pipe2(done, O_CLOEXEC | O_NONBLOCK) == 0)
		pid = fork();
	if (pid == 0) {
		close(done[0]);
		helper_main(r->c->fd, done[1], r->psync, R.sync_off, mark);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	if (pid > 0) /* the server's own pause for the sync's helper */
		log_msg('-', "Sync helper %d forked in %.3f ms", (int)pid,
			(b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
	int err = errno;
	if (done[1] >= 0)
		close(done[1]);
	if (pid < 0) {
		if (done[0] >= 0)
			close(done[0]);
		unlink(R.tmp);
		R.syncing = NULL;
		if (r)
			drop_replica(r, strerror(err));
		return;
	}
	R.child = pid;
	R.done_fd = done[0];
	R.reported = false;
}

/* The helper's report, or its exit if it died without one: the sync's
 * end (sync_finished()); then its exit, when the next sync may start. */
static void helper_poll(void)
{
	unsigned char b;
	if (!R.reported && read(R.done_fd, &b, 1) == 1) {
		R.reported = true;
		sync_finished(W_EXITCODE(b, 0));
	}
	int status;
	if (waitpid(R.child, &status, WNOHANG) != R.child)
		return;
	if (!R.reported)
		sync_finished(status);
	close(R.done_fd);
	R.child = 0;
	R.reported = false;
}

static void sync_finished(int status)
{
	struct replica *r = R.syncing;
	R.syncing = NULL;
	unlink(R.tmp); /* normally gone already */
	bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	ok ? R.syncs_done++ : R.syncs_failed++;
	if (!r)
		return; /* the replica went away meanwhile */
	if (!ok) {
		drop_replica(r, WIFEXITED(status) && WEXITSTATUS(status) == 2 ? "the helper could not restore "
			     "the checkpoint" : "sending the RDB failed");
		return;
	}
	r->ack_ms = mstime();
	if (r->rdb_only) {
		/* FIN after the RDB; the client is freed when the peer closes */
		log_msg('*', "RDB transfer to %s completed in %.3f s (rdb-only: no stream, link shut down)",
			r->c->addr, (mstime() - R.sync_start_ms) / 1e3);
		r->state = RS_WAIT_ACK;
		shutdown(r->c->fd, SHUT_WR);
		return;
	}
	r->state = RS_WAIT_ACK;
	log_msg('*', "RDB transfer to replica %s completed in %.3f s; the stream starts at its first ACK",
		r->c->addr, (mstime() - R.sync_start_ms) / 1e3);
}

static void held_free(struct replica *r)
{
	free(r->held);
	r->held = NULL;
	r->hpos = r->hlen = r->hcap = 0;
}

/* The replica's first REPLCONF ACK after the RDB: it has found the EOF mark
 * and loaded the RDB, so the held-back stream can follow without being
 * glued to the mark (see the top of this file).  It follows in slices
 * (held_drain()); the replica is online meanwhile. */
static void stream_start(struct replica *r)
{
	r->state = RS_ONLINE;
	R.last_held = (long long)r->hlen;
	log_msg('*', "Synchronization with replica %s succeeded in %.3f s (%zu bytes of writes held back)",
		r->c->addr, (mstime() - r->sync_ms) / 1e3, r->hlen);
	if (!r->hlen)
		held_free(r);
}

/* One slice of an online replica's held-back stream into its output, if
 * the last one has left.  What is left moves to the buffer's start only
 * when it is at most a slice (a bounded memmove); a replica whose drain
 * never gets that close, the writes outrunning it, reaches the 256 MB
 * limit on the whole buffer (feed()) and is dropped, as a replica whose
 * output grows without end is in Redis. */
static void held_drain(struct replica *r)
{
	client *c = r->c;
	if (c->olen != c->opos)
		return;
	size_t k = r->hlen - r->hpos < REPL_DRAIN_SLICE ? r->hlen - r->hpos : REPL_DRAIN_SLICE;
	add_reply(c, r->held + r->hpos, k);
	r->hpos += k;
	if (r->hpos == r->hlen) {
		held_free(r); /* from now on feed() adds to the output directly */
	} else if (r->hlen - r->hpos <= REPL_DRAIN_SLICE) {
		memmove(r->held, r->held + r->hpos, r->hlen - r->hpos);
		r->hlen -= r->hpos;
		r->hpos = 0;
	}
}

void repl_cron(void)
{
	replica_cron();
	for (struct replica *r = R.list; r; r = r->next)
		if (r->state == RS_ONLINE && r->held && !r->over_limit)
			held_drain(r);
	if (R.ckpt && R.preparing)
		sync_prepare_step();
	if (R.ckpt && !R.preparing && ckpt_poll(g_heap, NULL, NULL) != 1) {
		int rc = ckpt_wait(g_heap);
		R.last.struct_size = sizeof(R.last);
		ckpt_stats(g_heap, &R.last);
		R.ckpt = false;
		if (!g_srv.ckpt_running)
			g_dict_resize_ok = true;
		if (rc) {
			log_msg('#', "The sync's checkpoint %s: %s", rc == CKPT_E_CANCELED ? "was dropped" : "failed",
				rc == CKPT_E_CANCELED ? "its replica went away" : ckpt_strerror(rc));
			unlink(R.tmp);
			R.syncs_failed += rc != CKPT_E_CANCELED;
			if (R.syncing)
				drop_replica(R.syncing, "no checkpoint");
			R.syncing = NULL;
		} else {
			start_helper();
		}
	}
	if (R.child > 0)
		helper_poll();
	if (!R.ckpt && R.child == 0 && !R.syncing && !g_srv.ckpt_running) {
		for (struct replica *r = R.list; r; r = r->next) {
			/* its earlier replies must reach the socket before the helper writes */
			if (r->state == RS_WAIT_START && !r->over_limit && r->c->olen == r->c->opos) {
				start_sync(r);
				break;
			}
		}
	}
	if (g_waiters)
		check_waiters();
	long long now = mstime();
	if (R.list && now - R.last_ping_ms >= REPL_PING_PERIOD_MS) {
		R.last_ping_ms = now;
		feed("*1\r\n$4\r\nPING\r\n", 14);
	}
	if (R.list)
		R.no_replicas_since = now;
	else if (R.bl && now - R.no_replicas_since >= REPL_BACKLOG_TTL_MS)
		backlog_free();
}

bool repl_ckpt_busy(void)
{
	return R.ckpt;
}

void repl_stop_sync(void)
{
	replica_stop_sync();
	if (R.child > 0) {
		kill(R.child, SIGKILL);
		waitpid(R.child, NULL, 0);
		close(R.done_fd);
		R.child = 0;
	}
	if (R.ckpt) {
		ckpt_cancel(g_heap);
		ckpt_wait(g_heap);
		R.ckpt = R.preparing = false;
	}
	if (R.tmp[0])
		unlink(R.tmp);
}

void repl_drop_replicas(const char *why)
{
	for (struct replica *r = R.list; r; r = r->next)
		if (!r->over_limit)
			drop_replica(r, why);
	/* the backlog's history no longer leads to our dataset */
	if (R.bl) {
		backlog_free();
		backlog_create();
	}
}

void repl_sync_stats(long long *full, long long *partial_ok, long long *partial_err)
{
	*full = R.sync_full;
	*partial_ok = R.partial_ok;
	*partial_err = R.partial_err;
}

bool repl_client_is_replica(const client *c)
{
	return c->repl && c->repl->state != RS_HANDSHAKE;
}

void repl_backlog_resize(void)
{
	if (R.bl && R.bl_size != g_srv.repl_backlog_size) {
		/* the history is dropped, not the id: offsets before now fall
		 * back to a full resync */
		free(R.bl);
		R.bl = NULL;
		backlog_create();
	}
}

void repl_client_freed(client *c)
{
	replica_link_freed(c);
	if (c->flags & CF_BLOCKED)
		forget_waiter(c);
	struct replica *r = c->repl;
	if (!r)
		return;
	for (struct replica **pp = &R.list; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			R.nlinked--;
			break;
		}
	}
	/* A running helper is left to finish: a peer that hung up makes its
	 * writes fail (it exits), and `redis-cli --rdb` hangs up as soon as it
	 * has read the EOF mark, possibly before the helper's exit. */
	if (R.syncing == r)
		R.syncing = NULL;
	if (r->state != RS_HANDSHAKE)
		log_msg('*', "Connection with replica %s lost", c->addr);
	free(r->held);
	free(r);
	c->repl = NULL;
}

/* ------------------------------------------------------------- commands */

static struct replica *replica_of(client *c)
{
	if (!c->repl) {
		c->repl = calloc(1, sizeof(struct replica));
		if (c->repl)
			c->repl->c = c;
	}
	return c->repl;
}

/* PSYNC <replid> <offset>: +CONTINUE and the backlog from @offset when
 * this is our history and the byte is still there; false: full resync. */
static bool partial_resync(struct replica *r, const char *id, const char *offs)
{
	long long from;
	if (!strcmp(id, "?"))
		return false; /* a new replica: no partial resync was asked */
	const char *why = NULL;
	if (strcasecmp(id, replid()) != 0)
		why = "replication id mismatch";
	else if (!parse_ll(offs, strlen(offs), &from) || !R.bl || from < backlog_first() || from > R.offset + 1)
		why = "offset out of the backlog";
	if (why) {
		R.partial_err++;
		log_msg('*', "Partial resynchronization not accepted for %s (%s: asked %s %s, have %s %lld-%lld)",
			r->c->addr, why, id, offs, replid(), R.bl ? backlog_first() : 0, R.offset);
		return false;
	}
	char line[64];
	int n = r->capa_psync2 ? snprintf(line, sizeof(line), "+CONTINUE %s\r\n", replid())
			       : snprintf(line, sizeof(line), "+CONTINUE\r\n");
	add_reply(r->c, line, (size_t)n);
	backlog_send(r->c, from);
	r->state = RS_ONLINE;
	r->ack_off = from - 1;
	r->ack_ms = mstime();
	R.partial_ok++;
	log_msg('*', "Partial resynchronization request from %s accepted: %lld bytes of backlog from offset %lld",
		r->c->addr, R.offset - from + 1, from);
	return true;
}

void cmd_sync(client *c)
{
	if (c->repl && c->repl->state != RS_HANDSHAKE)
		return; /* already a replica: ignored, as Redis does */
	if (g_srv.mode == CKPT_BACKEND_FORK) {
		add_reply_error(c, "ERR replication needs --snapshot-mode thread or sigbus (the sync helper "
			    "restores a checkpoint; with the fork backend the heap is already mapped in it)");
		return;
	}
	struct replica *r = replica_of(c);
	if (!r) {
		add_reply_error(c, "ERR out of memory");
		return;
	}
	r->psync = strcasecmp(c->argv[0], "psync") == 0;
	r->next = R.list;
	R.list = r;
	R.nlinked++;
	replid();
	if (!r->rdb_only)
		backlog_create();
	if (r->psync && c->argc == 3 && partial_resync(r, c->argv[1], c->argv[2]))
		return;
	r->state = RS_WAIT_START;
	R.sync_full++;
	log_msg('*', "Replica %s asks for synchronization (%s): full resync", c->addr, r->psync ? "PSYNC" : "SYNC");
	/* nothing is replied now: the helper sends +FULLRESYNC with the offset
	 * of the snapshot's instant */
}

void cmd_replconf(client *c)
{
	if (c->argc % 2 == 0) {
		add_reply_error(c, "ERR syntax error");
		return;
	}
	struct replica *r = replica_of(c);
	for (int i = 1; r && i < c->argc; i += 2) {
		const char *opt = c->argv[i], *val = c->argv[i + 1];
		if (!strcasecmp(opt, "ack")) {
			r->ack_off = strtoll(val, NULL, 10);
			r->ack_ms = mstime();
			if (r->state == RS_WAIT_ACK && !r->rdb_only)
				stream_start(r);
			return; /* never answered */
		}
		if (!strcasecmp(opt, "getack")) {
			if (c->flags & CF_MASTER)
				replica_getack();
			return;
		}
		if (!strcasecmp(opt, "listening-port"))
			r->listening_port = atoi(val);
		else if (!strcasecmp(opt, "capa") && !strcasecmp(val, "psync2"))
			r->capa_psync2 = true;
		else if (!strcasecmp(opt, "rdb-only"))
			r->rdb_only = strcmp(val, "1") == 0;
		/* capa eof/psync2, ip-address: the sync is always streamed
		 * with an EOF mark, which redis-cli and replicas read */
	}
	add_reply_ok(c);
}

size_t repl_info(char *b, size_t cap)
{
	size_t off = 0;
#define P(...) (off += (off < cap ? (size_t)snprintf(b + off, cap - off, __VA_ARGS__) : 0))
	if (repl_is_replica())
		off = replica_info(b, cap);
	else
		P("# Replication\r\nrole:master\r\n");
	P("connected_slaves:%d\r\n", R.nlinked);
	int i = 0;
	long long now = mstime();
	for (struct replica *r = R.list; r; r = r->next, i++) {
		char ip[64];
		snprintf(ip, sizeof(ip), "%s", r->c->addr);
		char *colon = strrchr(ip, ':');
		if (colon)
			*colon = 0;
		P("slave%d:ip=%s,port=%d,state=%s,offset=%lld,lag=%lld\r\n", i, ip, r->listening_port,
		  state_name(r->state), r->ack_off, r->state == RS_ONLINE ? (now - r->ack_ms) / 1000 : 0);
	}
	P("master_failover_state:no-failover\r\nmaster_replid:%s\r\n"
	  "master_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:%lld\r\n"
	  "second_repl_offset:-1\r\nrepl_backlog_active:%d\r\nrepl_backlog_size:%zu\r\n"
	  "repl_backlog_first_byte_offset:%lld\r\nrepl_backlog_histlen:%zu\r\n"
	  "ckpt_sync_in_progress:%d\r\nckpt_syncs_done:%lld\r\nckpt_syncs_failed:%lld\r\n"
	  "ckpt_sync_last_held_bytes:%lld\r\n",
	  replid(), R.offset, R.bl != NULL, R.bl ? R.bl_size : g_srv.repl_backlog_size,
	  R.bl ? backlog_first() : 0, R.bl_histlen, R.child > 0 && !R.reported, R.syncs_done, R.syncs_failed,
	  R.last_held);
	P("ckpt_sync_pause_us:%llu\r\nckpt_sync_duration_us:%llu\r\nckpt_sync_traps:%llu\r\n"
	  "ckpt_sync_pool_peak_bytes:%llu\r\nckpt_sync_pool_waits:%llu\r\n\r\n",
	  (unsigned long long)R.last.pause_ns / 1000, (unsigned long long)R.last.duration_ns / 1000,
	  (unsigned long long)R.last.traps, (unsigned long long)R.last.pool_peak_bytes,
	  (unsigned long long)R.last.pool_waits);
#undef P
	return off < cap ? off : cap - 1;
}
