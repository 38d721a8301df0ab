/*
 * replica.c - REPLICAOF: redis-ckpt as a replica of a Redis primary.
 *
 * The link is set up the way a Redis replica does it (PING, REPLCONF
 * listening-port, REPLCONF capa eof psync2, PSYNC ? -1), the primary's RDB
 * (sized "$N" or EOF-marked) is received into a temporary file next to the
 * image and imported with rdbload.c over an emptied keyspace, then the
 * connection becomes a client whose commands run without replies: the
 * primary's command stream.  The offset counts the stream's bytes; REPLCONF
 * ACK goes back every second and on GETACK, so WAIT and INFO replication on
 * the primary see this replica.
 *
 * The connection, the handshake and the RDB's transfer do not block the
 * event loop: replica_cron() (every 10 ms) advances a small state machine
 * on the non-blocking socket (connect, one handshake step per reply line,
 * then whatever RDB bytes have arrived, into the temporary file), and
 * clients keep being served the old dataset meanwhile, as Redis does with
 * repl-diskless-load disabled.  Loading the received file blocks, as it
 * does in Redis (which answers -LOADING meanwhile).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rdb.h"
#include "repl.h"

#define IO_TIMEOUT_MS 60000

/* The sync's steps; each reply line advances one handshake step. */
enum sync_state {
	SY_NONE,        /* no sync running */
	SY_CONNECTING,  /* non-blocking connect in flight */
	SY_PING, SY_PORT, SY_CAPA, SY_PSYNC, /* waiting for that command's reply */
	SY_BULK,        /* waiting for "$<len>" or "$EOF:<mark>" */
	SY_TRANSFER,    /* RDB bytes into the temporary file */
};

enum { RDB_CHUNK = 1 << 16, MARK_LEN = 40 };

static struct {
	char host[256];
	int port;            /* 0: not a replica */
	client *link;        /* the primary's connection, once synced */
	long long offset;    /* of the primary's stream applied here */
	char replid[41];
	long long next_try_ms;
	long long last_ack_ms;
	long long last_io_ms;
	long long syncs;
	/* the sync in progress */
	enum sync_state st;
	int fd, out;         /* the socket; the temporary RDB file */
	char tmp[1500];
	long long sync_off;  /* +FULLRESYNC's offset */
	long long left;      /* RDB bytes still to come, -1: up to the mark */
	char mark[MARK_LEN + 1];
	long long deadline;  /* ms: no progress until then fails the sync */
	long long read_bytes;
	char line[512];      /* a reply line being read */
	size_t llen;
	char *buf;           /* RDB_CHUNK + MARK_LEN: a possible mark prefix first */
	size_t held;
} M = { .fd = -1, .out = -1 };

bool repl_is_replica(void)
{
	return M.port != 0;
}

/* Starts a non-blocking connect to the primary: the socket, or -errno. */
static int connect_start(void)
{
	char port[16];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	snprintf(port, sizeof(port), "%d", M.port);
	if (getaddrinfo(M.host, port, &hints, &ai) != 0)
		return -EHOSTUNREACH;
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int rc = fd < 0 ? -errno : 0;
	if (!rc && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS)
		rc = -errno;
	freeaddrinfo(ai);
	if (rc) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* A handshake command: a few bytes on a fresh socket, whose buffer is
 * empty, so the write does not block in practice (rdb_write_all() polls
 * if it ever would). */
static int send_cmd(const char *cmd)
{
	return rdb_write_all(M.fd, cmd, strlen(cmd));
}

/* Reads what has arrived of one reply line, one byte at a time so that
 * nothing past the line is consumed (the RDB follows the bulk header).
 * Empty lines (the primary's keep-alive newlines while it prepares the
 * RDB) are skipped.  @return 1 with M.line complete, 0 not yet, -errno. */
static int line_step(void)
{
	for (;;) {
		char ch;
		ssize_t r = read(M.fd, &ch, 1);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (r <= 0)
			return r == 0 ? -ECONNRESET : -errno;
		M.deadline = mstime() + IO_TIMEOUT_MS;
		if (ch == '\n') {
			if (M.llen && M.line[M.llen - 1] == '\r')
				M.llen--;
			if (M.llen == 0)
				continue;
			M.line[M.llen] = 0;
			M.llen = 0;
			return 1;
		}
		if (M.llen + 1 < sizeof(M.line))
			M.line[M.llen++] = ch;
	}
}

/* Takes @n received RDB bytes at M.buf + M.held: writes what is RDB to the
 * file.  @return 1 once the RDB is complete (bytes after it, the stream's
 * first ones, are left at M.buf[0 .. M.held)), 0 for more, -errno. */
static int rdb_bytes(size_t n)
{
	if (M.left >= 0) {
		size_t k = (long long)n < M.left ? n : (size_t)M.left;
		int rc = rdb_write_all(M.out, M.buf + M.held, k);
		M.left -= (long long)k;
		if (rc || M.left > 0)
			return rc;
		memmove(M.buf, M.buf + M.held + k, n - k);
		M.held = n - k;
		return 1;
	}
	size_t all = M.held + n;
	char *m = memmem(M.buf, all, M.mark, MARK_LEN);
	if (m) {
		int rc = rdb_write_all(M.out, M.buf, (size_t)(m - M.buf));
		size_t rest = all - (size_t)(m - M.buf) - MARK_LEN;
		memmove(M.buf, m + MARK_LEN, rest);
		M.held = rest;
		return rc ? rc : 1;
	}
	/* keep the last MARK_LEN - 1 bytes: the mark may straddle two reads */
	size_t keep = all < MARK_LEN - 1 ? all : MARK_LEN - 1;
	int rc = rdb_write_all(M.out, M.buf, all - keep);
	memmove(M.buf, M.buf + all - keep, keep);
	M.held = keep;
	return rc;
}

/* Reads the RDB bytes that have arrived, at most 16 MB per tick so that
 * clients get their turn.  Same returns as rdb_bytes(). */
static int transfer_step(void)
{
	for (int i = 0; i < 256; i++) {
		ssize_t r = read(M.fd, M.buf + M.held, RDB_CHUNK);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (r <= 0)
			return r == 0 ? -ECONNRESET : -errno;
		M.deadline = mstime() + IO_TIMEOUT_MS;
		M.read_bytes += r;
		int rc = rdb_bytes((size_t)r);
		if (rc)
			return rc;
	}
	return 0;
}
static void free_main_entry(dent *e)
{
	free_value(e->type, e->v.p);
}

/* A full sync replaces the whole dataset, as FLUSHALL then load. */
static void empty_keyspace(void)
{
	dict_free(g_ks->db, free_main_entry);
	dict_free(g_ks->expires, NULL);
	g_ks->db = dict_new(); /* cannot fail: everything was just freed */
	g_ks->expires = dict_new();
	g_srv.dirty++;
}

/* The bulk header after +FULLRESYNC: "$<len>" or "$EOF:<mark>"; opens
 * the temporary file the RDB goes to. */
static int bulk_header(void)
{
	if (strncmp(M.line, "$EOF:", 5) == 0 && strlen(M.line) >= 5 + MARK_LEN) {
		memcpy(M.mark, M.line + 5, MARK_LEN);
		M.left = -1;
	} else if (M.line[0] == '$') {
		M.left = strtoll(M.line + 1, NULL, 10);
	} else {
		log_msg('#', "Bad bulk header from the primary: '%s'", M.line);
		return -EPROTO;
	}
	snprintf(M.tmp, sizeof(M.tmp), "%s/temp-repl-%d.rdb", g_srv.dir, (int)getpid());
	M.out = open(M.tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	M.buf = malloc(RDB_CHUNK + MARK_LEN);
	M.held = 0;
	M.read_bytes = 0;
	if (M.out < 0 || !M.buf)
		return M.out < 0 ? -errno : -ENOMEM;
	log_msg('*', "Primary %s:%d: receiving the RDB (%s) in the background", M.host, M.port,
		M.left < 0 ? "EOF-marked" : M.line + 1);
	return 0;
}

/* A reply line for the handshake step we are in: check it, send the next
 * command.  @return 0 or -errno. */
static int handshake_reply(void)
{
	char cmd[128];
	switch (M.st) {
	case SY_PING:
		if (M.line[0] == '-' && strncmp(M.line, "-NOAUTH", 7) != 0) {
			log_msg('#', "The primary answered PING with %s", M.line);
			return -EPROTO;
		}
		snprintf(cmd, sizeof(cmd), "REPLCONF listening-port %d\r\n", g_srv.port);
		M.st = SY_PORT;
		return send_cmd(cmd);
	case SY_PORT:
		M.st = SY_CAPA;
		return send_cmd("REPLCONF capa eof capa psync2\r\n");
	case SY_CAPA:
		M.st = SY_PSYNC;
		return send_cmd("PSYNC ? -1\r\n");
	case SY_PSYNC: {
		char id[64];
		if (sscanf(M.line, "+FULLRESYNC %63s %lld", id, &M.sync_off) != 2 || strlen(id) != 40) {
			log_msg('#', "The primary answered PSYNC with '%s'", M.line);
			return -EPROTO;
		}
		memcpy(M.replid, id, 41);
		M.st = SY_BULK;
		return 0;
	}
	case SY_BULK:
		M.st = SY_TRANSFER;
		return bulk_header();
	default:
		return -EPROTO;
	}
}

/* Ends the sync in progress (on success the socket has become the link). */
static void sync_cleanup(void)
{
	if (M.fd >= 0)
		close(M.fd);
	if (M.out >= 0)
		close(M.out);
	if (M.tmp[0])
		unlink(M.tmp);
	free(M.buf);
	M.buf = NULL;
	M.fd = M.out = -1;
	M.tmp[0] = 0;
	M.st = SY_NONE;
	M.llen = M.held = 0;
}

/* The RDB is in the file: load it over an emptied keyspace (this blocks,
 * as loading does in Redis) and turn the socket into the primary's
 * client, handing it the stream's bytes that came with the RDB's last. */
static int sync_load(void)
{
	char err[512] = "";
	uint64_t nkeys = 0;
	close(M.out);
	M.out = -1;
	repl_drop_replicas("the dataset is replaced by a full sync from our primary");
	empty_keyspace();
	int rc = rdb_load_file(M.tmp, err, sizeof(err), &nkeys);
	if (rc) {
		log_msg('#', "Can't load the primary's RDB: %s", err);
		return rc;
	}
	client *c = client_new(M.fd, M.host);
	if (!c)
		return -ENOMEM;
	M.fd = -1; /* the client owns it now */
	c->flags |= CF_MASTER | CF_AUTHED;
	M.link = c;
	M.offset = M.sync_off;
	M.syncs++;
	M.last_io_ms = M.last_ack_ms = 0;
	log_msg('*', "Primary %s:%d: %llu keys loaded at offset %lld; streaming", M.host, M.port,
		(unsigned long long)nkeys, M.sync_off);
	if (M.held) {
		free(c->qbuf);
		c->qbuf = M.buf; /* RDB_CHUNK + MARK_LEN bytes, M.held used */
		c->qcap = RDB_CHUNK + MARK_LEN;
		c->qlen = M.held;
		M.buf = NULL;
		client_unblock(c);
	}
	return 0;
}

/* One step of the sync, from the cron: as far as the socket allows
 * without waiting.  @return 0 (going on or done) or -errno (failed). */
static int sync_step(void)
{
	if (M.st == SY_NONE) {
		int fd = connect_start();
		if (fd < 0)
			return fd;
		M.fd = fd;
		M.st = SY_CONNECTING;
		M.deadline = mstime() + IO_TIMEOUT_MS;
		log_msg('*', "Connecting to primary %s:%d: full sync", M.host, M.port);
	}
	if (M.st == SY_CONNECTING) {
		struct pollfd p = { .fd = M.fd, .events = POLLOUT };
		if (poll(&p, 1, 0) == 0)
			return mstime() > M.deadline ? -ETIMEDOUT : 0;
		int err = 0;
		socklen_t el = sizeof(err);
		if (getsockopt(M.fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err)
			return -err;
		M.st = SY_PING;
		int rc = send_cmd("PING\r\n");
		if (rc)
			return rc;
	}
	while (M.st >= SY_PING && M.st <= SY_BULK) {
		int rc = line_step();
		if (rc <= 0)
			return rc ? rc : mstime() > M.deadline ? -ETIMEDOUT : 0;
		if ((rc = handshake_reply()))
			return rc;
	}
	int rc = transfer_step();
	if (rc < 0)
		return rc;
	if (rc == 0)
		return mstime() > M.deadline ? -ETIMEDOUT : 0;
	rc = sync_load();
	sync_cleanup();
	return rc;
}

static void send_ack(void)
{
	char cmd[96];
	int n = snprintf(cmd, sizeof(cmd), "*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$%d\r\n%lld\r\n",
			 snprintf(NULL, 0, "%lld", M.offset), M.offset);
	/* a few bytes on an idle socket: never blocks in practice; a full
	 * buffer just skips this ACK (the next one carries the same news) */
	if (write(M.link->fd, cmd, (size_t)n) < 0) {
		/* nothing: the read side notices a dead link */
	}
	M.last_ack_ms = mstime();
}

void replica_cron(void)
{
	if (!M.port)
		return;
	long long now = mstime();
	if (!M.link && now >= M.next_try_ms) {
		int rc = sync_step();
		if (rc) {
			log_msg('#', "Sync with primary %s:%d failed: %s; retrying in 1 s", M.host, M.port, strerror(-rc));
			sync_cleanup();
			M.next_try_ms = mstime() + 1000;
		}
		return;
	}
	if (M.link && now - M.last_ack_ms >= 1000)
		send_ack();
}

void replica_link_freed(client *c)
{
	if (c != M.link)
		return;
	M.link = NULL;
	M.next_try_ms = mstime() + 1000;
	if (M.port)
		log_msg('#', "Connection with primary %s:%d lost", M.host, M.port);
}

void replica_stop_sync(void)
{
	sync_cleanup();
}

/* Accounting of the primary's stream, before the command runs: its bytes
 * (the primary sends canonical multibulk). */
void replica_count(client *c)
{
	long long n = snprintf(NULL, 0, "*%d\r\n", c->argc);
	for (int i = 0; i < c->argc; i++)
		n += snprintf(NULL, 0, "$%zu\r\n", c->argvlen[i]) + (long long)c->argvlen[i] + 2;
	M.offset += n;
	M.last_io_ms = mstime();
}

/* REPLCONF GETACK from the primary */
void replica_getack(void)
{
	if (M.link)
		send_ack();
}

void cmd_replicaof(client *c)
{
	if (!strcasecmp(c->argv[1], "no") && !strcasecmp(c->argv[2], "one")) {
		if (M.port)
			log_msg('*', "REPLICAOF NO ONE: primary mode");
		M.port = 0;
		sync_cleanup();
		if (M.link)
			shutdown(M.link->fd, SHUT_RDWR);
		add_reply_ok(c);
		return;
	}
	long long port;
	if (!parse_ll(c->argv[2], c->argvlen[2], &port) || port < 0 || port > 65535) {
		add_reply_error(c, "ERR Invalid master port");
		return;
	}
	if (M.port == port && !strcasecmp(M.host, c->argv[1]) && M.link) {
		add_reply_status(c, "OK Already connected to specified master");
		return;
	}
	snprintf(M.host, sizeof(M.host), "%s", c->argv[1]);
	M.port = (int)port;
	M.next_try_ms = 0;
	sync_cleanup(); /* a sync from another primary in progress */
	if (M.link)
		shutdown(M.link->fd, SHUT_RDWR);
	log_msg('*', "REPLICAOF %s:%d enabled", M.host, M.port);
	add_reply_ok(c);
}

size_t replica_info(char *b, size_t cap)
{
	long long now = mstime();
	int n = snprintf(b, cap, "# Replication\r\nrole:slave\r\nmaster_host:%s\r\nmaster_port:%d\r\n"
			 "master_link_status:%s\r\nmaster_last_io_seconds_ago:%lld\r\nmaster_sync_in_progress:%d\r\n"
			 "slave_read_repl_offset:%lld\r\nslave_repl_offset:%lld\r\n",
			 M.host, M.port, M.link ? "up" : "down",
			 M.link ? (now - (M.last_io_ms ? M.last_io_ms : now)) / 1000 : -1LL, M.st != SY_NONE,
			 M.offset, M.offset);
	if (n > 0 && (size_t)n < cap && M.st == SY_TRANSFER)
		n += snprintf(b + n, cap - (size_t)n, "master_sync_total_bytes:%lld\r\nmaster_sync_read_bytes:%lld\r\n",
			      M.left < 0 ? -1LL : M.read_bytes + M.left, M.read_bytes);
	if (n > 0 && (size_t)n < cap)
		n += snprintf(b + n, cap - (size_t)n, "slave_priority:100\r\nslave_read_only:1\r\nreplica_announced:1\r\n");
	return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}
