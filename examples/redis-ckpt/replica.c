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
 * Simplification (said in the README): the handshake and the transfer run
 * in the event loop's thread, blocking it (each step bounded by a timeout),
 * where Redis transfers in the background and serves the old data
 * meanwhile; loading blocks in Redis too.
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
} M;

bool repl_is_replica(void)
{
	return M.port != 0;
}

static int wait_fd(int fd, short ev)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int n = poll(&p, 1, IO_TIMEOUT_MS);
	return n > 0 ? 0 : n == 0 ? -ETIMEDOUT : -errno;
}

static int send_cmd(int fd, const char *cmd)
{
	return rdb_write_all(fd, cmd, strlen(cmd));
}

/* One reply line (without CRLF); empty lines (the primary's keep-alive
 * newlines while it prepares the RDB) are skipped. */
static int read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	for (;;) {
		char ch;
		ssize_t r = read(fd, &ch, 1);
		if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
			int rc = wait_fd(fd, POLLIN);
			if (rc)
				return rc;
			continue;
		}
		if (r <= 0)
			return r == 0 ? -ECONNRESET : -errno;
		if (ch == '\n') {
			if (n && buf[n - 1] == '\r')
				n--;
			if (n == 0)
				continue;
			buf[n] = 0;
			return 0;
		}
		if (n + 1 < cap)
			buf[n++] = ch;
	}
}

static int connect_primary(void)
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
	if (!rc)
		rc = wait_fd(fd, POLLOUT);
	int err = 0;
	socklen_t el = sizeof(err);
	if (!rc && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err)
		rc = -err;
	if (rc) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Writes the RDB payload to @out: @len bytes, or (len < 0) up to the EOF
 * @mark.  Bytes that arrived after the mark (the start of the command
 * stream) are returned in *rest. */
static int receive_rdb(int fd, int out, long long len, const char *mark, char **rest, size_t *nrest)
{
	enum { CH = 1 << 16, ML = 40 };
	char *buf = malloc(CH + ML);
	size_t held = 0; /* bytes at buf's start not written yet (a possible mark prefix) */
	int rc = 0;
	*rest = NULL;
	*nrest = 0;
	if (!buf)
		return -ENOMEM;
	for (;;) {
		size_t want = CH;
		if (len >= 0 && (long long)want > len)
			want = (size_t)len;
		if (len == 0)
			break;
		ssize_t r = read(fd, buf + held, want);
		if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
			if ((rc = wait_fd(fd, POLLIN)))
				break;
			continue;
		}
		if (r <= 0) {
			rc = r == 0 ? -ECONNRESET : -errno;
			break;
		}
		if (len >= 0) {
			len -= r;
			if ((rc = rdb_write_all(out, buf, (size_t)r)))
				break;
			continue;
		}
		size_t n = held + (size_t)r;
		char *m = memmem(buf, n, mark, ML);
		if (m) {
			rc = rdb_write_all(out, buf, (size_t)(m - buf));
			*nrest = n - (size_t)(m - buf) - ML;
			if (*nrest && (*rest = malloc(*nrest)))
				memcpy(*rest, m + ML, *nrest);
			break;
		}
		/* keep the last ML - 1 bytes: the mark may straddle two reads */
		size_t keep = n < ML - 1 ? n : ML - 1;
		if ((rc = rdb_write_all(out, buf, n - keep)))
			break;
		memmove(buf, buf + n - keep, keep);
		held = keep;
	}
	free(buf);
	return rc;
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

static int handshake(int fd, long long *off, char *mark, long long *len)
{
	char line[512], cmd[128];
	int rc;
	if ((rc = send_cmd(fd, "PING\r\n")) || (rc = read_line(fd, line, sizeof(line))))
		return rc;
	if (line[0] == '-' && strncmp(line, "-NOAUTH", 7) != 0) {
		log_msg('#', "The primary answered PING with %s", line);
		return -EPROTO;
	}
	snprintf(cmd, sizeof(cmd), "REPLCONF listening-port %d\r\n", g_srv.port);
	if ((rc = send_cmd(fd, cmd)) || (rc = read_line(fd, line, sizeof(line))) ||
	    (rc = send_cmd(fd, "REPLCONF capa eof capa psync2\r\n")) || (rc = read_line(fd, line, sizeof(line))) ||
	    (rc = send_cmd(fd, "PSYNC ? -1\r\n")) || (rc = read_line(fd, line, sizeof(line))))
		return rc;
	char id[64];
	if (sscanf(line, "+FULLRESYNC %63s %lld", id, off) != 2 || strlen(id) != 40) {
		log_msg('#', "The primary answered PSYNC with '%s'", line);
		return -EPROTO;
	}
	memcpy(M.replid, id, 41);
	if ((rc = read_line(fd, line, sizeof(line))))
		return rc;
	if (strncmp(line, "$EOF:", 5) == 0 && strlen(line) >= 45) {
		memcpy(mark, line + 5, 40);
		*len = -1;
	} else if (line[0] == '$') {
		*len = strtoll(line + 1, NULL, 10);
	} else {
		log_msg('#', "Bad bulk header from the primary: '%s'", line);
		return -EPROTO;
	}
	return 0;
}

/* Connects, receives the primary's RDB into a temporary file next to the
 * image, loads it over an emptied keyspace and turns the connection into
 * the primary's client. */
static int full_sync(void)
{
	long long off, len;
	char mark[41] = "", tmp[1500], err[512] = "";
	int fd = connect_primary();
	if (fd < 0)
		return fd;
	log_msg('*', "Connected to primary %s:%d: full sync", M.host, M.port);
	int rc = handshake(fd, &off, mark, &len);
	char *rest = NULL;
	size_t nrest = 0;
	snprintf(tmp, sizeof(tmp), "%s/temp-repl-%d.rdb", g_srv.dir, (int)getpid());
	int out = rc ? -1 : open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	if (!rc && out < 0)
		rc = -errno;
	if (!rc)
		rc = receive_rdb(fd, out, len, mark, &rest, &nrest);
	if (out >= 0)
		close(out);
	uint64_t nkeys = 0;
	if (!rc) {
		repl_drop_replicas("the dataset is replaced by a full sync from our primary");
		empty_keyspace();
		rc = rdb_load_file(tmp, err, sizeof(err), &nkeys);
		if (rc)
			log_msg('#', "Can't load the primary's RDB: %s", err);
	}
	unlink(tmp);
	if (rc) {
		free(rest);
		close(fd);
		return rc;
	}
	client *c = client_new(fd, M.host);
	if (!c) {
		free(rest);
		close(fd);
		return -ENOMEM;
	}
	c->flags |= CF_MASTER | CF_AUTHED;
	M.link = c;
	M.offset = off;
	M.syncs++;
	M.last_io_ms = M.last_ack_ms = 0;
	log_msg('*', "Primary %s:%d: %llu keys loaded at offset %lld; streaming", M.host, M.port,
		(unsigned long long)nkeys, off);
	if (rest) { /* the stream's first bytes came with the RDB's last */
		free(c->qbuf);
		c->qbuf = rest;
		c->qcap = c->qlen = nrest;
		client_unblock(c);
	}
	return 0;
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
		int rc = full_sync();
		if (rc) {
			log_msg('#', "Sync with primary %s:%d failed: %s; retrying in 1 s", M.host, M.port, strerror(-rc));
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
	if (M.link)
		shutdown(M.link->fd, SHUT_RDWR);
	log_msg('*', "REPLICAOF %s:%d enabled", M.host, M.port);
	add_reply_ok(c);
}

size_t replica_info(char *b, size_t cap)
{
	long long now = mstime();
	int n = snprintf(b, cap, "# Replication\r\nrole:slave\r\nmaster_host:%s\r\nmaster_port:%d\r\n"
			 "master_link_status:%s\r\nmaster_last_io_seconds_ago:%lld\r\nmaster_sync_in_progress:0\r\n"
			 "slave_read_repl_offset:%lld\r\nslave_repl_offset:%lld\r\nslave_priority:100\r\n"
			 "slave_read_only:1\r\nreplica_announced:1\r\n",
			 M.host, M.port, M.link ? "up" : "down",
			 M.link ? (now - (M.last_io_ms ? M.last_io_ms : now)) / 1000 : -1LL, M.offset, M.offset);
	return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}
