/*
 * rdb.c - writes redis-ckpt's keyspace as an RDB file (version 10, the one
 * Redis 7.0 writes), for replication's full sync and `redis-cli --rdb`.
 *
 * Only the plain encodings are written (a string per element: RDB_TYPE_LIST,
 * SET, HASH, ZSET_2): every Redis since 2.x loads them and converts to its
 * compact encodings itself, so the writer needs no listpack/ziplist/intset
 * code.  Strings longer than 20 bytes are LZF-compressed when that saves at
 * least 4 bytes and rdbcompression is on, as Redis does (its RDBs and DUMP
 * payloads are LZF too; the compressor here is written from the format,
 * so its bytes need not equal liblzf's, only decode to the same string).  It reads the keyspace and never writes to it, which is what lets a
 * helper process serialise a restored checkpoint (repl.c).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "rdb.h"
#include "server.h"

/* ------------------------------------------------------------- crc64 */

static uint64_t g_crc_table[256];
static bool g_crc_ready;

static void crc64_init(void)
{
	/* reflected form of 0xad93d23594c935a9 */
	const uint64_t poly = 0x95ac9329ac4bc9b5ull;
	for (unsigned i = 0; i < 256; i++) {
		uint64_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ poly : c >> 1;
		g_crc_table[i] = c;
	}
	g_crc_ready = true;
}

uint64_t rdb_crc64(uint64_t crc, const void *p, size_t len)
{
	if (!g_crc_ready)
		crc64_init();
	const unsigned char *s = p;
	for (size_t i = 0; i < len; i++)
		crc = g_crc_table[(crc ^ s[i]) & 0xff] ^ (crc >> 8);
	return crc;
}

/* ------------------------------------------------------------- output */

struct rdbw {
	int fd;  /* -1: output collects in mem (DUMP) */
	int err; /* first write error; later output is dropped */
	uint64_t crc;
	char *mem;
	size_t mlen, mcap;
	size_t len;
	unsigned char *cbuf; /* LZF output, grown as needed */
	size_t ccap;
	unsigned char buf[1 << 16];
	/* LZF's hash of 3-byte sequences: positions in the string being
	 * compressed, or stale ones from earlier strings, which are only
	 * candidates (the bytes are compared), so it is never cleared */
	uint32_t htab[1 << 14];
};

int rdb_write_all(int fd, const void *buf, size_t n)
{
	const unsigned char *p = buf;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				/* a non-blocking socket shared with the server:
				 * wait for room (the peer may be slow to load) */
				struct pollfd pfd = { .fd = fd, .events = POLLOUT };
				if (poll(&pfd, 1, 60000) == 0)
					return -ETIMEDOUT;
				continue;
			}
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void w_flush(struct rdbw *w)
{
	if (!w->err && w->len && w->fd < 0) {
		if (w->mlen + w->len > w->mcap) {
			size_t cap = w->mcap ? w->mcap : 256;
			while (cap < w->mlen + w->len)
				cap *= 2;
			char *m = realloc(w->mem, cap);
			if (!m) {
				w->err = -ENOMEM;
				return;
			}
			w->mem = m;
			w->mcap = cap;
		}
		memcpy(w->mem + w->mlen, w->buf, w->len);
		w->mlen += w->len;
	} else if (!w->err && w->len) {
		w->err = rdb_write_all(w->fd, w->buf, w->len);
	}
	w->len = 0;
}

static void w_raw(struct rdbw *w, const void *p, size_t n)
{
	w->crc = rdb_crc64(w->crc, p, n);
	const unsigned char *s = p;
	while (n && !w->err) {
		if (w->len == sizeof(w->buf))
			w_flush(w);
		size_t k = sizeof(w->buf) - w->len;
		if (k > n)
			k = n;
		memcpy(w->buf + w->len, s, k);
		w->len += k;
		s += k;
		n -= k;
	}
}

static void w_byte(struct rdbw *w, unsigned char b)
{
	w_raw(w, &b, 1);
}

/* The length encoding: 6 bits, 14 bits, or 32/64 bits big-endian. */
static void w_len(struct rdbw *w, uint64_t n)
{
	unsigned char b[9];
	if (n < 64) {
		w_byte(w, (unsigned char)n);
	} else if (n < 16384) {
		b[0] = (unsigned char)(0x40 | (n >> 8));
		b[1] = (unsigned char)n;
		w_raw(w, b, 2);
	} else if (n <= UINT32_MAX) {
		b[0] = 0x80;
		for (int i = 0; i < 4; i++)
			b[1 + i] = (unsigned char)(n >> (24 - 8 * i));
		w_raw(w, b, 5);
	} else {
		b[0] = 0x81;
		for (int i = 0; i < 8; i++)
			b[1 + i] = (unsigned char)(n >> (56 - 8 * i));
		w_raw(w, b, 9);
	}
}

/* Short strings that are canonical 32-bit integers are stored as integers
 * (0xC0-0xC2 encodings), as Redis does: smaller, and DUMP of such a value
 * is byte-identical to Redis's. */
static bool w_try_int(struct rdbw *w, const char *p, size_t n)
{
	long long v;
	char canon[24];
	if (n == 0 || n > 11 || !parse_ll(p, n, &v) || v < INT32_MIN || v > INT32_MAX)
		return false;
	if ((size_t)snprintf(canon, sizeof(canon), "%lld", v) != n || memcmp(canon, p, n) != 0)
		return false;
	unsigned char b[5];
	int bytes = v >= INT8_MIN && v <= INT8_MAX ? 1 : v >= INT16_MIN && v <= INT16_MAX ? 2 : 4;
	b[0] = (unsigned char)(0xC0 | (bytes == 1 ? 0 : bytes == 2 ? 1 : 2));
	for (int i = 0; i < bytes; i++)
		b[1 + i] = (unsigned char)((uint64_t)v >> (8 * i));
	w_raw(w, b, (size_t)bytes + 1);
	return true;
}

/* LZF (liblzf's format, which Redis's lzf_decompress reads): a control
 * byte below 32 starts a run of ctrl + 1 literals; otherwise its top 3
 * bits are a back reference's length - 2 (7: one more byte adds to it)
 * and its low 5 bits with the next byte the distance - 1 (< 8192).  Each
 * run's control byte is reserved before its literals and filled when the
 * run ends.  @return the compressed size, or 0 when it would not fit in
 * @cap (the caller then writes the string plainly). */
static size_t lzf_compress(const unsigned char *in, size_t n, unsigned char *out, size_t cap, uint32_t *htab)
{
	enum { HLOG = 14, MAX_LIT = 32, MAX_OFF = 8192, MAX_REF = 264 };
	size_t ip = 0, op = 1, lit = 0;
	while (ip < n) {
		size_t ref = 0, len = 0;
		if (ip + 2 < n) {
			uint32_t v = (uint32_t)in[ip] << 16 | (uint32_t)in[ip + 1] << 8 | in[ip + 2];
			uint32_t h = (v * 2654435761u) >> (32 - HLOG);
			ref = htab[h];
			htab[h] = (uint32_t)ip;
			if (ref < ip && ip - ref - 1 < MAX_OFF && !memcmp(in + ref, in + ip, 3)) {
				size_t max = n - ip < MAX_REF ? n - ip : MAX_REF;
				for (len = 3; len < max && in[ref + len] == in[ip + len]; len++)
					;
			}
		}
		if (!len) { /* a literal; a full run gets its control byte */
			if (op + 2 > cap)
				return 0;
			out[op++] = in[ip++];
			if (++lit == MAX_LIT) {
				out[op - lit - 1] = MAX_LIT - 1;
				lit = 0;
				op++;
			}
			continue;
		}
		if (lit)
			out[op - lit - 1] = (unsigned char)(lit - 1);
		else
			op--; /* no literals: the reserved control byte goes */
		if (op + 4 > cap)
			return 0;
		size_t l = len - 2, off = ip - ref - 1;
		if (l < 7) {
			out[op++] = (unsigned char)((off >> 8) + (l << 5));
		} else {
			out[op++] = (unsigned char)((off >> 8) + (7 << 5));
			out[op++] = (unsigned char)(l - 7);
		}
		out[op++] = (unsigned char)off;
		op++; /* the next run's control byte */
		lit = 0;
		ip += len;
	}
	if (lit)
		out[op - lit - 1] = (unsigned char)(lit - 1);
	else
		op--;
	return op;
}

/* Redis's rdbSaveLzfStringObject: only strings over 20 bytes, and only
 * when at least 4 bytes are saved. */
static bool w_try_lzf(struct rdbw *w, const char *p, size_t n)
{
	if (n <= 20 || !g_srv.rdb_compression)
		return false;
	if (w->ccap < n) {
		unsigned char *nb = realloc(w->cbuf, n);
		if (!nb)
			return false;
		w->cbuf = nb;
		w->ccap = n;
	}
	size_t c = lzf_compress((const unsigned char *)p, n, w->cbuf, n - 4, w->htab);
	if (!c)
		return false;
	w_byte(w, 0xC3); /* RDB_ENCVAL << 6 | RDB_ENC_LZF */
	w_len(w, c);
	w_len(w, n);
	w_raw(w, w->cbuf, c);
	return true;
}

static void w_str(struct rdbw *w, const char *p, size_t n)
{
	if (w_try_int(w, p, n) || w_try_lzf(w, p, n))
		return;
	w_len(w, n);
	w_raw(w, p, n);
}

static void w_le64(struct rdbw *w, uint64_t v)
{
	unsigned char b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	w_raw(w, b, 8);
}

static void w_aux(struct rdbw *w, const char *k, const char *v)
{
	w_byte(w, RDB_OPCODE_AUX);
	w_str(w, k, strlen(k));
	w_str(w, v, strlen(v));
}

/* ------------------------------------------------------------- values */

static void field_cb(void *arg, dent *f)
{
	struct rdbw *w = arg;
	w_str(w, f->key, f->klen);
	hstr *v = f->v.p;
	w_str(w, v->buf, v->len);
}

static void member_cb(void *arg, dent *f)
{
	struct rdbw *w = arg;
	w_str(w, f->key, f->klen);
}

static void w_value(struct rdbw *w, uint32_t type, void *v)
{
	switch (type) {
	case T_STRING: {
		hstr *s = v;
		w_str(w, s->buf, s->len);
		break;
	}
	case T_LIST: {
		hlist *l = v;
		w_len(w, l->len);
		for (lnode *n = l->head; n; n = n->next)
			w_str(w, n->data, n->len);
		break;
	}
	case T_HASH:
		w_len(w, dict_size(v));
		dict_foreach(v, field_cb, w);
		break;
	case T_SET:
		w_len(w, dict_size(v));
		dict_foreach(v, member_cb, w);
		break;
	case T_ZSET: {
		zset *z = v;
		w_len(w, z->length);
		for (zsknode *n = z->header->level[0].forward; n; n = n->level[0].forward) {
			uint64_t bits;
			w_str(w, n->ele->key, n->ele->klen);
			memcpy(&bits, &n->score, 8);
			w_le64(w, bits);
		}
		break;
	}
	}
}

static unsigned char rdb_type_of(uint32_t type)
{
	switch (type) {
	case T_LIST: return RDB_TYPE_LIST;
	case T_HASH: return RDB_TYPE_HASH;
	case T_SET: return RDB_TYPE_SET;
	case T_ZSET: return RDB_TYPE_ZSET_2;
	}
	return RDB_TYPE_STRING;
}

static void key_cb(void *arg, dent *e)
{
	struct rdbw *w = arg;
	if (w->err)
		return;
	if (e->expire != -1) {
		w_byte(w, RDB_OPCODE_EXPIRETIME_MS);
		w_le64(w, (uint64_t)e->expire);
	}
	w_byte(w, rdb_type_of(e->type));
	w_str(w, e->key, e->klen);
	w_value(w, e->type, e->v.p);
}

int rdb_write_keyspace(int fd, const struct rdb_aux *aux)
{
	static struct rdbw w; /* 64 KiB: not on the stack of a small helper */
	char num[32];
	memset(&w, 0, offsetof(struct rdbw, buf));
	w.fd = fd;
	w_raw(&w, "REDIS0010", 9);
	w_aux(&w, "redis-ver", "7.0.15");
	w_aux(&w, "redis-bits", sizeof(void *) == 8 ? "64" : "32");
	snprintf(num, sizeof(num), "%lld", (long long)time(NULL));
	w_aux(&w, "ctime", num);
	snprintf(num, sizeof(num), "%zu", ckpt_heap_used(g_heap));
	w_aux(&w, "used-mem", num);
	if (aux && aux->replid) {
		w_aux(&w, "repl-stream-db", "0");
		w_aux(&w, "repl-id", aux->replid);
		snprintf(num, sizeof(num), "%lld", aux->repl_offset);
		w_aux(&w, "repl-offset", num);
	}
	w_aux(&w, "aof-base", "0");
	if (dict_size(g_ks->db)) {
		w_byte(&w, RDB_OPCODE_SELECTDB);
		w_len(&w, 0);
		w_byte(&w, RDB_OPCODE_RESIZEDB);
		w_len(&w, dict_size(g_ks->db));
		w_len(&w, dict_size(g_ks->expires));
		dict_foreach(g_ks->db, key_cb, &w);
	}
	w_byte(&w, RDB_OPCODE_EOF);
	w_le64(&w, w.crc);
	w_flush(&w);
	free(w.cbuf);
	w.cbuf = NULL;
	w.ccap = 0;
	return w.err;
}

int rdb_dump_value(uint32_t type, void *val, char **out, size_t *outlen)
{
	struct rdbw *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fd = -1;
	w_byte(w, rdb_type_of(type));
	w_value(w, type, val);
	/* the footer: RDB version (2 bytes LE), then the CRC-64 of all before */
	unsigned char ver[2] = { RDB_VERSION & 0xff, RDB_VERSION >> 8 };
	w_raw(w, ver, 2);
	w_le64(w, w->crc);
	w_flush(w);
	int rc = w->err;
	if (rc == 0) {
		*out = w->mem;
		*outlen = w->mlen;
	} else {
		free(w->mem);
	}
	free(w->cbuf);
	free(w);
	return rc;
}
